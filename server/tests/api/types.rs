//! Every task type end to end through the API: schemas refused by name,
//! items refused per line, answers outside the schema refused with nothing
//! stored, merged results and the right answers paid; and review for the
//! reviewed types.

use sahel_protocol::Micros;
use sahel_protocol::api::{self, AnswerStatus, Role, TaskType};
use sahel_server::consensus::review::entity::{review, review_lease};
use sahel_server::projects::entity::item;
use sahel_server::queue::entity::answer;
use sahel_worker::client::Client;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use crate::helpers::*;

const REWARD: i64 = 10_000;

pub(crate) fn spec(
    task_type: TaskType,
    schema: Value,
    overlap: u32,
    items: i64,
) -> api::CreateProject {
    api::CreateProject {
        title: format!("A {} bounty", task_type.as_str()),
        instructions: "Do it well.".into(),
        task_type,
        schema,
        overlap,
        reward: Micros(REWARD),
        budget: Micros(REWARD * overlap as i64 * items),
        priority: 0,
        reviews_per_answer: None,
        review_reward: None,
        gold_review_every: None,
    }
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/web")
            .join(name),
    )
    .expect("fixture")
}

/// The SHA-256 of a fixture file, as its artifact is named.
fn fixture_sha(name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(fixture(name)))
}

/// A funded bounty of `task_type` with the given JSONL items.
pub(crate) fn bounty(
    app: &TestApp,
    req: api::CreateProject,
    items: &str,
) -> (i64, Client, api::Project) {
    let (buyer_id, b) = buyer(
        app,
        &format!("buyer-{}", sahel_server::accounts::random_hex(3)),
        100,
    );
    let p = b.create_project(&req).expect("project");
    // Image items name a real upload of the buyer's.
    b.upload_artifact(&fixture("gradient-200x100.png"), None)
        .expect("image upload");
    let report = b
        .import_items(p.id, "jsonl", items.as_bytes())
        .expect("import");
    assert!(report.errors.is_empty(), "{report:?}");
    let p = b.fund(p.id, "fund-1").expect("fund");
    (buyer_id, b, p)
}

fn submit(c: &Client, task: &api::Task, answer: Value) -> api::Submission {
    c.submit(&api::SubmitAnswer {
        lease_id: task.lease_id,
        answer,
        idempotency_key: format!("lease-{}", task.lease_id),
        signature: None,
    })
    .expect("answer accepted")
}

fn one_task(c: &Client, project: i64) -> api::Task {
    let mut tasks = c.lease(project, 1).expect("lease");
    assert_eq!(tasks.len(), 1, "a task is offered");
    tasks.remove(0)
}

fn item_row(app: &TestApp, id: i64) -> item::Model {
    app.block_on(item::Entity::find_by_id(id).one(app.db()))
        .unwrap()
        .unwrap()
}

fn answer_rows(app: &TestApp, project: i64) -> Vec<answer::Model> {
    app.block_on(
        answer::Entity::find()
            .filter(answer::Column::ProjectId.eq(project))
            .order_by_asc(answer::Column::Id)
            .all(app.db()),
    )
    .unwrap()
}

fn result_of(app: &TestApp, item_id: i64) -> Value {
    let it = item_row(app, item_id);
    serde_json::from_str(it.result.as_deref().expect("a result")).unwrap()
}

fn assert_invalid_answer(r: Result<api::Submission, sahel_worker::client::ApiError>, says: &str) {
    let e = r.expect_err("the answer is refused");
    assert_eq!(e.status, 422, "{e}");
    assert_eq!(e.code(), Some("invalid-answer"), "{e}");
    let detail = &e.problem.as_ref().unwrap().detail;
    assert!(detail.contains(says), "{detail:?} lacks {says:?}");
}

