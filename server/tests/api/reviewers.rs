//! Reviewers are paid per review and measured by gold reviews: answers
//! whose right verdict the buyer knows, served like any other review.

use std::collections::BTreeSet;

use sahel_protocol::Micros;
use sahel_protocol::api::{self, TaskType, Verdict};
use sahel_server::consensus::review::entity::review;
use sahel_server::consensus::review::gold::entity::gold_verdict;
use sahel_server::queue::entity::answer;
use sahel_worker::client::Client;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::types::{bounty, fixture, review, spec};

const REWARD: i64 = 10_000;
const REVIEW_REWARD: i64 = 2_000;
const ITEMS: i64 = 60;
const GOOD: &str = "Welcome to our hotel, we hope you enjoy your stay.";
const SPAM: &str = "asdf qwer zxcv asdf qwer";

fn reviewed_spec(budget: i64) -> api::CreateProject {
    let mut req = spec(TaskType::FreeText, json!({"min_chars": 10}), 1, ITEMS);
    req.review_reward = Some(Micros(REVIEW_REWARD));
    req.gold_review_every = Some(2);
    req.budget = Micros(budget);
    req
}

fn add_gold(
    b: &Client,
    project: i64,
    item_id: i64,
    text: &str,
    verdict: Verdict,
) -> api::GoldReview {
    b.call(
        "POST",
        &format!("/api/v1/projects/{project}/gold-reviews"),
        Some(&api::NewGoldReview {
            item_id,
            answer: json!({ "text": text }),
            verdict,
            reason: Some("known".into()),
        }),
    )
    .expect("gold review")
}

fn item_ids(app: &TestApp, project: i64) -> Vec<i64> {
    app.block_on(
        sahel_server::projects::entity::item::Entity::find()
            .filter(sahel_server::projects::entity::item::Column::ProjectId.eq(project))
            .all(app.db()),
    )
    .unwrap()
    .into_iter()
    .map(|i| i.id)
    .collect()
}

/// A draft writing bounty of `ITEMS` prompts with 12 known good and 12
/// known bad gold reviews; returns it and its item ids.
fn draft_with_gold(app: &TestApp, b: &Client, budget: i64) -> (api::Project, Vec<i64>) {
    let p = b.create_project(&reviewed_spec(budget)).unwrap();
    let body: String = (0..ITEMS)
        .map(|i| format!("{}\n", json!({ "text": format!("Greet guest {i}") })))
        .collect();
    b.import_items(p.id, "jsonl", body.as_bytes()).unwrap();
    let items = item_ids(app, p.id);
    for i in 0..12 {
        add_gold(b, p.id, items[i], &format!("{GOOD} ({i})"), Verdict::Accept);
        add_gold(
            b,
            p.id,
            items[i + 12],
            &format!("{SPAM} {i}"),
            Verdict::Reject,
        );
    }
    (p, items)
}

fn reviewers(b: &Client, project: i64) -> Vec<api::ReviewerStanding> {
    b.call(
        "GET",
        &format!("/api/v1/projects/{project}/reviewers"),
        None::<&()>,
    )
    .unwrap()
}

fn gold_verdicts(app: &TestApp, reviewer: i64) -> Vec<gold_verdict::Model> {
    app.block_on(
        gold_verdict::Entity::find()
            .filter(gold_verdict::Column::ReviewerId.eq(reviewer))
            .all(app.db()),
    )
    .unwrap()
}

fn real_reviews(app: &TestApp, reviewer: i64) -> u64 {
    app.block_on(
        review::Entity::find()
            .filter(review::Column::ReviewerId.eq(reviewer))
            .count(app.db()),
    )
    .unwrap()
}

