//! One of N classes, decided by vote.

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, item_text, names, only_fields};

#[derive(Debug)]
pub struct Classification {
    classes: Vec<String>,
}

impl Classification {
    pub fn parse(obj: &Map<String, Value>) -> Result<Classification, String> {
        only_fields(obj, &["classes"])?;
        Ok(Classification {
            classes: names(obj, "classes", "class", 2)?,
        })
    }
}

impl TaskKind for Classification {
    fn task_type(&self) -> TaskType {
        TaskType::Classification
    }

    fn to_json(&self) -> Value {
        json!({ "classes": self.classes })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Vote
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        item_text(item, "text").map(|_| ())
    }

    fn normalize_answer(
        &self,
        _item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let label = answer
            .get("label")
            .and_then(Value::as_str)
            .ok_or("a classification answer is {\"label\": \"<class>\"}")?
            .trim();
        if !self.classes.iter().any(|c| c == label) {
            return Err(format!(
                "{label:?} is not one of the classes {:?}",
                self.classes
            ));
        }
        Ok(json!({ "label": label }))
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        f64::from(u8::from(self.vote_key(a) == self.vote_key(b)))
    }

    fn vote_key(&self, answer: &Value) -> Option<String> {
        answer
            .get("label")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }
}