#[test]
fn bad_schemas_of_every_type_are_refused_by_name_and_create_nothing() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "schemas", 10);
    let cases = [
        (
            TaskType::MultiLabel,
            json!({"classes": ["a"], "max": 3}),
            "\"max\" must be 1 to the number of classes (1)",
        ),
        (
            TaskType::TextSpans,
            json!({"labels": []}),
            "\"labels\" needs 1 to 100 label names",
        ),
        (
            TaskType::BoundingBoxes,
            json!({"labels": ["car"], "iou_threshold": 2}),
            "\"iou_threshold\" must be a number above 0 and at most 1",
        ),
        (
            TaskType::Pairwise,
            json!({"allow_tie": "sometimes"}),
            "\"allow_tie\" must be true or false",
        ),
        (
            TaskType::FreeText,
            json!({"min_chars": 50, "max_chars": 10}),
            "\"min_chars\" (50) is above \"max_chars\" (10)",
        ),
        (
            TaskType::FileCollection,
            json!({"accept": ["wav"], "max_bytes": 10}),
            "\"wav\" is not a MIME type",
        ),
        (
            TaskType::Classification,
            json!({"classes": ["a", "b"], "colours": 2}),
            "unknown schema field \"colours\"",
        ),
    ];
    for (t, schema, says) in cases {
        let e = b
            .create_project(&spec(t, schema, 1, 1))
            .expect_err("refused");
        assert_eq!(e.status, 422, "{e}");
        assert_eq!(e.code(), Some("invalid-schema"), "{e}");
        let detail = &e.problem.as_ref().unwrap().detail;
        assert!(
            detail.contains(says),
            "{}: {detail:?} lacks {says:?}",
            t.as_str()
        );
    }
    // reviews_per_answer belongs to reviewed types only.
    let mut not_reviewed = spec(TaskType::Pairwise, json!({}), 1, 1);
    not_reviewed.reviews_per_answer = Some(3);
    assert_problem(
        b.create_project(&not_reviewed),
        422,
        "invalid-reviews-per-answer",
    );
    assert!(b.projects().unwrap().is_empty(), "nothing was created");
    // Each type's canonical schema comes back with its defaults.
    let p = b
        .create_project(&spec(
            TaskType::BoundingBoxes,
            json!({"labels": ["car"]}),
            1,
            1,
        ))
        .unwrap();
    assert_eq!(p.task_type, TaskType::BoundingBoxes);
    assert_eq!(p.schema, json!({"labels": ["car"], "iou_threshold": 0.5}));
    let p = b
        .create_project(&spec(TaskType::FreeText, json!({}), 1, 1))
        .unwrap();
    assert_eq!(p.schema, json!({"min_chars": 1, "max_chars": 10000}));
    assert_eq!(p.reviews_per_answer, 1);
}

#[test]
fn bad_items_are_refused_per_line_and_nothing_is_imported() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "items", 10);
    let image = "ab".repeat(32);
    let p = b
        .create_project(&spec(
            TaskType::BoundingBoxes,
            json!({"labels": ["car"]}),
            1,
            3,
        ))
        .unwrap();
    let lines = format!(
        "{{\"image\": \"{image}\", \"width\": 640, \"height\": 480}}\n\
         {{\"image\": \"nope\", \"width\": 640, \"height\": 480}}\n\
         {{\"image\": \"{image}\", \"width\": 640}}\n"
    );
    let e = b
        .import_items(p.id, "jsonl", lines.as_bytes())
        .expect_err("refused");
    assert_eq!(e.status, 422, "{e}");
    let problem = e.problem.unwrap();
    let errors: Vec<(u64, &str)> = problem
        .errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 2);
    assert!(
        errors[0].1.contains("\"image\" must be 64 hex characters"),
        "{errors:?}"
    );
    assert_eq!(errors[1].0, 3);
    assert!(
        errors[1].1.contains("\"height\" must be 1 to"),
        "{errors:?}"
    );
    assert_eq!(b.project(p.id).unwrap().item_count, 0);
    let stored = app
        .block_on(
            item::Entity::find()
                .filter(item::Column::ProjectId.eq(p.id))
                .count(app.db()),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

#[test]
fn multi_label_items_resolve_to_the_majority_and_pay_the_agreeing_answers() {
    let app = spawn_app();
    let schema = json!({"classes": ["animal", "person", "vehicle"]});
    let (_, _b, p) = bounty(
        &app,
        spec(TaskType::MultiLabel, schema, 3, 1),
        "{\"text\": \"a man walks his dog\"}\n",
    );
    let people: Vec<(i64, Client)> = (0..3)
        .map(|i| contributor(&app, &format!("ml{i}")))
        .collect();
    // An answer outside the schema is refused, names the problem and
    // stores nothing; the lease still takes a good answer.
    let t0 = one_task(&people[0].1, p.id);
    assert_invalid_answer(
        people[0].1.submit(&api::SubmitAnswer {
            lease_id: t0.lease_id,
            answer: json!({"labels": ["animal", "dog"]}),
            idempotency_key: "bad".into(),
            signature: None,
        }),
        "\"dog\" is not one of the classes",
    );
    assert_eq!(answers_in_db(&app, p.id), 0);
    let s0 = submit(&people[0].1, &t0, json!({"labels": ["person", "animal"]}));
    assert_eq!(
        s0.answer,
        json!({"labels": ["animal", "person"]}),
        "canonical form"
    );
    assert_eq!(s0.status, AnswerStatus::Pending);
    let t1 = one_task(&people[1].1, p.id);
    submit(&people[1].1, &t1, json!({"labels": ["person"]}));
    let t2 = one_task(&people[2].1, p.id);
    let last = submit(&people[2].1, &t2, json!({"labels": ["vehicle"]}));
    // person is in 2 of 3 answers, animal and vehicle in 1: the result is
    // [person]; Jaccard with it is 0.5, 1 and 0.
    assert_eq!(last.status, AnswerStatus::Rejected);
    let it = item_row(&app, t0.item_id);
    assert_eq!(it.status, "resolved");
    assert_eq!(
        result_of(&app, t0.item_id)["answer"],
        json!({"labels": ["person"]})
    );
    let statuses: Vec<String> = answer_rows(&app, p.id)
        .into_iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, ["accepted", "accepted", "rejected"]);
    assert_eq!(balance_of(&app, people[0].0), Micros(REWARD));
    assert_eq!(balance_of(&app, people[1].0), Micros(REWARD));
    assert_eq!(balance_of(&app, people[2].0), Micros(0));
    assert_eq!(escrow_of(&app, p.id), Micros(REWARD));
    assert_ledger_clean(&app);
}

