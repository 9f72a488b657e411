//! A project's results in the formats annotation tools read: JSONL with
//! provenance, CSV for flat types, Label Studio's annotation JSON and COCO
//! for bounding boxes.
//!
//! [`Encoder`] is pure: it turns export records into bytes, one record at
//! a time, so an export of any size is written in bounded memory. COCO keeps
//! its images and its annotations in two arrays, so it takes two passes
//! over the records instead of holding either array. [`stream`] pages
//! through the database and feeds the encoder.

use actix_web::web::Bytes;
use futures_util::Stream;
use sahel_protocol::provenance::ExportRecord;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Map, Value, json};

use crate::datasets::entity::record;
use crate::error::{Error, Result};
use crate::projects::Project;
use crate::projects::entity::item;

/// Items read per database page.
const PAGE: u64 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    LabelStudio,
    Coco,
}

/// Types whose result is one value per item, so a CSV row says it all.
const FLAT_TYPES: &[&str] = &["classification", "multi_label", "pairwise"];

impl ExportFormat {
    pub fn parse(s: &str) -> Result<ExportFormat> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "label_studio" | "label-studio" | "labelstudio" => Ok(ExportFormat::LabelStudio),
            "coco" => Ok(ExportFormat::Coco),
            other => Err(Error::invalid(
                "unknown-format",
                format!("unknown export format {other:?}; use jsonl, csv, label_studio or coco"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::LabelStudio => "label_studio",
            ExportFormat::Coco => "coco",
        }
    }

    pub fn file_name(self, project_id: i64) -> String {
        match self {
            ExportFormat::Jsonl => format!("project-{project_id}.jsonl"),
            ExportFormat::Csv => format!("project-{project_id}.csv"),
            ExportFormat::LabelStudio => format!("project-{project_id}.label-studio.json"),
            ExportFormat::Coco => format!("project-{project_id}.coco.json"),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::LabelStudio | ExportFormat::Coco => "application/json",
        }
    }

    /// Refuses a format that cannot express the type's results.
    pub fn check(self, task_type: &str) -> Result<()> {
        let ok = match self {
            ExportFormat::Jsonl | ExportFormat::LabelStudio => true,
            ExportFormat::Csv => FLAT_TYPES.contains(&task_type),
            ExportFormat::Coco => task_type == "bounding_boxes",
        };
        if ok {
            return Ok(());
        }
        let why = match self {
            ExportFormat::Csv => format!(
                "CSV holds one value per item; {task_type} results need jsonl or label_studio"
            ),
            _ => format!("COCO is for bounding boxes; this is a {task_type} project"),
        };
        Err(Error::invalid("format-not-for-type", why))
    }

    /// Whether the format carries provenance (answers, signatures,
    /// content hashes); the others skip reading them.
    fn provenance(self) -> bool {
        matches!(self, ExportFormat::Jsonl | ExportFormat::LabelStudio)
    }

    fn passes(self) -> u8 {
        match self {
            ExportFormat::Coco => 2,
            _ => 1,
        }
    }
}

/// The merged answer inside an item's stored result
/// (`{"answer": ..., "agreement": ..., "answers": n}`).
fn merged(r: &ExportRecord) -> &Value {
    r.result.get("answer").unwrap_or(&Value::Null)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Turns records into the bytes of one export file.
pub struct Encoder {
    format: ExportFormat,
    task_type: String,
    schema: Value,
    /// Records written in the current pass, for separators.
    written: u64,
    /// The CSV columns taken from the first record's data.
    columns: Option<Vec<String>>,
    next_annotation: u64,
}

impl Encoder {
    pub fn new(format: ExportFormat, task_type: &str, schema: Value) -> Result<Encoder> {
        format.check(task_type)?;
        Ok(Encoder {
            format,
            task_type: task_type.to_owned(),
            schema,
            written: 0,
            columns: None,
            next_annotation: 1,
        })
    }

    /// What comes before the first record.
    pub fn begin(&mut self) -> Vec<u8> {
        match self.format {
            ExportFormat::Jsonl | ExportFormat::Csv => Vec::new(),
            ExportFormat::LabelStudio => b"[".to_vec(),
            ExportFormat::Coco => {
                let categories: Vec<Value> = self
                    .labels()
                    .iter()
                    .enumerate()
                    .map(|(i, l)| json!({"id": i + 1, "name": l, "supercategory": ""}))
                    .collect();
                let head = json!({
                    "info": {"description": "exported by Sahel", "version": "1.0"},
                    "licenses": [],
                    "categories": categories,
                });
                let mut s = head.to_string();
                s.pop(); // reopen the object to append the two arrays
                s.push_str(",\"images\":[");
                s.into_bytes()
            }
        }
    }

    /// What separates pass `pass` from the next one.
    pub fn between_passes(&mut self) -> Vec<u8> {
        self.written = 0;
        b"],\"annotations\":[".to_vec()
    }

    pub fn end(&mut self) -> Vec<u8> {
        match self.format {
            ExportFormat::Jsonl | ExportFormat::Csv => Vec::new(),
            ExportFormat::LabelStudio => b"]\n".to_vec(),
            ExportFormat::Coco => b"]}\n".to_vec(),
        }
    }

    fn labels(&self) -> Vec<String> {
        let key = if self.schema.get("labels").is_some() {
            "labels"
        } else {
            "classes"
        };
        self.schema
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| str_of(v).to_owned()).collect())
            .unwrap_or_default()
    }

