//! Bounty creation, import and funding, with their refusals.

use sahel_protocol::Micros;
use sahel_protocol::api::{ProjectStatus, Role};

use crate::helpers::*;

#[test]
fn a_buyer_creates_imports_and_funds_a_bounty_and_the_budget_moves_to_escrow() {
    let app = spawn_app();
    let (buyer_id, b) = buyer(&app, "funder", 10);
    let p = b
        .create_project(&project_spec(3, 100_000, 3_000_000))
        .unwrap();
    assert_eq!(p.status, ProjectStatus::Draft);
    assert_eq!(p.max_answers, 5);
    let report = b
        .import_items(p.id, "jsonl", items_jsonl(10).as_bytes())
        .unwrap();
    assert_eq!(report.imported, 10);
    assert!(report.errors.is_empty());
    let funded = b.fund(p.id, "f1").unwrap();
    assert_eq!(funded.status, ProjectStatus::Open);
    assert_eq!(funded.item_count, 10);
    assert_eq!(balance_of(&app, buyer_id), Micros(7_000_000));
    assert_eq!(escrow_of(&app, p.id), Micros(3_000_000));
    // A retry of the same funding request is a no-op.
    b.fund(p.id, "f1").unwrap();
    assert_eq!(balance_of(&app, buyer_id), Micros(7_000_000));
    assert_problem(b.fund(p.id, "another-key"), 409, "already-funded");
    assert_ledger_clean(&app);
}

#[test]
fn funding_is_refused_when_the_balance_is_short_and_nothing_moves() {
    let app = spawn_app();
    let (buyer_id, b) = buyer(&app, "poor", 1);
    let p = b
        .create_project(&project_spec(1, 500_000, 2_000_000))
        .unwrap();
    b.import_items(p.id, "jsonl", items_jsonl(4).as_bytes())
        .unwrap();
    assert_problem(b.fund(p.id, "f"), 409, "insufficient-funds");
    assert_eq!(balance_of(&app, buyer_id), Micros(1_000_000));
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Draft);
    assert_ledger_clean(&app);
}

#[test]
fn funding_is_refused_when_the_budget_cannot_pay_every_answer() {
    let app = spawn_app();
    let (buyer_id, b) = buyer(&app, "stingy", 100);
    // 3 answers x 10 items x 0.1 = 3 tokens, budget 2.
    let p = b
        .create_project(&project_spec(3, 100_000, 2_000_000))
        .unwrap();
    b.import_items(p.id, "jsonl", items_jsonl(10).as_bytes())
        .unwrap();
    assert_problem(b.fund(p.id, "f"), 422, "budget-too-small");
    assert_eq!(balance_of(&app, buyer_id), Micros(100_000_000));
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Draft);
}

#[test]
fn an_import_with_bad_lines_reports_them_and_imports_nothing() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "importer", 0);
    let p = b.create_project(&project_spec(1, 1000, 1000)).unwrap();
    let body = "{\"text\": \"fine\"}\n{\"text\": \nnot json at all\n{\"txt\": \"typo\"}\n{\"text\": \"also fine\"}\n";
    let err = b.import_items(p.id, "jsonl", body.as_bytes()).unwrap_err();
    assert_eq!(err.status, 422);
    let problem = err.problem.unwrap();
    let lines: Vec<u64> = problem.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4]);
    assert!(
        problem.errors[2].message.contains("missing field \"text\""),
        "{:?}",
        problem.errors
    );
    assert_eq!(b.project(p.id).unwrap().item_count, 0);
    assert_eq!(items_with_status(&app, p.id, "open"), 0);

    // Asked explicitly, the good lines go in and the bad are still reported.
    let res = b
        .raw(
            "POST",
            &format!("/api/v1/projects/{}/items?format=jsonl&partial=true", p.id),
            Some(body.as_bytes()),
            "x",
        )
        .unwrap();
    assert_eq!(res.status, 201);
    let report: sahel_protocol::api::ImportReport = res.json().unwrap();
    assert_eq!(report.imported, 2);
    assert_eq!(report.errors.len(), 3);
    assert_eq!(items_with_status(&app, p.id, "open"), 2);
}

#[test]
fn csv_imports_use_the_header_as_field_names() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "csv", 0);
    let p = b.create_project(&project_spec(1, 1000, 1000)).unwrap();
    let report = b
        .import_items(p.id, "csv", b"text,lang\nbonjour,fr\n\"hello, world\",en\n")
        .unwrap();
    assert_eq!(report.imported, 2);
    let err = b
        .import_items(p.id, "csv", b"text,lang\nok,en\nmissing-a-field\n")
        .unwrap_err();
    assert_eq!(err.problem.unwrap().errors[0].line, 3);
    assert_eq!(b.project(p.id).unwrap().item_count, 2);
}