#[test]
fn text_spans_are_checked_against_the_text_and_merged_by_majority() {
    let app = spawn_app();
    let (_, _b, p) = bounty(
        &app,
        spec(TaskType::TextSpans, json!({"labels": ["PER", "LOC"]}), 2, 1),
        "{\"text\": \"Ada Lovelace was born in London\"}\n",
    );
    let (a_id, a) = contributor(&app, "spans-a");
    let (b_id, b) = contributor(&app, "spans-b");
    let ta = one_task(&a, p.id);
    assert_invalid_answer(
        a.submit(&api::SubmitAnswer {
            lease_id: ta.lease_id,
            answer: json!({"spans": [
                {"start": 0, "end": 12, "label": "PER"},
                {"start": 30, "end": 40, "label": "LOC"}
            ]}),
            idempotency_key: "bad".into(),
            signature: None,
        }),
        "span 2 ends at 40, past the text's 31 characters",
    );
    assert_eq!(answers_in_db(&app, p.id), 0);
    submit(
        &a,
        &ta,
        json!({"spans": [{"start": 25, "end": 31, "label": "LOC"}, {"start": 0, "end": 12, "label": "PER"}]}),
    );
    let tb = one_task(&b, p.id);
    let sb = submit(
        &b,
        &tb,
        json!({"spans": [{"start": 0, "end": 12, "label": "PER"}]}),
    );
    // Only Ada is in both: F1 2/3 and 1 with the result, both paid.
    assert_eq!(sb.status, AnswerStatus::Accepted);
    let r = result_of(&app, ta.item_id);
    assert_eq!(
        r["answer"],
        json!({"spans": [{"start": 0, "end": 12, "label": "PER"}]})
    );
    assert_eq!(balance_of(&app, a_id), Micros(REWARD));
    assert_eq!(balance_of(&app, b_id), Micros(REWARD));
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_ledger_clean(&app);
}

#[test]
fn bounding_boxes_merge_to_the_median_and_a_stray_answer_is_not_paid() {
    let app = spawn_app();
    let image = fixture_sha("gradient-200x100.png");
    let (_, _b, p) = bounty(
        &app,
        spec(
            TaskType::BoundingBoxes,
            json!({"labels": ["car", "person"]}),
            2,
            1,
        ),
        &format!("{{\"image\": \"{image}\", \"width\": 640, \"height\": 480}}\n"),
    );
    let people: Vec<(i64, Client)> = (0..3)
        .map(|i| contributor(&app, &format!("bb{i}")))
        .collect();
    let t0 = one_task(&people[0].1, p.id);
    assert_invalid_answer(
        people[0].1.submit(&api::SubmitAnswer {
            lease_id: t0.lease_id,
            answer: json!({"boxes": [{"x": 600, "y": 0, "w": 50, "h": 10, "label": "car"}]}),
            idempotency_key: "bad".into(),
            signature: None,
        }),
        "box 1 reaches x = 650, past the image's width of 640",
    );
    submit(
        &people[0].1,
        &t0,
        json!({"boxes": [{"x": 10, "y": 10, "w": 100, "h": 50, "label": "car"}]}),
    );
    // Far from the first: no box in more than half, so one more is asked.
    let t1 = one_task(&people[1].1, p.id);
    let s1 = submit(
        &people[1].1,
        &t1,
        json!({"boxes": [{"x": 400, "y": 300, "w": 100, "h": 50, "label": "car"}]}),
    );
    assert_eq!(s1.status, AnswerStatus::Pending);
    assert_eq!(item_row(&app, t0.item_id).needed, 3);
    let t2 = one_task(&people[2].1, p.id);
    let s2 = submit(
        &people[2].1,
        &t2,
        json!({"boxes": [{"x": 14, "y": 10, "w": 100, "h": 54, "label": "car"}]}),
    );
    assert_eq!(s2.status, AnswerStatus::Accepted);
    let r = result_of(&app, t0.item_id);
    assert_eq!(
        r["answer"],
        json!({"boxes": [{"x": 12, "y": 10, "w": 100, "h": 52, "label": "car"}]})
    );
    let statuses: Vec<String> = answer_rows(&app, p.id)
        .into_iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, ["accepted", "rejected", "accepted"]);
    assert_eq!(balance_of(&app, people[0].0), Micros(REWARD));
    assert_eq!(balance_of(&app, people[1].0), Micros(0));
    assert_eq!(balance_of(&app, people[2].0), Micros(REWARD));
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_ledger_clean(&app);
}

