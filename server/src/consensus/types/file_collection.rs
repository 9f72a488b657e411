//! File collection (record a clip, take a photo): the answer names an
//! uploaded artifact by its SHA-256; quality by review. That the artifact
//! exists, belongs to the answering contributor and fits `accept` and
//! `max_bytes` is checked by the server against object storage
//! (`consensus::check_answer_artifacts`), not here.

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, answer_object, item_text, only_fields, opt_u64, sha256_ref};

const LIMIT_BYTES: u64 = 1 << 30;
const MAX_TYPES: usize = 50;

#[derive(Debug)]
pub struct FileCollection {
    accept: Vec<String>,
    max_bytes: u64,
}

impl FileCollection {
    pub fn parse(obj: &Map<String, Value>) -> Result<FileCollection, String> {
        only_fields(obj, &["accept", "max_bytes"])?;
        let list = obj
            .get("accept")
            .and_then(Value::as_array)
            .ok_or("the schema needs \"accept\": an array of MIME types such as \"audio/wav\"")?;
        let mut accept: Vec<String> = Vec::new();
        for t in list {
            let t = t
                .as_str()
                .ok_or("every entry of \"accept\" must be a string")?
                .trim()
                .to_ascii_lowercase();
            let valid = t.len() <= 100
                && matches!(t.split_once('/'), Some((a, b)) if !a.is_empty() && !b.is_empty()
                    && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"/.+-*".contains(&c)));
            if !valid {
                return Err(format!("{t:?} is not a MIME type like \"audio/wav\""));
            }
            if accept.contains(&t) {
                return Err(format!("MIME type {t:?} appears twice"));
            }
            accept.push(t);
        }
        if accept.is_empty() || accept.len() > MAX_TYPES {
            return Err(format!("\"accept\" needs 1 to {MAX_TYPES} MIME types"));
        }
        let max_bytes = opt_u64(obj, "max_bytes")?
            .ok_or("the schema needs \"max_bytes\": the largest file accepted")?;
        if max_bytes == 0 || max_bytes > LIMIT_BYTES {
            return Err(format!("\"max_bytes\" must be 1 to {LIMIT_BYTES}"));
        }
        Ok(FileCollection { accept, max_bytes })
    }
}

impl TaskKind for FileCollection {
    fn task_type(&self) -> TaskType {
        TaskType::FileCollection
    }

    fn to_json(&self) -> Value {
        json!({ "accept": self.accept, "max_bytes": self.max_bytes })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Review
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        item_text(item, "text").map(|_| ())
    }

    fn normalize_answer(
        &self,
        _item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let obj = answer_object(answer, "{\"artifact\": \"<sha256>\"}")?;
        let artifact = sha256_ref(obj.get("artifact"), "artifact")?;
        Ok(json!({ "artifact": artifact }))
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        f64::from(u8::from(a == b))
    }
}
