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
    /// Pick one of the classes by number.
    Choice(Vec<String>),
}

impl Prompt {
    fn for_task(task_type: TaskType, schema: &Value) -> anyhow::Result<Prompt> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        match task_type {
            TaskType::Classification => Ok(Prompt::Choice(strings(&schema["classes"]))),
        }
    }

    fn show(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Prompt::Choice(classes) => {
                for (i, c) in classes.iter().enumerate() {
                    writeln!(out, "  {}) {c}", i + 1)?;
                }
                write!(
                    out,
                    "choice [1-{}, s=skip, i=instructions, q=quit]: ",
                    classes.len()
                )
            }
        }
    }

    /// The answer a line of input stands for, or why it is not one.
    fn parse(&self, input: &str) -> Result<Value, String> {
        match self {
            Prompt::Choice(classes) => input
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| classes.get(i))
                .map(|label| json!({ "label": label }))
                .ok_or_else(|| format!("type a number from 1 to {}", classes.len())),
        }
    }
}

fn item_text(data: &Value) -> String {
    match data.get("text").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => serde_json::to_string_pretty(data).unwrap_or_default(),
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
    let prompt = Prompt::for_task(project.task_type, &project.schema)?;
    if let Prompt::Choice(c) = &prompt
        && c.is_empty()
    {
        bail!("project {project_id} has no classes to choose from");
    }
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
            match line.trim() {
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
                writeln!(out, "submitted {a} (answer {}, {:?})\n", sub.id, sub.status)?;
            }
        }
        current = prefetched?.into_iter().next();
    }
}
