//! Item import from JSONL, CSV and Label Studio task JSON, streamed with
//! bounded memory.
//!
//! [`ItemParser`] is pure and incremental: it takes the upload chunk by
//! chunk and yields validated items and per-line errors, holding at most one
//! line. [`import_stream`] writes the items in batches as `staged` rows,
//! invisible to everything else, and publishes them in one statement at the
//! end; a failed import deletes its staged rows. So a million-line import
//! never holds the file in memory, never holds the SQLite write gate for
//! long, and still leaves nothing half-imported.

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use sahel_protocol::api::{ImportLineError, ImportReport, ProjectStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::{Map, Value};

use super::entity::{item, project};
use crate::accounts::AuthUser;
use crate::consensus::LabelSchema;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    /// Label Studio's task list, `[{"data": {...}, "predictions": [...]}]`.
    LabelStudio,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "label_studio" | "label-studio" | "labelstudio" => Ok(Format::LabelStudio),
            other => Err(Error::invalid(
                "unknown-format",
                format!("unknown import format {other:?}; use jsonl, csv or label_studio"),
            )),
        }
    }
}

/// One item line's size limit; a bigger line is reported, not imported.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Per-line errors beyond this are counted but not listed.
const MAX_REPORTED_ERRORS: usize = 100;
/// Items per insert transaction.
const BATCH: usize = 1000;
/// An import lock older than this belongs to a crashed import.
const STALE_IMPORT_MS: i64 = 3_600_000;

enum State {
    Jsonl {
        pending: Vec<u8>,
        /// Inside an oversized line, dropping bytes until its newline.
        skipping: bool,
    },
    Csv {
        reader: Box<csv_core::Reader>,
        out: Vec<u8>,
        ends: Vec<usize>,
        nout: usize,
        nend: usize,
        headers: Option<Vec<String>>,
        oversized: bool,
        record_line: u64,
    },
    LabelStudio(TaskSplitter),
}

/// Cuts a JSON array of objects into its elements without parsing them,
/// so that one task at a time is held, whatever the file's size.
#[derive(Default)]
struct TaskSplitter {
    task: Vec<u8>,
    /// Past the opening `[`.
    opened: bool,
    /// Past the closing `]`, or given up on a malformed array.
    closed: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Inside an oversized task, dropping its bytes until it ends.
    skipping: bool,
    /// Reported the file as malformed; the rest is ignored.
    gave_up: bool,
}

/// What a byte completed, if anything.
enum Split {
    Nothing,
    Task,
    Oversized,
    Malformed(&'static str),
}

impl TaskSplitter {
    fn push(&mut self, b: u8) -> Split {
        if self.closed {
            if b.is_ascii_whitespace() || self.gave_up {
                return Split::Nothing;
            }
            self.gave_up = true;
            return Split::Malformed("there is more after the task array's closing ]");
        }
        if !self.opened {
            return match b {
                b'[' => {
                    self.opened = true;
                    Split::Nothing
                }
                b if b.is_ascii_whitespace() => Split::Nothing,
                0xEF | 0xBB | 0xBF => Split::Nothing, // a UTF-8 byte order mark
                _ => {
                    (self.closed, self.gave_up) = (true, true);
                    Split::Malformed(
                        "a Label Studio import is a JSON array of tasks: [{\"data\": {...}}, ...]",
                    )
                }
            };
        }
        if self.depth == 0 {
            return match b {
                b'{' => {
                    self.depth = 1;
                    self.task.clear();
                    self.task.push(b);
                    Split::Nothing
                }
                b']' => {
                    self.closed = true;
                    Split::Nothing
                }
                b',' => Split::Nothing,
                b if b.is_ascii_whitespace() => Split::Nothing,
                _ => {
                    (self.closed, self.gave_up) = (true, true);
                    Split::Malformed("every task of a Label Studio import must be a JSON object")
                }
            };
        }
        if !self.skipping {
            self.task.push(b);
        }
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return match std::mem::take(&mut self.skipping) {
                            true => Split::Oversized,
                            false => Split::Task,
                        };
                    }
                }
                _ => {}
            }
        }
        if !self.skipping && self.task.len() > MAX_LINE_BYTES {
            self.skipping = true;
            self.task = Vec::new();
        }
        Split::Nothing
    }
}

