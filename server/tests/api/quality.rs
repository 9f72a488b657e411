//! The quality engine over HTTP: gold that never leaks, a spammer bot
//! suspended with its answers discarded, dynamic overlap, the exam, and
//! the buyer's report.

use std::collections::BTreeSet;

use sahel_protocol::api::{self, AnswerStatus};
use sahel_server::consensus::quality::entity::{discard, gold_item};
use sahel_server::consensus::quality::run;
use sahel_server::projects::entity::item;
use sahel_server::queue::entity::answer;
use sahel_worker::client::Client;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::*;

const REWARD: i64 = 10_000;

/// A funded bounty with quality `settings`: `real` items (their truth in
/// a `truth` field, cycling through the classes) and one gold item (its
/// answer in `_gold`, and the same `truth` field) after every second real
/// item while `gold` lasts. The budget covers overlap x items three times,
/// more than the gold reserve needs.
fn quality_bounty(
    app: &TestApp,
    overlap: u32,
    real: usize,
    gold: &[&str],
    settings: Value,
) -> (Client, api::Project) {
    let (_, b) = buyer(
        app,
        &format!("qbuyer-{}", sahel_server::accounts::random_hex(3)),
        1_000,
    );
    let budget = REWARD * overlap as i64 * real as i64 * 3;
    let p = b
        .create_project(&project_spec(overlap, REWARD, budget))
        .expect("project");
    let _: api::QualitySettings = b
        .call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            Some(&settings),
        )
        .expect("settings");
    let mut body = String::new();
    let mut g = gold.iter();
    for i in 0..real {
        body.push_str(&format!(
            "{{\"text\": \"review number {i}\", \"truth\": \"{}\"}}\n",
            CLASSES[i % 3]
        ));
        if i % 2 == 1
            && let Some(label) = g.next()
        {
            body.push_str(&format!(
                "{{\"text\": \"review number {i}b\", \"truth\": \"{label}\", \"_gold\": \"{label}\"}}\n"
            ));
        }
    }
    for (j, label) in g.enumerate() {
        body.push_str(&format!(
            "{{\"text\": \"review number x{j}\", \"truth\": \"{label}\", \"_gold\": {{\"label\": \"{label}\"}}}}\n"
        ));
    }
    let report = b
        .import_items(p.id, "jsonl", body.as_bytes())
        .expect("import");
    assert_eq!(report.imported as usize, real, "gold items are not counted");
    let p = b.fund(p.id, "fund-1").expect("fund");
    (b, p)
}

fn gold_ids(app: &TestApp, project: i64) -> BTreeSet<i64> {
    app.block_on(
        gold_item::Entity::find()
            .filter(gold_item::Column::ProjectId.eq(project))
            .all(app.db()),
    )
    .unwrap()
    .into_iter()
    .map(|g| g.item_id)
    .collect()
}

fn run_background(app: &TestApp) -> run::RunReport {
    app.block_on(run::run_until_idle(&app.state, 10))
        .expect("re-estimation runs")
}

fn get_json(c: &Client, path: &str) -> (u16, String) {
    let r = c.raw("GET", path, None, "").expect("reachable");
    (r.status, r.text())
}

fn quality_report(b: &Client, project: i64) -> api::QualityReport {
    b.call(
        "GET",
        &format!("/api/v1/projects/{project}/quality"),
        None::<&()>,
    )
    .expect("report")
}

