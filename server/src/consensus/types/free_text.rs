//! Free-text writing (prompts, responses): length bounds here, quality by
//! review.

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, answer_object, item_text, only_fields, opt_u64};

pub const DEFAULT_MIN_CHARS: u64 = 1;
pub const DEFAULT_MAX_CHARS: u64 = 10_000;
const LIMIT_CHARS: u64 = 100_000;

#[derive(Debug)]
pub struct FreeText {
    min_chars: u64,
    max_chars: u64,
}

impl FreeText {
    pub fn parse(obj: &Map<String, Value>) -> Result<FreeText, String> {
        only_fields(obj, &["min_chars", "max_chars"])?;
        let min_chars = opt_u64(obj, "min_chars")?.unwrap_or(DEFAULT_MIN_CHARS);
        let max_chars = opt_u64(obj, "max_chars")?.unwrap_or(DEFAULT_MAX_CHARS);
        if max_chars == 0 || max_chars > LIMIT_CHARS {
            return Err(format!("\"max_chars\" must be 1 to {LIMIT_CHARS}"));
        }
        if min_chars > max_chars {
            return Err(format!(
                "\"min_chars\" ({min_chars}) is above \"max_chars\" ({max_chars})"
            ));
        }
        Ok(FreeText {
            min_chars,
            max_chars,
        })
    }
}

impl TaskKind for FreeText {
    fn task_type(&self) -> TaskType {
        TaskType::FreeText
    }

    fn to_json(&self) -> Value {
        json!({ "min_chars": self.min_chars, "max_chars": self.max_chars })
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
        let text = answer_object(answer, "{\"text\": \"...\"}")?
            .get("text")
            .and_then(Value::as_str)
            .ok_or("a free-text answer is {\"text\": \"...\"}")?
            .trim();
        let n = text.chars().count() as u64;
        if n < self.min_chars {
            return Err(format!(
                "the text is {n} characters; this bounty asks for at least {}",
                self.min_chars
            ));
        }
        if n > self.max_chars {
            return Err(format!(
                "the text is {n} characters; this bounty takes at most {}",
                self.max_chars
            ));
        }
        Ok(json!({ "text": text }))
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        f64::from(u8::from(a == b))
    }
}
