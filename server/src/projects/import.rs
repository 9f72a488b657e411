//! Item import from JSONL and CSV.
//!
//! Parsing is pure ([`parse`]); [`import`] writes the good items in one
//! database transaction, so a failed import leaves nothing behind.

use sahel_protocol::api::{ImportLineError, ImportReport, ProjectStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde_json::{Map, Value};

use super::Project;
use super::entity::{item, project};
use crate::accounts::AuthUser;
use crate::consensus::LabelSchema;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            other => Err(Error::invalid(
                "unknown-format",
                format!("unknown import format {other:?}; use jsonl or csv"),
            )),
        }
    }
}

/// One item line's size limit; a bigger line is reported, not imported.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Per-line errors beyond this are counted but not listed.
const MAX_REPORTED_ERRORS: usize = 100;

pub struct Parsed {
    pub items: Vec<Value>,
    pub errors: Vec<ImportLineError>,
    pub error_count: u64,
}

impl Parsed {
    fn fail(&mut self, line: u64, message: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(ImportLineError {
                line,
                message: message.into(),
            });
        }
    }
}

/// Parses a whole upload into item data, validating each item against the
/// schema. Blank lines are skipped.
pub fn parse(format: Format, schema: &LabelSchema, bytes: &[u8]) -> Parsed {
    let mut out = Parsed {
        items: Vec::new(),
        errors: Vec::new(),
        error_count: 0,
    };
    match format {
        Format::Jsonl => {
            for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
                let line = i as u64 + 1;
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if raw.len() > MAX_LINE_BYTES {
                    out.fail(
                        line,
                        format!("line is {} bytes; the limit is {MAX_LINE_BYTES}", raw.len()),
                    );
                    continue;
                }
                let text = match std::str::from_utf8(raw) {
                    Ok(t) => t,
                    Err(e) => {
                        out.fail(line, format!("not UTF-8 (byte {})", e.valid_up_to()));
                        continue;
                    }
                };
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => match schema.validate_item(&v) {
                        Ok(()) => out.items.push(v),
                        Err(e) => out.fail(line, e),
                    },
                    Err(e) => out.fail(line, format!("invalid JSON: {e}")),
                }
            }
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
            let headers = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) => {
                    out.fail(1, format!("unreadable header: {e}"));
                    return out;
                }
            };
            if headers.iter().any(str::is_empty) {
                out.fail(1, "every column needs a name in the header");
                return out;
            }
            for (i, record) in reader.records().enumerate() {
                let line = record
                    .as_ref()
                    .ok()
                    .and_then(|r| r.position())
                    .map_or(i as u64 + 2, |p| p.line());
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        out.fail(line, format!("bad CSV record: {e}"));
                        continue;
                    }
                };
                if record.as_slice().len() > MAX_LINE_BYTES {
                    out.fail(
                        line,
                        format!("record is longer than {MAX_LINE_BYTES} bytes"),
                    );
                    continue;
                }
                let obj: Map<String, Value> = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                    .collect();
                let v = Value::Object(obj);
                match schema.validate_item(&v) {
                    Ok(()) => out.items.push(v),
                    Err(e) => out.fail(line, e),
                }
            }
        }
    }
    out
}

/// Imports items into a draft project. With `partial` false, one bad line
/// imports nothing (422 with every reason); with `partial` true the good
/// lines are imported and the bad ones reported.
pub async fn import(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    format: Format,
    partial: bool,
    bytes: &[u8],
) -> Result<ImportReport> {
    let p = super::get_owned(&db.conn, owner, project_id).await?;
    let parsed = parse(format, &p.schema, bytes);
    let report_errors = |parsed: &Parsed| {
        let mut errs = parsed.errors.clone();
        if parsed.error_count as usize > errs.len() {
            errs.push(ImportLineError {
                line: 0,
                message: format!(
                    "{} more lines failed",
                    parsed.error_count as usize - errs.len()
                ),
            });
        }
        errs
    };
    if parsed.error_count > 0 && !partial {
        return Err(Error::invalid(
            "import-failed",
            format!("{} of the lines failed; nothing was imported (fix them, or import with partial=true)", parsed.error_count),
        )
        .with_errors(report_errors(&parsed)));
    }
    if parsed.items.is_empty() {
        return Err(Error::invalid("import-empty", "the file holds no items")
            .with_errors(report_errors(&parsed)));
    }
    let imported = insert_items(db, &p, parsed.items.iter()).await?;
    Ok(ImportReport {
        imported,
        errors: report_errors(&parsed),
    })
}

