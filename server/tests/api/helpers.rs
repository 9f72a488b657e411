//! Shared test vocabulary: people, bounties, and the invariants every
//! scenario must leave true.

use ed25519_dalek::SigningKey;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::projects::entity::item;
use sahel_server::queue::entity::{answer, lease};
pub use sahel_server::testing::{TestApp, spawn_app};
use sahel_worker::client::{Auth, Client};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

pub const CLASSES: [&str; 3] = ["positive", "negative", "neutral"];

pub fn new_key() -> SigningKey {
    let bytes: [u8; 32] = hex::decode(sahel_server::accounts::random_hex(32))
        .unwrap()
        .try_into()
        .unwrap();
    SigningKey::from_bytes(&bytes)
}

pub fn anon(app: &TestApp) -> Client {
    Client::new(&app.address, Auth::None)
}

pub fn bearer(app: &TestApp, token: &str) -> Client {
    Client::new(&app.address, Auth::Bearer(token.to_owned()))
}

/// Signs up through the API and returns the user and its bearer token
/// (what a hand-written request carries).
pub fn sign_up_for_token(app: &TestApp, email: &str, roles: &[Role]) -> (api::User, String) {
    let res = anon(app)
        .register(&api::RegisterRequest {
            email: email.into(),
            password: "correct horse battery".into(),
            display_name: email.split('@').next().unwrap().into(),
            roles: roles.to_vec(),
        })
        .expect("sign-up works");
    (res.user, res.token)
}

/// Signs up through the API and returns the user and a bearer client.
pub fn sign_up(app: &TestApp, email: &str, roles: &[Role]) -> (api::User, Client) {
    let (user, token) = sign_up_for_token(app, email, roles);
    (user, bearer(app, &token))
}

/// A contributor whose client signs every request with a linked key.
pub fn contributor(app: &TestApp, name: &str) -> (i64, Client) {
    let (user, b) = sign_up(app, &format!("{name}@test.sahel"), &[Role::Contributor]);
    let key = new_key();
    b.link_key(user.id, &key, None).expect("key links");
    (user.id, Client::new(&app.address, Auth::Key(key)))
}

/// A buyer with `tokens` of balance.
pub fn buyer(app: &TestApp, name: &str, tokens: i64) -> (i64, Client) {
    let (user, b) = sign_up(app, &format!("{name}@test.sahel"), &[Role::Buyer]);
    if tokens > 0 {
        app.deposit(user.id, Micros::from_tokens(tokens).unwrap());
    }
    (user.id, b)
}

pub fn project_spec(overlap: u32, reward: i64, budget: i64) -> api::CreateProject {
    api::CreateProject {
        title: "Sentiment of short reviews".into(),
        instructions: "Pick the sentiment.".into(),
        task_type: TaskType::Classification,
        schema: json!({ "classes": CLASSES }),
        overlap,
        reward: Micros(reward),
        budget: Micros(budget),
        priority: 0,
        reviews_per_answer: None,
        review_reward: None,
        gold_review_every: None,
    }
}

pub fn items_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"text\": \"review number {i}\", \"truth\": \"{}\"}}\n",
                CLASSES[i % 3]
            )
        })
        .collect()
}

/// A funded classification bounty of `n` items.
pub fn funded_project(app: &TestApp, n: usize, overlap: u32) -> (Client, api::Project) {
    let reward = 10_000;
    let budget = reward * overlap as i64 * n as i64;
    let (_, b) = buyer(
        app,
        &format!("buyer-{}", sahel_server::accounts::random_hex(3)),
        1_000,
    );
    let p = b
        .create_project(&project_spec(overlap, reward, budget))
        .expect("project");
    b.import_items(p.id, "jsonl", items_jsonl(n).as_bytes())
        .expect("import");
    let p = b.fund(p.id, "fund-1").expect("fund");
    (b, p)
}

/// The label an honest contributor gives: the item's hidden truth.
pub fn truth(task: &api::Task) -> String {
    task.data["truth"].as_str().unwrap().to_owned()
}

pub fn answer(task: &api::Task, label: &str) -> api::SubmitAnswer {
    api::SubmitAnswer {
        lease_id: task.lease_id,
        answer: json!({ "label": label }),
        idempotency_key: format!("lease-{}", task.lease_id),
        signature: None,
    }
}

pub fn answers_in_db(app: &TestApp, project: i64) -> u64 {
    app.block_on(
        answer::Entity::find()
            .filter(answer::Column::ProjectId.eq(project))
            .count(app.db()),
    )
    .unwrap()
}

/// Every lease row of a project, whatever its status.
pub fn leases_of_project(app: &TestApp, project: i64) -> Vec<lease::Model> {
    app.block_on(
        lease::Entity::find()
            .filter(lease::Column::ProjectId.eq(project))
            .all(app.db()),
    )
    .unwrap()
}