/// A Label Studio task as an item: its `data`, with any predictions or
/// earlier annotations kept under `"hints"` to show, never as answers.
fn label_studio_item(raw: &[u8]) -> std::result::Result<Value, String> {
    let task: Value = serde_json::from_slice(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(Value::Object(mut data)) = task.get("data").cloned() else {
        return Err("a Label Studio task needs \"data\": an object of the item's fields".into());
    };
    let hints: Vec<Value> = ["predictions", "annotations"]
        .iter()
        .filter_map(|k| task.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("result").cloned())
        .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        .collect();
    data.remove("hints");
    if !hints.is_empty() {
        data.insert("hints".into(), Value::Array(hints));
    }
    Ok(Value::Object(data))
}

/// Incremental, validating parser of an item upload.
pub struct ItemParser<'s> {
    schema: &'s LabelSchema,
    state: State,
    line: u64,
    pub errors: Vec<ImportLineError>,
    pub error_count: u64,
}

impl<'s> ItemParser<'s> {
    pub fn new(format: Format, schema: &'s LabelSchema) -> ItemParser<'s> {
        let state = match format {
            Format::Jsonl => State::Jsonl {
                pending: Vec::new(),
                skipping: false,
            },
            Format::Csv => State::Csv {
                reader: Box::new(csv_core::Reader::new()),
                out: vec![0; 4096],
                ends: vec![0; 64],
                nout: 0,
                nend: 0,
                headers: None,
                oversized: false,
                record_line: 1,
            },
            Format::LabelStudio => State::LabelStudio(TaskSplitter::default()),
        };
        ItemParser {
            schema,
            state,
            line: 0,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    fn fail(
        errors: &mut Vec<ImportLineError>,
        count: &mut u64,
        line: u64,
        message: impl Into<String>,
    ) {
        *count += 1;
        if errors.len() < MAX_REPORTED_ERRORS {
            errors.push(ImportLineError {
                line,
                message: message.into(),
            });
        }
    }

    fn accept(schema: &LabelSchema, v: Value) -> std::result::Result<Value, String> {
        schema.validate_item(&v).map(|()| v)
    }

    /// Parses one JSONL line (without its newline).
    fn jsonl_line(&mut self, raw: &[u8], out: &mut Vec<Value>) {
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let result = match std::str::from_utf8(raw) {
            Err(e) => Err(format!("not UTF-8 (byte {})", e.valid_up_to())),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(v) => Self::accept(self.schema, v),
                Err(e) => Err(format!("invalid JSON: {e}")),
            },
        };
        match result {
            Ok(v) => out.push(v),
            Err(e) => Self::fail(&mut self.errors, &mut self.error_count, self.line, e),
        }
    }

    /// Feeds the next chunk of the upload; complete items go to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Value>) {
        match &mut self.state {
            State::Jsonl { .. } => self.feed_jsonl(chunk, out),
            State::Csv { .. } => self.feed_csv(chunk, out),
            State::LabelStudio(_) => self.feed_label_studio(chunk, out),
        }
    }

    /// Label Studio tasks are numbered from 1 in the array; errors name
    /// the task's number where other formats name a line.
    fn feed_label_studio(&mut self, chunk: &[u8], out: &mut Vec<Value>) {
        let State::LabelStudio(splitter) = &mut self.state else {
            unreachable!()
        };
        for &b in chunk {
            match splitter.push(b) {
                Split::Nothing => {}
                Split::Task => {
                    self.line += 1;
                    match label_studio_item(&splitter.task)
                        .and_then(|v| Self::accept(self.schema, v))
                    {
                        Ok(v) => out.push(v),
                        Err(e) => Self::fail(&mut self.errors, &mut self.error_count, self.line, e),
                    }
                }
                Split::Oversized => {
                    self.line += 1;
                    Self::fail(
                        &mut self.errors,
                        &mut self.error_count,
                        self.line,
                        format!("task is longer than {MAX_LINE_BYTES} bytes"),
                    );
                }
                Split::Malformed(why) => {
                    Self::fail(&mut self.errors, &mut self.error_count, self.line + 1, why)
                }
            }
        }
    }

    fn feed_jsonl(&mut self, mut chunk: &[u8], out: &mut Vec<Value>) {
        while !chunk.is_empty() {
            let State::Jsonl { pending, skipping } = &mut self.state else {
                unreachable!()
            };
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let (head, rest) = (&chunk[..i], &chunk[i + 1..]);
                    chunk = rest;
                    if *skipping {
                        *skipping = false;
                        self.line += 1;
                        continue;
                    }
                    if pending.is_empty() {
                        self.jsonl_line(head, out);
                    } else {
                        let mut line = std::mem::take(pending);
                        line.extend_from_slice(head);
                        self.jsonl_line(&line, out);
                    }
                }
                None => {
                    if !*skipping {
                        pending.extend_from_slice(chunk);
                        if pending.len() > MAX_LINE_BYTES {
                            pending.clear();
                            *skipping = true;
                            let line = self.line + 1;
                            Self::fail(
                                &mut self.errors,
                                &mut self.error_count,
                                line,
                                format!("line is longer than {MAX_LINE_BYTES} bytes"),
                            );
                        }
                    }
                    chunk = &[];
                }
            }
        }
    }

    fn feed_csv(&mut self, mut input: &[u8], out: &mut Vec<Value>) {
        let final_flush = input.is_empty();
        loop {
            let State::Csv {
                reader,
                out: buf,
                ends,
                nout,
                nend,
                headers,
                oversized,
                record_line,
            } = &mut self.state
            else {
                unreachable!()
            };
            let (res, nin, n_out, n_end) =
                reader.read_record(input, &mut buf[*nout..], &mut ends[*nend..]);
            input = &input[nin..];
            *nout += n_out;
            *nend += n_end;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {
                    // On the final flush the empty input asks csv_core to
                    // end the last record, so keep going.
                    if input.is_empty() && !final_flush {
                        return;
                    }
                }
                csv_core::ReadRecordResult::OutputFull => {
                    if buf.len() >= MAX_LINE_BYTES {
                        // Keep parsing to the record's end, dropping its data.
                        *oversized = true;
                        *nout = 0;
                    } else {
                        let n = buf.len() * 2;
                        buf.resize(n, 0);
                    }
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = ends.len() * 2;
                    ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let line = *record_line;
                    *record_line = reader.line();
                    let fields: Vec<&[u8]> = {
                        let mut start = 0;
                        ends[..*nend]
                            .iter()
                            .map(|&e| {
                                let f = &buf[start..e];
                                start = e;
                                f
                            })
                            .collect()
                    };
                    let texts: std::result::Result<Vec<&str>, _> =
                        fields.iter().map(|f| std::str::from_utf8(f)).collect();
                    let was_oversized = std::mem::take(oversized);
                    let result: std::result::Result<Option<Value>, String> =
                        match (texts, headers.as_ref()) {
                            _ if was_oversized => {
                                Err(format!("record is longer than {MAX_LINE_BYTES} bytes"))
                            }
                            (Err(_), _) => Err("not UTF-8".into()),
                            (Ok(t), None) => {
                                if t.iter().any(|h| h.trim().is_empty()) {
                                    Err("every column needs a name in the header".into())
                                } else {
                                    *headers =
                                        Some(t.iter().map(|h| h.trim().to_owned()).collect());
                                    Ok(None)
                                }
                            }
                            (Ok(t), Some(h)) if t.len() == 1 && t[0].is_empty() => {
                                let _ = h;
                                Ok(None) // a blank line
                            }
                            (Ok(t), Some(h)) if t.len() != h.len() => Err(format!(
                                "{} fields where the header has {}",
                                t.len(),
                                h.len()
                            )),
                            (Ok(t), Some(h)) => {
                                let obj: Map<String, Value> = h
                                    .iter()
                                    .zip(t)
                                    .map(|(k, v)| (k.clone(), Value::String(v.to_owned())))
                                    .collect();
                                Self::accept(self.schema, Value::Object(obj)).map(Some)
                            }
                        };
                    *nout = 0;
                    *nend = 0;
                    match result {
                        Ok(Some(v)) => out.push(v),
                        Ok(None) => {}
                        Err(e) => Self::fail(&mut self.errors, &mut self.error_count, line, e),
                    }
                }
                csv_core::ReadRecordResult::End => return,
            }
        }
    }

    /// Ends the upload: the last line needs no newline.
    pub fn finish(&mut self, out: &mut Vec<Value>) {
        match &mut self.state {
            State::Jsonl { pending, skipping } => {
                let line = std::mem::take(pending);
                if !line.is_empty() && !*skipping {
                    self.jsonl_line(&line, out);
                }
            }
            State::Csv { .. } => self.feed_csv(&[], out),
            State::LabelStudio(splitter) => {
                if !splitter.closed {
                    let line = self.line + 1;
                    Self::fail(
                        &mut self.errors,
                        &mut self.error_count,
                        line,
                        "the task array ends early: the file is cut off",
                    );
                }
            }
        }
    }

    /// The listed errors, plus a summary line for those not listed.
    pub fn report_errors(&self) -> Vec<ImportLineError> {
        let mut errs = self.errors.clone();
        if self.error_count as usize > errs.len() {
            errs.push(ImportLineError {
                line: 0,
                message: format!(
                    "{} more lines failed",
                    self.error_count as usize - errs.len()
                ),
            });
        }
        errs
    }
}

