//! `sahel pull` and `sahel push`: batch work for power labelers.
//!
//! `pull` leases tasks and writes one JSON line per task. The labeler fills
//! in each line's `answer` (by hand, script or model) and `push` submits
//! them in batches. Every answer's idempotency key is derived from its
//! lease (`lease-<id>`), so a rerun never doubles one; a journal records
//! what the server acknowledged, so after a crash, Ctrl-C or a dropped
//! network the same command submits exactly what is missing.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use indicatif::ProgressBar;
use sahel_protocol::api::{self, TaskType};
use sahel_protocol::provenance;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Client;

/// One pulled task, as written by `pull` and read back by `push`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskLine {
    pub lease_id: i64,
    #[serde(default)]
    pub project_id: i64,
    #[serde(default)]
    pub item_id: i64,
    #[serde(default)]
    pub expires_at: Option<sahel_protocol::Timestamp>,
    #[serde(default)]
    pub task_type: Option<TaskType>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub schema: Value,
    /// For choice tasks: the answers the schema allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_answers: Option<Vec<String>>,
    /// Fill this in before pushing (e.g. `{"label": "positive"}`).
    #[serde(default)]
    pub answer: Value,
    /// With `pull --download-artifacts`: the local copy of each referenced
    /// artifact, by item field (`{"image": "dir/<sha256>.png"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_files: Option<std::collections::BTreeMap<String, String>>,
}

pub fn idempotency_key(lease_id: i64) -> String {
    format!("lease-{lease_id}")
}

fn allowed_answers(task: &api::Task) -> Option<Vec<String>> {
    task.schema["classes"].as_array().map(|a| {
        a.iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    })
}

/// Leases up to `n` tasks of a project and writes them to `out`, flushing
/// after every batch so an interrupted pull still lists what it leased.
/// What `pull` wrote, and the artifacts it fetched.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pulled {
    pub tasks: u32,
    pub downloaded: u32,
    pub already_there: u32,
}

pub fn pull(
    client: &Client,
    project: i64,
    n: u32,
    out: &Path,
    force: bool,
    bar: &ProgressBar,
) -> anyhow::Result<u32> {
    Ok(pull_with_artifacts(client, project, n, out, force, None, bar)?.tasks)
}

