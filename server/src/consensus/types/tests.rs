//! Table-driven cases from `fixtures/types/*.json`, one file per type, all
//! run through [`check`]. Each file holds:
//!
//! - `task_type`, `schema`: a valid schema; `bad_schemas`: `{schema, error}`
//!   with a substring the error must contain;
//! - `items`: `{item, error?}`, valid when `error` is absent;
//! - `answers`: `{answer, item?, normalized}` or `{answer, item?, error}`;
//! - `agreement`: `{a, b, expected}` (canonical answers);
//! - `merge`: `{answers, expected}`;
//! - `decide`: `{answers, overlap, expected}` with `expected` one of
//!   `"resolved <result JSON> <accepted 1-based ids>"`, `"need <n>"`, `"none"`,
//!   `"review"`.

use std::path::PathBuf;

use sahel_protocol::api::TaskType;
use serde_json::Value;

use crate::consensus::{Decision, LabelSchema, Vote, decide, max_answers_for};

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/types");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn check(file: &str, case: &Value) {
    let task_type: TaskType = serde_json::from_value(case["task_type"].clone()).unwrap();
    let schema = LabelSchema::parse(task_type, &case["schema"])
        .unwrap_or_else(|e| panic!("{file}: the schema is refused: {e}"));
    assert_eq!(schema.task_type(), task_type, "{file}");
    // The canonical schema parses to itself.
    assert_eq!(
        LabelSchema::parse(task_type, &schema.to_json()).unwrap(),
        schema,
        "{file}"
    );
    for c in list(case, "bad_schemas") {
        let err = LabelSchema::parse(task_type, &c["schema"])
            .err()
            .unwrap_or_else(|| panic!("{file}: accepted bad schema {}", c["schema"]));
        let want = c["error"].as_str().unwrap();
        assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
    }
    for c in list(case, "items") {
        let got = schema.validate_item(&c["item"]);
        match c.get("error").and_then(Value::as_str) {
            None => assert!(got.is_ok(), "{file}: item {} refused: {got:?}", c["item"]),
            Some(want) => {
                let err = got.expect_err(&format!("{file}: accepted bad item {}", c["item"]));
                assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
            }
        }
    }
    for c in list(case, "answers") {
        let got = match c.get("item") {
            Some(item) => schema.normalize_answer_for(item, &c["answer"]),
            None => schema.normalize_answer(&c["answer"]),
        };
        match c.get("error").and_then(Value::as_str) {
            None => {
                let got = got.unwrap_or_else(|e| panic!("{file}: {} refused: {e}", c["answer"]));
                assert_eq!(got, c["normalized"], "{file}: {}", c["answer"]);
                // Canonical forms are fixed points.
                assert_eq!(schema.normalize_answer(&got).unwrap(), got, "{file}");
            }
            Some(want) => {
                let err = got.expect_err(&format!("{file}: accepted bad answer {}", c["answer"]));
                assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
            }
        }
    }
    for c in list(case, "agreement") {
        let want = c["expected"].as_f64().unwrap();
        for (a, b) in [(&c["a"], &c["b"]), (&c["b"], &c["a"])] {
            let got = schema.agreement(a, b);
            assert!(
                (got - want).abs() < 1e-9,
                "{file}: {a} vs {b}: {got} != {want}"
            );
        }
    }
    for c in list(case, "merge") {
        let answers: Vec<Value> = list(c, "answers").to_vec();
        assert_eq!(
            schema.kind().merge(&answers),
            c["expected"],
            "{file}: merge of {answers:?}"
        );
    }
    for c in list(case, "decide") {
        let votes: Vec<Vote> = list(c, "answers")
            .iter()
            .enumerate()
            .map(|(i, a)| Vote {
                answer_id: i as i64 + 1,
                answer: a.clone(),
            })
            .collect();
        let cap = max_answers_for(c["overlap"].as_u64().unwrap() as u32);
        let got = match decide(&schema, &votes, cap) {
            Decision::Resolved {
                result, accepted, ..
            } => format!("resolved {result} {accepted:?}"),
            Decision::NeedMore { needed } => format!("need {needed}"),
            Decision::NoConsensus { .. } => "none".into(),
            Decision::AwaitReview => "review".into(),
        };
        assert_eq!(got, c["expected"].as_str().unwrap(), "{file}: {votes:?}");
    }
}