/// Parses a whole upload held in memory (tests, small files).
pub fn parse(
    format: Format,
    schema: &LabelSchema,
    bytes: &[u8],
) -> (Vec<Value>, Vec<ImportLineError>, u64) {
    let mut p = ItemParser::new(format, schema);
    let mut items = Vec::new();
    p.feed(bytes, &mut items);
    p.finish(&mut items);
    (items, p.errors, p.error_count)
}

/// Imports items from an upload stream into a draft project. With
/// `partial` false one bad line imports nothing (422 listing the reasons);
/// with `partial` true the good lines are imported and the bad reported.
pub async fn import_stream<S, E>(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    format: Format,
    partial: bool,
    mut body: S,
    limit: usize,
) -> Result<ImportReport>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let p = super::get_owned(&db.conn, owner, project_id).await?;
    let first_seq = lock_for_import(db, project_id).await?;
    let needed = crate::consensus::quality::initial_needed(&db.conn, &p).await?;
    let mut parser = ItemParser::new(format, &p.schema);
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_seq = first_seq;
    let mut counts = Counts::default();
    let streamed: Result<()> = async {
        let mut read = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Error::bad_request("unreadable-body", format!("reading the upload failed: {e}"))
            })?;
            read += chunk.len();
            if read > limit {
                return Err(Error::too_large(
                    "body-too-large",
                    format!("the upload exceeds the {limit}-byte limit"),
                ));
            }
            parser.feed(&chunk, &mut batch);
            if batch.len() >= BATCH {
                // Once a line failed an all-or-nothing import, stop writing
                // but keep reading: the buyer gets every bad line at once.
                if partial || parser.error_count == 0 {
                    crate::artifacts::check_item_refs(&db.conn, owner, &batch).await?;
                    insert_staged(db, &p, needed, &mut next_seq, &batch, &mut counts).await?;
                }
                batch.clear();
            }
        }
        parser.finish(&mut batch);
        if partial || parser.error_count == 0 {
            crate::artifacts::check_item_refs(&db.conn, owner, &batch).await?;
            insert_staged(db, &p, needed, &mut next_seq, &batch, &mut counts).await?;
        }
        Ok(())
    }
    .await;

    let inserted = counts.regular + counts.gold;
    let failed = streamed.is_err() || (parser.error_count > 0 && !partial) || inserted == 0;
    finish_import(
        db,
        project_id,
        if failed { None } else { Some(counts.regular) },
    )
    .await?;
    streamed?;
    if parser.error_count > 0 && !partial {
        return Err(Error::invalid(
            "import-failed",
            format!("{} of the lines failed; nothing was imported (fix them, or import with partial=true)", parser.error_count),
        )
        .with_errors(parser.report_errors()));
    }
    if inserted == 0 {
        return Err(Error::invalid("import-empty", "the file holds no items")
            .with_errors(parser.report_errors()));
    }
    // Gold questions are not items to label: they are not counted here.
    Ok(ImportReport {
        imported: counts.regular,
        errors: parser.report_errors(),
    })
}