#[test]
fn items_cannot_be_added_once_a_project_is_funded() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 2, 1);
    assert_problem(
        b.import_items(p.id, "jsonl", items_jsonl(1).as_bytes()),
        409,
        "project-not-draft",
    );
    assert_eq!(b.project(p.id).unwrap().item_count, 2);
}

#[test]
fn bad_bounty_definitions_are_refused_with_the_reason() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "careless", 0);
    let mut spec = project_spec(0, 1000, 1000);
    assert_problem(b.create_project(&spec), 422, "invalid-overlap");
    spec.overlap = 3;
    spec.schema = serde_json::json!({"classes": ["only-one"]});
    assert_problem(b.create_project(&spec), 422, "invalid-schema");
    spec = project_spec(3, 0, 1000);
    assert_problem(b.create_project(&spec), 422, "invalid-reward");
    spec = project_spec(3, 10, 10);
    spec.title = "  ".into();
    assert_problem(b.create_project(&spec), 422, "invalid-title");
    assert!(b.projects().unwrap().is_empty(), "nothing was created");
}

#[test]
fn only_buyers_create_bounties_and_only_their_owner_changes_them() {
    let app = spawn_app();
    let (_, c) = contributor(&app, "not-a-buyer");
    assert_problem(
        c.create_project(&project_spec(1, 10, 10)),
        403,
        "role-required",
    );
    let (_, owner) = buyer(&app, "owner", 0);
    let (_, other) = sign_up(&app, "other@test.sahel", &[Role::Buyer]);
    let p = owner.create_project(&project_spec(1, 10, 10)).unwrap();
    assert_problem(
        other.import_items(p.id, "jsonl", items_jsonl(1).as_bytes()),
        404,
        "project-not-found",
    );
    owner
        .import_items(p.id, "jsonl", items_jsonl(1).as_bytes())
        .unwrap();
    app.deposit(p.buyer_id, Micros(1_000_000));
    owner.fund(p.id, "k").unwrap();
    // Open projects are visible to everyone, but still owned by one buyer.
    assert_eq!(other.project(p.id).unwrap().id, p.id);
    assert_problem(other.fund(p.id, "k"), 403, "not-project-owner");
}

fn rows_of_project(app: &TestApp, project: i64) -> u64 {
    use sahel_server::projects::entity::item;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    app.block_on(
        item::Entity::find()
            .filter(item::Column::ProjectId.eq(project))
            .count(app.db()),
    )
    .unwrap()
}

#[test]
fn a_large_upload_streams_in_batches_and_a_bad_last_line_leaves_no_row_behind() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "bulk", 0);
    let p = b.create_project(&project_spec(1, 1000, 1000)).unwrap();
    let mut body = items_jsonl(12_345);
    body.push_str("{\"text\": \n");
    let err = b.import_items(p.id, "jsonl", body.as_bytes()).unwrap_err();
    assert_eq!(err.status, 422);
    assert_eq!(err.problem.unwrap().errors[0].line, 12_346);
    assert_eq!(
        rows_of_project(&app, p.id),
        0,
        "the staged batches were removed"
    );
    assert_eq!(b.project(p.id).unwrap().item_count, 0);

    let body = items_jsonl(12_345);
    assert_eq!(
        b.import_items(p.id, "jsonl", body.as_bytes())
            .unwrap()
            .imported,
        12_345
    );
    assert_eq!(b.project(p.id).unwrap().item_count, 12_345);
    assert_eq!(items_with_status(&app, p.id, "open"), 12_345);
    // A second upload appends after the first, in order.
    assert_eq!(
        b.import_items(p.id, "jsonl", items_jsonl(5).as_bytes())
            .unwrap()
            .imported,
        5
    );
    assert_eq!(rows_of_project(&app, p.id), 12_350);
}

#[test]
fn a_signed_upload_is_checked_against_its_signature_and_imported() {
    let app = spawn_app();
    let (user, b) = sign_up(&app, "signed-buyer@test.sahel", &[Role::Buyer]);
    let key = new_key();
    b.link_key(user.id, &key, None).unwrap();
    let signed =
        sahel_worker::client::Client::new(&app.address, sahel_worker::client::Auth::Key(key));
    let p = signed.create_project(&project_spec(1, 1000, 1000)).unwrap();
    assert_eq!(
        signed
            .import_items(p.id, "csv", b"text\none\ntwo\n")
            .unwrap()
            .imported,
        2
    );
    assert_eq!(rows_of_project(&app, p.id), 2);
}