#[test]
fn gold_never_leaks_through_any_route_a_contributor_can_reach() {
    let app = spawn_app();
    let (b, p) = quality_bounty(
        &app,
        3,
        12,
        &[
            "negative", "neutral", "positive", "negative", "neutral", "positive",
        ],
        json!({ "gold_every": 2 }),
    );
    let gold = gold_ids(&app, p.id);
    assert_eq!(gold.len(), 6);
    let (_, c) = contributor(&app, "curious");

    let mut bodies: Vec<(String, String)> = Vec::new();
    let mut tasks: Vec<api::Task> = Vec::new();
    let mut submissions = Vec::new();
    for _ in 0..40 {
        let raw = c
            .raw(
                "POST",
                &format!("/api/v1/projects/{}/leases", p.id),
                Some(br#"{"count": 2}"#),
                "application/json",
            )
            .unwrap();
        assert_eq!(raw.status, 200, "{}", raw.text());
        bodies.push(("lease".into(), raw.text()));
        let got: api::LeaseResponse = raw.json().unwrap();
        if got.tasks.is_empty() {
            break;
        }
        for t in got.tasks {
            let s = c.submit(&answer(&t, &truth(&t))).unwrap();
            // A gold answer is pending right after answering, like a real
            // first answer.
            assert_eq!(s.status, AnswerStatus::Pending);
            bodies.push(("submit".into(), serde_json::to_string(&s).unwrap()));
            submissions.push(s);
            tasks.push(t);
        }
    }
    let served_gold: Vec<&api::Task> = tasks.iter().filter(|t| gold.contains(&t.item_id)).collect();
    assert!(
        !served_gold.is_empty(),
        "the test needs gold to have been served"
    );
    assert!(tasks.len() > served_gold.len(), "and real items too");
    // Every task looks alike: the same fields, and the item data exactly
    // as imported minus the gold field.
    let shape = |t: &api::Task| {
        let v = serde_json::to_value(t).unwrap();
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        let mut data: Vec<String> = t.data.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        data.sort();
        (keys, data)
    };
    for t in &tasks {
        assert_eq!(shape(t), shape(&tasks[0]));
        assert!(t.data.get("_gold").is_none());
    }

    run_background(&app);
    let paths = [
        "/api/v1/projects".to_owned(),
        format!("/api/v1/projects/{}", p.id),
        format!("/api/v1/projects/{}/progress", p.id),
        format!("/api/v1/projects/{}/quality/settings", p.id),
        "/api/v1/me".to_owned(),
        "/api/v1/me/balance".to_owned(),
        "/api/v1/me/ledger".to_owned(),
    ];
    for path in &paths {
        let (status, body) = get_json(&c, path);
        assert_eq!(status, 200, "{path}: {body}");
        bodies.push((path.clone(), body));
    }
    for s in &submissions {
        let (status, body) = get_json(&c, &format!("/api/v1/submissions/{}", s.id));
        assert_eq!(status, 200);
        bodies.push(("submission".into(), body));
    }
    // The buyer's views of gold are closed to contributors.
    for path in [
        format!("/api/v1/projects/{}/quality", p.id),
        format!("/api/v1/projects/{}/gold", p.id),
    ] {
        let (status, body) = get_json(&c, &path);
        assert_eq!(status, 403, "{path}: {body}");
    }
    for (route, body) in &bodies {
        assert!(
            !body.contains("\"_gold\""),
            "{route} leaks the gold field: {body}"
        );
        assert!(!body.contains("\"source\""), "{route}: {body}");
    }
    // Paid gold answers look like any payment: same kind, same memo keys.
    let ledger = c.ledger().unwrap();
    let memo_keys: BTreeSet<Vec<String>> = ledger
        .entries
        .iter()
        .map(|e| {
            assert_eq!(e.kind, "pay_answers");
            e.memo.as_object().unwrap().keys().cloned().collect()
        })
        .collect();
    assert_eq!(memo_keys.len(), 1, "{memo_keys:?}");
    assert!(
        ledger
            .entries
            .iter()
            .any(|e| gold.contains(&e.memo["item_id"].as_i64().unwrap())),
        "a right gold answer was paid"
    );
    // The buyer sees the gold, and the ledger balances.
    let listed: Vec<api::GoldItem> = b
        .call(
            "GET",
            &format!("/api/v1/projects/{}/gold", p.id),
            None::<&()>,
        )
        .unwrap();
    assert_eq!(listed.len(), 6);
    assert_ledger_clean(&app);
}

#[test]
fn a_spammer_bot_over_http_is_suspended_and_its_answers_stop_counting() {
    // Seeded gold placement: the bound below is not left to chance.
    let app = TestApp::spawn(|c| c.gold_seed = Some(11));
    // Every gold answer is "positive" or "negative"; the bot always says
    // "neutral", so it never gets gold right.
    let gold: Vec<&str> = (0..14)
        .map(|i| if i % 2 == 0 { "positive" } else { "negative" })
        .collect();
    let (b, p) = quality_bounty(&app, 3, 30, &gold, json!({ "gold_every": 2 }));
    let gold_set = gold_ids(&app, p.id);
    let (bot_id, bot) = contributor(&app, "spambot");
    let mut answered = 0;
    let mut gold_answered = 0;
    let refusal = loop {
        match bot.lease(p.id, 1) {
            Ok(tasks) => {
                let Some(t) = tasks.first() else {
                    panic!("the bot ran out of work before being suspended")
                };
                match bot.submit(&answer(t, "neutral")) {
                    Ok(_) => {
                        answered += 1;
                        if gold_set.contains(&t.item_id) {
                            gold_answered += 1;
                        }
                    }
                    Err(e) => break e,
                }
            }
            Err(e) => break e,
        }
        assert!(answered < 200);
    };
    assert_eq!(refusal.status, 403, "{refusal}");
    assert_eq!(refusal.code(), Some("suspended"));
    assert!(
        gold_answered <= 20,
        "suspended after {gold_answered} gold answers"
    );
    // Its answers on open items stopped counting: rejected, unpaid, listed.
    let discarded = app
        .block_on(
            discard::Entity::find()
                .filter(discard::Column::UserId.eq(bot_id))
                .all(app.db()),
        )
        .unwrap();
    assert!(!discarded.is_empty(), "the bot had open answers");
    for d in &discarded {
        let a = app
            .block_on(answer::Entity::find_by_id(d.answer_id).one(app.db()))
            .unwrap()
            .unwrap();
        assert_eq!((a.status.as_str(), a.paid), ("rejected", 0));
        assert!(d.reason.contains("suspended"), "{}", d.reason);
    }
    // Honest contributors finish the bounty: every item resolves to its
    // truth without the bot.
    let honest: Vec<(i64, Client)> = (0..3)
        .map(|i| contributor(&app, &format!("honest{i}")))
        .collect();
    for _ in 0..200 {
        let mut any = false;
        for (_, c) in &honest {
            if let Some(t) = c.lease(p.id, 1).unwrap().first() {
                c.submit(&answer(t, &truth(t))).unwrap();
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    run_background(&app);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 30);
    let items = app
        .block_on(
            item::Entity::find()
                .filter(item::Column::ProjectId.eq(p.id))
                .filter(item::Column::Status.eq("resolved"))
                .all(app.db()),
        )
        .unwrap();
    for it in &items {
        let data: Value = serde_json::from_str(&it.data).unwrap();
        let result: Value = serde_json::from_str(it.result.as_deref().unwrap()).unwrap();
        assert_eq!(result["answer"]["label"], data["truth"], "item {}", it.id);
    }
    let accepted_bot = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::UserId.eq(bot_id))
                .filter(answer::Column::Status.eq("accepted"))
                .all(app.db()),
        )
        .unwrap();
    assert!(accepted_bot.is_empty(), "{accepted_bot:?}");
    // The buyer sees who and why.
    let r = quality_report(&b, p.id);
    let row = r.contributors.iter().find(|c| c.user_id == bot_id).unwrap();
    assert!(row.suspended);
    assert!(
        row.suspension_reason
            .as_deref()
            .unwrap()
            .contains("accuracy too low"),
        "{row:?}"
    );
    assert_eq!(row.gold_correct, 0);
    assert!(r.discarded_answers >= discarded.len() as i64);
    for (id, _) in &honest {
        let h = r.contributors.iter().find(|c| c.user_id == *id).unwrap();
        assert!(!h.suspended, "{h:?}");
        assert_eq!(h.agreement, Some(1.0));
    }
    assert!(r.alpha.is_some());
    assert_eq!(r.items_resolved, 30);
    assert_ledger_clean(&app);
}

/// `n` contributors, each leasing one task in turn and answering it with
/// `label(task)`; returns after `rounds` rounds.
fn round_robin(
    p: i64,
    people: &[(i64, Client)],
    rounds: usize,
    label: impl Fn(&api::Task) -> String,
) {
    for _ in 0..rounds {
        for (_, c) in people {
            let t = c.lease(p, 1).unwrap().remove(0);
            c.submit(&answer(&t, &label(&t))).unwrap();
        }
    }
}

fn item_row(app: &TestApp, id: i64) -> item::Model {
    app.block_on(item::Entity::find_by_id(id).one(app.db()))
        .unwrap()
        .unwrap()
}

#[test]
fn dynamic_overlap_resolves_easy_items_early_and_asks_for_more_on_a_contested_one() {
    let app = spawn_app();
    // Overlap 3 (so at most 5 answers), resolve from 2 answers on.
    let (b, p) = quality_bounty(
        &app,
        3,
        12,
        &[],
        json!({ "gold_every": 0, "min_answers": 2 }),
    );
    let people: Vec<(i64, Client)> = (0..5)
        .map(|i| contributor(&app, &format!("dyn{i}")))
        .collect();
    // Three newcomers agreeing on the first 8 items: two agreeing
    // newcomers are not enough (0.92 < 0.95), the third settles each.
    round_robin(p.id, &people[..3], 8, truth);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 8);
    // The background run learns that they are reliable.
    let r = run_background(&app);
    assert_eq!(r.estimated, 1);

    // Now two of them agreeing settle an item.
    let t0 = people[0].1.lease(p.id, 1).unwrap().remove(0);
    people[0].1.submit(&answer(&t0, &truth(&t0))).unwrap();
    let t1 = people[1].1.lease(p.id, 1).unwrap().remove(0);
    assert_eq!(t1.item_id, t0.item_id, "started items first");
    let s = people[1].1.submit(&answer(&t1, &truth(&t1))).unwrap();
    assert_eq!(s.status, AnswerStatus::Accepted);
    let easy = item_row(&app, t0.item_id);
    assert_eq!((easy.status.as_str(), easy.answers_count), ("resolved", 2));

    // A contested item: three different answers, then a fourth that the
    // plurality vote would take (2 of 4) but the engine does not trust.
    let labels = ["positive", "negative", "neutral", "positive"];
    let mut item_id = None;
    for (i, label) in labels.iter().enumerate() {
        let t = people[i].1.lease(p.id, 1).unwrap().remove(0);
        if let Some(id) = item_id {
            assert_eq!(t.item_id, id);
        }
        item_id = Some(t.item_id);
        let s = people[i].1.submit(&answer(&t, label)).unwrap();
        assert_eq!(s.status, AnswerStatus::Pending, "answer {i}");
    }
    let contested = item_row(&app, item_id.unwrap());
    assert_eq!(contested.status, "open");
    assert_eq!(
        (contested.answers_count, contested.needed),
        (4, 5),
        "asks for a fifth answer"
    );
    let t = people[4].1.lease(p.id, 1).unwrap().remove(0);
    assert_eq!(t.item_id, contested.id);
    people[4].1.submit(&answer(&t, "positive")).unwrap();
    let contested = item_row(&app, contested.id);
    assert_eq!(contested.status, "resolved");
    let result: Value = serde_json::from_str(contested.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["answer"]["label"], "positive");
    assert_eq!(result["answers"], 5);
    assert!(result["confidence"].as_f64().unwrap() > 0.5);

    // The buyer's report has the agreement statistics.
    let r = quality_report(&b, p.id);
    assert_eq!(r.items_resolved, 10);
    assert!(r.alpha.unwrap() > 0.5, "{:?}", r.alpha);
    assert_eq!(r.confusion.len(), 3);
    let per_item = r.answers_per_resolved_item.unwrap();
    assert!(
        (per_item - (8.0 * 3.0 + 2.0 + 5.0) / 10.0).abs() < 1e-9,
        "{per_item}"
    );
    assert_eq!(r.settings.min_answers, 2);
    assert_eq!(r.settings.max_answers, 5);
    // Never more than `overlap` answers paid per item.
    let paid = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::ItemId.eq(contested.id))
                .filter(answer::Column::Status.eq("accepted"))
                .all(app.db()),
        )
        .unwrap();
    assert!(paid.len() <= 3);
    assert_ledger_clean(&app);
}

