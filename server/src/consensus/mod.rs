//! Label schemas, answer validation and consensus: the pure core.
//!
//! Nothing here touches the database: [`LabelSchema`] validates schemas,
//! items and answers, and [`decide`] turns an item's answers into a
//! decision. [`resolve`] applies a decision inside a database transaction.
//! [`quality`] is the quality engine (gold, EM, reliability) for bounties
//! that use it; its statistics live in the `sahel-quality` crate.

pub mod quality;
pub mod resolve;

use std::collections::BTreeMap;

use sahel_protocol::api::TaskType;
use serde_json::{Value, json};

/// A validated label schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelSchema {
    Classification { classes: Vec<String> },
}

const MAX_CLASSES: usize = 100;
const MAX_CLASS_LEN: usize = 100;
const MAX_ITEM_TEXT: usize = 100_000;

impl LabelSchema {
    pub fn parse(task_type: TaskType, schema: &Value) -> Result<LabelSchema, String> {
        match task_type {
            TaskType::Classification => {
                let classes = schema
                    .get("classes")
                    .and_then(Value::as_array)
                    .ok_or("a classification schema needs \"classes\": an array of class names")?;
                let mut out = Vec::with_capacity(classes.len());
                for c in classes {
                    let name = c.as_str().ok_or("every class must be a string")?.trim();
                    if name.is_empty() || name.chars().count() > MAX_CLASS_LEN {
                        return Err(format!(
                            "class names must be 1 to {MAX_CLASS_LEN} characters"
                        ));
                    }
                    if out.iter().any(|o: &String| o == name) {
                        return Err(format!("class {name:?} appears twice"));
                    }
                    out.push(name.to_owned());
                }
                if !(2..=MAX_CLASSES).contains(&out.len()) {
                    return Err(format!("a classification needs 2 to {MAX_CLASSES} classes"));
                }
                Ok(LabelSchema::Classification { classes: out })
            }
        }
    }

    pub fn task_type(&self) -> TaskType {
        match self {
            LabelSchema::Classification { .. } => TaskType::Classification,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            LabelSchema::Classification { classes } => json!({ "classes": classes }),
        }
    }

    /// Checks that an imported item carries what this type shows, and
    /// that its gold answer, if it has one, is a valid answer.
    pub fn validate_item(&self, data: &Value) -> Result<(), String> {
        let obj = data.as_object().ok_or("an item must be a JSON object")?;
        quality::gold::check_import(self, obj)?;
        match self {
            LabelSchema::Classification { .. } => match obj.get("text") {
                Some(Value::String(t)) if !t.trim().is_empty() && t.len() <= MAX_ITEM_TEXT => {
                    Ok(())
                }
                Some(Value::String(t)) if t.len() > MAX_ITEM_TEXT => {
                    Err(format!("\"text\" is longer than {MAX_ITEM_TEXT} bytes"))
                }
                Some(Value::String(_)) => Err("\"text\" is empty".into()),
                Some(_) => Err("\"text\" must be a string".into()),
                None => Err("missing field \"text\"".into()),
            },
        }
    }

    /// Validates an answer and returns its canonical form, the only form
    /// stored and compared.
    pub fn normalize_answer(&self, answer: &Value) -> Result<Value, String> {
        match self {
            LabelSchema::Classification { classes } => {
                let label = answer
                    .get("label")
                    .and_then(Value::as_str)
                    .ok_or("a classification answer is {\"label\": \"<class>\"}")?;
                let label = label.trim();
                if !classes.iter().any(|c| c == label) {
                    return Err(format!("{label:?} is not one of the classes {classes:?}"));
                }
                Ok(json!({ "label": label }))
            }
        }
    }