#[test]
fn pairwise_preferences_are_voted_and_ties_refused_when_not_allowed() {
    let app = spawn_app();
    let (_, b, p) = bounty(
        &app,
        spec(TaskType::Pairwise, json!({"allow_tie": false}), 1, 1),
        "{\"prompt\": \"Greet me\", \"response_a\": \"Hi!\", \"response_b\": \"Go away.\"}\n",
    );
    let (c_id, c) = contributor(&app, "pair");
    let t = one_task(&c, p.id);
    assert_eq!(t.task_type, TaskType::Pairwise);
    assert_eq!(t.data["response_b"], "Go away.");
    assert_invalid_answer(
        c.submit(&api::SubmitAnswer {
            lease_id: t.lease_id,
            answer: json!({"choice": "tie"}),
            idempotency_key: "tie".into(),
            signature: None,
        }),
        "this bounty does not allow ties",
    );
    let s = submit(&c, &t, json!({"choice": "A"}));
    assert_eq!(s.answer, json!({"choice": "a"}));
    assert_eq!(s.status, AnswerStatus::Accepted);
    assert_eq!(result_of(&app, t.item_id)["answer"], json!({"choice": "a"}));
    assert_eq!(balance_of(&app, c_id), Micros(REWARD));
    assert_eq!(
        b.progress(p.id).unwrap().status,
        api::ProjectStatus::Completed
    );
    assert_ledger_clean(&app);
}

#[test]
fn quality_settings_are_refused_for_types_em_does_not_model() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "quality", 10);
    let p = b
        .create_project(&spec(
            TaskType::TextSpans,
            json!({"labels": ["PER", "LOC"]}),
            1,
            1,
        ))
        .unwrap();
    let r: Result<api::QualitySettings, _> = b.call(
        "PUT",
        &format!("/api/v1/projects/{}/quality/settings", p.id),
        Some(&json!({})),
    );
    let e = r.expect_err("refused");
    assert_eq!(e.status, 422, "{e}");
    assert_eq!(e.code(), Some("quality-not-supported"));
    assert!(e.problem.unwrap().detail.contains("text_spans"));
    for (task_type, schema) in [
        (TaskType::BoundingBoxes, json!({"labels": ["car"]})),
        (TaskType::FreeText, json!({})),
        (
            TaskType::FileCollection,
            json!({"accept": ["audio/wav"], "max_bytes": 1000000}),
        ),
    ] {
        let p = b.create_project(&spec(task_type, schema, 1, 1)).unwrap();
        let r: Result<api::QualitySettings, _> = b.call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            Some(&json!({})),
        );
        assert_problem(r, 422, "quality-not-supported");
    }
    let s: api::QualitySettings = b
        .call(
            "GET",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            None::<&()>,
        )
        .unwrap();
    assert_eq!(s.aggregation, "vote", "nothing was stored");
    // Pairwise choices are categories: the engine takes them.
    let pw = b
        .create_project(&spec(TaskType::Pairwise, json!({}), 3, 1))
        .unwrap();
    let s: api::QualitySettings = b
        .call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", pw.id),
            Some(&json!({"gold_every": 0})),
        )
        .expect("pairwise bounties may use EM");
    assert_eq!(s.aggregation, "em");
    // So are each class of a multi-label bounty: present or absent, so
    // chance is one half whatever the number of classes.
    let ml = b
        .create_project(&spec(
            TaskType::MultiLabel,
            json!({"classes": ["a", "b", "c", "d"]}),
            3,
            1,
        ))
        .unwrap();
    let s: api::QualitySettings = b
        .call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", ml.id),
            Some(&json!({"gold_every": 0})),
        )
        .expect("multi-label bounties may use EM");
    assert_eq!(s.aggregation, "em");
    assert!((s.accuracy_threshold - 0.625).abs() < 1e-12, "{s:?}");
    assert!(s.payment_rule.contains("Jaccard"), "{}", s.payment_rule);
}

