//! The spine end to end, and every refusal of the lease/submit cycle.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use sahel_protocol::Micros;
use sahel_protocol::api::{AnswerStatus, ProjectStatus};
use sahel_server::queue::entity::{answer, lease};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::helpers::*;

#[test]
fn four_contributors_finish_a_bounty_and_are_paid_exactly_for_accepted_answers() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 10, 3);
    let escrow_before = escrow_of(&app, p.id);
    assert_eq!(escrow_before, Micros(10_000 * 3 * 10));

    let workers: Vec<(i64, sahel_worker::client::Client)> = (0..4)
        .map(|i| contributor(&app, &format!("c{i}")))
        .collect();
    let start = Arc::new(Barrier::new(workers.len()));
    let handles: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let c = c.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut answered = 0;
                // Bounded: 10 items can never need more than 10 leases each.
                for _ in 0..100 {
                    let tasks = c.lease(p.id, 1).expect("lease");
                    let Some(t) = tasks.first() else { break };
                    // Contributor 3 always disagrees; with overlap 3 it can
                    // never create a tie against two honest answers.
                    let label = if i == 3 { wrong(&truth(t)) } else { truth(t) };
                    c.submit(&answer(t, &label)).expect("submit");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let counts: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        counts.iter().sum::<u32>(),
        30,
        "every item got exactly overlap answers: {counts:?}"
    );

    assert_eq!(items_with_status(&app, p.id, "resolved"), 10);
    let progress = b.progress(p.id).unwrap();
    assert_eq!(progress.status, ProjectStatus::Completed);
    assert_eq!(progress.items_resolved, 10);

    // Each contributor earned reward x accepted answers, no more, no less.
    let rows = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(p.id))
                .all(app.db()),
        )
        .unwrap();
    let mut accepted: HashMap<i64, i64> = HashMap::new();
    for r in &rows {
        assert_ne!(r.status, "pending");
        if r.status == "accepted" {
            *accepted.entry(r.user_id).or_default() += 1;
        }
    }
    let mut paid = 0;
    for (id, c) in &workers {
        let expected = 10_000 * accepted.get(id).copied().unwrap_or(0);
        assert_eq!(balance_of(&app, *id), Micros(expected));
        assert_eq!(
            c.balance().unwrap().balance,
            Micros(expected),
            "the API reports the same balance"
        );
        paid += expected;
    }
    assert_eq!(
        accepted.get(&workers[3].0),
        None,
        "the contrarian was never accepted"
    );
    assert_eq!(
        escrow_of(&app, p.id),
        Micros(escrow_before.0 - paid),
        "escrow fell by exactly what was paid"
    );
    assert_eq!(progress.paid_out, Micros(paid));
    assert_ledger_clean(&app);
}

fn wrong(label: &str) -> String {
    CLASSES.iter().find(|c| **c != label).unwrap().to_string()
}

#[test]
fn a_tie_asks_for_one_more_answer_and_the_majority_is_paid() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 3);
    let people: Vec<_> = (0..4)
        .map(|i| contributor(&app, &format!("t{i}")))
        .collect();
    for ((_, c), label) in people.iter().zip(["positive", "negative", "neutral"]) {
        let t = c.lease(p.id, 1).unwrap().remove(0);
        let s = c.submit(&answer(&t, label)).unwrap();
        assert_eq!(s.status, AnswerStatus::Pending);
    }
    // Three different answers: the item is still open and wants a fourth.
    assert_eq!(items_with_status(&app, p.id, "open"), 1);
    let t = people[3].1.lease(p.id, 1).unwrap().remove(0);
    let s = people[3].1.submit(&answer(&t, "negative")).unwrap();
    assert_eq!(s.status, AnswerStatus::Accepted);
    assert_eq!(balance_of(&app, people[1].0), Micros(10_000));
    assert_eq!(balance_of(&app, people[3].0), Micros(10_000));
    assert_eq!(balance_of(&app, people[0].0), Micros(0));
    assert_ledger_clean(&app);
}