/// Takes the project's import lock (one import at a time per project, and
/// only into drafts) and returns the first free `seq`. A lock left by a
/// crashed import expires, and its staged rows are removed.
async fn lock_for_import(db: &Db, project_id: i64) -> Result<i64> {
    let now = now_ms();
    let tx = db.write().await?;
    let current = super::get(&*tx, project_id).await?;
    if current.status() != ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "items can only be imported before the project is funded",
        ));
    }
    let taken = project::Entity::update_many()
        .col_expr(project::Column::ImportingSince, Expr::value(now))
        .filter(project::Column::Id.eq(project_id))
        .filter(
            Condition::any()
                .add(project::Column::ImportingSince.is_null())
                .add(project::Column::ImportingSince.lt(now - STALE_IMPORT_MS)),
        )
        .exec(&*tx)
        .await?;
    if taken.rows_affected != 1 {
        return Err(Error::conflict(
            "import-in-progress",
            "another import into this project is running; retry when it ends",
        ));
    }
    item::Entity::delete_many()
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.is_in(["staged", "staged_gold"]))
        .exec(&*tx)
        .await?;
    let max_seq: Option<i64> = item::Entity::find()
        .select_only()
        .column_as(Expr::col(item::Column::Seq).max(), "m")
        .filter(item::Column::ProjectId.eq(project_id))
        .into_tuple()
        .one(&*tx)
        .await?
        .flatten();
    tx.commit().await?;
    Ok(max_seq.unwrap_or(0) + 1)
}