#[test]
fn an_empty_upload_is_refused() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "empty", 0);
    let p = b.create_project(&project_spec(1, 1000, 1000)).unwrap();
    assert_problem(b.import_items(p.id, "jsonl", b"\n\n"), 422, "import-empty");
    assert_problem(b.import_items(p.id, "xml", b"<x/>"), 422, "unknown-format");
}

#[test]
fn a_paused_bounty_hands_out_no_task_but_takes_answers_to_leases_already_held_and_resumes() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 4, 1);
    let (_, alice) = contributor(&app, "alice-pause");
    let (_, bob) = contributor(&app, "bob-pause");
    let held = alice.lease(p.id, 1).unwrap();
    assert_eq!(held.len(), 1);

    let paused = b.pause_project(p.id).unwrap();
    assert_eq!(paused.status, ProjectStatus::Paused);
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Paused);
    // No new lease, by project or across projects.
    assert_problem(bob.lease(p.id, 2), 409, "project-paused");
    assert!(bob.lease_any(2).unwrap().is_empty());
    assert_eq!(answers_in_db(&app, p.id), 0);
    // Pausing again changes nothing.
    assert_eq!(b.pause_project(p.id).unwrap().status, ProjectStatus::Paused);
    // The lease taken before the pause is still answered and paid.
    let t = &held[0];
    alice.submit(&answer(t, &truth(t))).unwrap();
    assert_eq!(answers_in_db(&app, p.id), 1);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 1);
    assert_eq!(escrow_of(&app, p.id), Micros(30_000));

    let resumed = b.resume_project(p.id).unwrap();
    assert_eq!(resumed.status, ProjectStatus::Open);
    assert_eq!(b.resume_project(p.id).unwrap().status, ProjectStatus::Open);
    // Work continues to the end, and the bounty completes.
    loop {
        let tasks = bob.lease(p.id, 2).unwrap();
        if tasks.is_empty() {
            break;
        }
        for t in &tasks {
            bob.submit(&answer(t, &truth(t))).unwrap();
        }
    }
    assert_eq!(items_with_status(&app, p.id, "resolved"), 4);
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Completed);
    assert_eq!(escrow_of(&app, p.id), Micros(0));
    assert_ledger_clean(&app);
}

#[test]
fn a_paused_bounty_completes_when_its_last_held_lease_is_answered() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 2, 1);
    let (_, alice) = contributor(&app, "alice-last");
    let tasks = alice.lease(p.id, 2).unwrap();
    b.pause_project(p.id).unwrap();
    for t in &tasks {
        alice.submit(&answer(t, &truth(t))).unwrap();
    }
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Completed);
    assert_problem(b.resume_project(p.id), 409, "project-not-paused");
    assert_problem(b.pause_project(p.id), 409, "project-not-open");
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Completed);
}

#[test]
fn only_the_buyer_pauses_only_open_bounties_and_a_paused_one_can_still_be_closed() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 3, 1);
    let (_, other) = buyer(&app, "meddler", 1);
    let (_, alice) = contributor(&app, "alice-meddle");
    assert_problem(other.pause_project(p.id), 403, "not-project-owner");
    assert_problem(alice.pause_project(p.id), 403, "not-project-owner");
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Open);
    // Resuming an open bounty changes nothing.
    assert_eq!(b.resume_project(p.id).unwrap().status, ProjectStatus::Open);
    assert_problem(b.pause_project(999_999), 404, "project-not-found");
    // A draft cannot be paused.
    let draft = b.create_project(&project_spec(1, 10_000, 30_000)).unwrap();
    assert_problem(b.pause_project(draft.id), 409, "project-not-open");
    assert_eq!(b.project(draft.id).unwrap().status, ProjectStatus::Draft);

    b.pause_project(p.id).unwrap();
    assert_problem(other.resume_project(p.id), 403, "not-project-owner");
    assert_eq!(b.project(p.id).unwrap().status, ProjectStatus::Paused);
    // Closing a paused bounty refunds the escrow; it cannot be resumed.
    let closed = b.close_project(p.id, "close-paused").unwrap();
    assert_eq!(closed.refunded, Micros(30_000));
    assert_eq!(closed.project.status, ProjectStatus::Closed);
    assert_problem(b.resume_project(p.id), 409, "project-not-paused");
    assert_ledger_clean(&app);
}