#[test]
fn a_contributor_never_gets_an_item_twice_and_leases_stop_at_what_is_needed() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 2, 2);
    let (_, a) = contributor(&app, "a");
    let (_, b) = contributor(&app, "b");
    let (_, c) = contributor(&app, "c");
    let mine = a.lease(p.id, 5).unwrap();
    assert_eq!(mine.len(), 2, "one lease per item per contributor");
    assert_eq!(
        a.lease(p.id, 5).unwrap().len(),
        0,
        "nothing new while holding both"
    );
    assert_eq!(b.lease(p.id, 5).unwrap().len(), 2);
    assert_eq!(
        c.lease(p.id, 5).unwrap().len(),
        0,
        "two open leases already cover overlap 2"
    );
    let open = leases_of_project(&app, p.id);
    assert_eq!(open.len(), 4);
}

#[test]
fn a_retry_with_the_same_idempotency_key_returns_the_first_result_and_changes_nothing() {
    let app = spawn_app();
    let (owner, p) = funded_project(&app, 3, 3);
    let (_, c) = contributor(&app, "retry");
    let t = c.lease(p.id, 1).unwrap().remove(0);
    let first = c.submit(&answer(&t, "positive")).unwrap();
    let again = c.submit(&answer(&t, "positive")).unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(answers_in_db(&app, p.id), 1);

    let mut other = answer(&t, "negative");
    assert_problem(c.submit(&other), 409, "idempotency-key-reused");
    other.idempotency_key = "a-new-key".into();
    assert_problem(c.submit(&other), 409, "lease-already-used");
    assert_eq!(answers_in_db(&app, p.id), 1);

    // A retry that arrives after the bounty closed is still the first
    // answer, not a refusal of the closed bounty.
    owner.close_project(p.id, "close-retry").unwrap();
    let late = c.submit(&answer(&t, "positive")).unwrap();
    assert_eq!(late.id, first.id);
    assert_eq!(answers_in_db(&app, p.id), 1);
    assert_ledger_clean(&app);
}

#[test]
fn an_answer_outside_the_schema_is_refused_and_the_lease_stays_usable() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 1);
    let (_, c) = contributor(&app, "schema");
    let t = c.lease(p.id, 1).unwrap().remove(0);
    for bad in [
        json!({"label": "ecstatic"}),
        json!("positive"),
        json!({"labels": ["positive"]}),
    ] {
        let req = sahel_protocol::api::SubmitAnswer {
            lease_id: t.lease_id,
            answer: bad,
            idempotency_key: "k".into(),
            signature: None,
        };
        assert_problem(c.submit(&req), 422, "invalid-answer");
    }
    assert_eq!(answers_in_db(&app, p.id), 0);
    let ok = c.submit(&answer(&t, "neutral")).unwrap();
    assert_eq!(
        ok.status,
        AnswerStatus::Accepted,
        "overlap 1 resolves at once"
    );
}

#[test]
fn an_expired_lease_is_refused_and_its_item_is_handed_out_again() {
    let app = TestApp::spawn(|c| c.lease_secs = 1);
    let (_, p) = funded_project(&app, 1, 1);
    let (_, a) = contributor(&app, "late");
    let (_, b) = contributor(&app, "next");
    let t = a.lease(p.id, 1).unwrap().remove(0);
    assert!(b.lease(p.id, 1).unwrap().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // No sweeper ran: the next lease call itself frees the expired slot.
    let again = b.lease(p.id, 1).unwrap();
    assert_eq!(again.len(), 1, "the expired slot is free again");
    assert_eq!(again[0].item_id, t.item_id);
    assert_problem(a.submit(&answer(&t, "positive")), 410, "lease-expired");
    assert_eq!(answers_in_db(&app, p.id), 0);
    assert_eq!(
        b.submit(&answer(&again[0], "positive")).unwrap().status,
        AnswerStatus::Accepted
    );
}

#[test]
fn someone_elses_lease_cannot_be_answered() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 2);
    let (_, a) = contributor(&app, "owner");
    let (_, b) = contributor(&app, "thief");
    let t = a.lease(p.id, 1).unwrap().remove(0);
    assert_problem(b.submit(&answer(&t, "positive")), 403, "foreign-lease");
    assert_eq!(answers_in_db(&app, p.id), 0);
}