    fn separator(&mut self, out: &mut Vec<u8>) {
        if self.written > 0 {
            out.push(b',');
        }
        out.push(b'\n');
    }

    /// Appends one record to `out` (pass 0, or 1 for COCO's annotations).
    pub fn record(&mut self, pass: u8, r: &ExportRecord, out: &mut Vec<u8>) -> Result<()> {
        match (self.format, pass) {
            (ExportFormat::Jsonl, _) => {
                serde_json::to_writer(&mut *out, r).map_err(anyhow::Error::from)?;
                out.push(b'\n');
            }
            (ExportFormat::Csv, _) => self.csv_row(r, out),
            (ExportFormat::LabelStudio, _) => {
                self.separator(out);
                let task = self.label_studio_task(r);
                serde_json::to_writer(&mut *out, &task).map_err(anyhow::Error::from)?;
            }
            (ExportFormat::Coco, 0) => {
                self.separator(out);
                let image = json!({
                    "id": r.item_id,
                    "file_name": r.data.get("name").or(r.data.get("image")).map(str_of).unwrap_or_default(),
                    "width": r.data.get("width").cloned().unwrap_or(Value::Null),
                    "height": r.data.get("height").cloned().unwrap_or(Value::Null),
                    "sahel_artifact": r.data.get("image").cloned().unwrap_or(Value::Null),
                });
                serde_json::to_writer(&mut *out, &image).map_err(anyhow::Error::from)?;
            }
            (ExportFormat::Coco, _) => {
                let labels = self.labels();
                let boxes = merged(r).get("boxes").and_then(Value::as_array);
                for b in boxes.into_iter().flatten() {
                    let Some(cat) = labels.iter().position(|l| l == str_of(&b["label"])) else {
                        continue;
                    };
                    let (w, h) = (
                        b["w"].as_f64().unwrap_or(0.0),
                        b["h"].as_f64().unwrap_or(0.0),
                    );
                    self.separator(out);
                    let ann = json!({
                        "id": self.next_annotation,
                        "image_id": r.item_id,
                        "category_id": cat + 1,
                        "bbox": [b["x"], b["y"], b["w"], b["h"]],
                        "area": w * h,
                        "iscrowd": 0,
                    });
                    self.next_annotation += 1;
                    self.written += 1;
                    serde_json::to_writer(&mut *out, &ann).map_err(anyhow::Error::from)?;
                }
                return Ok(());
            }
        }
        self.written += 1;
        Ok(())
    }