#[test]
fn file_collection_answers_must_name_an_artifact_by_sha256() {
    let app = spawn_app();
    let (_, _b, p) = bounty(
        &app,
        spec(
            TaskType::FileCollection,
            json!({"accept": ["audio/wav"], "max_bytes": 1000000}),
            1,
            1,
        ),
        "{\"text\": \"Say: the quick brown fox\"}\n",
    );
    let (c_id, c) = contributor(&app, "files");
    let t = one_task(&c, p.id);
    assert_invalid_answer(
        c.submit(&api::SubmitAnswer {
            lease_id: t.lease_id,
            answer: json!({"artifact": "abc"}),
            idempotency_key: "bad".into(),
            signature: None,
        }),
        "\"artifact\" must be 64 hex characters (a SHA-256), got 3 characters",
    );
    assert_eq!(answers_in_db(&app, p.id), 0);
    // Files the bounty does not take, or nobody uploaded, are refused by
    // name; the contributor's own recording is taken.
    let image = c
        .upload_artifact(&fixture("gradient-200x100.png"), None)
        .unwrap();
    let refused = |answer: Value, code: &str| {
        assert_problem(
            c.submit(&api::SubmitAnswer {
                lease_id: t.lease_id,
                answer,
                idempotency_key: format!("bad-{code}"),
                signature: None,
            }),
            422,
            code,
        )
    };
    refused(json!({"artifact": image.sha256}), "artifact-type-refused");
    refused(json!({"artifact": "EF".repeat(32)}), "unknown-artifact");
    assert_eq!(answers_in_db(&app, p.id), 0);
    let wav = c.upload_artifact(&fixture("tone.wav"), Some(p.id)).unwrap();
    assert_eq!(wav.sha256, fixture_sha("tone.wav"));
    let s = submit(&c, &t, json!({"artifact": wav.sha256.to_uppercase()}));
    assert_eq!(s.answer, json!({"artifact": wav.sha256}));
    assert_eq!(s.status, AnswerStatus::PendingReview);
    assert_eq!(balance_of(&app, c_id), Micros(0), "unpaid until reviewed");
    // Another contributor listens and accepts: paid, and the item resolves
    // with the accepted recording.
    let (_, r) = contributor(&app, "listener");
    let l = review_lease(&r, p.id).expect("a review");
    assert_eq!(l.answer, json!({"artifact": wav.sha256}));
    // The reviewer may listen while holding the review; a stranger may not.
    let path = format!("/api/v1/artifacts/{}", wav.sha256);
    let heard = r.raw("GET", &path, None, "").unwrap();
    assert_eq!(heard.body, fixture("tone.wav"));
    let (_, stranger) = contributor(&app, "stranger");
    assert_eq!(stranger.raw("GET", &path, None, "").unwrap().status, 404);
    review(&r, l.lease_id, api::Verdict::Accept, Some("Clear."), "ok").unwrap();
    assert_eq!(balance_of(&app, c_id), Micros(REWARD));
    assert_eq!(
        result_of(&app, t.item_id)["answer"],
        json!([{"artifact": wav.sha256}])
    );
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_ledger_clean(&app);
}

// ------------------------------------------------------------------ review

pub(crate) fn review_lease(c: &Client, project: i64) -> Option<api::ReviewTask> {
    let r: api::ReviewLeaseResponse = c
        .call(
            "POST",
            &format!("/api/v1/projects/{project}/reviews/lease"),
            Some(&json!({})),
        )
        .expect("review lease");
    r.task
}

pub(crate) fn review(
    c: &Client,
    lease: i64,
    verdict: api::Verdict,
    reason: Option<&str>,
    key: &str,
) -> Result<api::GivenReview, sahel_worker::client::ApiError> {
    c.call(
        "POST",
        &format!("/api/v1/reviews/{lease}"),
        Some(&api::SubmitReview {
            verdict,
            reason: reason.map(str::to_owned),
            idempotency_key: key.into(),
        }),
    )
}

/// The answer a review lease is on (reviewers are not told).
fn leased_answer(app: &TestApp, lease: i64) -> i64 {
    app.block_on(review_lease::Entity::find_by_id(lease).one(app.db()))
        .unwrap()
        .expect("the review lease")
        .answer_id
}

fn answer_status(app: &TestApp, id: i64) -> String {
    app.block_on(answer::Entity::find_by_id(id).one(app.db()))
        .unwrap()
        .expect("the answer")
        .status
}

fn reviews_in_db(app: &TestApp, project: i64) -> u64 {
    app.block_on(
        review::Entity::find()
            .filter(review::Column::ProjectId.eq(project))
            .count(app.db()),
    )
    .unwrap()
}