#[test]
fn a_bounty_the_background_run_completes_leaves_the_queue() {
    let app = spawn_app();
    let (b, p) = quality_bounty(
        &app,
        3,
        9,
        &[],
        json!({ "gold_every": 0, "min_answers": 2 }),
    );
    let people: Vec<(i64, Client)> = (0..3)
        .map(|i| contributor(&app, &format!("end{i}")))
        .collect();
    round_robin(p.id, &people, 8, truth);
    // Two newcomers agreeing do not settle the last item at submit time.
    round_robin(p.id, &people[..2], 1, truth);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 8);
    assert!(app.queue_holds(p.id));

    // The run learns they are reliable, settles the last item early, and
    // with it completes the bounty; its queue refresh must not bring the
    // bounty back.
    let r = run_background(&app);
    assert_eq!(r.resolved, 1);
    assert_eq!(
        b.project(p.id).unwrap().status,
        api::ProjectStatus::Completed
    );
    assert!(
        !app.queue_holds(p.id),
        "the completed bounty was loaded again"
    );
    if app.uses_redis() {
        assert_eq!(app.redis_keys_left_by(p.id), [format!(":p{}:gone", p.id)]);
    }
    assert_ledger_clean(&app);
}

#[test]
fn the_exam_admits_who_passes_and_locks_out_who_fails() {
    let app = spawn_app();
    let gold = ["positive", "negative", "neutral", "positive", "negative"];
    let (_, p) = quality_bounty(
        &app,
        2,
        6,
        &gold,
        json!({ "gold_every": 0, "exam_size": 3, "exam_pass_mark": 0.66 }),
    );
    let gold_set = gold_ids(&app, p.id);
    let (_, good) = contributor(&app, "examgood");
    let (_, bad) = contributor(&app, "exambad");
    // The exam comes first, as ordinary tasks, and only gold.
    let exam = good.lease(p.id, 10).unwrap();
    assert_eq!(exam.len(), 3);
    assert!(exam.iter().all(|t| gold_set.contains(&t.item_id)));
    assert!(
        good.lease(p.id, 1).unwrap().is_empty(),
        "no more until the exam is answered"
    );
    for t in &exam {
        good.submit(&answer(t, &truth(t))).unwrap();
    }
    let real = good.lease(p.id, 2).unwrap();
    assert_eq!(real.len(), 2);
    assert!(real.iter().all(|t| !gold_set.contains(&t.item_id)));

    for t in bad.lease(p.id, 3).unwrap() {
        bad.submit(&answer(&t, "neutral")).unwrap();
    }
    assert_problem(bad.lease(p.id, 1), 403, "exam-failed");
    let leases = leases_of_project(&app, p.id);
    assert_eq!(leases.len(), 3 + 2 + 3);
}