#[test]
fn review_settings_are_refused_on_types_that_are_not_reviewed_and_create_nothing() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "plain-buyer", 10);
    let mut req = spec(
        TaskType::Classification,
        json!({"classes": ["a", "b"]}),
        1,
        1,
    );
    req.review_reward = Some(Micros(1));
    assert_problem(b.create_project(&req), 422, "invalid-review-reward");
    req.review_reward = None;
    req.gold_review_every = Some(5);
    assert_problem(b.create_project(&req), 422, "invalid-gold-review-every");
    let mut req = reviewed_spec(0);
    req.gold_review_every = Some(1);
    assert_problem(b.create_project(&req), 422, "invalid-gold-review-every");
    let mut req = reviewed_spec(0);
    req.review_reward = Some(Micros(-1));
    assert_problem(b.create_project(&req), 422, "invalid-review-reward");
    let projects = app
        .block_on(sahel_server::projects::entity::project::Entity::find().count(app.db()))
        .unwrap();
    assert_eq!(projects, 0);
}

/// Writers answer every item, half of them with spam. A careful reviewer
/// judges by the text; a rubber stamp accepts everything. One review in
/// two may be gold (12 known good, 12 known bad answers). Every review is
/// paid; the stamp is suspended by its gold record, the careful reviewer
/// never is, and nothing a reviewer receives tells gold apart.
#[test]
fn reviewers_are_paid_per_review_and_a_rubber_stamp_is_caught_by_gold_reviews() {
    let app = TestApp::spawn(|c| c.gold_seed = Some(3));
    let (buyer_id, b) = buyer(&app, "review-buyer", 100);
    let answers_cost = REWARD * ITEMS;
    // One review of each of the item's `max_answers` (1 at overlap 1).
    let reviews_cost = REVIEW_REWARD * ITEMS;
    // Gold reviews at one in two: one per real review at most.
    let gold_reserve = REVIEW_REWARD * ITEMS;
    let budget = answers_cost + reviews_cost + gold_reserve;
    // Bad gold reviews are refused and store nothing.
    let p = b.create_project(&reviewed_spec(budget - 1)).unwrap();
    assert_eq!(
        (p.review_reward, p.gold_review_every),
        (Micros(REVIEW_REWARD), 2)
    );
    b.import_items(p.id, "jsonl", b"{\"text\": \"Greet a guest\"}\n")
        .unwrap();
    let items = item_ids(&app, p.id);
    assert_problem(
        b.call::<api::GoldReview>(
            "POST",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            Some(&json!({"item_id": items[0], "answer": {"text": "short"}, "verdict": "reject"})),
        ),
        422,
        "invalid-answer",
    );
    assert_problem(
        b.call::<api::GoldReview>(
            "POST",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            Some(&json!({"item_id": -5, "answer": {"text": GOOD}, "verdict": "accept"})),
        ),
        404,
        "item-not-found",
    );
    let (_, outsider) = contributor(&app, "outsider");
    assert_problem(
        outsider.call::<api::GoldReview>(
            "POST",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            Some(&json!({"item_id": items[0], "answer": {"text": GOOD}, "verdict": "accept"})),
        ),
        // A draft is not shown to anyone but its buyer.
        404,
        "project-not-found",
    );
    let gold: Vec<api::GoldReview> = b
        .call(
            "GET",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            None::<&()>,
        )
        .unwrap();
    assert!(gold.is_empty(), "{gold:?}");

    // Funding must cover every answer, a paid review of each, and the
    // gold reviews' reserve: one micro short is refused.
    let (p, _) = draft_with_gold(&app, &b, budget - 1);
    let short = b.fund(p.id, "fund-short").unwrap_err();
    assert_eq!(short.code(), Some("budget-too-small"), "{short}");
    assert!(short.to_string().contains("gold"), "{short}");
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    let (p, _) = draft_with_gold(&app, &b, budget);
    let p = b.fund(p.id, "fund-1").expect("the exact budget funds");
    assert_eq!(escrow_of(&app, p.id), Micros(budget));

    // Every item gets one answer; every other one is spam.
    let writers: Vec<(i64, Client)> = (0..4)
        .map(|i| contributor(&app, &format!("writer{i}")))
        .collect();
    let mut written = 0;
    'write: for round in 0.. {
        for (_, w) in &writers {
            let tasks = w.lease(p.id, 5).unwrap();
            if tasks.is_empty() && round > 0 {
                break 'write;
            }
            for t in tasks {
                let text = if t.item_id % 2 == 0 { GOOD } else { SPAM };
                w.submit(&api::SubmitAnswer {
                    lease_id: t.lease_id,
                    answer: json!({ "text": format!("{text} #{}", t.item_id) }),
                    idempotency_key: format!("w-{}", t.lease_id),
                    signature: None,
                })
                .unwrap();
                written += 1;
            }
        }
        assert!(round < 50);
    }
    assert_eq!(written, ITEMS);

    let (careful_id, careful) = contributor(&app, "careful");
    let (stamp_id, stamp) = contributor(&app, "stamp");
    let mut keys = BTreeSet::new();
    let mut stamp_refusal = None;
    let mut careful_done = false;
    for step in 0..200 {
        if careful_done && stamp_refusal.is_some() {
            break;
        }
        let turn_careful = step % 2 == 0;
        if turn_careful && careful_done || !turn_careful && stamp_refusal.is_some() {
            continue;
        }
        let (c, name) = if turn_careful {
            (&careful, "careful")
        } else {
            (&stamp, "stamp")
        };
        let raw = c
            .raw(
                "POST",
                &format!("/api/v1/projects/{}/reviews/lease", p.id),
                Some(b"{}"),
                "application/json",
            )
            .unwrap();
        if raw.status == 403 {
            assert!(
                !turn_careful,
                "the careful reviewer was refused: {}",
                raw.text()
            );
            let v: Value = serde_json::from_str(&raw.text()).unwrap();
            assert_eq!(v["type"], "urn:sahel:problem:review-suspended", "{v}");
            stamp_refusal = Some(v);
            continue;
        }
        assert_eq!(raw.status, 200, "{}", raw.text());
        let v: Value = serde_json::from_str(&raw.text()).unwrap();
        if v["task"].is_null() {
            if turn_careful {
                careful_done = true;
            } else {
                panic!("the stamp ran out of reviews before being caught");
            }
            continue;
        }
        // Gold or not, a task has the same fields.
        let fields: BTreeSet<&str> = v["task"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.insert(fields.into_iter().map(str::to_owned).collect::<Vec<_>>());
        let task: api::ReviewTask = serde_json::from_value(v["task"].clone()).unwrap();
        let text = task.answer["text"].as_str().unwrap().to_owned();
        let verdict = if turn_careful && text.contains("asdf") {
            Verdict::Reject
        } else {
            Verdict::Accept
        };
        let reason = (verdict == Verdict::Reject).then_some("Random letters.");
        let key = format!("{name}-{}", task.lease_id);
        let given = match review(c, task.lease_id, verdict, reason, &key) {
            Ok(g) => g,
            Err(e) if !turn_careful && e.code() == Some("review-lease-released") => continue,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((given.lease_id, given.verdict), (task.lease_id, verdict));
        // A retry returns the same review and pays nothing more.
        let again = review(c, task.lease_id, verdict, reason, &key).unwrap();
        assert_eq!(again.id, given.id);
    }
    assert_eq!(keys.len(), 1, "gold and real tasks differ: {keys:?}");
    let refusal = stamp_refusal.expect("the rubber stamp was suspended");
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("gold reviews right"),
        "{refusal}"
    );

    let stamp_gold = gold_verdicts(&app, stamp_id);
    let careful_gold = gold_verdicts(&app, careful_id);
    assert!(
        (8..=20).contains(&stamp_gold.len()),
        "suspended after {} gold reviews",
        stamp_gold.len()
    );
    assert!(!careful_gold.is_empty());
    assert!(careful_gold.iter().all(|v| v.correct));
    assert!(stamp_gold.iter().any(|v| !v.correct));
    let standings = reviewers(&b, p.id);
    let of = |id: i64| standings.iter().find(|s| s.user_id == id).unwrap().clone();
    let (s_stamp, s_careful) = (of(stamp_id), of(careful_id));
    assert!(s_stamp.suspended && !s_careful.suspended, "{standings:?}");
    assert!(
        s_stamp
            .suspension_reason
            .unwrap()
            .contains("gold reviews right")
    );
    assert_eq!(s_stamp.gold_total as usize, stamp_gold.len());
    assert_eq!(
        s_careful.gold_correct as usize,
        careful_gold.len(),
        "{s_careful:?}"
    );
    assert!(s_careful.accuracy_lower > s_stamp.accuracy_lower);

    // Paid per review, gold ones too, exactly once each.
    for (id, gold) in [(stamp_id, &stamp_gold), (careful_id, &careful_gold)] {
        let given = real_reviews(&app, id) + gold.len() as u64;
        let s = of(id);
        assert_eq!(s.reviews as u64, given);
        assert_eq!(balance_of(&app, id), Micros(REVIEW_REWARD * given as i64));
    }
    // Gold never became an answer: the answers are the writers' alone,
    // and each was decided by real reviews only.
    let rows = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(p.id))
                .all(app.db()),
        )
        .unwrap();
    assert_eq!(rows.len() as i64, ITEMS);
    assert!(
        rows.iter()
            .all(|a| writers.iter().any(|(w, _)| *w == a.user_id))
    );
    let gold_list: Vec<api::GoldReview> = b
        .call(
            "GET",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            None::<&()>,
        )
        .unwrap();
    assert_eq!(gold_list.len(), 24);
    assert_eq!(
        gold_list.iter().map(|g| g.judged as usize).sum::<usize>(),
        stamp_gold.len() + careful_gold.len()
    );
    // The escrow paid exactly the accepted answers and every review.
    let paid_answers: i64 = rows.iter().map(|a| a.paid).sum();
    let reviews_paid = balance_of(&app, stamp_id).0 + balance_of(&app, careful_id).0;
    assert_eq!(
        escrow_of(&app, p.id),
        Micros(budget - paid_answers - reviews_paid)
    );
    assert!(escrow_of(&app, p.id).0 >= 0);
    assert_eq!(
        balance_of(&app, buyer_id),
        Micros(Micros::from_tokens(100).unwrap().0 - budget)
    );
    assert_ledger_clean(&app);
}