#[test]
fn free_text_is_written_reviewed_and_a_rejected_slot_is_offered_again() {
    let app = spawn_app();
    let (buyer_id, b, p) = bounty(
        &app,
        spec(
            TaskType::FreeText,
            json!({"min_chars": 10, "max_chars": 200}),
            2,
            1,
        ),
        "{\"text\": \"Write a friendly greeting for a hotel guest\"}\n",
    );
    let (w1_id, w1) = contributor(&app, "writer1");
    let (w2_id, w2) = contributor(&app, "writer2");
    let (w3_id, w3) = contributor(&app, "writer3");
    let (r_id, r) = contributor(&app, "reviewer");
    // Nothing to review before anyone writes.
    assert!(review_lease(&r, p.id).is_none());
    let t1 = one_task(&w1, p.id);
    assert_invalid_answer(
        w1.submit(&api::SubmitAnswer {
            lease_id: t1.lease_id,
            answer: json!({"text": "Hi"}),
            idempotency_key: "short".into(),
            signature: None,
        }),
        "the text is 2 characters; this bounty asks for at least 10",
    );
    let s1 = submit(
        &w1,
        &t1,
        json!({"text": "Welcome! We are glad you are here."}),
    );
    assert_eq!(s1.status, AnswerStatus::PendingReview);
    let t2 = one_task(&w2, p.id);
    let s2 = submit(&w2, &t2, json!({"text": "asdf asdf asdf asdf"}));
    // Both slots are taken: nobody else can write now.
    assert!(w3.lease(p.id, 1).unwrap().is_empty());

    // The reviewer gets the oldest answer first, with its item.
    let l1 = review_lease(&r, p.id).expect("a review task");
    assert_eq!(leased_answer(&app, l1.lease_id), s1.id);
    assert_eq!(
        l1.answer,
        json!({"text": "Welcome! We are glad you are here."})
    );
    assert_eq!(
        l1.data["text"],
        "Write a friendly greeting for a hotel guest"
    );
    assert_eq!(l1.task_type, TaskType::FreeText);
    let done = review(&r, l1.lease_id, api::Verdict::Accept, None, "rev-1").unwrap();
    assert_eq!(answer_status(&app, s1.id), "accepted");
    // A retry with the same key changes nothing.
    let again = review(&r, l1.lease_id, api::Verdict::Accept, None, "rev-1").unwrap();
    assert_eq!(again.id, done.id);
    assert_eq!(balance_of(&app, w1_id), Micros(REWARD));

    let l2 = review_lease(&r, p.id).expect("the second answer");
    assert_eq!(leased_answer(&app, l2.lease_id), s2.id);
    // A rejection needs a reason; without one nothing is recorded.
    assert_problem(
        review(&r, l2.lease_id, api::Verdict::Reject, None, "rev-2"),
        422,
        "reason-required",
    );
    assert_eq!(reviews_in_db(&app, p.id), 1);
    let rejected = review(
        &r,
        l2.lease_id,
        api::Verdict::Reject,
        Some("Not a greeting: random letters."),
        "rev-2",
    )
    .unwrap();
    assert_eq!(answer_status(&app, s2.id), "rejected");
    assert_eq!(
        rejected.reason.as_deref(),
        Some("Not a greeting: random letters.")
    );
    assert_eq!(balance_of(&app, w2_id), Micros(0));
    // The author reads the verdict and the reason; nobody else's show.
    let mine: Vec<api::Review> = w2.call("GET", "/api/v1/me/reviews", None::<&()>).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].verdict, api::Verdict::Reject);
    assert_eq!(
        mine[0].reason.as_deref(),
        Some("Not a greeting: random letters.")
    );
    let others: Vec<api::Review> = w3.call("GET", "/api/v1/me/reviews", None::<&()>).unwrap();
    assert!(others.is_empty());
    let it = item_row(&app, t1.item_id);
    assert_eq!(
        (it.status.as_str(), it.needed),
        ("open", 3),
        "one more slot"
    );
    // The rejected writer cannot take the item again; a new writer can.
    assert!(w2.lease(p.id, 1).unwrap().is_empty());
    let t3 = one_task(&w3, p.id);
    assert_eq!(t3.item_id, t1.item_id);
    let s3 = submit(&w3, &t3, json!({"text": "Hello and welcome to our hotel!"}));
    let l3 = review_lease(&r, p.id).expect("the third answer");
    assert_eq!(leased_answer(&app, l3.lease_id), s3.id);
    let last = review(&r, l3.lease_id, api::Verdict::Accept, None, "rev-3").unwrap();
    assert_eq!(last.lease_id, l3.lease_id);
    assert_eq!(answer_status(&app, s3.id), "accepted");

    // Two accepted answers: the item resolves with both, in order.
    let it = item_row(&app, t1.item_id);
    assert_eq!(it.status, "resolved");
    let result = result_of(&app, t1.item_id);
    assert_eq!(
        result["answer"],
        json!([
            {"text": "Welcome! We are glad you are here."},
            {"text": "Hello and welcome to our hotel!"}
        ])
    );
    assert_eq!(result["answer_ids"], json!([s1.id, s3.id]));
    let statuses: Vec<(i64, String, i64)> = answer_rows(&app, p.id)
        .into_iter()
        .map(|a| (a.user_id, a.status, a.paid))
        .collect();
    assert_eq!(
        statuses,
        [
            (w1_id, "accepted".to_owned(), REWARD),
            (w2_id, "rejected".to_owned(), 0),
            (w3_id, "accepted".to_owned(), REWARD)
        ]
    );
    assert_eq!(balance_of(&app, w3_id), Micros(REWARD));
    assert_eq!(balance_of(&app, r_id), Micros(0), "reviews are unpaid");
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_eq!(
        balance_of(&app, buyer_id),
        Micros(Micros::from_tokens(100).unwrap().0 - 2 * REWARD)
    );
    assert_eq!(
        b.progress(p.id).unwrap().status,
        api::ProjectStatus::Completed
    );
    assert!(
        !app.queue_holds(p.id),
        "the review that completed the bounty unloads it from the queue"
    );
    assert_eq!(reviews_in_db(&app, p.id), 3);
    assert_ledger_clean(&app);
}