    fn csv_row(&mut self, r: &ExportRecord, out: &mut Vec<u8>) {
        let columns = self.columns.get_or_insert_with(|| {
            let mut cols: Vec<String> = r
                .data
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| {
                    !matches!(k.as_str(), "gold" | "hints") && !v.is_object() && !v.is_array()
                })
                .map(|(k, _)| k.clone())
                .collect();
            cols.sort();
            let mut header = vec!["item_id".to_owned()];
            header.extend(cols.iter().cloned());
            header.extend(["result", "agreement", "answers"].map(String::from));
            write_csv_row(out, header.iter().map(String::as_str));
            cols
        });
        let answer = merged(r);
        let result = match self.task_type.as_str() {
            "multi_label" => answer
                .get("labels")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(str_of).collect::<Vec<_>>().join(";"))
                .unwrap_or_default(),
            "pairwise" => str_of(&answer["choice"]).to_owned(),
            _ => str_of(&answer["label"]).to_owned(),
        };
        let mut cells = vec![r.item_id.to_string()];
        for c in columns.iter() {
            cells.push(match r.data.get(c) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            });
        }
        cells.push(result);
        cells.push(
            r.result
                .get("agreement")
                .map(Value::to_string)
                .unwrap_or_default(),
        );
        cells.push(
            r.result
                .get("answers")
                .map(Value::to_string)
                .unwrap_or_default(),
        );
        write_csv_row(out, cells.iter().map(String::as_str));
    }

    /// A task with the consensus result as its one annotation, in the
    /// region format of the matching Label Studio control.
    fn label_studio_task(&self, r: &ExportRecord) -> Value {
        let answer = merged(r);
        let region = |from: &str, to: &str, kind: &str, value: Value| json!({"from_name": from, "to_name": to, "type": kind, "value": value});
        let result: Vec<Value> = match self.task_type.as_str() {
            "classification" => vec![region(
                "label",
                "text",
                "choices",
                json!({"choices": [answer["label"]]}),
            )],
            "multi_label" => vec![region(
                "label",
                if r.data.get("image").is_some() {
                    "image"
                } else {
                    "text"
                },
                "choices",
                json!({"choices": answer["labels"]}),
            )],
            "pairwise" => match str_of(&answer["choice"]) {
                "a" => vec![region(
                    "comparison",
                    "prompt",
                    "pairwise",
                    json!({"selected": "left"}),
                )],
                "b" => vec![region(
                    "comparison",
                    "prompt",
                    "pairwise",
                    json!({"selected": "right"}),
                )],
                _ => vec![region(
                    "comparison",
                    "prompt",
                    "choices",
                    json!({"choices": ["tie"]}),
                )],
            },
            "text_spans" => {
                let text = str_of(&r.data["text"]);
                answer
                    .get("spans")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let (start, end) = (s["start"].as_u64().unwrap_or(0), s["end"].as_u64().unwrap_or(0));
                        let (u_start, u_end, piece) = utf16_range(text, start as usize, end as usize);
                        region(
                            "label",
                            "text",
                            "labels",
                            json!({"start": u_start, "end": u_end, "text": piece, "labels": [s["label"]]}),
                        )
                    })
                    .collect()
            }
            "bounding_boxes" => {
                let (w, h) = (
                    r.data["width"].as_f64().unwrap_or(0.0),
                    r.data["height"].as_f64().unwrap_or(0.0),
                );
                let pct = |v: &Value, whole: f64| match whole > 0.0 {
                    true => v.as_f64().unwrap_or(0.0) * 100.0 / whole,
                    false => 0.0,
                };
                answer
                    .get("boxes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        let mut reg = region(
                            "label",
                            "image",
                            "rectanglelabels",
                            json!({
                                "x": pct(&b["x"], w), "y": pct(&b["y"], h),
                                "width": pct(&b["w"], w), "height": pct(&b["h"], h),
                                "rotation": 0, "rectanglelabels": [b["label"]],
                            }),
                        );
                        reg["original_width"] = json!(w);
                        reg["original_height"] = json!(h);
                        reg
                    })
                    .collect()
            }
            // Reviewed types: the accepted texts (or artifact hashes).
            _ => {
                let texts: Vec<Value> = answer
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a.get("text")
                            .or(a.get("artifact"))
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                vec![region("answer", "text", "textarea", json!({"text": texts}))]
            }
        };
        let mut data: Map<String, Value> = r.data.as_object().cloned().unwrap_or_default();
        data.remove("gold");
        json!({
            "id": r.item_id,
            "data": data,
            "annotations": [{
                "result": result,
                "ground_truth": false,
                "meta": {"sahel": {
                    "agreement": r.result.get("agreement"),
                    "answers": r.result.get("answers"),
                    "contributors": r.answers.iter().map(|a| a.contributor_id).collect::<Vec<_>>(),
                }},
            }],
        })
    }
}