/// A gold review of a file-collection bounty names a file of the buyer's:
/// the reviewer holding it may download that file, as with a real answer,
/// and nobody else may.
#[test]
fn a_gold_reviews_file_is_readable_by_its_reviewer_only() {
    let app = TestApp::spawn(|c| c.gold_seed = Some(5));
    let mut req = spec(
        TaskType::FileCollection,
        json!({"accept": ["audio/wav", "image/png"], "max_bytes": 1_000_000}),
        1,
        6,
    );
    req.gold_review_every = Some(2);
    let body: String = (0..6)
        .map(|i| format!("{}\n", json!({ "text": format!("Say {i}") })))
        .collect();
    let (_, b, p) = bounty(&app, req, &body);
    // `bounty` uploaded the buyer's image; it becomes a known bad answer.
    let png = sha256_hex(&fixture("gradient-200x100.png"));
    let items = item_ids(&app, p.id);
    let _: api::GoldReview = b
        .call(
            "POST",
            &format!("/api/v1/projects/{}/gold-reviews", p.id),
            Some(&json!({"item_id": items[0], "answer": {"artifact": png}, "verdict": "reject"})),
        )
        .unwrap();
    let (_, w) = contributor(&app, "speaker");
    let wav = w.upload_artifact(&fixture("tone.wav"), Some(p.id)).unwrap();
    for t in w.lease(p.id, 6).unwrap() {
        w.submit(&api::SubmitAnswer {
            lease_id: t.lease_id,
            answer: json!({ "artifact": wav.sha256 }),
            idempotency_key: format!("w-{}", t.lease_id),
            signature: None,
        })
        .unwrap();
    }
    let (_, r) = contributor(&app, "listener");
    let (_, stranger) = contributor(&app, "stranger");
    let path = format!("/api/v1/artifacts/{png}");
    assert_eq!(r.raw("GET", &path, None, "").unwrap().status, 404);
    let mut heard_gold = false;
    for _ in 0..6 {
        let Some(task) = crate::types::review_lease(&r, p.id) else {
            break;
        };
        if task.answer["artifact"] == png {
            let got = r.raw("GET", &path, None, "").unwrap();
            assert_eq!(got.body, fixture("gradient-200x100.png"));
            assert_eq!(stranger.raw("GET", &path, None, "").unwrap().status, 404);
            heard_gold = true;
        }
        let reason = (task.answer["artifact"] == png).then_some("Not a recording.");
        let verdict = if reason.is_some() {
            Verdict::Reject
        } else {
            Verdict::Accept
        };
        review(
            &r,
            task.lease_id,
            verdict,
            reason,
            &format!("k{}", task.lease_id),
        )
        .unwrap();
    }
    assert!(heard_gold, "the gold review was served");
    // Its lease spent, the reviewer no longer reads the buyer's file.
    assert_eq!(r.raw("GET", &path, None, "").unwrap().status, 404);
    assert_ledger_clean(&app);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_skipped_review_goes_to_someone_else_and_not_back_to_the_skipper() {
    let app = spawn_app();
    let (_, _b, p) = bounty(
        &app,
        spec(TaskType::FreeText, json!({}), 1, 1),
        "{\"text\": \"Describe a sunrise\"}\n",
    );
    let (_, w) = contributor(&app, "writer");
    let t = w.lease(p.id, 1).unwrap().remove(0);
    w.submit(&api::SubmitAnswer {
        lease_id: t.lease_id,
        answer: json!({"text": "Gold light over a grey sea."}),
        idempotency_key: "w".into(),
        signature: None,
    })
    .unwrap();
    let (_, r1) = contributor(&app, "skipper");
    let (_, r2) = contributor(&app, "taker");
    let l1 = crate::types::review_lease(&r1, p.id).expect("a review");
    // Held by r1: nobody else gets it.
    assert!(crate::types::review_lease(&r2, p.id).is_none());
    let release =
        |c: &Client, lease: i64| c.raw("DELETE", &format!("/api/v1/reviews/{lease}"), None, "");
    assert_eq!(
        release(&r2, l1.lease_id).unwrap().status,
        404,
        "not r2's lease"
    );
    assert_eq!(release(&r1, l1.lease_id).unwrap().status, 204);
    assert_eq!(
        release(&r1, l1.lease_id).unwrap().status,
        204,
        "again: no change"
    );
    assert_problem(
        review(&r1, l1.lease_id, Verdict::Accept, None, "late"),
        410,
        "review-lease-released",
    );
    // Skipped: never offered to r1 again, offered to r2 now.
    assert!(crate::types::review_lease(&r1, p.id).is_none());
    let l2 = crate::types::review_lease(&r2, p.id).expect("the skipped answer");
    assert_eq!(l2.item_id, l1.item_id);
    review(&r2, l2.lease_id, Verdict::Accept, None, "take").unwrap();
    let used = release(&r2, l2.lease_id).unwrap();
    assert_eq!(used.status, 409, "{}", used.text());
    let reviews = app
        .block_on(
            review::Entity::find()
                .filter(review::Column::ProjectId.eq(p.id))
                .all(app.db()),
        )
        .unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].lease_id, l2.lease_id);
    assert_ledger_clean(&app);
}