#[test]
fn every_type_has_a_fixture_and_passes_it() {
    let all = fixtures();
    for t in TaskType::ALL {
        assert!(
            all.iter().any(|(_, c)| c["task_type"] == t.as_str()),
            "no fixture for {}",
            t.as_str()
        );
    }
    for (file, case) in &all {
        check(file, case);
    }
}

/// The budget bound for merged types: whatever the answers, an item's
/// accepted answers never exceed its overlap, and an item asks for more
/// only below the cap. Exhaustive over small answer sequences drawn from a
/// few representative answers per type.
#[test]
fn merged_types_never_accept_more_than_overlap() {
    use serde_json::json;
    let cases: Vec<(TaskType, Value, Vec<Value>)> = vec![
        (
            TaskType::MultiLabel,
            json!({"classes": ["a", "b", "c"]}),
            vec![
                json!({"labels": ["a"]}),
                json!({"labels": ["b"]}),
                json!({"labels": ["a", "b"]}),
                json!({"labels": []}),
            ],
        ),
        (
            TaskType::TextSpans,
            json!({"labels": ["PER", "LOC"]}),
            vec![
                json!({"spans": [{"start": 0, "end": 3, "label": "PER"}]}),
                json!({"spans": [{"start": 0, "end": 3, "label": "LOC"}]}),
                json!({"spans": [{"start": 0, "end": 3, "label": "PER"}, {"start": 5, "end": 8, "label": "LOC"}]}),
                json!({"spans": []}),
            ],
        ),
        (
            TaskType::BoundingBoxes,
            json!({"labels": ["car", "person"]}),
            vec![
                json!({"boxes": [{"x": 0, "y": 0, "w": 10, "h": 10, "label": "car"}]}),
                json!({"boxes": [{"x": 1, "y": 1, "w": 10, "h": 10, "label": "car"}]}),
                json!({"boxes": [{"x": 50, "y": 50, "w": 10, "h": 10, "label": "car"}]}),
                json!({"boxes": [{"x": 0, "y": 0, "w": 10, "h": 10, "label": "person"}]}),
            ],
        ),
    ];
    fn walk(schema: &LabelSchema, pool: &[Value], seq: &mut Vec<usize>, overlap: u32) {
        let cap = max_answers_for(overlap);
        let extend = |seq: &mut Vec<usize>| {
            for i in 0..pool.len() {
                seq.push(i);
                walk(schema, pool, seq, overlap);
                seq.pop();
            }
        };
        if (seq.len() as u32) < overlap {
            return extend(seq);
        }
        let votes: Vec<Vote> = seq
            .iter()
            .enumerate()
            .map(|(i, a)| Vote {
                answer_id: i as i64 + 1,
                answer: pool[*a].clone(),
            })
            .collect();
        match decide(schema, &votes, cap) {
            Decision::Resolved {
                accepted, rejected, ..
            } => {
                assert!(
                    !accepted.is_empty() && accepted.len() as u32 <= overlap,
                    "{seq:?}"
                );
                assert_eq!(accepted.len() + rejected.len(), seq.len(), "{seq:?}");
            }
            Decision::NeedMore { needed } => {
                assert_eq!(needed as usize, seq.len() + 1);
                assert!(needed <= cap);
                extend(seq);
            }
            Decision::NoConsensus { .. } => assert_eq!(seq.len() as u32, cap),
            Decision::AwaitReview => panic!("merged types are not reviewed"),
        }
    }
    for (t, schema, pool) in cases {
        let schema = LabelSchema::parse(t, &schema).unwrap();
        for overlap in 1..=3 {
            walk(&schema, &pool, &mut Vec::new(), overlap);
        }
    }
}
