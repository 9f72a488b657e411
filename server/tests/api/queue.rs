//! The queue at scale: batches, ordering, replicas, flushes.

use std::sync::{Arc, Barrier};

use sahel_protocol::Micros;
use sahel_protocol::api::{self, AnswerStatus};
use sahel_worker::client::Client;
use serde_json::json;

use crate::helpers::*;

#[test]
fn batch_leases_and_batch_submissions_are_judged_one_by_one() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 6, 2);
    let (_, c) = contributor(&app, "batcher");
    let (_, other) = contributor(&app, "other");
    let tasks = c.lease(p.id, 5).unwrap();
    assert_eq!(tasks.len(), 5);
    let theirs = other.lease(p.id, 1).unwrap().remove(0);

    let mut batch: Vec<api::SubmitAnswer> =
        tasks[..3].iter().map(|t| answer(t, &truth(t))).collect();
    batch.push(api::SubmitAnswer {
        answer: json!({"label": "furious"}),
        ..answer(&tasks[3], "x")
    });
    batch.push(answer(&theirs, "positive"));
    let results = c.submit_batch(batch.clone()).unwrap();
    assert_eq!(results.len(), 5);
    let ids: Vec<i64> = results[..3]
        .iter()
        .map(|r| r.submission.as_ref().unwrap().id)
        .collect();
    assert_eq!(
        results[3].error.as_ref().unwrap().kind,
        "urn:sahel:problem:invalid-answer"
    );
    assert_eq!(
        results[4].error.as_ref().unwrap().kind,
        "urn:sahel:problem:foreign-lease"
    );
    assert_eq!(answers_in_db(&app, p.id), 3);

    // Retrying the whole batch doubles nothing and returns the same ids.
    let again = c.submit_batch(batch).unwrap();
    let again_ids: Vec<i64> = again[..3]
        .iter()
        .map(|r| r.submission.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, again_ids);
    assert_eq!(answers_in_db(&app, p.id), 3);

    let too_many: Vec<api::SubmitAnswer> =
        (0..101).map(|_| answer(&tasks[4], "positive")).collect();
    assert_problem(c.submit_batch(too_many), 422, "invalid-count");
    assert_problem(c.lease(p.id, 101), 422, "invalid-count");
}

#[test]
fn items_already_started_are_finished_before_new_ones_in_import_order() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 4, 2);
    let (_, a) = contributor(&app, "first");
    let (_, b) = contributor(&app, "second");
    let a1 = a.lease(p.id, 1).unwrap().remove(0);
    let a2 = a.lease(p.id, 1).unwrap().remove(0);
    assert!(a1.item_id < a2.item_id, "fresh items go in import order");
    a.submit(&answer(&a2, "positive")).unwrap();
    // b is offered the started items (a1 leased, a2 answered) before item 3.
    let got = leased_items(&b, p.id, 3);
    assert_eq!(got[..2], [a1.item_id, a2.item_id]);
    assert!(got[2] > a2.item_id);
}

/// A contributor who has touched every started item at the head of the
/// queue (more than the lease scan's first page) is handed the first
/// item they have not touched, and another contributor the started ones
/// first, on either queue backend.
#[test]
fn a_contributor_past_many_started_items_gets_the_first_untouched_one() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 60, 3);
    let (_, a) = contributor(&app, "busy");
    let (_, b) = contributor(&app, "newcomer");
    let mut answered: Vec<i64> = Vec::new();
    for _ in 0..2 {
        let tasks = a.lease(p.id, 20).unwrap();
        let results = a
            .submit_batch(tasks.iter().map(|t| answer(t, &truth(t))).collect())
            .unwrap();
        assert!(results.iter().all(|r| r.submission.is_some()));
        answered.extend(tasks.iter().map(|t| t.item_id));
    }
    let held = leased_items(&a, p.id, 5);
    assert_eq!(held.len(), 5);
    // 45 started items now sort first, all of them a's.
    let next = a.lease(p.id, 1).unwrap().remove(0).item_id;
    let first_fresh = answered.iter().chain(&held).max().unwrap() + 1;
    assert_eq!(next, first_fresh, "a skips the 45 items it touched");
    let theirs = leased_items(&b, p.id, 3);
    let mut started: Vec<i64> = answered.iter().chain(&held).copied().collect();
    started.sort_unstable();
    assert_eq!(theirs, started[..3], "b is offered started items first");
    assert_queue_invariants(&app, p.id);
}

/// The items of a lease call of `count` tasks, in the order handed out.
fn leased_items(c: &Client, project: i64, count: u32) -> Vec<i64> {
    c.lease(project, count)
        .unwrap()
        .iter()
        .map(|t| t.item_id)
        .collect()
}

#[test]
fn next_task_from_any_project_follows_project_priority() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "prio", 100);
    let mk = |priority: i32| {
        let mut spec = project_spec(1, 1_000, 2_000);
        spec.priority = priority;
        let p = b.create_project(&spec).unwrap();
        b.import_items(p.id, "jsonl", items_jsonl(2).as_bytes())
            .unwrap();
        b.fund(p.id, "f").unwrap()
    };
    let low = mk(1);
    let high = mk(5);
    let (_, c) = contributor(&app, "anywhere");
    let tasks = c.lease_any(3).unwrap();
    let projects: Vec<i64> = tasks.iter().map(|t| t.project_id).collect();
    assert_eq!(projects, vec![high.id, high.id, low.id]);
    assert_eq!(
        c.lease_any(5).unwrap().len(),
        1,
        "one item of the low project is left"
    );
    assert!(
        b.lease_any(1).is_err(),
        "buyers without the contributor role cannot lease"
    );
}