/// Nobody judges and answers one item, gold or not: a reviewer is never
/// served a gold review on an item they answered.
#[test]
fn no_gold_review_is_served_on_an_item_its_reviewer_answered() {
    let app = TestApp::spawn(|c| c.gold_seed = Some(9));
    let mut req = spec(TaskType::FreeText, json!({}), 1, 6);
    req.gold_review_every = Some(2);
    let body: String = (0..6)
        .map(|i| format!("{}\n", json!({ "text": format!("Describe place {i}") })))
        .collect();
    let (_, b, p) = bounty(&app, req, &body);
    let (_, both) = contributor(&app, "writes-and-reviews");
    let (_, w) = contributor(&app, "writer");
    let mine: Vec<i64> = [&both, &both, &both, &w, &w, &w]
        .into_iter()
        .map(|c| {
            let t = c.lease(p.id, 1).unwrap().remove(0);
            c.submit(&api::SubmitAnswer {
                lease_id: t.lease_id,
                answer: json!({"text": "A long and careful description."}),
                idempotency_key: format!("a-{}", t.lease_id),
                signature: None,
            })
            .unwrap();
            t.item_id
        })
        .collect::<Vec<_>>()[..3]
        .to_vec();
    // Gold reviews only on the items `both` answered.
    for item in &mine {
        let _: api::GoldReview = b
            .call(
                "POST",
                &format!("/api/v1/projects/{}/gold-reviews", p.id),
                Some(&json!({"item_id": item, "answer": {"text": "asdf asdf asdf asdf"}, "verdict": "reject"})),
            )
            .unwrap();
    }
    let mut served = Vec::new();
    while let Some(task) = crate::types::review_lease(&both, p.id) {
        served.push(task.item_id);
        review(
            &both,
            task.lease_id,
            Verdict::Accept,
            None,
            &format!("k{}", task.lease_id),
        )
        .unwrap();
        assert!(served.len() <= 3);
    }
    assert_eq!(served.len(), 3, "the three answers of the other writer");
    assert!(
        served.iter().all(|i| !mine.contains(i)),
        "{served:?} vs {mine:?}"
    );
    let judged = app
        .block_on(gold_verdict::Entity::find().count(app.db()))
        .unwrap();
    assert_eq!(judged, 0, "no gold was served to them");
}

