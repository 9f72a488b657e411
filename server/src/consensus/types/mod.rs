//! Every task type behind one trait, [`TaskKind`]: schema, item and answer
//! validation, agreement, and how an item's answers become its result.
//!
//! Pure: no database, no async. Adding a type is one module here plus one
//! line in [`parse`]; the wire shapes are in `docs/task-types.md`, and the
//! table-driven cases in `fixtures/types/*.json` (run by `tests.rs`).

mod bounding_boxes;
mod classification;
mod file_collection;
mod free_text;
mod multi_label;
mod pairwise;
#[cfg(test)]
mod tests;
mod text_spans;

use std::fmt::Debug;

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value};

/// How a type turns an item's answers into its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consensus {
    /// Equal answers agree; a unique plurality wins (or EM, with the
    /// quality engine). Categorical types.
    Vote,
    /// The result is computed from the answers ([`TaskKind::merge`]); an
    /// answer whose agreement with it reaches [`ACCEPT_AGREEMENT`] is paid.
    Merge,
    /// No automatic agreement: other contributors review each answer.
    Review,
}

/// The agreement with the merged result from which an answer of a
/// [`Consensus::Merge`] type is accepted (and paid).
pub const ACCEPT_AGREEMENT: f64 = 0.5;

/// One task type, with its schema already validated.
pub trait TaskKind: Debug + Send + Sync {
    fn task_type(&self) -> TaskType;

    /// The schema in canonical form (defaults filled in).
    fn to_json(&self) -> Value;

    fn consensus(&self) -> Consensus;

    /// Checks that an item carries what this type shows.
    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String>;

    /// Validates an answer and returns its canonical form. The item is
    /// there for types whose answers point into it (spans, boxes).
    fn normalize_answer(
        &self,
        item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String>;

    /// Whether [`TaskKind::normalize_answer`] checks more with the item
    /// than without it (offsets into its text, coordinates in its image).
    fn answers_point_into_item(&self) -> bool {
        false
    }

    /// How much two canonical answers agree, from 0 to 1.
    fn agreement(&self, a: &Value, b: &Value) -> f64;

    /// The result merged from canonical answers, for [`Consensus::Merge`]
    /// types.
    fn merge(&self, _answers: &[Value]) -> Value {
        Value::Null
    }

    /// The key answers are voted on, for [`Consensus::Vote`] types.
    fn vote_key(&self, _answer: &Value) -> Option<String> {
        None
    }

    /// The categories a vote chooses from (what EM models); empty for the
    /// other types.
    fn classes(&self) -> &[String] {
        &[]
    }

    /// The classes an answer picks any subset of (multi-label): EM models
    /// each as its own present/absent question. Empty for the other types.
    fn set_classes(&self) -> &[String] {
        &[]
    }

    /// The classes a canonical answer picks, for types with
    /// [`TaskKind::set_classes`].
    fn label_set(&self, _answer: &Value) -> Option<Vec<String>> {
        None
    }
}

/// Parses and validates a schema of `task_type`.
pub fn parse(task_type: TaskType, schema: &Value) -> Result<Box<dyn TaskKind>, String> {
    let obj = schema
        .as_object()
        .ok_or("the schema must be a JSON object")?;
    Ok(match task_type {
        TaskType::Classification => Box::new(classification::Classification::parse(obj)?),
        TaskType::MultiLabel => Box::new(multi_label::MultiLabel::parse(obj)?),
        TaskType::TextSpans => Box::new(text_spans::TextSpans::parse(obj)?),
        TaskType::BoundingBoxes => Box::new(bounding_boxes::BoundingBoxes::parse(obj)?),
        TaskType::Pairwise => Box::new(pairwise::Pairwise::parse(obj)?),
        TaskType::FreeText => Box::new(free_text::FreeText::parse(obj)?),
        TaskType::FileCollection => Box::new(file_collection::FileCollection::parse(obj)?),
    })
}

// ------------------------------------------------------------ shared checks

pub(crate) const MAX_CLASSES: usize = 100;
pub(crate) const MAX_CLASS_LEN: usize = 100;
pub(crate) const MAX_ITEM_TEXT: usize = 100_000;

/// A list of 1..=max distinct, trimmed, non-empty names of at most
/// [`MAX_CLASS_LEN`] characters.
pub(crate) fn names(
    obj: &Map<String, Value>,
    field: &str,
    what: &str,
    min: usize,
) -> Result<Vec<String>, String> {
    let list = obj
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the schema needs \"{field}\": an array of {what} names"))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for c in list {
        let name = c
            .as_str()
            .ok_or_else(|| format!("every {what} in \"{field}\" must be a string"))?
            .trim();
        if name.is_empty() || name.chars().count() > MAX_CLASS_LEN {
            return Err(format!(
                "{what} names must be 1 to {MAX_CLASS_LEN} characters"
            ));
        }
        if out.iter().any(|o| o == name) {
            return Err(format!("{what} {name:?} appears twice"));
        }
        out.push(name.to_owned());
    }
    if !(min..=MAX_CLASSES).contains(&out.len()) {
        return Err(format!(
            "\"{field}\" needs {min} to {MAX_CLASSES} {what} names, got {}",
            out.len()
        ));
    }
    Ok(out)
}

/// Refuses schema fields this type does not know, so a typo is not
/// silently ignored.
pub(crate) fn only_fields(obj: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown schema field {k:?}; this type takes {known:?}"
        )),
        None => Ok(()),
    }
}

/// An optional non-negative integer field.
pub(crate) fn opt_u64(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("\"{field}\" must be a non-negative integer")),
    }
}

/// A non-empty string field of an item, at most [`MAX_ITEM_TEXT`] bytes.
pub(crate) fn item_text<'a>(item: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match item.get(field) {
        Some(Value::String(t)) if t.len() > MAX_ITEM_TEXT => {
            Err(format!("\"{field}\" is longer than {MAX_ITEM_TEXT} bytes"))
        }
        Some(Value::String(t)) if t.trim().is_empty() => Err(format!("\"{field}\" is empty")),
        Some(Value::String(t)) => Ok(t),
        Some(_) => Err(format!("\"{field}\" must be a string")),
        None => Err(format!("missing field \"{field}\"")),
    }
}

/// A lowercase hex SHA-256 (an artifact reference), accepting uppercase.
pub(crate) fn sha256_ref(v: Option<&Value>, field: &str) -> Result<String, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("\"{field}\" must be the hex SHA-256 of a file"))?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "\"{field}\" must be 64 hex characters (a SHA-256), got {} characters",
            s.chars().count()
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// The object of an answer, or an error showing the expected shape.
pub(crate) fn answer_object<'a>(
    answer: &'a Value,
    shape: &str,
) -> Result<&'a Map<String, Value>, String> {
    answer
        .as_object()
        .ok_or_else(|| format!("an answer of this type is {shape}"))
}

/// A JSON number, written as an integer when it is one, so canonical
/// answers compare and hash the same however the client wrote `10.0`.
pub(crate) fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// F1 of `matches` between sets of sizes `a` and `b`; two empty sets agree.
pub(crate) fn f1(matches: usize, a: usize, b: usize) -> f64 {
    if a + b == 0 {
        1.0
    } else {
        2.0 * matches as f64 / (a + b) as f64
    }
}