#[test]
fn three_replicas_on_one_database_and_redis_behave_as_one_server() {
    let app = spawn_app();
    if !have_pg_and_redis(&app) {
        return;
    }
    let replicas = [app.spawn_replica(), app.spawn_replica()];
    let (_, p) = funded_project(&app, 40, 3);
    let addresses: Vec<String> = std::iter::once(app.address.clone())
        .chain(replicas.iter().map(|r| r.address.clone()))
        .collect();
    let people: Vec<(i64, Client)> = (0..8)
        .map(|i| contributor(&app, &format!("r{i}")))
        .collect();
    let start = Arc::new(Barrier::new(people.len()));
    let handles: Vec<_> = people
        .iter()
        .map(|(_, c)| {
            let clients: Vec<Client> = addresses.iter().map(|a| c.with_base(a)).collect();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                work_until_done(&clients, p.id)
            })
        })
        .collect();
    let stats: Vec<WorkStats> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let answered: u32 = stats.iter().map(|s| s.answered).sum();
    assert_eq!(
        answered, 120,
        "40 items x overlap 3, none over-assigned: {stats:?}"
    );
    assert_eq!(
        stats.iter().map(|s| s.refused).sum::<u32>(),
        0,
        "no lease was ever handed out twice"
    );
    assert_eq!(items_with_status(&app, p.id, "resolved"), 40);
    assert_queue_invariants(&app, p.id);
    for (id, _) in &people {
        let accepted = app.block_on(async {
            use sahel_server::queue::entity::answer;
            use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
            answer::Entity::find()
                .filter(answer::Column::UserId.eq(*id))
                .filter(answer::Column::Status.eq("accepted"))
                .count(app.db())
                .await
        });
        assert_eq!(
            balance_of(&app, *id),
            Micros(10_000 * accepted.unwrap() as i64),
            "no double credit"
        );
    }
    assert_ledger_clean(&app);
}

#[test]
fn a_redis_flush_in_the_middle_of_a_run_loses_and_doubles_nothing() {
    let app = spawn_app();
    if !app.uses_redis() {
        assert!(
            !sahel_server::testing::require_services(),
            "needs REDIS_URL"
        );
        eprintln!("skipped: needs Redis (REDIS_URL)");
        return;
    }
    let (_, p) = funded_project(&app, 30, 3);
    let people: Vec<(i64, Client)> = (0..5)
        .map(|i| contributor(&app, &format!("f{i}")))
        .collect();
    // Some answers before the flush.
    for (_, c) in &people[..3] {
        for t in c.lease(p.id, 4).unwrap() {
            c.submit(&answer(&t, &truth(&t))).unwrap();
        }
    }
    let held = people[3].1.lease(p.id, 2).unwrap();
    let before = answers_in_db(&app, p.id);
    assert_eq!(before, 12);
    assert!(app.flush_redis() > 0);

    // The first lease after the flush sees the queue rebuilding.
    let (_, probe) = contributor(&app, "probe");
    let first = probe.lease(p.id, 1);
    assert_problem(first, 503, "queue-rebuilding");

    // A lease taken before the flush is still answerable: it is in the database.
    for t in &held {
        let s = people[3].1.submit(&answer(t, &truth(t))).unwrap();
        assert_ne!(s.status, AnswerStatus::Rejected);
    }
    let clients: Vec<Client> = people.iter().map(|(_, c)| c.clone()).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|c| std::thread::spawn(move || work_until_done(&[c], p.id)))
        .collect();
    let stats: Vec<WorkStats> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let after: u32 = stats.iter().map(|s| s.answered).sum();
    assert_eq!(
        before as u32 + 2 + after,
        90,
        "every answer kept, none doubled: {stats:?}"
    );
    assert_eq!(answers_in_db(&app, p.id), 90);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 30);
    assert_queue_invariants(&app, p.id);
    assert_ledger_clean(&app);
}

/// Sends a POST signed by hand with a fixed nonce, as an attacker
/// replaying a captured request would.
fn signed_post(
    app: &TestApp,
    key: &ed25519_dalek::SigningKey,
    path: &str,
    body: &[u8],
    nonce: &str,
) -> sahel_worker::client::RawResponse {
    use sahel_protocol::signing::{self, RequestParts};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let parts = RequestParts {
        method: "POST",
        path,
        query: "",
        timestamp: now,
        nonce,
        body,
    };
    let h = signing::sign_request(key, &parts);
    anon(app)
        .raw_with("POST", path, Some(body), "application/json", &h.pairs())
        .unwrap()
}