#[test]
fn a_reviewer_never_reviews_their_own_answer_or_the_same_answer_twice() {
    let app = spawn_app();
    let mut req = spec(TaskType::FreeText, json!({}), 1, 1);
    req.reviews_per_answer = Some(3);
    let (_, _b, p) = bounty(&app, req, "{\"text\": \"Describe your town\"}\n");
    assert_eq!(p.reviews_per_answer, 3);
    let (_, w) = contributor(&app, "author");
    let (_, r1) = contributor(&app, "rev1");
    let (_, r2) = contributor(&app, "rev2");
    let t = one_task(&w, p.id);
    let s = submit(&w, &t, json!({"text": "A quiet town by a river."}));
    // The author gets nothing to review: the only answer is theirs.
    assert!(review_lease(&w, p.id).is_none());
    let l = review_lease(&r1, p.id).expect("a review");
    assert_eq!(leased_answer(&app, l.lease_id), s.id);
    // While r1 holds a lease on it, r1 is not offered it again.
    assert!(review_lease(&r1, p.id).is_none());
    let first = review(&r1, l.lease_id, api::Verdict::Accept, None, "k1").unwrap();
    assert_eq!(first.verdict, api::Verdict::Accept);
    assert_eq!(
        answer_status(&app, s.id),
        "pending_review",
        "1 of 3 reviews"
    );
    // Reviewed once: never offered to r1 again.
    assert!(review_lease(&r1, p.id).is_none());
    // The lease is spent; another key on it is refused.
    assert_problem(
        review(
            &r1,
            l.lease_id,
            api::Verdict::Reject,
            Some("changed my mind"),
            "k2",
        ),
        409,
        "review-lease-used",
    );
    // Someone else's lease is not yours to use.
    let l2 = review_lease(&r2, p.id).expect("r2 may review");
    assert_problem(
        review(&r1, l2.lease_id, api::Verdict::Accept, None, "k3"),
        404,
        "review-lease-not-found",
    );
    review(
        &r2,
        l2.lease_id,
        api::Verdict::Reject,
        Some("Too short."),
        "k4",
    )
    .unwrap();
    assert_eq!(reviews_in_db(&app, p.id), 2);
    let rows = answer_rows(&app, p.id);
    assert_eq!(rows[0].status, "pending_review");
    // A classification bounty has no reviews.
    let (_, cp) = funded_project(&app, 1, 1);
    assert_problem(
        r1.call::<api::ReviewLeaseResponse>(
            "POST",
            &format!("/api/v1/projects/{}/reviews/lease", cp.id),
            Some(&json!({})),
        ),
        409,
        "not-reviewed",
    );
}