/// Label Studio counts offsets in UTF-16 units (JavaScript strings); the
/// contract counts Unicode scalar values.
fn utf16_range(text: &str, start: usize, end: usize) -> (usize, usize, String) {
    let mut u = 0;
    let (mut us, mut ue) = (None, None);
    let mut piece = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == start {
            us = Some(u);
        }
        if i == end {
            ue = Some(u);
        }
        if (start..end).contains(&i) {
            piece.push(c);
        }
        u += c.len_utf16();
    }
    (us.unwrap_or(u), ue.unwrap_or(u), piece)
}

fn write_csv_row<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a str>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(cell.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(cell.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Where an export's records come from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A project's resolved items, as they are now.
    Project(i64),
    /// A published dataset version: the records frozen at publication.
    Dataset { dataset: i64, project: i64 },
}

impl Source {
    fn project(self) -> i64 {
        match self {
            Source::Project(p) | Source::Dataset { project: p, .. } => p,
        }
    }
}

/// A page of records after `after_seq` (with provenance when asked).
async fn page(
    conn: &DatabaseConnection,
    source: Source,
    after_seq: i64,
    provenance: bool,
    started: i64,
) -> Result<(Vec<ExportRecord>, Option<i64>)> {
    let rows: Vec<(i64, i64, String, Option<String>)> = match source {
        Source::Project(project_id) => {
            item::Entity::find()
                .select_only()
                .column(item::Column::Seq)
                .column(item::Column::Id)
                .column(item::Column::Data)
                .column(item::Column::Result)
                .filter(item::Column::ProjectId.eq(project_id))
                .filter(item::Column::Status.eq("resolved"))
                // Items resolved since the export began are left out, so
                // every pass (COCO makes two) sees the same items.
                .filter(item::Column::ResolvedAt.lte(started))
                .filter(item::Column::Seq.gt(after_seq))
                .order_by_asc(item::Column::Seq)
                .limit(PAGE)
                .into_tuple()
                .all(conn)
                .await?
        }
        Source::Dataset { dataset, .. } => record::Entity::find()
            .select_only()
            .column(record::Column::Seq)
            .column(record::Column::ItemId)
            .column(record::Column::Data)
            .column(record::Column::Result)
            .filter(record::Column::DatasetId.eq(dataset))
            .filter(record::Column::Seq.gt(after_seq))
            .order_by_asc(record::Column::Seq)
            .limit(PAGE)
            .into_tuple::<(i64, i64, String, String)>()
            .all(conn)
            .await?
            .into_iter()
            .map(|(s, i, d, r)| (s, i, d, Some(r)))
            .collect(),
    };
    let last = rows.last().map(|r| r.0);
    if !provenance {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
        let records = rows
            .into_iter()
            .map(|(_, id, d, r)| ExportRecord {
                item_id: id,
                data: parse(&d),
                content_hash: String::new(),
                guideline_version: String::new(),
                result: r.as_deref().map_or(Value::Null, parse),
                answers: Vec::new(),
            })
            .collect();
        return Ok((records, last));
    }
    let items = rows
        .into_iter()
        .map(|(_, id, d, r)| (id, d, r.unwrap_or_else(|| "null".into())))
        .collect();
    Ok((
        super::with_provenance(conn, source.project(), items).await?,
        last,
    ))
}

/// The export of project `p`'s resolved items as a stream of chunks, one
/// per page, read lazily: memory stays bounded by a page, whatever the size.
pub fn stream(
    conn: DatabaseConnection,
    p: &Project,
    format: ExportFormat,
) -> Result<impl Stream<Item = Result<Bytes>> + use<>> {
    stream_from(conn, p, Source::Project(p.row.id), format)
}

/// The same, from any source of records of project `p`.
pub fn stream_from(
    conn: DatabaseConnection,
    p: &Project,
    source: Source,
    format: ExportFormat,
) -> Result<impl Stream<Item = Result<Bytes>> + use<>> {
    let mut encoder = Encoder::new(format, p.row.task_type.as_str(), p.schema.to_json())?;
    let started = crate::db::now_ms();
    let head = encoder.begin();
    // (pass, cursor, head bytes not yet sent, finished)
    let init = (encoder, 0u8, 0i64, Some(head), false);
    Ok(futures_util::stream::unfold(
        (conn, init),
        move |(conn, (mut enc, pass, cursor, head, done))| async move {
            if done {
                return None;
            }
            let mut out = head.unwrap_or_default();
            let (records, last) =
                match page(&conn, source, cursor, format.provenance(), started).await {
                    Ok(x) => x,
                    Err(e) => return Some((Err(e), (conn, (enc, pass, cursor, None, true)))),
                };
            for r in &records {
                if let Err(e) = enc.record(pass, r, &mut out) {
                    return Some((Err(e), (conn, (enc, pass, cursor, None, true))));
                }
            }
            let state = match last {
                Some(seq) => (pass, seq, false),
                None if pass + 1 < format.passes() => {
                    out.extend(enc.between_passes());
                    (pass + 1, 0, false)
                }
                None => {
                    out.extend(enc.end());
                    (pass, cursor, true)
                }
            };
            Some((
                Ok(Bytes::from(out)),
                (conn, (enc, state.0, state.1, None, state.2)),
            ))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sahel_protocol::provenance::SignedAnswer;

    fn rec(id: i64, data: Value, answer: Value) -> ExportRecord {
        ExportRecord {
            item_id: id,
            data,
            content_hash: "h".into(),
            guideline_version: "g".into(),
            result: json!({"answer": answer, "agreement": 0.75, "answers": 4}),
            answers: vec![SignedAnswer {
                answer_id: 1,
                contributor_id: 7,
                public_key: "k".into(),
                answer: Value::Null,
                signature: "s".into(),
                signed_by: "contributor".into(),
            }],
        }
    }

    fn encode(
        format: ExportFormat,
        task_type: &str,
        schema: Value,
        recs: &[ExportRecord],
    ) -> String {
        let mut e = Encoder::new(format, task_type, schema).unwrap();
        let mut out = e.begin();
        for pass in 0..format.passes() {
            if pass > 0 {
                out.extend(e.between_passes());
            }
            for r in recs {
                e.record(pass, r, &mut out).unwrap();
            }
        }
        out.extend(e.end());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_quotes_cells_and_keeps_one_row_per_item() {
        let recs = [
            rec(
                1,
                json!({"text": "plain", "gold": {"label": "a"}}),
                json!({"label": "a"}),
            ),
            rec(
                2,
                json!({"text": "has, comma and \"quotes\"\nnewline"}),
                json!({"label": "b"}),
            ),
        ];
        let csv = encode(
            ExportFormat::Csv,
            "classification",
            json!({"classes": ["a", "b"]}),
            &recs,
        );
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(
            r.headers().unwrap(),
            vec!["item_id", "text", "result", "agreement", "answers"]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[1][1], "has, comma and \"quotes\"\nnewline");
        assert_eq!(&rows[1][2], "b");
        assert_eq!(&rows[0][3], "0.75");
    }

    #[test]
    fn coco_lists_images_then_annotations_with_category_ids() {
        let boxes = |bs: Value| json!({"boxes": bs});
        let recs = [
            rec(
                10,
                json!({"image": "ab".repeat(32), "width": 640, "height": 480, "name": "a.png"}),
                boxes(
                    json!([{"x": 1, "y": 2, "w": 30, "h": 40, "label": "person"},
                             {"x": 5, "y": 5, "w": 10, "h": 10, "label": "car"}]),
                ),
            ),
            rec(
                11,
                json!({"image": "cd".repeat(32), "width": 100, "height": 100}),
                boxes(json!([])),
            ),
        ];
        let out = encode(
            ExportFormat::Coco,
            "bounding_boxes",
            json!({"labels": ["car", "person"]}),
            &recs,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["categories"][1]["name"], "person");
        assert_eq!(v["images"].as_array().unwrap().len(), 2);
        assert_eq!(v["images"][0]["file_name"], "a.png");
        assert_eq!(v["images"][1]["file_name"], "cd".repeat(32));
        let anns = v["annotations"].as_array().unwrap();
        assert_eq!(anns.len(), 2);
        assert_eq!(anns[0]["category_id"], 2);
        assert_eq!(anns[0]["bbox"], json!([1, 2, 30, 40]));
        assert_eq!(anns[0]["area"], 1200.0);
        assert_eq!(
            (anns[0]["id"].clone(), anns[1]["id"].clone()),
            (json!(1), json!(2))
        );
    }

    #[test]
    fn label_studio_regions_match_each_control() {
        let spans = encode(
            ExportFormat::LabelStudio,
            "text_spans",
            json!({"labels": ["PER"]}),
            // "😀" is one scalar value but two UTF-16 units.
            &[rec(
                1,
                json!({"text": "😀 Ada met Bob"}),
                json!({"spans": [{"start": 2, "end": 5, "label": "PER"}]}),
            )],
        );
        let v: Value = serde_json::from_str(&spans).unwrap();
        let region = &v[0]["annotations"][0]["result"][0];
        assert_eq!(region["type"], "labels");
        assert_eq!(
            region["value"],
            json!({"start": 3, "end": 6, "text": "Ada", "labels": ["PER"]})
        );

        let boxes = encode(
            ExportFormat::LabelStudio,
            "bounding_boxes",
            json!({"labels": ["car"]}),
            &[
                rec(
                    1,
                    json!({"image": "x", "width": 200, "height": 100}),
                    json!({"boxes": [{"x": 50, "y": 10, "w": 100, "h": 50, "label": "car"}]}),
                ),
                rec(
                    2,
                    json!({"image": "y", "width": 200, "height": 100}),
                    json!({"boxes": []}),
                ),
            ],
        );
        let v: Value = serde_json::from_str(&boxes).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        let value = &v[0]["annotations"][0]["result"][0]["value"];
        assert_eq!(
            (value["x"].as_f64(), value["width"].as_f64()),
            (Some(25.0), Some(50.0))
        );
        assert_eq!(value["height"].as_f64(), Some(50.0));

        let pairs = encode(
            ExportFormat::LabelStudio,
            "pairwise",
            json!({}),
            &[rec(
                1,
                json!({"prompt": "p", "response_a": "a", "response_b": "b", "gold": {"choice": "a"}}),
                json!({"choice": "b"}),
            )],
        );
        let v: Value = serde_json::from_str(&pairs).unwrap();
        assert_eq!(
            v[0]["annotations"][0]["result"][0]["value"]["selected"],
            "right"
        );
        assert!(
            v[0]["data"].get("gold").is_none(),
            "gold answers stay private"
        );
    }

    #[test]
    fn formats_refuse_types_they_cannot_express() {
        assert!(ExportFormat::Csv.check("text_spans").is_err());
        assert!(ExportFormat::Coco.check("classification").is_err());
        assert!(ExportFormat::Csv.check("multi_label").is_ok());
        assert!(ExportFormat::parse("xml").is_err());
    }
}