#[test]
fn a_replayed_signed_lease_or_submission_is_refused_and_changes_nothing() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 3, 1);
    let (user, b) = sign_up(
        &app,
        "replayer@test.sahel",
        &[sahel_protocol::api::Role::Contributor],
    );
    let key = new_key();
    b.link_key(user.id, &key, None).unwrap();

    let path = format!("/api/v1/projects/{}/leases", p.id);
    let first = signed_post(&app, &key, &path, br#"{"count":1}"#, "leasenonce0000000001");
    assert_eq!(first.status, 200, "{}", first.text());
    let task = first.json::<api::LeaseResponse>().unwrap().tasks.remove(0);
    let again = signed_post(&app, &key, &path, br#"{"count":1}"#, "leasenonce0000000001");
    assert_eq!(again.status, 401);
    assert_eq!(
        again.json::<api::Problem>().unwrap().kind,
        "urn:sahel:problem:replayed-request"
    );
    assert_eq!(
        leases_of_user(&app, user.id),
        1,
        "the replay leased nothing"
    );

    let body = serde_json::to_vec(&answer(&task, "positive")).unwrap();
    assert_eq!(
        signed_post(
            &app,
            &key,
            "/api/v1/submissions",
            &body,
            "submitnonce000000001"
        )
        .status,
        200
    );
    let replay = signed_post(
        &app,
        &key,
        "/api/v1/submissions",
        &body,
        "submitnonce000000001",
    );
    assert_eq!(replay.status, 401);
    assert_eq!(answers_in_db(&app, p.id), 1);

    // A request refused for another reason still burns its nonce.
    let bad = serde_json::to_vec(
        &json!({"lease_id": task.lease_id, "answer": {"label": "x"}, "idempotency_key": "k2"}),
    )
    .unwrap();
    assert_eq!(
        signed_post(
            &app,
            &key,
            "/api/v1/submissions",
            &bad,
            "refusednonce00000001"
        )
        .status,
        409
    );
    assert_eq!(
        signed_post(
            &app,
            &key,
            "/api/v1/submissions",
            &bad,
            "refusednonce00000001"
        )
        .status,
        401
    );
}

/// The queue may offer an item the database has closed (a queue update
/// lost when Redis was unreachable): the lease transaction reads the item
/// and leases only what is still open, and the queue is corrected.
#[test]
fn an_item_closed_behind_the_queues_back_is_not_leased() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 2, 1);
    let first = app.block_on(async {
        use sahel_server::projects::entity::item;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let first = item::Entity::find()
            .filter(item::Column::ProjectId.eq(p.id))
            .order_by_asc(item::Column::Seq)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        item::Entity::update_many()
            .col_expr(
                item::Column::Status,
                sea_orm::sea_query::Expr::value("resolved"),
            )
            .filter(item::Column::Id.eq(first.id))
            .exec(app.db())
            .await
            .unwrap();
        first.id
    });
    let (alice, a) = contributor(&app, "behind-a");
    let tasks = a.lease(p.id, 2).unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_ne!(tasks[0].item_id, first, "the closed item was not leased");
    let (_, b) = contributor(&app, "behind-b");
    assert!(
        b.lease(p.id, 2).unwrap().is_empty(),
        "the queue no longer offers the closed item"
    );
    let leases = leases_of_project(&app, p.id);
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].user_id, leases[0].item_id),
        (alice, tasks[0].item_id)
    );
}

/// A server remembers who owns a key (it saves a query per request), so a
/// revocation made through another server must still stop the key there at
/// once: the write that records the request's nonce checks the key.
#[test]
fn a_key_revoked_through_one_server_is_refused_at_once_by_another() {
    let app = spawn_app();
    // The in-process queue is not shared: without Redis the "other" server
    // is the same one, whose cache holds the key just the same.
    let replica = have_pg_and_redis(&app).then(|| app.spawn_replica());
    let elsewhere = replica.as_ref().map_or(&app.address, |r| &r.address);
    let (_, p) = funded_project(&app, 3, 1);
    let (user, b) = sign_up(
        &app,
        "revoked-elsewhere@test.sahel",
        &[sahel_protocol::api::Role::Contributor],
    );
    let key = new_key();
    let me = b.link_key(user.id, &key, None).unwrap();
    let there = Client::new(elsewhere, sahel_worker::client::Auth::Key(key.clone()));
    let task = there.lease(p.id, 1).unwrap().remove(0);

    b.revoke_key(me.keys[0].id).unwrap();
    assert_problem(there.submit(&answer(&task, "positive")), 401, "unknown-key");
    assert_eq!(
        answers_in_db(&app, p.id),
        0,
        "the refused answer was not saved"
    );
    assert_problem(there.lease(p.id, 1), 401, "unknown-key");
    assert_eq!(
        leases_of_user(&app, user.id),
        1,
        "the refused lease call leased nothing"
    );

    // A fresh key of the same account works on both servers.
    let fresh = new_key();
    b.link_key(user.id, &fresh, None).unwrap();
    let renewed = there.with_auth(sahel_worker::client::Auth::Key(fresh));
    assert_eq!(
        renewed.submit(&answer(&task, "positive")).unwrap().status,
        AnswerStatus::Accepted
    );
    assert_ledger_clean(&app);
}

/// A server that saw a bounty open leases without reading the bounty
/// again: the lease batch checks its status in the transaction that writes
/// the leases, so a pause or a close made through another server stops
/// leasing there at once, and a resume starts it again.
#[test]
fn a_bounty_paused_or_closed_through_one_server_stops_leases_at_once_on_another() {
    let app = spawn_app();
    let replica = have_pg_and_redis(&app).then(|| app.spawn_replica());
    let elsewhere = replica.as_ref().map_or(&app.address, |r| &r.address);
    let (b, p) = funded_project(&app, 6, 1);
    let (uid, c) = contributor(&app, "paused-elsewhere");
    let there = c.with_base(elsewhere);
    let held = there.lease(p.id, 1).unwrap().remove(0);

    b.pause_project(p.id).unwrap();
    assert_problem(there.lease(p.id, 2), 409, "project-paused");
    assert_problem(there.lease(p.id, 1), 409, "project-paused");
    assert_eq!(
        leases_of_user(&app, uid),
        1,
        "the refused calls leased nothing"
    );
    // A task taken before the pause may still be answered.
    assert_eq!(
        there.submit(&answer(&held, &truth(&held))).unwrap().status,
        AnswerStatus::Accepted
    );

    b.resume_project(p.id).unwrap();
    let next = there.lease(p.id, 5).unwrap();
    assert_eq!(
        next.len(),
        5,
        "the items set aside for the refused calls went back to the queue"
    );

    b.close_project(p.id, "close-elsewhere").unwrap();
    assert_problem(there.lease(p.id, 1), 409, "project-closed");
    assert_problem(
        there.submit(&answer(&next[0], &truth(&next[0]))),
        410,
        "lease-released",
    );
    assert_eq!(leases_of_user(&app, uid), 6);
    assert_eq!(answers_in_db(&app, p.id), 1);
    assert_ledger_clean(&app);
}