/// How many leases a user was ever given.
pub fn leases_of_user(app: &TestApp, user: i64) -> u64 {
    app.block_on(
        lease::Entity::find()
            .filter(lease::Column::UserId.eq(user))
            .count(app.db()),
    )
    .unwrap()
}

pub fn items_with_status(app: &TestApp, project: i64, status: &str) -> u64 {
    app.block_on(
        item::Entity::find()
            .filter(item::Column::ProjectId.eq(project))
            .filter(item::Column::Status.eq(status))
            .count(app.db()),
    )
    .unwrap()
}

pub fn balance_of(app: &TestApp, user: i64) -> Micros {
    app.block_on(sahel_server::ledger::balance(
        app.db(),
        sahel_server::ledger::AccountRef::User(user),
    ))
    .unwrap()
}

pub fn escrow_of(app: &TestApp, project: i64) -> Micros {
    app.block_on(sahel_server::ledger::balance(
        app.db(),
        sahel_server::ledger::AccountRef::Escrow(project),
    ))
    .unwrap()
}

/// A counter of the server's `GET /metrics`.
pub fn metric(app: &TestApp, name: &str) -> u64 {
    let metrics = anon(app).raw("GET", "/metrics", None, "").unwrap().text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// The ledger invariants, checked after every scenario.
pub fn assert_ledger_clean(app: &TestApp) {
    let a = app.audit();
    assert!(a.is_clean(), "ledger audit failed: {a:?}");
}

/// Asserts a call failed with this HTTP status and problem code.
pub fn assert_problem<T: std::fmt::Debug>(
    r: Result<T, sahel_worker::client::ApiError>,
    status: u16,
    code: &str,
) {
    match r {
        Ok(v) => panic!("expected {status} {code}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.status, status, "{e}");
            assert_eq!(e.code(), Some(code), "{e}");
        }
    }
}

/// What one simulated contributor did in [`work_until_done`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkStats {
    pub answered: u32,
    /// 503s from a queue being rebuilt, retried.
    pub unavailable: u32,
    /// Answers refused because the item filled up meanwhile (possible only
    /// while a flushed queue is rebuilt).
    pub refused: u32,
}

/// Leases and answers with the item's truth until nothing is left, within
/// a bounded number of rounds. `clients` are tried round-robin per request
/// (several replicas behind one "load balancer").
pub fn work_until_done(clients: &[sahel_worker::client::Client], project: i64) -> WorkStats {
    let mut stats = WorkStats::default();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        &clients[n % clients.len()]
    };
    for _ in 0..2_000 {
        let tasks = match next().lease(project, 1) {
            Ok(t) => t,
            Err(e) if e.status == 503 => {
                stats.unavailable += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            Err(e) => panic!("lease failed: {e}"),
        };
        let Some(t) = tasks.first() else { return stats };
        match next().submit(&answer(t, &truth(t))) {
            Ok(_) => stats.answered += 1,
            Err(e) if e.status == 409 || e.status == 410 => stats.refused += 1,
            Err(e) => panic!("submit failed: {e}"),
        }
    }
    panic!("contributor did not finish within 2,000 rounds: {stats:?}");
}

/// True when this run has PostgreSQL and Redis; tests of replicas need
/// both. Without them the test is skipped, unless services are required.
pub fn have_pg_and_redis(app: &TestApp) -> bool {
    let ok = app.is_postgres() && app.uses_redis();
    if !ok {
        assert!(
            !sahel_server::testing::require_services(),
            "this test needs DATABASE_URL and REDIS_URL when SAHEL_TEST_REQUIRE_SERVICES=1"
        );
        eprintln!("skipped: needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)");
    }
    ok
}

/// Checks the queue's promises on the rows: no item has more answers than
/// it needed, nobody answered an item twice, and every item of a finished
/// project is closed.
pub fn assert_queue_invariants(app: &TestApp, project: i64) {
    use std::collections::HashSet;
    let items = app
        .block_on(
            item::Entity::find()
                .filter(item::Column::ProjectId.eq(project))
                .all(app.db()),
        )
        .unwrap();
    let answers = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(project))
                .all(app.db()),
        )
        .unwrap();
    let mut seen = HashSet::new();
    for a in &answers {
        assert!(
            seen.insert((a.item_id, a.user_id)),
            "user {} answered item {} twice",
            a.user_id,
            a.item_id
        );
    }
    for it in &items {
        let n = answers.iter().filter(|a| a.item_id == it.id).count() as i32;
        assert_eq!(n, it.answers_count, "item {} counter", it.id);
        assert!(
            n <= it.needed,
            "item {} has {n} answers but needed {}",
            it.id,
            it.needed
        );
    }
}