/// Items written by an import so far.
#[derive(Default)]
struct Counts {
    /// Items for the queue (they count in the project's item count).
    regular: u64,
    /// Gold questions, kept apart from the queue and the count.
    gold: u64,
}

/// Writes a batch as staged rows. Gold items (their known answer in the
/// `_gold` field) are stored without that field, as `staged_gold`, with
/// their answer recorded for the quality engine.
async fn insert_staged(
    db: &Db,
    p: &super::Project,
    needed: i32,
    next_seq: &mut i64,
    items: &[Value],
    counts: &mut Counts,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let row = |seq: i64, data: &Value, status: &str, needed: i32| item::ActiveModel {
        project_id: Set(p.row.id),
        seq: Set(seq),
        data: Set(data.to_string()),
        status: Set(status.into()),
        needed: Set(needed),
        answers_count: Set(0),
        result: Set(None),
        created_at: Set(now),
        resolved_at: Set(None),
        ..Default::default()
    };
    let tx = db.write().await?;
    let mut rows = Vec::with_capacity(items.len());
    // Artifact references, by item id (gold) or by seq (the rest).
    let mut links = std::collections::BTreeMap::new();
    let mut seq_refs = std::collections::BTreeMap::new();
    for raw in items {
        let seq = *next_seq;
        *next_seq += 1;
        let (data, gold) = crate::consensus::quality::gold::split_import(&p.schema, raw);
        let refs = crate::artifacts::item_refs(&data);
        match gold {
            Some(answer) => {
                let g = row(seq, &data, "staged_gold", 0).insert(&*tx).await?;
                if !refs.is_empty() {
                    links.insert(g.id, refs);
                }
                crate::consensus::quality::gold::insert_imported(&*tx, p.row.id, g.id, &answer)
                    .await?;
                counts.gold += 1;
            }
            None => {
                rows.push(row(seq, &data, "staged", needed));
                counts.regular += 1;
                if !refs.is_empty() {
                    seq_refs.insert(seq, refs);
                }
            }
        }
    }
    // Chunks keep each statement under SQLite's bound-parameter limit.
    for chunk in rows.chunks(500) {
        item::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&*tx)
            .await?;
    }
    let seqs: Vec<i64> = seq_refs.keys().copied().collect();
    for chunk in seqs.chunks(500) {
        let ids: Vec<(i64, i64)> = item::Entity::find()
            .select_only()
            .column(item::Column::Id)
            .column(item::Column::Seq)
            .filter(item::Column::ProjectId.eq(p.row.id))
            .filter(item::Column::Seq.is_in(chunk.to_vec()))
            .into_tuple()
            .all(&*tx)
            .await?;
        for (id, seq) in ids {
            if let Some(refs) = seq_refs.remove(&seq) {
                links.insert(id, refs);
            }
        }
    }
    crate::artifacts::link_items(&*tx, &links).await?;
    tx.commit().await?;
    Ok(())
}