/// A server keeps the leases it hands out, so that their answers need no
/// read, but trusts only what never changes: a lease released through
/// another server is refused here, and one renewed there is still good
/// here after its first expiry.
#[test]
fn a_lease_released_or_renewed_through_another_server_is_judged_by_the_database() {
    let app = TestApp::spawn(|c| c.lease_secs = 1);
    let replica = have_pg_and_redis(&app).then(|| app.spawn_replica());
    let elsewhere = replica.as_ref().map_or(&app.address, |r| &r.address);
    let (_, p) = funded_project(&app, 2, 1);
    let (_, c) = contributor(&app, "held-elsewhere");
    let there = c.with_base(elsewhere);
    let mut tasks = there.lease(p.id, 2).unwrap();
    let (released, renewed) = (tasks.remove(0), tasks.remove(0));

    c.release(released.lease_id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let info = c.renew(renewed.lease_id).unwrap();
    assert!(info.expires_at.0 > renewed.expires_at.0);
    // Past the expiry the lease was handed out with, inside the renewed one.
    std::thread::sleep(std::time::Duration::from_millis(
        (renewed.expires_at.0 - sahel_server::db::now_ms() + 100).max(0) as u64,
    ));
    assert!(
        sahel_server::db::now_ms() < info.expires_at.0,
        "the machine was too slow"
    );

    assert_problem(
        there.submit(&answer(&released, &truth(&released))),
        410,
        "lease-released",
    );
    assert_eq!(
        there
            .submit(&answer(&renewed, &truth(&renewed)))
            .unwrap()
            .status,
        AnswerStatus::Accepted
    );
    assert_eq!(answers_in_db(&app, p.id), 1);
    assert_ledger_clean(&app);
}

/// Concurrent lease calls are written together (group commit): each call
/// still gets its own leases, and a nonce replayed within the same burst
/// refuses that one request, not its neighbours.
#[test]
fn concurrent_lease_calls_each_get_their_own_leases_and_a_replay_among_them_is_refused() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 40, 3);
    let path = format!("/api/v1/projects/{}/leases", p.id);
    let people: Vec<(api::User, ed25519_dalek::SigningKey)> = (0..10)
        .map(|i| {
            let (user, c) = sign_up(
                &app,
                &format!("burst{i}@test.sahel"),
                &[sahel_protocol::api::Role::Contributor],
            );
            let key = new_key();
            c.link_key(user.id, &key, None).unwrap();
            (user, key)
        })
        .collect();
    // Everyone leases two tasks at once; the first contributor's request
    // is sent twice, byte for byte.
    let mut calls: Vec<(usize, String)> = (0..people.len())
        .map(|i| (i, format!("burstnonce{i:010}")))
        .collect();
    calls.push((0, "burstnonce0000000000".into()));
    let barrier = Arc::new(Barrier::new(calls.len()));
    let responses: Vec<(usize, u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .iter()
            .map(|(i, nonce)| {
                let (barrier, app, path, key) = (barrier.clone(), &app, &path, &people[*i].1);
                s.spawn(move || {
                    barrier.wait();
                    let r = signed_post(app, key, path, br#"{"count":2}"#, nonce);
                    (*i, r.status, r.text())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let of = |i: usize| responses.iter().filter(move |r| r.0 == i);
    let first: Vec<u16> = of(0).map(|r| r.1).collect();
    assert!(
        first.contains(&200) && first.contains(&401),
        "the same signed request twice: one served, one refused ({first:?})"
    );
    let leases = leases_of_project(&app, p.id);
    for (i, (user, _)) in people.iter().enumerate() {
        let served: Vec<&(usize, u16, String)> = of(i).filter(|r| r.1 == 200).collect();
        assert_eq!(
            served.len(),
            1,
            "contributor {i}: {:?}",
            of(i).collect::<Vec<_>>()
        );
        let tasks = serde_json::from_str::<api::LeaseResponse>(&served[0].2)
            .unwrap()
            .tasks;
        assert_eq!(tasks.len(), 2, "contributor {i} asked for two tasks");
        let mut rows: Vec<(i64, i64)> = leases
            .iter()
            .filter(|l| l.user_id == user.id)
            .map(|l| (l.id, l.item_id))
            .collect();
        let mut given: Vec<(i64, i64)> = tasks.iter().map(|t| (t.lease_id, t.item_id)).collect();
        rows.sort();
        given.sort();
        assert_eq!(
            rows, given,
            "contributor {i}: the leases returned are exactly theirs"
        );
        assert_ne!(given[0].1, given[1].1, "two different items");
    }
    assert_eq!(leases.len(), 2 * people.len(), "the replay leased nothing");

    // The metrics count the calls written (not the replay) and the
    // transactions that wrote them.
    let value = |name: &str| metric(&app, name);
    assert_eq!(
        value("sahel_lease_calls_written_total"),
        people.len() as u64
    );
    let writes = value("sahel_lease_writes_total");
    assert!(
        (1..=people.len() as u64).contains(&writes),
        "{writes} transactions for {} calls",
        people.len()
    );
}

/// Concurrent answers are written together (group commit). One refused
/// answer in the burst (a second answer on a used lease) is refused alone:
/// every other answer is kept once, the items resolve and the ledger
/// balances.
#[test]
fn a_refused_answer_in_a_burst_of_answers_refuses_only_itself() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 4, 3);
    let people: Vec<(i64, Client)> = (0..12)
        .map(|i| contributor(&app, &format!("answerburst{i}")))
        .collect();
    let tasks: Vec<api::Task> = people
        .iter()
        .map(|(_, c)| c.lease(p.id, 1).unwrap().remove(0))
        .collect();
    // Everyone answers at once; the first contributor also sends another
    // answer on the same lease under another idempotency key.
    let mut sends: Vec<(usize, api::SubmitAnswer)> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (i, answer(t, &truth(t))))
        .collect();
    sends.push((
        0,
        api::SubmitAnswer {
            idempotency_key: "a-second-answer".into(),
            ..answer(&tasks[0], &truth(&tasks[0]))
        },
    ));
    let barrier = Arc::new(Barrier::new(sends.len()));
    let results: Vec<(usize, String, Result<api::Submission, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = sends
            .iter()
            .map(|(i, req)| {
                let (barrier, c) = (barrier.clone(), &people[*i].1);
                s.spawn(move || {
                    barrier.wait();
                    let r = c
                        .submit(req)
                        .map_err(|e| e.code().unwrap_or_default().to_owned());
                    (*i, req.idempotency_key.clone(), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Contributor 0's two answers race for one lease: one wins.
    let first: Vec<&Result<api::Submission, String>> =
        results.iter().filter(|r| r.0 == 0).map(|r| &r.2).collect();
    assert_eq!(first.iter().filter(|r| r.is_ok()).count(), 1, "{first:?}");
    assert!(
        first
            .iter()
            .any(|r| r.as_ref().err().map(String::as_str) == Some("lease-already-used")),
        "{first:?}"
    );
    for (i, _, r) in results.iter().filter(|r| r.0 != 0) {
        let s = r
            .as_ref()
            .unwrap_or_else(|e| panic!("contributor {i}: {e}"));
        assert_eq!(s.lease_id, tasks[*i].lease_id);
    }
    assert_eq!(
        answers_in_db(&app, p.id),
        12,
        "every answer once, the refused one not at all"
    );
    assert_eq!(
        items_with_status(&app, p.id, "open"),
        0,
        "four items, three answers each"
    );
    assert_ledger_clean(&app);
}

/// A batch of answers that completes many items at once decides, closes
/// and pays them all together (a tie among them asks for one more answer),
/// with exactly the result of answering one at a time: each item paid
/// once under its key, less the fee, every receipt chained. A batch with
/// a refusal in it is written answer by answer instead, and refuses only
/// that answer.
#[test]
fn a_batch_completing_many_items_decides_and_pays_each_once() {
    use sahel_server::ledger::{self, AccountRef, entity::transaction};
    use sahel_server::projects::entity::item;
    use sahel_server::queue::entity::answer;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let app = TestApp::spawn(|c| c.fee_bps = 250);
    let (_, p) = funded_project(&app, 10, 3);
    let (reward, paid) = (10_000, 10_000 - 250);
    let people: Vec<(i64, Client)> = ["batch-a", "batch-b", "batch-c"]
        .iter()
        .map(|n| contributor(&app, n))
        .collect();
    let leased: Vec<Vec<api::Task>> = people
        .iter()
        .map(|(_, c)| {
            let mut t = c.lease(p.id, 10).unwrap();
            t.sort_by_key(|t| t.item_id);
            t
        })
        .collect();
    let other = |t: &api::Task, n: usize| {
        let i = CLASSES.iter().position(|c| *c == truth(t)).unwrap();
        CLASSES[(i + n) % 3].to_owned()
    };
    // a answers every item rightly; b errs on the last two; c, whose batch
    // completes every item, errs on item 8 otherwise than b (a three-way
    // tie) and agrees on item 9.
    let labels = |who: usize, t: &api::Task, k: usize| match (who, k) {
        (1, 8 | 9) => other(t, 1),
        (2, 8) => other(t, 2),
        _ => truth(t),
    };
    let mut results = Vec::new();
    for (who, (_, c)) in people.iter().enumerate() {
        let batch = leased[who]
            .iter()
            .enumerate()
            .map(|(k, t)| answer(t, &labels(who, t, k)))
            .collect();
        results = c.submit_batch(batch).unwrap();
        assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    }
    let last: Vec<&api::Submission> = results
        .iter()
        .map(|r| r.submission.as_ref().unwrap())
        .collect();
    for (k, s) in last.iter().enumerate() {
        let (status, pay) = match k {
            8 => (AnswerStatus::Pending, 0),
            _ => (AnswerStatus::Accepted, reward),
        };
        assert_eq!((s.status, s.paid), (status, Micros(pay)), "item {k}");
    }
    let tied = leased[0][8].item_id;
    let needed = app
        .block_on(item::Entity::find_by_id(tied).one(app.db()))
        .unwrap()
        .unwrap()
        .needed;
    assert_eq!(needed, 4, "a three-way tie asks for a fourth answer");
    assert_eq!(items_with_status(&app, p.id, "resolved"), 9);
    let with_status = |status: &str| {
        app.block_on(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(p.id))
                .filter(answer::Column::Status.eq(status))
                .count(app.db()),
        )
        .unwrap()
    };
    assert_eq!(
        (
            with_status("accepted"),
            with_status("rejected"),
            with_status("pending")
        ),
        (26, 1, 3)
    );
    let paid_items = app
        .block_on(
            transaction::Entity::find()
                .filter(transaction::Column::IdempotencyKey.starts_with("resolve:"))
                .count(app.db()),
        )
        .unwrap();
    assert_eq!(paid_items, 9, "one payment per resolved item");
    let balances: Vec<i64> = people.iter().map(|(u, _)| balance_of(&app, *u).0).collect();
    assert_eq!(balances, [9 * paid, 8 * paid, 9 * paid]);
    let fee = app
        .block_on(ledger::balance(app.db(), AccountRef::Fee))
        .unwrap();
    assert_eq!(fee, Micros(26 * 250));
    assert_eq!(escrow_of(&app, p.id), Micros(30 * reward - 26 * reward));
    assert_eq!(metric(&app, "sahel_answer_batches_split_total"), 0);
    assert_ledger_clean(&app);

    // The fourth answer breaks the tie. Sent twice on one lease under two
    // keys in one batch, the second is refused and the first kept.
    let (d_id, d) = contributor(&app, "batch-d");
    let t = d.lease(p.id, 1).unwrap().remove(0);
    assert_eq!(t.item_id, tied);
    let twice = vec![
        answer(&t, &truth(&t)),
        api::SubmitAnswer {
            idempotency_key: "another-key".into(),
            ..answer(&t, &truth(&t))
        },
    ];
    let results = d.submit_batch(twice).unwrap();
    let s = results[0].submission.as_ref().expect("the first is kept");
    assert_eq!((s.status, s.paid), (AnswerStatus::Accepted, Micros(reward)));
    assert_eq!(
        results[1].error.as_ref().unwrap().kind,
        "urn:sahel:problem:lease-already-used"
    );
    assert_eq!(metric(&app, "sahel_answer_batches_split_total"), 1);
    assert_eq!(items_with_status(&app, p.id, "open"), 0);
    assert_eq!(balance_of(&app, people[0].0), Micros(10 * paid));
    assert_eq!(balance_of(&app, d_id), Micros(paid));
    assert_eq!(escrow_of(&app, p.id), Micros(30 * reward - 28 * reward));
    assert_ledger_clean(&app);
}

/// The write batches' set-valued statements (`db::shape`): on PostgreSQL a
/// set is one bound value, on SQLite a list; either way exactly the listed
/// rows are read and changed, a listed null is written as null, and rows
/// inserted together come back as written, quotes and all.
#[test]
fn set_valued_statements_touch_exactly_their_rows_on_either_database() {
    use sahel_server::db::shape;
    use sahel_server::projects::entity::item;
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let app = spawn_app();
    let (_, p) = funded_project(&app, 3, 1);
    app.block_on(async {
        let db = app.db();
        let backend = db.get_database_backend();
        let ids_where = |cond: Expr| async move {
            let mut got: Vec<i64> = item::Entity::find()
                .filter(cond)
                .all(db)
                .await
                .unwrap()
                .into_iter()
                .map(|it| it.id)
                .collect();
            got.sort_unstable();
            got
        };
        let ids = ids_where(Expr::col(item::Column::ProjectId).eq(p.id)).await;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let picked = |set: Vec<i64>| ids_where(shape::any_of(backend, item::Column::Id, set));
        assert_eq!(picked(vec![c, a]).await, vec![a, c]);
        assert_eq!(picked(Vec::new()).await, Vec::<i64>::new());

        for (id, kept) in [(b, "old"), (c, "kept")] {
            item::Entity::update_many()
                .col_expr(item::Column::Result, Expr::value(kept))
                .filter(item::Column::Id.eq(id))
                .exec(db)
                .await
                .unwrap();
        }
        let tricky = "a \"quoted\" {brace}, back\\slash, é, 'single'";
        let pairs = [
            (a, sea_orm::Value::from(tricky)),
            (b, sea_orm::Value::String(None)),
        ];
        let changed = item::Entity::update_many()
            .col_expr(
                item::Column::Result,
                shape::per_id(
                    backend,
                    item::Column::Id,
                    &pairs,
                    "text",
                    Expr::col(item::Column::Result),
                ),
            )
            .filter(shape::any_of(backend, item::Column::Id, [a, b, c]))
            .exec(db)
            .await
            .unwrap();
        assert_eq!(changed.rows_affected, 3);
        let result = |id: i64| async move {
            item::Entity::find_by_id(id)
                .one(db)
                .await
                .unwrap()
                .unwrap()
                .result
        };
        assert_eq!(result(a).await.as_deref(), Some(tricky));
        assert_eq!(result(b).await, None, "a listed null is written");
        assert_eq!(result(c).await.as_deref(), Some("kept"), "unlisted");

        let row = |seq: i64, data: &str| item::ActiveModel {
            project_id: Set(p.id),
            seq: Set(seq),
            data: Set(data.to_owned()),
            status: Set("cancelled".into()),
            needed: Set(2),
            answers_count: Set(0),
            result: Set(None),
            created_at: Set(7),
            resolved_at: Set(None),
            ..Default::default()
        };
        let mut written = shape::insert_rows(db, vec![row(100, tricky), row(101, "{\"n\":1}")])
            .await
            .unwrap();
        written.sort_by_key(|it| it.seq);
        assert_eq!(written.len(), 2);
        assert_ne!(written[0].id, written[1].id);
        for (it, data) in written.iter().zip([tricky, "{\"n\":1}"]) {
            let stored = item::Entity::find_by_id(it.id)
                .one(db)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&stored, it, "returned as stored");
            assert_eq!(stored.data, data);
            assert_eq!(
                (stored.needed, stored.result, stored.created_at),
                (2, None, 7)
            );
        }
    });
}

/// A contributor signed up through the API: the bearer token that a
/// hand-written request carries, and a client using it.
fn with_token(app: &TestApp, name: &str) -> (String, Client) {
    let (_, token) = sign_up_for_token(
        app,
        &format!("{name}@test.sahel"),
        &[api::Role::Contributor],
    );
    let c = bearer(app, &token);
    (token, c)
}

/// Holds the writer until the returned transaction ends: on SQLite the
/// write gate, on PostgreSQL a lock on the row of lease `lease_id`, which
/// any write of that lease waits for.
fn hold_the_writer(app: &TestApp, lease_id: i64) -> sahel_server::db::WriteTx {
    app.block_on(async {
        use sea_orm::ConnectionTrait;
        let tx = app.state.db.write().await.unwrap();
        if app.is_postgres() {
            tx.execute_unprepared(&format!(
                "SELECT id FROM leases WHERE id = {lease_id} FOR UPDATE"
            ))
            .await
            .unwrap();
        }
        tx
    })
}

/// Sends `POST path` with `body` as `token`'s, long enough for it to reach
/// the writer, then resets the connection and gives the server time to
/// drop the request's handler.
fn post_then_hang_up(app: &TestApp, path: &str, token: &str, body: &str) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.address.trim_start_matches("http://"),
        body.len()
    );
    app.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // The server's read fails and it drops the request's handler.
        // (Deprecated because a lingering close blocks the dropping
        // thread; a zero linger does not linger, it resets.)
        #[allow(deprecated)]
        s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// A client that hangs up while its answer waits for the writer does not
/// take the queue's update with it: the answer is committed all the same,
/// and the queue hears of it (otherwise it would offer the answered slot
/// again until the next rebuild).
#[test]
fn an_answer_whose_client_hung_up_still_reaches_the_queue() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 2, 2);
    let (token, c) = with_token(&app, "hangs-up");
    // A first answer, so that the server-held key that signs this
    // contributor's answers exists before the writer is held.
    let first = c.lease(p.id, 1).unwrap().remove(0);
    c.submit(&answer(&first, &truth(&first))).unwrap();
    let task = c.lease(p.id, 1).unwrap().remove(0);
    let recorded = metric(&app, "sahel_answers_recorded_total");

    let blocker = hold_the_writer(&app, task.lease_id);
    let body = serde_json::to_string(&answer(&task, &truth(&task))).unwrap();
    post_then_hang_up(&app, "/api/v1/submissions", &token, &body);
    app.block_on(blocker.commit()).unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&app, "sahel_answers_recorded_total") == recorded {
        assert!(
            std::time::Instant::now() < deadline,
            "the answer never reached the queue ({} answers kept)",
            answers_in_db(&app, p.id)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(answers_in_db(&app, p.id), 2);
    // The same answer sent again is the one already kept.
    let again = c.submit(&answer(&task, &truth(&task))).unwrap();
    assert_eq!(answers_in_db(&app, p.id), 2);
    assert_eq!(again.lease_id, task.lease_id);
    assert_queue_invariants(&app, p.id);
    assert_ledger_clean(&app);
}

/// A renewal whose client hangs up while it waits for the writer is carried
/// out to the end, in the database and in the queue alike (a drop between
/// the two would leave the queue ending the lease at its old expiry): past
/// that expiry the item is still held, and nobody else is handed it.
#[test]
fn a_renewal_whose_client_hung_up_still_reaches_the_queue() {
    use sahel_server::queue::entity::lease;
    use sea_orm::EntityTrait;
    let app = TestApp::spawn(|c| c.lease_secs = 3);
    let (_, p) = funded_project(&app, 1, 1);
    let (token, holder) = with_token(&app, "renews-then-hangs-up");
    let task = holder.lease(p.id, 1).unwrap().remove(0);
    // Late enough that the renewal moves the expiry.
    std::thread::sleep(std::time::Duration::from_millis(1_000));

    let blocker = hold_the_writer(&app, task.lease_id);
    let path = format!("/api/v1/leases/{}/renew", task.lease_id);
    post_then_hang_up(&app, &path, &token, "");
    app.block_on(blocker.commit()).unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let renewed = loop {
        let row = app
            .block_on(lease::Entity::find_by_id(task.lease_id).one(app.db()))
            .unwrap()
            .unwrap();
        if row.expires_at > task.expires_at.0 {
            break row.expires_at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewal never landed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Past the expiry the lease was handed out with, inside the renewed one.
    std::thread::sleep(std::time::Duration::from_millis(
        (task.expires_at.0 - sahel_server::db::now_ms() + 200).max(0) as u64,
    ));
    assert!(
        sahel_server::db::now_ms() < renewed,
        "the machine was too slow"
    );
    let (_, other) = contributor(&app, "next-in-line");
    assert!(
        other.lease(p.id, 1).unwrap().is_empty(),
        "an item under a renewed lease was handed out again"
    );
    assert_eq!(
        holder.submit(&answer(&task, &truth(&task))).unwrap().status,
        AnswerStatus::Accepted
    );
    assert_eq!(answers_in_db(&app, p.id), 1);
    assert_queue_invariants(&app, p.id);
    assert_ledger_clean(&app);
}

/// A lease's one status change, which every answer makes, rewrites the
/// row in its page on PostgreSQL and adds no index entry (a HOT update):
/// no index holds a lease's status, and leases' pages keep room. The
/// leases of the running bounty are still found by their owner and their
/// expiry. PostgreSQL only (SQLite has no such thing).
#[test]
fn a_leases_status_changes_without_new_index_entries() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

    let app = spawn_app();
    if !app.is_postgres() {
        return;
    }
    let (_, p) = funded_project(&app, 3, 1);
    let (_, c) = contributor(&app, "hot");
    let task = c.lease(p.id, 1).unwrap().remove(0);
    assert_eq!(
        c.my_leases()
            .unwrap()
            .iter()
            .map(|l| l.lease_id)
            .collect::<Vec<_>>(),
        vec![task.lease_id]
    );
    app.block_on(async {
        let tx = app.db().begin().await.unwrap();
        let run = |sql: String| Statement::from_string(DbBackend::Postgres, sql);
        let changed = tx
            .execute_raw(run(format!(
                "UPDATE leases SET status = 'submitted' WHERE id = {}",
                task.lease_id
            )))
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 1);
        let row = tx
            .query_one_raw(run(
                "SELECT pg_stat_get_xact_tuples_hot_updated('leases'::regclass)".into(),
            ))
            .await
            .unwrap()
            .unwrap();
        let hot: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(hot, 1, "HOT updates of leases");
        tx.rollback().await.unwrap();
    });
}

/// A write batch that closes items of several bounties takes their
/// completion locks in bounty-id order, whatever order its answers came
/// in: two replicas' batches crossing the same two bounties then wait for
/// each other instead of deadlocking. Here the second batch holds one
/// answer for bounty 2 (from the contributor with the lower id, so first
/// in the batch) and one for bounty 1, while the test holds bounty 2's
/// lock: the writer must be found holding bounty 1's lock and waiting for
/// bounty 2's. PostgreSQL only (SQLite has one writer and no such locks).
#[test]
fn a_batch_across_bounties_takes_their_completion_locks_in_id_order() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let app = spawn_app();
    if !app.is_postgres() {
        return;
    }
    // Overlap 1: each answer closes its item, and so takes its bounty's
    // completion lock.
    let [p1, p2, p3] = [(); 3].map(|()| funded_project(&app, 2, 1).1);
    assert!(p1.id < p2.id);
    let (a_id, a) = contributor(&app, "order-a");
    let (b_id, b) = contributor(&app, "order-b");
    let (_, x) = contributor(&app, "order-x");
    assert!(a_id < b_id, "a's answer comes first in the batch");
    let (ta, tb, tx) = (
        a.lease(p2.id, 1).unwrap().remove(0),
        b.lease(p1.id, 1).unwrap().remove(0),
        x.lease(p3.id, 1).unwrap().remove(0),
    );
    let writes = metric(&app, "sahel_answer_writes_total");
    let count = |sql: String| -> i64 {
        app.block_on(
            app.db()
                .query_one_raw(Statement::from_string(DbBackend::Postgres, sql)),
        )
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
    };
    let waiting_on_a_lock = || {
        count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database()"
                .into(),
        )
    };
    let submit = |c: Client, t: api::Task| {
        std::thread::spawn(move || c.submit(&answer(&t, &truth(&t))).unwrap())
    };

    // Waits up to 10 s; the locks the test holds are let go before any
    // assertion (a transaction dropped while panicking aborts the run).
    let wait_until = |done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    };

    // The first batch (x's answer, bounty 3) waits on x's lease row...
    let blocker = hold_the_writer(&app, tx.lease_id);
    let first = submit(x, tx);
    let writer_waited = wait_until(&|| waiting_on_a_lock() > 0);
    // ...while a's and b's answers queue up behind it, to go together.
    let second = [submit(a, ta), submit(b, tb)];
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    let bounty_2 = app.block_on(async {
        let held = app.state.db.write().await.unwrap();
        held.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({}, {})",
            0x5343, p2.id
        ))
        .await
        .unwrap();
        held
    });
    app.block_on(blocker.commit()).unwrap();
    first.join().unwrap();

    // 0x5343, the namespace of bounties' completion locks.
    let lock = |project: i64, granted: bool| {
        count(format!(
            "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database \
             WHERE d.datname = current_database() AND locktype = 'advisory' \
             AND classid = {} AND objid = {project} AND granted = {granted}",
            0x5343
        ))
    };
    let asked_for_2 = wait_until(&|| lock(p2.id, false) > 0);
    let holds_1 = lock(p1.id, true);
    app.block_on(bounty_2.commit()).unwrap();
    assert!(writer_waited, "the writer never waited on x's lease");
    assert!(
        asked_for_2,
        "the second batch never asked for bounty 2's lock"
    );
    assert_eq!(holds_1, 1, "bounty 1's lock is taken before bounty 2's");

    for s in second.map(|t| t.join().unwrap()) {
        assert_eq!(s.status, AnswerStatus::Accepted, "{s:?}");
    }
    assert_eq!(
        metric(&app, "sahel_answer_writes_total") - writes,
        2,
        "a's and b's answers were written in one batch"
    );
    assert_eq!(metric(&app, "sahel_answer_batches_split_total"), 0);
    for p in [&p1, &p2, &p3] {
        assert_queue_invariants(&app, p.id);
    }
    assert_ledger_clean(&app);
}