#[test]
fn the_openapi_document_describes_review_routes_and_every_task_type() {
    let app = spawn_app();
    let doc: Value = anon(&app)
        .call("GET", "/api/v1/openapi.json", None::<&()>)
        .expect("served without auth");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let review = &doc["paths"]["/api/v1/reviews/{id}"]["post"];
    assert_eq!(
        review["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SubmitReview"
    );
    assert!(doc["paths"]["/api/v1/projects/{id}/reviews/lease"]["post"].is_object());
    let types = doc["components"]["schemas"]["TaskType"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    for t in TaskType::ALL {
        assert!(types.contains(&json!(t.as_str())), "{types:?}");
    }
    let review_schema = &doc["components"]["schemas"]["Review"]["properties"];
    assert!(
        review_schema["answer_status"].is_object(),
        "{review_schema}"
    );
    // What a reviewer receives never names the answer nor its fate: gold
    // reviews must look like the rest.
    for name in ["ReviewTask", "GivenReview"] {
        let props = doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap();
        assert!(
            !props.contains_key("answer_id") && !props.contains_key("answer_status"),
            "{name}: {props:?}"
        );
    }
}

/// Leases with retries while a flushed Redis queue is rebuilt (503).
fn lease_when_ready(c: &Client, project: i64) -> Vec<api::Task> {
    for _ in 0..100 {
        match c.lease(project, 1) {
            Ok(t) => return t,
            Err(e) if e.status == 503 => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the queue never came back");
}

#[test]
fn a_rebuilt_queue_keeps_reviewed_answers_slots_and_the_reopened_one() {
    let mut app = spawn_app();
    let (_, _b, p) = bounty(
        &app,
        spec(TaskType::FreeText, json!({"min_chars": 5}), 2, 1),
        "{\"text\": \"Name a river\"}\n",
    );
    let (_, w1) = contributor(&app, "q-w1");
    let (_, w2) = contributor(&app, "q-w2");
    let (_, w3) = contributor(&app, "q-w3");
    let (_, r) = contributor(&app, "q-rev");
    let t1 = one_task(&w1, p.id);
    submit(&w1, &t1, json!({"text": "The Niger"}));
    let t2 = one_task(&w2, p.id);
    submit(&w2, &t2, json!({"text": "zzzzzz"}));
    let l1 = review_lease(&r, p.id).unwrap();
    review(&r, l1.lease_id, api::Verdict::Accept, None, "a").unwrap();
    let l2 = review_lease(&r, p.id).unwrap();
    review(
        &r,
        l2.lease_id,
        api::Verdict::Reject,
        Some("Not a river."),
        "b",
    )
    .unwrap();
    // Lose the queue's state: it is rebuilt from the rows.
    if app.uses_redis() {
        app.flush_redis();
    } else {
        app.restart();
    }
    let at = |c: &Client| c.with_base(&app.address);
    assert!(
        lease_when_ready(&at(&w1), p.id).is_empty(),
        "accepted author"
    );
    assert!(
        lease_when_ready(&at(&w2), p.id).is_empty(),
        "rejected author"
    );
    let t3 = lease_when_ready(&at(&w3), p.id);
    assert_eq!(t3.len(), 1, "the reopened slot is offered");
    assert_eq!(t3[0].item_id, t1.item_id);
}

#[test]
fn reviewers_racing_for_one_answer_get_one_lease_between_them() {
    let app = spawn_app();
    let (_, _b, p) = bounty(
        &app,
        spec(TaskType::FreeText, json!({}), 1, 1),
        "{\"text\": \"Describe the sea\"}\n",
    );
    let (_, w) = contributor(&app, "race-author");
    let t = one_task(&w, p.id);
    submit(&w, &t, json!({"text": "Grey and wide."}));
    let reviewers: Vec<Client> = (0..6)
        .map(|i| contributor(&app, &format!("race-rev{i}")).1)
        .collect();
    let barrier = std::sync::Barrier::new(reviewers.len());
    let granted: Vec<Option<api::ReviewTask>> = std::thread::scope(|s| {
        let handles: Vec<_> = reviewers
            .iter()
            .map(|c| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    review_lease(c, p.id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(granted.iter().flatten().count(), 1, "{granted:?}");
    let leases = app
        .block_on(
            sahel_server::consensus::review::entity::review_lease::Entity::find()
                .filter(
                    sahel_server::consensus::review::entity::review_lease::Column::ProjectId
                        .eq(p.id),
                )
                .count(app.db()),
        )
        .unwrap();
    assert_eq!(leases, 1);
}

#[test]
fn a_reviewer_may_not_answer_an_item_they_judged_nor_a_buyer_review_their_own_bounty() {
    let app = spawn_app();
    // A buyer who also labels: still not a reviewer of their own bounty.
    let (owner, b) = sign_up(&app, "both@test.sahel", &[Role::Buyer, Role::Contributor]);
    app.deposit(owner.id, Micros::from_tokens(10).unwrap());
    let p = b
        .create_project(&spec(
            TaskType::FreeText,
            json!({"min_chars": 2, "max_chars": 200}),
            1,
            2,
        ))
        .unwrap();
    b.import_items(
        p.id,
        "jsonl",
        b"{\"text\": \"Greet a friend.\"}\n{\"text\": \"Thank a teacher.\"}\n",
    )
    .unwrap();
    let p = b.fund(p.id, "fund").unwrap();
    let (_, writer) = contributor(&app, "honest");
    let t = one_task(&writer, p.id);
    submit(&writer, &t, json!({"text": "Hello, my friend!"}));
    // The buyer does not judge answers to their own bounty.
    let refused = b.call::<api::ReviewLeaseResponse>(
        "POST",
        &format!("/api/v1/projects/{}/reviews/lease", p.id),
        Some(&json!({})),
    );
    assert_problem(refused, 403, "own-bounty");
    // A reviewer rejects it, then cannot take the reopened item to
    // resubmit the text they saw: only the other item is theirs.
    let (_, thief) = contributor(&app, "thief");
    let l = review_lease(&thief, p.id).expect("a review");
    review(
        &thief,
        l.lease_id,
        api::Verdict::Reject,
        Some("Too short."),
        "rej",
    )
    .unwrap();
    let offered: Vec<i64> = lease_when_ready(&thief, p.id)
        .iter()
        .map(|t| t.item_id)
        .collect();
    assert!(!offered.contains(&t.item_id), "{offered:?}");
    assert_eq!(offered.len(), 1, "the other item is still theirs to answer");
    let held: Vec<api::LeaseInfo> = thief.call("GET", "/api/v1/me/leases", None::<&()>).unwrap();
    assert!(held.iter().all(|l| l.item_id != t.item_id));
}