/// Publishes (`Some(count)`) or discards (`None`) the staged items, and
/// releases the import lock, in one transaction.
async fn finish_import(db: &Db, project_id: i64, publish: Option<u64>) -> Result<()> {
    let tx = db.write().await?;
    match publish {
        Some(count) => {
            for (from, to) in [("staged", "open"), ("staged_gold", "gold")] {
                item::Entity::update_many()
                    .col_expr(item::Column::Status, Expr::value(to))
                    .filter(item::Column::ProjectId.eq(project_id))
                    .filter(item::Column::Status.eq(from))
                    .exec(&*tx)
                    .await?;
            }
            project::Entity::update_many()
                .col_expr(
                    project::Column::ItemCount,
                    Expr::col(project::Column::ItemCount).add(count as i64),
                )
                .col_expr(
                    project::Column::ImportingSince,
                    Expr::value(Option::<i64>::None),
                )
                .filter(project::Column::Id.eq(project_id))
                .exec(&*tx)
                .await?;
        }
        None => {
            item::Entity::delete_many()
                .filter(item::Column::ProjectId.eq(project_id))
                .filter(item::Column::Status.is_in(["staged", "staged_gold"]))
                .exec(&*tx)
                .await?;
            project::Entity::update_many()
                .col_expr(
                    project::Column::ImportingSince,
                    Expr::value(Option::<i64>::None),
                )
                .filter(project::Column::Id.eq(project_id))
                .exec(&*tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Imports items built by the server (one per uploaded file, see
/// `artifacts::import`): all or nothing, staged and published like an
/// upload. Media items are not checked against the task type's item
/// shape; their artifact references are checked like any import's.
pub async fn import_values(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    items: Vec<Value>,
) -> Result<ImportReport> {
    let p = super::get_owned(&db.conn, owner, project_id).await?;
    let first_seq = lock_for_import(db, project_id).await?;
    let needed = crate::consensus::quality::initial_needed(&db.conn, &p).await?;
    let mut next_seq = first_seq;
    let mut counts = Counts::default();
    let written: Result<()> = async {
        for chunk in items.chunks(BATCH) {
            crate::artifacts::check_item_refs(&db.conn, owner, chunk).await?;
            insert_staged(db, &p, needed, &mut next_seq, chunk, &mut counts).await?;
        }
        Ok(())
    }
    .await;
    let failed = written.is_err() || counts.regular + counts.gold == 0;
    finish_import(
        db,
        project_id,
        if failed { None } else { Some(counts.regular) },
    )
    .await?;
    written?;
    if counts.regular + counts.gold == 0 {
        return Err(Error::invalid("import-empty", "the upload holds no files"));
    }
    Ok(ImportReport {
        imported: counts.regular,
        errors: Vec::new(),
    })
}

/// Imports an upload held in memory (the demo, small files).
pub async fn import(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    format: Format,
    partial: bool,
    bytes: &[u8],
) -> Result<ImportReport> {
    let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        Bytes::copy_from_slice(bytes),
    )]);
    import_stream(db, owner, project_id, format, partial, body, usize::MAX).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sahel_protocol::api::TaskType;
    use serde_json::json;

    fn schema() -> LabelSchema {
        LabelSchema::parse(TaskType::Classification, &json!({"classes": ["a", "b"]})).unwrap()
    }

    /// Feeds the upload in chunks of every size from 1 byte up: the result
    /// must not depend on where the chunks split.
    fn parse_chunked(format: Format, body: &[u8]) -> (Vec<Value>, Vec<u64>) {
        let s = schema();
        let whole = parse(format, &s, body);
        for size in [1, 2, 3, 7, 64, body.len().max(1)] {
            let mut p = ItemParser::new(format, &s);
            let mut items = Vec::new();
            for c in body.chunks(size) {
                p.feed(c, &mut items);
            }
            p.finish(&mut items);
            assert_eq!(items, whole.0, "chunk size {size}");
            let lines: Vec<u64> = p.errors.iter().map(|e| e.line).collect();
            assert_eq!(
                lines,
                whole.1.iter().map(|e| e.line).collect::<Vec<_>>(),
                "chunk size {size}"
            );
        }
        (whole.0, whole.1.iter().map(|e| e.line).collect())
    }

    #[test]
    fn jsonl_reports_each_bad_line_by_number() {
        let body = b"{\"text\":\"one\"}\n\nnot json\n{\"text\":5}\n{\"text\":\"two\"}\r\n[1]\n\xff\xfe\n{\"text\":\"last, no newline\"}";
        let (items, lines) = parse_chunked(Format::Jsonl, body);
        assert_eq!(
            items,
            vec![
                json!({"text": "one"}),
                json!({"text": "two"}),
                json!({"text": "last, no newline"})
            ]
        );
        assert_eq!(lines, vec![3, 4, 6, 7]);
        let (_, errors, _) = parse(Format::Jsonl, &schema(), body);
        assert!(
            errors[0].message.contains("invalid JSON"),
            "{:?}",
            errors[0]
        );
        assert!(errors[1].message.contains("must be a string"));
        assert!(errors[3].message.contains("UTF-8"));
    }

    #[test]
    fn csv_maps_columns_to_fields_and_reports_bad_records() {
        let body = b"text,source\nhello,web\n\"quoted, with comma\nand a newline\",mail\nonly-one-field\n,empty\n\nlast,row";
        let (items, lines) = parse_chunked(Format::Csv, body);
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[1],
            json!({"text": "quoted, with comma\nand a newline", "source": "mail"})
        );
        assert_eq!(items[2], json!({"text": "last", "source": "row"}));
        assert_eq!(lines, vec![5, 6]);
    }

    #[test]
    fn an_oversized_line_is_an_error_not_an_item_and_the_next_line_still_parses() {
        let big = format!(
            "{{\"text\":\"{}\"}}\n{{\"text\":\"after\"}}\n",
            "x".repeat(MAX_LINE_BYTES + 1)
        );
        let s = schema();
        let mut p = ItemParser::new(Format::Jsonl, &s);
        let mut items = Vec::new();
        for c in big.as_bytes().chunks(65536) {
            p.feed(c, &mut items);
        }
        p.finish(&mut items);
        assert_eq!(items, vec![json!({"text": "after"})]);
        assert_eq!(p.error_count, 1);
        assert_eq!(p.errors[0].line, 1);
    }

    #[test]
    fn label_studio_tasks_become_items_with_hints_never_answers() {
        let body = br#"[
 {"id": 1, "data": {"text": "good [bracket] \"quoted\" {brace}"},
  "predictions": [{"model_version": "v1", "result": [{"type": "choices", "value": {"choices": ["a"]}}]}]},
 {"data": {"text": "plain"}, "annotations": [{"result": []}]},
 {"nodata": true},
 {"data": {"text": 7}},
 {"data": {"text": "last", "hints": "dropped"}}
]"#;
        let (items, lines) = parse_chunked(Format::LabelStudio, body);
        assert_eq!(
            items,
            vec![
                json!({"text": "good [bracket] \"quoted\" {brace}",
                       "hints": [[{"type": "choices", "value": {"choices": ["a"]}}]]}),
                json!({"text": "plain"}),
                json!({"text": "last"}),
            ]
        );
        assert_eq!(lines, vec![3, 4]);
        let (_, errors, _) = parse(Format::LabelStudio, &schema(), body);
        assert!(errors[0].message.contains("\"data\""), "{:?}", errors[0]);
    }

    #[test]
    fn label_studio_refuses_what_is_not_a_task_array() {
        for (body, why) in [
            (&b"{\"data\": {\"text\": \"x\"}}"[..], "JSON array"),
            (b"[{\"data\": {\"text\": \"x\"}}, 3]", "JSON object"),
            (b"[{\"data\": {\"text\": \"x\"}}", "cut off"),
            (b"[{\"data\": {\"text\": \"x\"}}] trailing", "closing ]"),
        ] {
            let (_, errors, _) = parse(Format::LabelStudio, &schema(), body);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].message.contains(why), "{:?}", errors[0]);
        }
    }
}