/// A bounty that completes, or that its buyer closes, is dropped from the
/// queue: on Redis none of its keys stay behind but the tombstone, and an
/// answer update that arrives after it recreates none.
#[test]
fn a_completed_or_closed_bounty_leaves_nothing_in_the_queue() {
    let app = spawn_app();
    let (_, done) = funded_project(&app, 6, 2);
    let people: Vec<Client> = (0..3)
        .map(|i| contributor(&app, &format!("u{i}")).1)
        .collect();
    let answered: u32 = people
        .iter()
        .map(|c| work_until_done(std::slice::from_ref(c), done.id).answered)
        .sum();
    assert_eq!(answered, 12);
    assert_eq!(items_with_status(&app, done.id, "resolved"), 6);
    assert!(!app.queue_holds(done.id), "a completed bounty stays loaded");
    // A lease call that saw the bounty open just before it completed, and
    // then found it unloaded, rebuilds it after the completion's unload.
    app.block_on(sahel_server::queue::load_project(&app.state, done.id))
        .unwrap();
    assert!(
        !app.queue_holds(done.id),
        "a late rebuild keeps a completed bounty"
    );

    // Another bounty, closed with leases out.
    let (b, closed) = funded_project(&app, 3, 2);
    assert_eq!(people[0].lease(closed.id, 2).unwrap().len(), 2);
    assert!(app.queue_holds(closed.id));
    b.close_project(closed.id, "close").unwrap();
    assert!(!app.queue_holds(closed.id), "a closed bounty stays loaded");

    if !app.uses_redis() {
        return;
    }
    for p in [done.id, closed.id] {
        assert_eq!(app.redis_keys_left_by(p), [format!(":p{p}:gone")]);
    }
    // A late update (another batch's, another replica's) is turned away.
    let late = [sahel_server::queue::AnswerChange {
        project: done.id,
        item: 1,
        answered_by: Some(99),
        needed: Some(None),
    }];
    app.block_on(app.state.queue.record(&late)).unwrap();
    assert_eq!(
        app.redis_keys_left_by(done.id),
        [format!(":p{}:gone", done.id)]
    );
}
