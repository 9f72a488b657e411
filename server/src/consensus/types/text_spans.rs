//! Labelled character spans of a text (NER). Agreement is span-level F1
//! on exact (start, end, label); the merged result keeps the spans more
//! than half of the answers give. Kept spans never overlap: two
//! overlapping spans each in more than half of the answers would share an
//! answer, and no answer has overlapping spans.

use std::collections::{BTreeMap, BTreeSet};

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, answer_object, f1, item_text, names, only_fields};

#[derive(Debug)]
pub struct TextSpans {
    labels: Vec<String>,
}

/// The most spans one answer may hold.
const MAX_SPANS: usize = 1_000;

impl TextSpans {
    pub fn parse(obj: &Map<String, Value>) -> Result<TextSpans, String> {
        only_fields(obj, &["labels"])?;
        Ok(TextSpans {
            labels: names(obj, "labels", "label", 1)?,
        })
    }
}

type Span<'a> = (u64, u64, &'a str);

fn spans(v: &Value) -> BTreeSet<Span<'_>> {
    v.get("spans")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("start")?.as_u64()?,
                        s.get("end")?.as_u64()?,
                        s.get("label")?.as_str()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn to_json(spans: &[Span<'_>]) -> Value {
    json!({
        "spans": spans
            .iter()
            .map(|(s, e, l)| json!({"start": s, "end": e, "label": l}))
            .collect::<Vec<_>>()
    })
}

impl TaskKind for TextSpans {
    fn task_type(&self) -> TaskType {
        TaskType::TextSpans
    }

    fn to_json(&self) -> Value {
        json!({ "labels": self.labels })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Merge
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        item_text(item, "text").map(|_| ())
    }

    fn normalize_answer(
        &self,
        item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let shape = "{\"spans\": [{\"start\": 0, \"end\": 5, \"label\": \"<label>\"}, ...]}";
        let list = answer_object(answer, shape)?
            .get("spans")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("a text-spans answer is {shape}"))?;
        if list.len() > MAX_SPANS {
            return Err(format!("at most {MAX_SPANS} spans per answer"));
        }
        let text_len = item
            .and_then(|i| i.get("text"))
            .and_then(Value::as_str)
            .map(|t| t.chars().count() as u64);
        let mut out: Vec<Span<'_>> = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let n = i + 1;
            let field = |f: &str| {
                s.get(f)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("span {n} needs \"{f}\": a character offset"))
            };
            let (start, end) = (field("start")?, field("end")?);
            let label = s
                .get("label")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("span {n} needs a \"label\""))?
                .trim();
            if start >= end {
                return Err(format!(
                    "span {n} starts at {start} and ends at {end}; it must end after it starts"
                ));
            }
            if let Some(len) = text_len
                && end > len
            {
                return Err(format!(
                    "span {n} ends at {end}, past the text's {len} characters"
                ));
            }
            let Some(label) = self.labels.iter().find(|l| *l == label) else {
                return Err(format!(
                    "span {n} has label {label:?}, not one of {:?}",
                    self.labels
                ));
            };
            out.push((start, end, label.as_str()));
        }
        out.sort_unstable();
        for w in out.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(format!(
                    "spans {}..{} and {}..{} overlap",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
        }
        Ok(to_json(&out))
    }

    fn answers_point_into_item(&self) -> bool {
        true
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        let (a, b) = (spans(a), spans(b));
        f1(a.intersection(&b).count(), a.len(), b.len())
    }

    fn merge(&self, answers: &[Value]) -> Value {
        let mut count: BTreeMap<Span<'_>, usize> = BTreeMap::new();
        for a in answers {
            for s in spans(a) {
                *count.entry(s).or_default() += 1;
            }
        }
        let kept: Vec<Span<'_>> = count
            .into_iter()
            .filter(|(_, c)| 2 * c > answers.len())
            .map(|(s, _)| s)
            .collect();
        to_json(&kept)
    }
}
