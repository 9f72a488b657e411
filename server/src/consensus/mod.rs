//! Label schemas, answer validation and consensus: the pure core.
//!
//! Nothing here touches the database: [`LabelSchema`] validates schemas,
//! items and answers, and [`decide`] turns an item's answers into a
//! decision. [`resolve`] applies a decision inside a database transaction.
//! [`quality`] is the quality engine (gold, EM, reliability) for bounties
//! that use it; its statistics live in the `sahel-quality` crate.

pub mod quality;
pub mod resolve;
pub mod review;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use sahel_protocol::api::TaskType;
use serde_json::Value;

pub use review::check_answer_artifacts;
pub use types::{ACCEPT_AGREEMENT, Consensus, TaskKind};

/// A validated label schema: one task type's rules ([`TaskKind`]) behind a
/// cheap-to-clone handle, and whether the bounty asked for its answers to
/// be decided by review (`"review": true` in the schema) although its
/// type would vote or merge them.
#[derive(Clone, Debug)]
pub struct LabelSchema(Arc<dyn TaskKind>, bool);

/// The schema field that asks for review on a voted or merged type.
pub const REVIEW_FIELD: &str = "review";

impl PartialEq for LabelSchema {
    fn eq(&self, other: &LabelSchema) -> bool {
        self.task_type() == other.task_type() && self.to_json() == other.to_json()
    }
}

impl Eq for LabelSchema {}

impl LabelSchema {
    pub fn parse(task_type: TaskType, schema: &Value) -> Result<LabelSchema, String> {
        let mut schema = schema.clone();
        let review = match schema.as_object_mut().and_then(|o| o.remove(REVIEW_FIELD)) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return Err(format!("\"{REVIEW_FIELD}\" must be true or false")),
        };
        let kind = types::parse(task_type, &schema)?;
        if review && kind.consensus() == Consensus::Review {
            return Err(format!(
                "{} answers are always reviewed; \"{REVIEW_FIELD}\" is for the types that vote or merge",
                task_type.as_str()
            ));
        }
        Ok(LabelSchema(Arc::from(kind), review))
    }

    pub fn kind(&self) -> &dyn TaskKind {
        &*self.0
    }

    pub fn task_type(&self) -> TaskType {
        self.0.task_type()
    }

    pub fn consensus(&self) -> Consensus {
        if self.1 {
            Consensus::Review
        } else {
            self.0.consensus()
        }
    }

    /// The item's result from the answers review accepted: the list of
    /// them for the types only review decides (free text, files); for a
    /// type that asked for review, what its own rule makes of them (the
    /// merge, or the most given vote, the earliest on a tie), so results
    /// and exports keep the type's shape.
    pub fn reviewed_result(&self, accepted: &[Value]) -> Value {
        match self.0.consensus() {
            Consensus::Review => Value::Array(accepted.to_vec()),
            Consensus::Merge => self.0.merge(accepted),
            Consensus::Vote => {
                let keys: Vec<Option<String>> =
                    accepted.iter().map(|a| self.0.vote_key(a)).collect();
                let count = |k: &Option<String>| keys.iter().filter(|x| *x == k).count();
                let best = (0..accepted.len())
                    .max_by(|&a, &b| count(&keys[a]).cmp(&count(&keys[b])).then(b.cmp(&a)));
                best.map_or(Value::Null, |i| accepted[i].clone())
            }
        }
    }

    /// Whether answers wait for other contributors' reviews.
    pub fn is_reviewed(&self) -> bool {
        self.consensus() == Consensus::Review
    }

    /// The categories of a voted type (classes, pairwise choices); empty
    /// for the others, which the quality engine does not model.
    pub fn classes(&self) -> &[String] {
        self.0.classes()
    }

    /// The classes of a multi-label type, each a present/absent question
    /// for the quality engine; empty for the others.
    pub fn set_classes(&self) -> &[String] {
        self.0.set_classes()
    }

    /// The classes a canonical multi-label answer picks.
    pub fn label_set(&self, answer: &Value) -> Option<Vec<String>> {
        self.0.label_set(answer)
    }

    pub fn to_json(&self) -> Value {
        let mut v = self.0.to_json();
        if self.1
            && let Some(o) = v.as_object_mut()
        {
            o.insert(REVIEW_FIELD.into(), Value::Bool(true));
        }
        v
    }

    /// Checks that an imported item carries what this type shows, and
    /// that its gold answer, if it has one, is a valid answer.
    pub fn validate_item(&self, data: &Value) -> Result<(), String> {
        let obj = data.as_object().ok_or("an item must be a JSON object")?;
        quality::gold::check_import(self, obj)?;
        self.0.validate_item(obj)
    }

    /// Validates an answer and returns its canonical form, the only form
    /// stored and compared. Without the item, offsets and coordinates are
    /// checked for shape only; see [`LabelSchema::normalize_answer_for`].
    pub fn normalize_answer(&self, answer: &Value) -> Result<Value, String> {
        self.0.normalize_answer(None, answer)
    }

    /// [`LabelSchema::normalize_answer`] against the item answered, so a
    /// span past the text or a box outside the image is refused.
    pub fn normalize_answer_for(&self, item: &Value, answer: &Value) -> Result<Value, String> {
        self.0.normalize_answer(item.as_object(), answer)
    }

    /// Whether answers must be checked against their item too.
    pub fn answers_point_into_item(&self) -> bool {
        self.0.answers_point_into_item()
    }

    /// How much two canonical answers agree, from 0 to 1.
    pub fn agreement(&self, a: &Value, b: &Value) -> f64 {
        self.0.agreement(a, b)
    }

    /// The key answers are voted on: equal keys agree.
    pub fn vote_key(&self, answer: &Value) -> Option<String> {
        self.0.vote_key(answer)
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
    /// A reviewed type: reviews decide each answer (see [`review`]).
    AwaitReview,
}

