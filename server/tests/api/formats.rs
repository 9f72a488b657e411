//! Import and export formats over HTTP: Label Studio tasks in, results out
//! as JSONL, CSV, Label Studio JSON and COCO, streamed page by page.

use sahel_protocol::api;
use serde_json::{Value, json};

use crate::helpers::*;

/// A finished bounty of `n` items, each answered once with its truth.
fn finished(app: &TestApp, n: usize) -> (sahel_worker::client::Client, api::Project) {
    let (b, p) = funded_project(app, n, 1);
    let (_, c) = contributor(app, "worker");
    work_until_done(&[c], p.id);
    assert_eq!(items_with_status(app, p.id, "resolved"), n as u64);
    (b, p)
}

#[test]
fn label_studio_tasks_import_with_hints_and_bad_tasks_are_reported_by_number() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "ls-buyer", 1_000);
    let p = b.create_project(&project_spec(1, 10_000, 30_000)).unwrap();
    let tasks = json!([
        {"id": 11, "data": {"text": "great"},
         "predictions": [{"result": [{"type": "choices", "value": {"choices": ["positive"]}}]}]},
        {"data": {"text": 3}},
        {"data": {"text": "meh"}},
        {"meta": {}}
    ]);
    // One bad task refuses the whole file, naming each bad task by number.
    let refused = b
        .import_items(p.id, "label_studio", tasks.to_string().as_bytes())
        .unwrap_err();
    let lines: Vec<u64> = refused
        .problem
        .as_ref()
        .unwrap()
        .errors
        .iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(lines, vec![2, 4], "{refused:?}");
    assert_eq!(b.progress(p.id).unwrap().items_total, 0);

    let good = json!([tasks[0], tasks[2]]);
    let report = b
        .import_items(p.id, "label_studio", good.to_string().as_bytes())
        .unwrap();
    assert_eq!(report.imported, 2);
    b.fund(p.id, "fund").unwrap();
    let (_, c) = contributor(&app, "ls-worker");
    let task = c.lease(p.id, 1).unwrap().remove(0);
    assert_eq!(task.data["text"], "great");
    assert_eq!(
        task.data["hints"][0][0]["value"]["choices"],
        json!(["positive"])
    );
    // A hint is a suggestion: the item still waits for a real answer.
    assert_eq!(answers_in_db(&app, p.id), 0);
}

#[test]
fn exports_stream_every_resolved_item_in_each_format() {
    let app = spawn_app();
    // More items than one export page, so the stream crosses pages.
    let n = 520;
    let (b, p) = finished(&app, n);

    let jsonl = b.project_export_as(p.id, "jsonl").unwrap();
    let lines: Vec<Value> = jsonl
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n);
    let ids: std::collections::BTreeSet<i64> = lines
        .iter()
        .map(|l| l["item_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "no item twice");
    for l in &lines {
        assert_eq!(l["result"]["answer"]["label"], l["data"]["truth"]);
        assert_eq!(l["answers"].as_array().unwrap().len(), 1);
        assert!(
            l["answers"][0]["signature"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }

    let table = b.project_export_as(p.id, "csv").unwrap().text();
    let mut r = csv::Reader::from_reader(table.as_bytes());
    assert_eq!(
        r.headers().unwrap(),
        vec!["item_id", "text", "truth", "result", "agreement", "answers"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|row| row[2] == row[3] && &row[4] == "1.0"));

    let ls: Value =
        serde_json::from_str(&b.project_export_as(p.id, "label_studio").unwrap().text()).unwrap();
    let tasks = ls.as_array().unwrap();
    assert_eq!(tasks.len(), n);
    let first = &tasks[0];
    assert_eq!(
        first["annotations"][0]["result"][0]["value"]["choices"][0],
        first["data"]["truth"]
    );

    assert_problem(
        b.project_export_as(p.id, "coco"),
        422,
        "format-not-for-type",
    );
    assert_problem(b.project_export_as(p.id, "xml"), 422, "unknown-format");
    let (_, stranger) = buyer(&app, "other-buyer", 10);
    assert_problem(
        stranger.project_export_as(p.id, "csv"),
        403,
        "not-project-owner",
    );
}
