//! Any subset of N classes. Agreement is Jaccard; a class is in the merged
//! result when more than half of the answers have it.

use std::collections::BTreeSet;

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{
    Consensus, TaskKind, answer_object, item_text, names, only_fields, opt_u64, sha256_ref,
};

#[derive(Debug)]
pub struct MultiLabel {
    classes: Vec<String>,
    min: usize,
    max: usize,
}

impl MultiLabel {
    pub fn parse(obj: &Map<String, Value>) -> Result<MultiLabel, String> {
        only_fields(obj, &["classes", "min", "max"])?;
        let classes = names(obj, "classes", "class", 1)?;
        let min = opt_u64(obj, "min")?.unwrap_or(0) as usize;
        let max = opt_u64(obj, "max")?.unwrap_or(classes.len() as u64) as usize;
        if max == 0 || max > classes.len() {
            return Err(format!(
                "\"max\" must be 1 to the number of classes ({})",
                classes.len()
            ));
        }
        if min > max {
            return Err(format!("\"min\" ({min}) is above \"max\" ({max})"));
        }
        Ok(MultiLabel { classes, min, max })
    }
}

fn labels(v: &Value) -> BTreeSet<&str> {
    v.get("labels")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

impl TaskKind for MultiLabel {
    fn task_type(&self) -> TaskType {
        TaskType::MultiLabel
    }

    fn to_json(&self) -> Value {
        json!({ "classes": self.classes, "min": self.min, "max": self.max })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Merge
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        match (item.get("text"), item.get("image")) {
            (Some(_), _) => item_text(item, "text").map(|_| ()),
            (None, Some(img)) => sha256_ref(Some(img), "image").map(|_| ()),
            (None, None) => Err("a multi-label item needs \"text\" or \"image\"".into()),
        }
    }

    fn normalize_answer(
        &self,
        _item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let shape = "{\"labels\": [\"<class>\", ...]}";
        let list = answer_object(answer, shape)?
            .get("labels")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("a multi-label answer is {shape}"))?;
        let mut set = BTreeSet::new();
        for l in list {
            let l = l.as_str().ok_or("every label must be a string")?.trim();
            if !self.classes.iter().any(|c| c == l) {
                return Err(format!(
                    "{l:?} is not one of the classes {:?}",
                    self.classes
                ));
            }
            if !set.insert(l) {
                return Err(format!("label {l:?} is given twice"));
            }
        }
        if set.len() < self.min || set.len() > self.max {
            return Err(format!(
                "{} labels given; this bounty takes {} to {}",
                set.len(),
                self.min,
                self.max
            ));
        }
        Ok(json!({ "labels": set }))
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        let (a, b) = (labels(a), labels(b));
        let union = a.union(&b).count();
        if union == 0 {
            return 1.0;
        }
        a.intersection(&b).count() as f64 / union as f64
    }

    fn merge(&self, answers: &[Value]) -> Value {
        let sets: Vec<BTreeSet<&str>> = answers.iter().map(labels).collect();
        let kept: Vec<&String> = self
            .classes
            .iter()
            .filter(|c| 2 * sets.iter().filter(|s| s.contains(c.as_str())).count() > sets.len())
            .collect();
        let mut kept: Vec<&str> = kept.into_iter().map(String::as_str).collect();
        kept.sort_unstable();
        json!({ "labels": kept })
    }

    fn set_classes(&self) -> &[String] {
        &self.classes
    }

    fn label_set(&self, answer: &Value) -> Option<Vec<String>> {
        answer.get("labels")?;
        Some(labels(answer).into_iter().map(str::to_owned).collect())
    }
}