/// `pull`, also fetching every artifact the tasks reference into
/// `artifacts_dir` (verified by SHA-256) and noting the local paths.
pub fn pull_with_artifacts(
    client: &Client,
    project: i64,
    n: u32,
    out: &Path,
    force: bool,
    artifacts_dir: Option<&Path>,
    bar: &ProgressBar,
) -> anyhow::Result<Pulled> {
    let mut pulled = Pulled::default();
    let file = if force {
        File::create(out)
    } else {
        OpenOptions::new().write(true).create_new(true).open(out)
    }
    .with_context(|| {
        if out.exists() && !force {
            format!("{} exists; pass --force to overwrite it", out.display())
        } else {
            format!("creating {}", out.display())
        }
    })?;
    let mut w = BufWriter::new(file);
    let mut got = 0;
    while got < n {
        let tasks = client.lease(project, (n - got).min(100))?;
        if tasks.is_empty() {
            break;
        }
        for t in &tasks {
            let line = TaskLine {
                lease_id: t.lease_id,
                project_id: t.project_id,
                item_id: t.item_id,
                expires_at: Some(t.expires_at),
                task_type: Some(t.task_type),
                data: t.data.clone(),
                schema: t.schema.clone(),
                allowed_answers: allowed_answers(t),
                answer: Value::Null,
                local_files: None,
            };
            let mut line = line;
            if let Some(dir) = artifacts_dir {
                let mut files = std::collections::BTreeMap::new();
                for (field, sha) in crate::artifacts::item_refs(&t.data) {
                    let (path, how) = crate::artifacts::fetch(client, dir, &sha)?;
                    match how {
                        crate::artifacts::Fetched::Downloaded => pulled.downloaded += 1,
                        crate::artifacts::Fetched::AlreadyThere => pulled.already_there += 1,
                    }
                    files.insert(field, path.display().to_string());
                }
                if !files.is_empty() {
                    line.local_files = Some(files);
                }
            }
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        got += tasks.len() as u32;
        bar.set_position(got as u64);
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    pulled.tasks = got;
    Ok(pulled)
}

/// What happened to each line of a push.
#[derive(Debug, Default, Serialize)]
pub struct PushReport {
    /// Lines with an answer to submit.
    pub lines: u64,
    /// Recorded by the server in this run.
    pub recorded: u64,
    /// Recorded in an earlier run (found in the journal), not resent.
    pub already_recorded: u64,
    /// Leases that had expired: the task must be pulled again.
    pub expired: Vec<LineProblem>,
    /// Refused by the server (answer outside the schema, foreign lease...).
    pub refused: Vec<LineProblem>,
    /// Lines that are not a task with an answer.
    pub invalid: Vec<LineProblem>,
}

#[derive(Debug, Serialize)]
pub struct LineProblem {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<i64>,
    pub reason: String,
}

impl PushReport {
    pub fn all_recorded(&self) -> bool {
        self.expired.is_empty() && self.refused.is_empty() && self.invalid.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    lease_id: i64,
    submission_id: i64,
}

/// The journal of one answers file on one server: one line per answer the
/// server acknowledged.
pub fn journal_path(journal_dir: &Path, server: &str, answers: &Path) -> anyhow::Result<PathBuf> {
    let canonical =
        fs::canonicalize(answers).with_context(|| format!("reading {}", answers.display()))?;
    let digest = Sha256::digest(format!("{server}\n{}", canonical.display()).as_bytes());
    Ok(journal_dir.join(format!("{}.jsonl", &hex::encode(digest)[..24])))
}

fn read_journal(path: &Path) -> anyhow::Result<HashSet<i64>> {
    let mut done = HashSet::new();
    let Ok(f) = File::open(path) else {
        return Ok(done);
    };
    for line in BufReader::new(f).lines() {
        // A torn last line (crash mid-write) is simply not an ack.
        if let Ok(e) = serde_json::from_str::<JournalEntry>(&line?) {
            done.insert(e.lease_id);
        }
    }
    Ok(done)
}

/// Submits every answered line of `answers` not yet acknowledged.
///
/// Each answer is signed by `key` over the item as pulled and the
/// bounty's guidelines (provenance).
pub fn push(
    client: &Client,
    key: &SigningKey,
    answers: &Path,
    journal: &Path,
    batch_size: usize,
    bar: &ProgressBar,
) -> anyhow::Result<PushReport> {
    let mut guidelines: HashMap<i64, String> = HashMap::new();
    let mut report = PushReport::default();
    let file = File::open(answers).with_context(|| format!("opening {}", answers.display()))?;
    let mut todo: Vec<(u64, api::SubmitAnswer)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.with_context(|| format!("reading line {n} of {}", answers.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |reason: String, lease_id| LineProblem {
            line: n,
            lease_id,
            reason,
        };
        let task: TaskLine = match serde_json::from_str(&line) {
            Ok(t) => t,
            Err(e) => {
                report
                    .invalid
                    .push(invalid(format!("not a task line: {e}"), None));
                continue;
            }
        };
        if task.answer.is_null() {
            report
                .invalid
                .push(invalid("no answer".into(), Some(task.lease_id)));
            continue;
        }
        if !seen.insert(task.lease_id) {
            report.invalid.push(invalid(
                "a second answer for this lease".into(),
                Some(task.lease_id),
            ));
            continue;
        }
        report.lines += 1;
        let signature = if task.project_id > 0 {
            let g = match guidelines.get(&task.project_id) {
                Some(g) => g.clone(),
                None => {
                    let p = client.project(task.project_id)?;
                    let g = provenance::guideline_version(&p.instructions, &p.schema);
                    guidelines.insert(task.project_id, g.clone());
                    g
                }
            };
            Some(provenance::sign_answer(
                key,
                &provenance::item_content_hash(&task.data),
                &g,
                &task.answer,
            ))
        } else {
            // A hand-written line without its task: the server signs it
            // with the account's custodial key, if the account has one.
            None
        };
        todo.push((
            n,
            api::SubmitAnswer {
                lease_id: task.lease_id,
                answer: task.answer,
                idempotency_key: idempotency_key(task.lease_id),
                signature,
            },
        ));
    }

    let done = read_journal(journal)?;
    todo.retain(|(_, s)| {
        let was = done.contains(&s.lease_id);
        if was {
            report.already_recorded += 1;
        }
        !was
    });
    bar.set_length(report.lines);
    bar.set_position(report.already_recorded);
    if let Some(dir) = journal.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut j = OpenOptions::new().create(true).append(true).open(journal)?;

    for chunk in todo.chunks(batch_size.clamp(1, 100)) {
        let results = client.submit_batch(chunk.iter().map(|(_, s)| s.clone()).collect())?;
        if results.len() != chunk.len() {
            bail!(
                "the server answered {} results for {} answers",
                results.len(),
                chunk.len()
            );
        }
        let mut acked = String::new();
        for ((line, s), r) in chunk.iter().zip(results) {
            match (r.submission, r.error) {
                (Some(sub), _) => {
                    report.recorded += 1;
                    acked.push_str(&serde_json::to_string(&JournalEntry {
                        lease_id: s.lease_id,
                        submission_id: sub.id,
                    })?);
                    acked.push('\n');
                }
                (None, Some(p)) => {
                    let code = p.kind.trim_start_matches("urn:sahel:problem:").to_owned();
                    let problem = LineProblem {
                        line: *line,
                        lease_id: Some(s.lease_id),
                        reason: format!("{code}: {}", p.detail),
                    };
                    if code == "lease-expired" || code == "lease-released" {
                        report.expired.push(problem);
                    } else {
                        report.refused.push(problem);
                    }
                }
                (None, None) => bail!("the server returned an empty result for line {line}"),
            }
        }
        // The acknowledgements reach the disk before the next batch goes.
        j.write_all(acked.as_bytes())?;
        j.sync_data()?;
        bar.inc(chunk.len() as u64);
    }
    Ok(report)
}