#[test]
fn quality_settings_are_validated_and_fixed_once_funded() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "setter", 100);
    let p = b
        .create_project(&project_spec(3, REWARD, REWARD * 3 * 4))
        .unwrap();
    let put = |body: Value| -> Result<api::QualitySettings, _> {
        b.call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            Some(&body),
        )
    };
    assert_problem(
        put(json!({"gold_every": 1})),
        422,
        "invalid-quality-settings",
    );
    assert_problem(
        put(json!({"target_confidence": 0.2})),
        422,
        "invalid-quality-settings",
    );
    assert_problem(
        put(json!({"min_answers": 4})),
        422,
        "invalid-quality-settings",
    );
    let s = put(json!({})).unwrap();
    assert_eq!(
        (
            s.aggregation.as_str(),
            s.gold_every,
            s.min_answers,
            s.max_answers
        ),
        ("em", 10, 3, 5)
    );
    assert!((s.target_confidence - 0.95).abs() < 1e-12);
    assert!((s.accuracy_threshold - (1.0 / 3.0 + 0.75) / 2.0).abs() < 1e-12);
    // Gold needs a reserve: overlap x items x reward is no longer enough.
    let body = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n{\"text\": \"d\"}\n{\"text\": \"g\", \"_gold\": \"positive\"}\n";
    b.import_items(p.id, "jsonl", body.as_bytes()).unwrap();
    assert_problem(b.fund(p.id, "f"), 422, "budget-too-small");
    // A bad gold answer is refused at import like any bad line.
    let err = b
        .import_items(p.id, "jsonl", b"{\"text\": \"x\", \"_gold\": \"maybe\"}\n")
        .unwrap_err();
    assert_eq!(err.status, 422);
    let (_, c) = contributor(&app, "peek");
    let path = format!("/api/v1/projects/{}/quality/settings", p.id);
    assert_problem(
        c.call::<api::QualitySettings>("GET", &path, None::<&()>),
        404,
        "project-not-found",
    );
    // Funded: anyone may read the rule, nobody may change it.
    let (b2, p2) = quality_bounty(&app, 1, 3, &[], json!({ "gold_every": 0 }));
    let path = format!("/api/v1/projects/{}/quality/settings", p2.id);
    let seen: api::QualitySettings = c.call("GET", &path, None::<&()>).unwrap();
    assert_eq!((seen.aggregation.as_str(), seen.gold_every), ("em", 0));
    assert!(seen.payment_rule.contains("never taken back"));
    assert_problem(
        b2.call::<api::QualitySettings>("PUT", &path, Some(&json!({}))),
        409,
        "project-not-draft",
    );
    // A bounty without settings keeps the vote.
    let (_, plain) = funded_project(&app, 1, 1);
    let path = format!("/api/v1/projects/{}/quality/settings", plain.id);
    let seen: api::QualitySettings = c.call("GET", &path, None::<&()>).unwrap();
    assert_eq!(seen.aggregation, "vote");
}