/// Any type may ask for review (`"review": true` in its schema): its
/// answers then wait for reviewers instead of agreement, and its result
/// keeps the type's own shape, so exports work as for a voted bounty.
#[test]
fn a_classification_bounty_may_ask_for_review_and_keeps_its_result_shape() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "asks-review", 10);
    for (task_type, schema, says) in [
        (
            TaskType::FreeText,
            json!({"review": true}),
            "always reviewed",
        ),
        (
            TaskType::Classification,
            json!({"classes": ["cat", "dog"], "review": "yes"}),
            "must be true or false",
        ),
    ] {
        let e = b
            .create_project(&spec(task_type, schema, 1, 1))
            .expect_err("refused");
        assert_eq!(e.code(), Some("invalid-schema"), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let mut req = spec(
        TaskType::Classification,
        json!({"classes": ["cat", "dog"], "review": true}),
        1,
        1,
    );
    req.review_reward = Some(Micros(REVIEW_REWARD));
    req.budget = Micros(REWARD + REVIEW_REWARD);
    let (_, b2, p) = bounty(&app, req, "{\"text\": \"A small animal that purrs\"}\n");
    assert_eq!(p.schema["review"], json!(true));
    let (w_id, w) = contributor(&app, "labeler");
    let t = w.lease(p.id, 1).unwrap().remove(0);
    let s = w
        .submit(&api::SubmitAnswer {
            lease_id: t.lease_id,
            answer: json!({"label": "cat"}),
            idempotency_key: "cat".into(),
            signature: None,
        })
        .unwrap();
    assert_eq!(s.status, api::AnswerStatus::PendingReview);
    assert_eq!(balance_of(&app, w_id), Micros(0), "unpaid until reviewed");
    let (r_id, r) = contributor(&app, "checker");
    let task = crate::types::review_lease(&r, p.id).expect("the answer to review");
    assert_eq!(task.answer, json!({"label": "cat"}));
    review(&r, task.lease_id, Verdict::Accept, None, "ok").unwrap();
    assert_eq!(balance_of(&app, w_id), Micros(REWARD));
    assert_eq!(balance_of(&app, r_id), Micros(REVIEW_REWARD));
    let it = app
        .block_on(sahel_server::projects::entity::item::Entity::find_by_id(t.item_id).one(app.db()))
        .unwrap()
        .unwrap();
    assert_eq!(it.status, "resolved");
    let result: Value = serde_json::from_str(it.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["answer"], json!({"label": "cat"}), "{result}");
    let csv = b2
        .raw(
            "GET",
            &format!("/api/v1/projects/{}/export?format=csv", p.id),
            None,
            "",
        )
        .unwrap();
    assert_eq!(csv.status, 200, "{}", csv.text());
    let text = csv.text();
    let row = text.lines().nth(1).expect("one resolved item");
    assert!(
        row.contains("A small animal that purrs") && row.contains(",cat,"),
        "{text}"
    );
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_ledger_clean(&app);
}
