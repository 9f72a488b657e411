//! `sahel work`: label one task at a time in the terminal.
//!
//! While the labeler reads a task the next one is already being leased in
//! the background, so answering never waits on the network. Keys: the
//! number of a class (or the task's own keys), `s` skip, `i` the
//! instructions again, `q` quit (gives back the current and the prefetched
//! lease).

use std::io::{BufRead, Write};
use std::thread::JoinHandle;

use anyhow::bail;
use ed25519_dalek::SigningKey;
use sahel_protocol::Timestamp;
use sahel_protocol::api::{self, TaskType};
use sahel_protocol::provenance;
use serde_json::{Value, json};

use crate::batch::idempotency_key;
use crate::client::{ApiResult, Client};

/// How a task is asked and answered in a terminal.
enum Prompt {
    /// Pick one option by number; the answer is `{field: option}`.
    Choice {
        field: &'static str,
        options: Vec<String>,
        /// What each option is shown as, when not its own value.
        shown: Vec<String>,
    },
    /// Pick any number of classes (`1 3`, or `-` for none).
    Multi {
        classes: Vec<String>,
        min: usize,
        max: usize,
    },
    /// Write one line of text within the length bounds.
    Text { min: usize, max: usize },
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Prompt {
    /// The prompt for a task type, or why it does not fit a terminal.
    fn for_task(task_type: TaskType, schema: &Value) -> anyhow::Result<Prompt> {
        let bound = |k: &str, default: usize| {
            schema
                .get(k)
                .and_then(Value::as_u64)
                .map_or(default, |n| n as usize)
        };
        let prompt = match task_type.as_str() {
            "classification" => {
                let options = strings(&schema["classes"]);
                Prompt::Choice {
                    field: "label",
                    shown: options.clone(),
                    options,
                }
            }
            "pairwise" => {
                let mut options = vec!["a".to_owned(), "b".to_owned()];
                let mut shown = vec![
                    "response A is better".to_owned(),
                    "response B is better".to_owned(),
                ];
                if schema.get("allow_tie").and_then(Value::as_bool) != Some(false) {
                    options.push("tie".into());
                    shown.push("tie".into());
                }
                Prompt::Choice {
                    field: "choice",
                    options,
                    shown,
                }
            }
            "multi_label" => {
                let classes = strings(&schema["classes"]);
                Prompt::Multi {
                    max: bound("max", classes.len()),
                    min: bound("min", 0),
                    classes,
                }
            }
            "free_text" => Prompt::Text {
                min: bound("min_chars", 1),
                max: bound("max_chars", usize::MAX),
            },
            other => bail!(
                "{other} tasks do not fit a terminal: label them in the web UI, \
                 or with `sahel pull` and `sahel push` and a tool of your own"
            ),
        };
        match &prompt {
            Prompt::Choice { options, .. }
            | Prompt::Multi {
                classes: options, ..
            } if options.is_empty() => {
                bail!("the project has no classes to choose from")
            }
            _ => Ok(prompt),
        }
    }

    fn show(&self, out: &mut impl Write) -> std::io::Result<()> {
        let keys = "s=skip, i=instructions, q=quit";
        match self {
            Prompt::Choice { shown, .. } => {
                for (i, c) in shown.iter().enumerate() {
                    writeln!(out, "  {}) {c}", i + 1)?;
                }
                write!(out, "choice [1-{}, {keys}]: ", shown.len())
            }
            Prompt::Multi { classes, .. } => {
                for (i, c) in classes.iter().enumerate() {
                    writeln!(out, "  {}) {c}", i + 1)?;
                }
                write!(out, "classes [numbers like 1 3, - for none, {keys}]: ")
            }
            Prompt::Text { min, max } => match *max {
                usize::MAX => write!(out, "your text (at least {min} characters; {keys}): "),
                max => write!(out, "your text ({min} to {max} characters; {keys}): "),
            },
        }
    }

    /// The answer a line of input stands for, or why it is not one.
    fn parse(&self, input: &str) -> Result<Value, String> {
        let pick = |token: &str, options: &[String]| {
            token
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| options.get(i).cloned())
                .ok_or_else(|| format!("type a number from 1 to {}", options.len()))
        };
        match self {
            Prompt::Choice { field, options, .. } => {
                pick(input, options).map(|o| json!({ *field: o }))
            }
            Prompt::Multi { classes, min, max } => {
                let mut picked = Vec::new();
                if input != "-" {
                    for token in input.split(|c: char| c == ',' || c.is_whitespace()) {
                        if !token.is_empty() {
                            picked.push(pick(token, classes)?);
                        }
                    }
                }
                picked.sort();
                picked.dedup();
                if picked.len() < *min || picked.len() > *max {
                    return Err(format!("pick from {min} to {max} classes"));
                }
                Ok(json!({ "labels": picked }))
            }
            Prompt::Text { min, max } => {
                let n = input.chars().count();
                if n < *min || n > *max {
                    return Err(format!("{n} characters: write from {min} to {max}"));
                }
                Ok(json!({ "text": input }))
            }
        }
    }
}

/// The item as a terminal shows it: its text, a pairwise comparison, or
/// its fields.
fn item_text(data: &Value) -> String {
    if let (Some(p), Some(a), Some(b)) = (
        data.get("prompt").and_then(Value::as_str),
        data.get("response_a").and_then(Value::as_str),
        data.get("response_b").and_then(Value::as_str),
    ) {
        return format!("PROMPT\n{p}\n\nRESPONSE A\n{a}\n\nRESPONSE B\n{b}");
    }
    match data.get("text").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => {
            let mut shown = data.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("hints");
            }
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        }
    }
}