#[test]
fn a_resolved_item_can_become_gold_with_its_result_as_the_answer() {
    let app = spawn_app();
    let (b, p) = quality_bounty(&app, 1, 4, &[], json!({ "gold_every": 0 }));
    let (_, c) = contributor(&app, "first");
    // The first three settle unanimously: the bounty page shows them as
    // worked examples.
    let examples: Vec<api::Task> = (0..3)
        .map(|_| {
            let t = c.lease(p.id, 1).unwrap().remove(0);
            c.submit(&answer(&t, &truth(&t))).unwrap();
            t
        })
        .collect();
    let open = c.lease(p.id, 1).unwrap().remove(0);
    let path = format!("/api/v1/projects/{}/gold", p.id);
    let mark = |item_id: i64, answer: Option<Value>| {
        b.call::<api::GoldItem>("POST", &path, Some(&api::MarkGold { item_id, answer }))
    };
    assert_problem(mark(open.item_id, None), 409, "item-not-resolved");
    assert_problem(mark(999_999, None), 404, "item-not-found");
    // An example's answer is public: it cannot become gold.
    assert_problem(mark(examples[0].item_id, None), 409, "item-is-example");
    c.submit(&answer(&open, &truth(&open))).unwrap();
    let t = open;
    assert_problem(
        mark(t.item_id, Some(json!({"label": "maybe"}))),
        422,
        "invalid-answer",
    );
    let g = mark(t.item_id, None).unwrap();
    assert_eq!(g.answer, json!({ "label": truth(&t) }));
    assert_eq!(g.source, "resolved");
    let (_, other) = contributor(&app, "other");
    assert_problem(
        other.call::<api::GoldItem>(
            "POST",
            &path,
            Some(&api::MarkGold {
                item_id: t.item_id,
                answer: None,
            }),
        ),
        403,
        "not-project-owner",
    );
    assert_eq!(gold_ids(&app, p.id), BTreeSet::from([t.item_id]));
}