    /// The key answers are voted on: equal keys agree.
    fn vote_key(&self, answer: &Value) -> Option<String> {
        match self {
            LabelSchema::Classification { .. } => answer
                .get("label")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// One answer as consensus sees it.
#[derive(Clone, Debug)]
pub struct Vote {
    pub answer_id: i64,
    pub answer: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The item's result; `accepted` answers agree with it and are paid.
    Resolved {
        result: Value,
        accepted: Vec<i64>,
        rejected: Vec<i64>,
        agreement: f64,
        /// The posterior of the result, when the quality engine decided.
        confidence: Option<f64>,
    },
    /// Tied: collect answers until there are `needed`.
    NeedMore { needed: u32 },
    /// Still tied at the cap: nobody is paid, the item is closed.
    NoConsensus { rejected: Vec<i64> },
}

/// Plurality vote. A unique top answer wins; a tie asks for one more answer
/// while fewer than `max_answers` exist.
///
/// With `max_answers = 2 * overlap - 1` the winners never outnumber
/// `overlap`: a tie at n answers means the top count t has 2t <= n, so the
/// winner after one more answer has t + 1 <= overlap. That is what lets a
/// budget of overlap x items x reward always suffice.
pub fn decide(schema: &LabelSchema, votes: &[Vote], max_answers: u32) -> Decision {
    let mut tally: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for v in votes {
        if let Some(k) = schema.vote_key(&v.answer) {
            tally.entry(k).or_default().push(v.answer_id);
        }
    }
    let top = tally.values().map(Vec::len).max().unwrap_or(0);
    let leaders: Vec<&String> = tally
        .iter()
        .filter(|(_, ids)| ids.len() == top)
        .map(|(k, _)| k)
        .collect();
    let all: Vec<i64> = votes.iter().map(|v| v.answer_id).collect();
    if leaders.len() == 1 && top > 0 {
        let winner = leaders[0].clone();
        let accepted = tally[&winner].clone();
        let rejected = all
            .iter()
            .copied()
            .filter(|id| !accepted.contains(id))
            .collect();
        let agreement = accepted.len() as f64 / votes.len() as f64;
        let result = votes
            .iter()
            .find(|v| v.answer_id == accepted[0])
            .map(|v| v.answer.clone())
            .unwrap_or(Value::Null);
        return Decision::Resolved {
            result,
            accepted,
            rejected,
            agreement,
            confidence: None,
        };
    }
    let n = votes.len() as u32;
    if n < max_answers {
        Decision::NeedMore { needed: n + 1 }
    } else {
        Decision::NoConsensus { rejected: all }
    }
}

/// The most answers an item may collect, given its overlap.
pub fn max_answers_for(overlap: u32) -> u32 {
    (2 * overlap).saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> LabelSchema {
        LabelSchema::parse(
            TaskType::Classification,
            &json!({"classes": ["pos", "neg", "neu"]}),
        )
        .unwrap()
    }

    fn votes(labels: &[&str]) -> Vec<Vote> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| Vote {
                answer_id: i as i64 + 1,
                answer: json!({"label": l}),
            })
            .collect()
    }

    /// One row per case: the labels given, the cap, and what must happen.
    #[test]
    fn plurality_vote_cases() {
        let cases: &[(&[&str], u32, &str)] = &[
            (&["pos", "pos", "neg"], 5, "resolved pos [1, 2]"),
            (&["pos", "pos", "pos"], 5, "resolved pos [1, 2, 3]"),
            (&["pos", "neg", "neu"], 5, "need 4"),
            (&["pos", "neg", "neu", "pos"], 5, "resolved pos [1, 4]"),
            (&["pos", "pos", "neg", "neg"], 5, "need 5"),
            (&["pos", "pos", "neg", "neg", "neu"], 5, "none"),
            (&["pos", "neg"], 3, "need 3"),
            (&["pos"], 1, "resolved pos [1]"),
        ];
        for (labels, cap, expected) in cases {
            let got = match decide(&schema(), &votes(labels), *cap) {
                Decision::Resolved {
                    result, accepted, ..
                } => format!(
                    "resolved {} {:?}",
                    result["label"].as_str().unwrap(),
                    accepted
                ),
                Decision::NeedMore { needed } => format!("need {needed}"),
                Decision::NoConsensus { .. } => "none".into(),
            };
            assert_eq!(got, *expected, "{labels:?}");
        }
    }

    #[test]
    fn winners_never_exceed_overlap_with_the_cap() {
        // Exhaustive over 3 classes and overlaps 1..=4: every answer
        // sequence, extended one answer at a time as decide() asks.
        fn walk(schema: &LabelSchema, labels: &mut Vec<&'static str>, overlap: u32) {
            let cap = max_answers_for(overlap);
            if (labels.len() as u32) < overlap {
                for l in ["pos", "neg", "neu"] {
                    labels.push(l);
                    walk(schema, labels, overlap);
                    labels.pop();
                }
                return;
            }
            match decide(schema, &votes(labels), cap) {
                Decision::Resolved { accepted, .. } => {
                    assert!(accepted.len() as u32 <= overlap, "{labels:?}")
                }
                Decision::NeedMore { needed } => {
                    assert_eq!(needed as usize, labels.len() + 1);
                    for l in ["pos", "neg", "neu"] {
                        labels.push(l);
                        walk(schema, labels, overlap);
                        labels.pop();
                    }
                }
                Decision::NoConsensus { .. } => assert_eq!(labels.len() as u32, cap),
            }
        }
        for overlap in 1..=4 {
            walk(&schema(), &mut Vec::new(), overlap);
        }
    }

    #[test]
    fn schemas_and_answers_are_validated() {
        let s = schema();
        assert_eq!(
            s.normalize_answer(&json!({"label": " pos "})).unwrap(),
            json!({"label": "pos"})
        );
        assert!(s.normalize_answer(&json!({"label": "maybe"})).is_err());
        assert!(s.normalize_answer(&json!("pos")).is_err());
        assert!(s.validate_item(&json!({"text": "fine"})).is_ok());
        assert!(s.validate_item(&json!({"text": ""})).is_err());
        assert!(s.validate_item(&json!({"body": "x"})).is_err());
        assert!(s.validate_item(&json!(["x"])).is_err());
        for bad in [
            json!({}),
            json!({"classes": ["a"]}),
            json!({"classes": ["a", "a"]}),
            json!({"classes": ["a", 3]}),
        ] {
            assert!(
                LabelSchema::parse(TaskType::Classification, &bad).is_err(),
                "{bad}"
            );
        }
    }
}