/// Plurality vote. A unique top answer wins; a tie asks for one more answer
/// while fewer than `max_answers` exist.
///
/// With `max_answers = 2 * overlap - 1` the winners never outnumber
/// `overlap`: a tie at n answers means the top count t has 2t <= n, so the
/// winner after one more answer has t + 1 <= overlap. That is what lets a
/// budget of overlap x items x reward always suffice.
///
/// Merged types ([`Consensus::Merge`]) resolve when more than half of the
/// answers agree with the merged result by at least [`ACCEPT_AGREEMENT`];
/// otherwise they ask for one more answer up to the cap, as ties do. The
/// agreeing answers are paid, at most `overlap = (max_answers + 1) / 2` of
/// them (the best agreeing first, then the earliest), which keeps the same
/// budget bound.
pub fn decide(schema: &LabelSchema, votes: &[Vote], max_answers: u32) -> Decision {
    match schema.consensus() {
        Consensus::Vote => vote(schema, votes, max_answers),
        Consensus::Merge => merge(schema, votes, max_answers),
        Consensus::Review => Decision::AwaitReview,
    }
}

fn merge(schema: &LabelSchema, votes: &[Vote], max_answers: u32) -> Decision {
    let answers: Vec<Value> = votes.iter().map(|v| v.answer.clone()).collect();
    let result = schema.kind().merge(&answers);
    let mut scored: Vec<(f64, i64)> = votes
        .iter()
        .map(|v| (schema.agreement(&v.answer, &result), v.answer_id))
        .collect();
    let agreeing = scored
        .iter()
        .filter(|(a, _)| *a >= ACCEPT_AGREEMENT)
        .count();
    let n = votes.len() as u32;
    if n > 0 && 2 * agreeing > votes.len() {
        let overlap = (max_answers as usize).div_ceil(2).max(1);
        scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let agreement = scored.iter().map(|(a, _)| a).sum::<f64>() / votes.len() as f64;
        let accepted: Vec<i64> = scored
            .iter()
            .filter(|(a, _)| *a >= ACCEPT_AGREEMENT)
            .take(overlap)
            .map(|(_, id)| *id)
            .collect();
        let rejected = votes
            .iter()
            .map(|v| v.answer_id)
            .filter(|id| !accepted.contains(id))
            .collect();
        return Decision::Resolved {
            result,
            accepted,
            rejected,
            agreement,
            confidence: None,
        };
    }
    if n < max_answers {
        Decision::NeedMore { needed: n + 1 }
    } else {
        Decision::NoConsensus {
            rejected: votes.iter().map(|v| v.answer_id).collect(),
        }
    }
}

fn vote(schema: &LabelSchema, votes: &[Vote], max_answers: u32) -> Decision {
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
    use serde_json::json;

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
                Decision::AwaitReview => "review".into(),
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
                Decision::AwaitReview => panic!("classification is voted"),
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

    #[test]
    fn a_type_that_asks_for_review_keeps_its_result_shape() {
        let labels = |l: &[&str]| -> Vec<Value> { l.iter().map(|x| json!({"label": x})).collect() };
        let c = LabelSchema::parse(
            TaskType::Classification,
            &json!({"classes": ["cat", "dog"], "review": true}),
        )
        .unwrap();
        assert!(c.is_reviewed());
        assert_eq!(c.to_json()["review"], json!(true));
        assert_eq!(
            c.reviewed_result(&labels(&["cat", "dog", "dog"])),
            json!({"label": "dog"})
        );
        // A tie goes to the earliest accepted answer.
        assert_eq!(
            c.reviewed_result(&labels(&["dog", "cat"])),
            json!({"label": "dog"})
        );
        let plain = LabelSchema::parse(
            TaskType::Classification,
            &json!({"classes": ["cat", "dog"]}),
        )
        .unwrap();
        assert!(!plain.is_reviewed());
        assert!(plain.to_json().get("review").is_none());
        let m = LabelSchema::parse(
            TaskType::MultiLabel,
            &json!({"classes": ["a", "b"], "review": true}),
        )
        .unwrap();
        let sets = [
            json!({"labels": ["a", "b"]}),
            json!({"labels": ["a"]}),
            json!({"labels": ["a"]}),
        ];
        assert_eq!(m.reviewed_result(&sets), m.kind().merge(&sets));
        let t = LabelSchema::parse(TaskType::FreeText, &json!({})).unwrap();
        let texts = [json!({"text": "one"}), json!({"text": "two"})];
        assert_eq!(t.reviewed_result(&texts), json!(texts));
    }
}