/// A small crowd end to end over HTTP: honest contributors right 90% of
/// the time and spammers answering at random, gold at one in three. Gold
/// placement is seeded like the crowd, so the run replays exactly.
#[test]
fn a_small_simulated_crowd_gets_accurate_labels_and_loses_its_spammers() {
    use sahel_server::consensus::quality::engine::sim::Rng;
    let app = TestApp::spawn(|c| c.gold_seed = Some(7));
    let gold: Vec<&str> = (0..30).map(|i| CLASSES[i % 3]).collect();
    let (b, p) = quality_bounty(&app, 3, 90, &gold, json!({ "gold_every": 3 }));
    let mut crowd: Vec<(i64, Client, bool, Rng, bool)> = (0..9)
        .map(|i| {
            let (id, c) = contributor(&app, &format!("sim{i}"));
            // (id, client, is spammer, its randomness, still working)
            (id, c, i >= 6, Rng::new(100 + i as u64), true)
        })
        .collect();
    let mut answers = 0;
    for round in 0..200 {
        let mut any = false;
        for (_, c, spammer, rng, working) in crowd.iter_mut() {
            if !*working {
                continue;
            }
            let tasks = match c.lease(p.id, 1) {
                Ok(t) => t,
                Err(e) if e.code() == Some("suspended") => {
                    *working = false;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let Some(t) = tasks.first() else {
                *working = false;
                continue;
            };
            let right = truth(t);
            let label = if *spammer {
                CLASSES[rng.below(3) as usize].to_owned()
            } else if rng.chance(0.9) {
                right
            } else {
                CLASSES
                    .iter()
                    .filter(|x| **x != right)
                    .nth(rng.below(2) as usize)
                    .unwrap()
                    .to_string()
            };
            match c.submit(&answer(t, &label)) {
                Ok(_) => answers += 1,
                Err(e) if e.code() == Some("suspended") => *working = false,
                Err(e) => panic!("{e}"),
            }
            any = true;
        }
        if round % 5 == 4 {
            run_background(&app);
        }
        if !any {
            break;
        }
    }
    run_background(&app);
    assert!(answers > 270, "{answers}");
    assert_eq!(items_with_status(&app, p.id, "resolved"), 90);
    let resolved = app
        .block_on(
            item::Entity::find()
                .filter(item::Column::ProjectId.eq(p.id))
                .filter(item::Column::Status.eq("resolved"))
                .all(app.db()),
        )
        .unwrap();
    let right = resolved
        .iter()
        .filter(|it| {
            let data: Value = serde_json::from_str(&it.data).unwrap();
            let result: Value = serde_json::from_str(it.result.as_deref().unwrap()).unwrap();
            result["answer"]["label"] == data["truth"]
        })
        .count();
    assert!(right >= 85, "{right} of 90 right");
    let r = quality_report(&b, p.id);
    let suspended = |id: i64| {
        r.contributors
            .iter()
            .find(|c| c.user_id == id)
            .is_some_and(|c| c.suspended)
    };
    let spammers_out = crowd.iter().filter(|c| c.2 && suspended(c.0)).count();
    let honest_out = crowd.iter().filter(|c| !c.2 && suspended(c.0)).count();
    assert!(
        spammers_out >= 2,
        "{spammers_out} of 3 spammers suspended: {r:#?}"
    );
    assert_eq!(honest_out, 0, "{r:#?}");
    assert_ledger_clean(&app);
}

#[test]
fn a_bounty_may_show_the_known_answer_right_after_a_gold_item_is_answered() {
    // Seeded gold placement: the bound below is not left to chance.
    let app = TestApp::spawn(|c| c.gold_seed = Some(11));
    let gold = ["positive", "negative", "neutral", "positive"];
    for shown in [true, false] {
        let (_, p) = quality_bounty(
            &app,
            1,
            8,
            &gold,
            json!({ "gold_every": 2, "gold_feedback": shown }),
        );
        let settings: api::QualitySettings = p_settings(&app, p.id);
        assert_eq!(settings.gold_feedback, shown);
        let gold_set = gold_ids(&app, p.id);
        let (_, c) = contributor(&app, &format!("fb-{shown}"));
        let (mut golds, mut others) = (0, 0);
        for t in c.lease(p.id, 8).unwrap() {
            // Wrong on purpose: the feedback must say so, with the answer.
            let wrong = if truth(&t) == "positive" {
                "negative"
            } else {
                "positive"
            };
            let s = c.submit(&answer(&t, wrong)).unwrap();
            if gold_set.contains(&t.item_id) {
                golds += 1;
                match (&s.gold_feedback, shown) {
                    (Some(f), true) => {
                        assert!(!f.correct);
                        assert_eq!(f.answer, json!({ "label": truth(&t) }));
                    }
                    (None, false) => {}
                    (f, _) => panic!("gold feedback {f:?} with feedback {shown}"),
                }
            } else {
                others += 1;
                assert!(s.gold_feedback.is_none(), "only gold items say anything");
            }
        }
        assert!(golds > 0 && others > 0, "{golds} gold, {others} others");
    }
}

fn p_settings(app: &TestApp, project: i64) -> api::QualitySettings {
    let (_, anyone) = contributor(app, &format!("reader-{project}"));
    anyone
        .call(
            "GET",
            &format!("/api/v1/projects/{project}/quality/settings"),
            None::<&()>,
        )
        .unwrap()
}

/// A multi-label crowd over HTTP: four honest contributors (each class
/// right 95% of the time) and a spammer ticking each class at random,
/// gold at one in three. Every class is decided by its own EM, gold is
/// scored per class, and the spammer goes.
#[test]
fn a_multi_label_crowd_gets_its_label_sets_and_loses_its_spammer() {
    use sahel_protocol::api::TaskType;
    use sahel_server::consensus::quality::engine::sim::Rng;
    const ML: [&str; 3] = ["bird", "cat", "dog"];
    // The classes of item `i`: the bits of `i % 8`, so every subset
    // (the empty one too) is some item's truth.
    let set = |i: usize| -> Vec<&str> {
        (0..3)
            .filter(|b| (i % 8) >> b & 1 == 1)
            .map(|b| ML[b])
            .collect()
    };
    let app = TestApp::spawn(|c| c.gold_seed = Some(5));
    let (_, b) = buyer(&app, "mlbuyer", 1_000);
    let (real, overlap) = (30usize, 3u32);
    let p = b
        .create_project(&api::CreateProject {
            title: "What is in the picture".into(),
            instructions: "Tick every animal you see.".into(),
            task_type: TaskType::MultiLabel,
            schema: json!({ "classes": ML }),
            overlap,
            reward: sahel_protocol::Micros(REWARD),
            budget: sahel_protocol::Micros(REWARD * overlap as i64 * real as i64 * 3),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .expect("project");
    let s: api::QualitySettings = b
        .call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            Some(&json!({ "gold_every": 3 })),
        )
        .expect("settings");
    assert_eq!(s.aggregation, "em");
    let mut body = String::new();
    for i in 0..real {
        body.push_str(&format!(
            "{}\n",
            json!({ "text": format!("photo {i}"), "truth": set(i) })
        ));
    }
    for g in 0..16 {
        // Gold as the shorthand array and as the answer object.
        let known = set(g + 3);
        let gold = if g % 2 == 0 {
            json!(known)
        } else {
            json!({ "labels": known })
        };
        body.push_str(&format!(
            "{}\n",
            json!({ "text": format!("gold photo {g}"), "truth": known, "_gold": gold })
        ));
    }
    b.import_items(p.id, "jsonl", body.as_bytes())
        .expect("import");
    let p = b.fund(p.id, "fund-1").expect("fund");
    assert_eq!(gold_ids(&app, p.id).len(), 16);

    // (id, client, is the spammer, its randomness, still working)
    let mut crowd: Vec<(i64, Client, bool, Rng, bool)> = (0..5)
        .map(|i| {
            let (id, c) = contributor(&app, &format!("ml{i}"));
            (id, c, i == 4, Rng::new(300 + i as u64), true)
        })
        .collect();
    for round in 0..200 {
        let mut any = false;
        for (_, c, spammer, rng, working) in crowd.iter_mut() {
            if !*working {
                continue;
            }
            let tasks = match c.lease(p.id, 1) {
                Ok(t) => t,
                Err(e) if e.code() == Some("suspended") => {
                    *working = false;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let Some(t) = tasks.first() else {
                *working = false;
                continue;
            };
            let truth: Vec<&str> = t.data["truth"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let labels: Vec<&str> = ML
                .iter()
                .copied()
                .filter(|class| {
                    if *spammer {
                        rng.chance(0.5)
                    } else {
                        truth.contains(class) == rng.chance(0.95)
                    }
                })
                .collect();
            let submitted = c.submit(&api::SubmitAnswer {
                lease_id: t.lease_id,
                answer: json!({ "labels": labels }),
                idempotency_key: format!("lease-{}", t.lease_id),
                signature: None,
            });
            match submitted {
                Ok(_) => {}
                Err(e) if e.code() == Some("suspended") => *working = false,
                Err(e) => panic!("{e}"),
            }
            any = true;
        }
        if round % 3 == 2 {
            run_background(&app);
        }
        if !any {
            break;
        }
    }
    run_background(&app);
    assert_eq!(items_with_status(&app, p.id, "resolved"), real as u64);
    let resolved = app
        .block_on(
            item::Entity::find()
                .filter(item::Column::ProjectId.eq(p.id))
                .filter(item::Column::Status.eq("resolved"))
                .all(app.db()),
        )
        .unwrap();
    let right = resolved
        .iter()
        .filter(|it| {
            let data: Value = serde_json::from_str(&it.data).unwrap();
            let result: Value = serde_json::from_str(it.result.as_deref().unwrap()).unwrap();
            assert!(result["confidence"].as_f64().is_some(), "{result}");
            result["answer"]["labels"] == data["truth"]
        })
        .count();
    assert!(right >= 29, "{right} of {real} label sets right");
    // Never more than `overlap` answers paid on an item.
    let accepted = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(p.id))
                .filter(answer::Column::Status.eq("accepted"))
                .all(app.db()),
        )
        .unwrap();
    for it in &resolved {
        let paid = accepted.iter().filter(|a| a.item_id == it.id).count();
        assert!(paid <= overlap as usize, "item {}: {paid} paid", it.id);
    }
    let r = quality_report(&b, p.id);
    let row = |id: i64| r.contributors.iter().find(|c| c.user_id == id).unwrap();
    for (id, _, spammer, _, _) in &crowd {
        let c = row(*id);
        assert_eq!(c.suspended, *spammer, "{c:?}");
        // Gold is scored per class: three judgements per gold answer.
        assert_eq!(c.gold_total % 3, 0, "{c:?}");
    }
    let spammer = row(crowd[4].0);
    assert!(
        spammer
            .suspension_reason
            .as_deref()
            .unwrap()
            .contains("class judgements on gold items"),
        "{spammer:?}"
    );
    assert!(spammer.gold_total > 0, "{spammer:?}");
    assert!(r.alpha.is_some());
    assert_ledger_clean(&app);
}