/// Appends items after the project's last one, in one transaction, in
/// batches so a statement stays below the databases' parameter limits.
pub async fn insert_items<'a>(
    db: &Db,
    p: &Project,
    items: impl Iterator<Item = &'a Value>,
) -> Result<u64> {
    let tx = db.write().await?;
    // Re-read under the write transaction: status and count may have moved.
    let current = super::get(&*tx, p.row.id).await?;
    if current.status() != ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "items can only be imported before the project is funded",
        ));
    }
    let max_seq: Option<i64> = item::Entity::find()
        .select_only()
        .column_as(Expr::col(item::Column::Seq).max(), "m")
        .filter(item::Column::ProjectId.eq(p.row.id))
        .into_tuple()
        .one(&*tx)
        .await?
        .flatten();
    let mut seq = max_seq.unwrap_or(0);
    let now = now_ms();
    let overlap = crate::consensus::quality::initial_needed(&*tx, &current).await?;
    let mut batch = Vec::with_capacity(500);
    let mut total = 0u64;
    for data in items {
        seq += 1;
        // A gold item (its answer in the `_gold` field) is stored without
        // that field, outside the queue and the item count.
        let (data, gold) = crate::consensus::quality::gold::split_import(&p.schema, data);
        if let Some(answer) = gold {
            let g = item::ActiveModel {
                project_id: Set(p.row.id),
                seq: Set(seq),
                data: Set(data.to_string()),
                status: Set("gold".into()),
                needed: Set(0),
                answers_count: Set(0),
                result: Set(None),
                created_at: Set(now),
                resolved_at: Set(None),
                ..Default::default()
            }
            .insert(&*tx)
            .await?;
            crate::consensus::quality::gold::insert_imported(&*tx, p.row.id, g.id, &answer).await?;
            continue;
        }
        batch.push(item::ActiveModel {
            project_id: Set(p.row.id),
            seq: Set(seq),
            data: Set(data.to_string()),
            status: Set("open".into()),
            needed: Set(overlap),
            answers_count: Set(0),
            result: Set(None),
            created_at: Set(now),
            resolved_at: Set(None),
            ..Default::default()
        });
        if batch.len() == 500 {
            total += batch.len() as u64;
            item::Entity::insert_many(std::mem::take(&mut batch))
                .exec(&*tx)
                .await?;
        }
    }
    if !batch.is_empty() {
        total += batch.len() as u64;
        item::Entity::insert_many(batch).exec(&*tx).await?;
    }
    project::Entity::update_many()
        .col_expr(
            project::Column::ItemCount,
            Expr::col(project::Column::ItemCount).add(total as i64),
        )
        .filter(project::Column::Id.eq(p.row.id))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sahel_protocol::api::TaskType;
    use serde_json::json;

    fn schema() -> LabelSchema {
        LabelSchema::parse(TaskType::Classification, &json!({"classes": ["a", "b"]})).unwrap()
    }

    #[test]
    fn jsonl_reports_each_bad_line_by_number() {
        let body =
            b"{\"text\":\"one\"}\n\nnot json\n{\"text\":5}\n{\"text\":\"two\"}\r\n[1]\n\xff\xfe\n";
        let p = parse(Format::Jsonl, &schema(), body);
        assert_eq!(
            p.items,
            vec![json!({"text": "one"}), json!({"text": "two"})]
        );
        let lines: Vec<u64> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 6, 7]);
        assert!(
            p.errors[0].message.contains("invalid JSON"),
            "{:?}",
            p.errors[0]
        );
        assert!(p.errors[1].message.contains("must be a string"));
        assert!(p.errors[3].message.contains("UTF-8"));
    }

    #[test]
    fn csv_maps_columns_to_fields_and_reports_bad_records() {
        let body = b"text,source\nhello,web\n\"quoted, with comma\",mail\nonly-one-field\n,empty\n";
        let p = parse(Format::Csv, &schema(), body);
        assert_eq!(p.items.len(), 2);
        assert_eq!(
            p.items[1],
            json!({"text": "quoted, with comma", "source": "mail"})
        );
        let lines: Vec<u64> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5], "{:?}", p.errors);
    }

    #[test]
    fn an_oversized_line_is_an_error_not_an_item() {
        let big = format!("{{\"text\":\"{}\"}}\n", "x".repeat(MAX_LINE_BYTES + 1));
        let p = parse(Format::Jsonl, &schema(), big.as_bytes());
        assert!(p.items.is_empty());
        assert_eq!(p.error_count, 1);
    }
}