#[test]
fn the_database_refuses_a_second_answer_to_one_item_even_if_the_queue_were_wrong() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 3);
    let (uid, c) = contributor(&app, "twice");
    let t = c.lease(p.id, 1).unwrap().remove(0);
    c.submit(&answer(&t, "positive")).unwrap();
    // Forge a second lease on the same item for the same contributor.
    let forged = app
        .block_on(async {
            use sea_orm::{ActiveModelTrait, Set};
            lease::ActiveModel {
                project_id: Set(p.id),
                item_id: Set(t.item_id),
                user_id: Set(uid),
                status: Set("open".into()),
                expires_at: Set(i64::MAX / 2),
                created_at: Set(0),
                ..Default::default()
            }
            .insert(app.db())
            .await
        })
        .unwrap();
    let mut req = answer(&t, "negative");
    req.lease_id = forged.id;
    req.idempotency_key = "second".into();
    assert_problem(c.submit(&req), 409, "already-answered");
    assert_eq!(answers_in_db(&app, p.id), 1);
    // And the refused attempt left the forged lease as it was.
    let l = app
        .block_on(lease::Entity::find_by_id(forged.id).one(app.db()))
        .unwrap()
        .unwrap();
    assert_eq!(l.status, "open");
}

#[test]
fn leases_survive_a_server_restart() {
    let mut app = spawn_app();
    let (_, p) = funded_project(&app, 1, 1);
    let (_, a) = contributor(&app, "holder");
    let (_, b) = contributor(&app, "waiter");
    let t = a.lease(p.id, 1).unwrap().remove(0);
    app.restart();
    let (a, b) = (a.with_base(&app.address), b.with_base(&app.address));
    assert!(
        b.lease(p.id, 1).unwrap().is_empty(),
        "the rebuilt queue still knows the lease"
    );
    let s = a.submit(&answer(&t, "positive")).unwrap();
    assert_eq!(s.status, AnswerStatus::Accepted);
    assert_ledger_clean(&app);
}

#[test]
fn a_released_lease_frees_the_item_for_someone_else() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 1);
    let (_, a) = contributor(&app, "skipper");
    let (_, b) = contributor(&app, "taker");
    let t = a.lease(p.id, 1).unwrap().remove(0);
    a.release(t.lease_id).unwrap();
    assert_problem(a.submit(&answer(&t, "positive")), 410, "lease-released");
    let got = b.lease(p.id, 1).unwrap();
    assert_eq!(got[0].item_id, t.item_id);
}

#[test]
fn a_draft_project_hands_out_no_tasks() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "drafter", 10);
    let p = b.create_project(&project_spec(1, 1000, 1_000_000)).unwrap();
    b.import_items(p.id, "jsonl", items_jsonl(2).as_bytes())
        .unwrap();
    let (_, c) = contributor(&app, "eager");
    assert_problem(c.lease(p.id, 1), 404, "project-not-found");
    assert_problem(b.lease(p.id, 1), 403, "role-required");
}

#[test]
fn only_an_open_lease_can_be_renewed() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 3, 1);
    let (_, c) = contributor(&app, "renewer");
    let tasks = c.lease(p.id, 2).unwrap();
    let renewed = c.renew(tasks[0].lease_id).unwrap();
    assert!(renewed.expires_at.0 >= tasks[0].expires_at.0);
    c.release(tasks[0].lease_id).unwrap();
    assert_problem(c.renew(tasks[0].lease_id), 410, "lease-released");
    c.submit(&answer(&tasks[1], &truth(&tasks[1]))).unwrap();
    assert_problem(c.renew(tasks[1].lease_id), 409, "lease-already-used");
    let (_, other) = contributor(&app, "not-the-holder");
    let third = c.lease(p.id, 1).unwrap().remove(0);
    assert_problem(other.renew(third.lease_id), 403, "foreign-lease");
}