fn time_left(t: Timestamp) -> String {
    let secs = (t.millis() - Timestamp::now().millis()) / 1000;
    if secs <= 0 {
        "expired".into()
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

fn prefetch(client: &Client, project: i64) -> JoinHandle<ApiResult<Vec<api::Task>>> {
    let c = client.clone();
    std::thread::spawn(move || c.lease(project, 1))
}

/// `key` signs every answer (provenance): the contributor vouches for this
/// answer to this exact item under these guidelines.
pub fn run(client: &Client, key: &SigningKey, project_id: i64) -> anyhow::Result<()> {
    let project = client.project(project_id)?;
    let guidelines = provenance::guideline_version(&project.instructions, &project.schema);
    let prompt = Prompt::for_task(project.task_type, &project.schema)
        .map_err(|e| anyhow::anyhow!("project {project_id}: {e}"))?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "== {} ==\n{}\nreward per accepted answer: {}\n",
        project.title, project.instructions, project.reward
    )?;
    let mut done = 0u32;
    let mut current = client.lease(project_id, 1)?.into_iter().next();
    loop {
        let Some(task) = current.take() else {
            writeln!(
                out,
                "no more tasks for you in this project ({done} answered). Thank you!"
            )?;
            return Ok(());
        };
        let next = prefetch(client, project_id);
        writeln!(
            out,
            "--- item {} (lease expires in {})",
            task.item_id,
            time_left(task.expires_at)
        )?;
        writeln!(out, "{}\n", item_text(&task.data))?;
        let answer = loop {
            prompt.show(&mut out)?;
            out.flush()?;
            let line = match lines.next() {
                Some(l) => l?,
                None => "q".to_owned(),
            };
            // Free text keeps its inner spacing; only the line end goes.
            let input = match prompt {
                Prompt::Text { .. } => line.trim_end_matches(['\r', '\n']),
                _ => line.trim(),
            };
            match input {
                "q" | "Q" => break None,
                "s" | "S" => break Some(None),
                "i" | "I" => writeln!(out, "\n{}\n", project.instructions)?,
                input => match prompt.parse(input) {
                    Ok(a) => break Some(Some(a)),
                    Err(hint) => writeln!(out, "{hint}")?,
                },
            }
        };
        let prefetched = next
            .join()
            .map_err(|_| anyhow::anyhow!("the prefetch thread panicked"))?;
        match answer {
            None => {
                client.release(task.lease_id)?;
                if let Ok(tasks) = prefetched {
                    for t in tasks {
                        client.release(t.lease_id)?;
                    }
                }
                writeln!(out, "\nbye ({done} answered)")?;
                return Ok(());
            }
            Some(None) => {
                client.release(task.lease_id)?;
                writeln!(out, "skipped")?;
            }
            Some(Some(a)) => {
                // Keyed by the lease: resending after a lost response can
                // never record a second answer.
                let signature = provenance::sign_answer(
                    key,
                    &provenance::item_content_hash(&task.data),
                    &guidelines,
                    &a,
                );
                let sub = client.submit(&api::SubmitAnswer {
                    lease_id: task.lease_id,
                    answer: a.clone(),
                    idempotency_key: idempotency_key(task.lease_id),
                    signature: Some(signature),
                })?;
                done += 1;
                writeln!(out, "submitted {a} (answer {}, {:?})", sub.id, sub.status)?;
                match &sub.gold_feedback {
                    Some(f) if f.correct => writeln!(out, "that was a check question: right\n")?,
                    Some(f) => writeln!(
                        out,
                        "that was a check question: the expected answer was {}\n",
                        f.answer
                    )?,
                    None => writeln!(out)?,
                }
            }
        }
        current = prefetched?.into_iter().next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per case: the schema, what was typed, and the answer or the
    /// start of the hint.
    #[test]
    fn each_terminal_type_parses_its_input() {
        let classification = Prompt::for_task(
            TaskType::Classification,
            &json!({"classes": ["pos", "neg"]}),
        )
        .unwrap();
        let cases: &[(&Prompt, &str, Result<Value, &str>)] = &[
            (&classification, "2", Ok(json!({"label": "neg"}))),
            (&classification, "3", Err("type a number from 1 to 2")),
            (&classification, "x", Err("type a number")),
        ];
        for (prompt, input, want) in cases {
            match (prompt.parse(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        let multi = Prompt::Multi {
            classes: vec!["a".into(), "b".into(), "c".into()],
            min: 0,
            max: 2,
        };
        assert_eq!(
            multi.parse("3, 1 1").unwrap(),
            json!({"labels": ["a", "c"]})
        );
        assert_eq!(multi.parse("-").unwrap(), json!({"labels": []}));
        assert!(multi.parse("1 2 3").unwrap_err().contains("from 0 to 2"));
        assert!(multi.parse("4").is_err());
        let pair = Prompt::Choice {
            field: "choice",
            options: vec!["a".into(), "b".into(), "tie".into()],
            shown: vec![],
        };
        assert_eq!(pair.parse("3").unwrap(), json!({"choice": "tie"}));
        let text = Prompt::Text { min: 3, max: 5 };
        assert_eq!(text.parse("héllo").unwrap(), json!({"text": "héllo"}));
        assert!(text.parse("hi").unwrap_err().contains("2 characters"));
        assert!(text.parse("toolong").is_err());
    }
}
