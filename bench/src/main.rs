//! `sahel-bench`: a load generator for the task queue.
//!
//! It creates a funded bounty of N items, then runs K simulated
//! contributors over HTTP, each with its own ed25519 key, looping
//! lease -> signed submit until the bounty is done or the time bound
//! passes. It reports answers per second, lease and submit latency
//! percentiles, errors by kind and the servers' peak RSS, then checks the
//! queue and ledger invariants on the database.
//!
//! Without `--url` it starts its own server processes (this same binary in
//! a hidden `serve` mode, so each server's memory is measured on its own):
//! one on the embedded default, or `--servers N` against `DATABASE_URL` and
//! `REDIS_URL`, each run on a fresh database.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::config::Config;
use sahel_worker::client::{ApiError, Auth, Client};
use serde_json::json;

const CLASSES: [&str; 3] = ["positive", "negative", "neutral"];
const ADMIN_EMAIL: &str = "bench-admin@sahel.bench";
const ADMIN_PASSWORD: &str = "bench-admin-password";

#[derive(Parser)]
#[command(
    name = "sahel-bench",
    about = "Load-test the Sahel task queue with simulated contributors"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Target already-running servers (repeatable). Without it, the bench
    /// starts its own.
    #[arg(long)]
    url: Vec<String>,
    /// Servers to start when no --url is given (more than one needs
    /// DATABASE_URL and REDIS_URL).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// PostgreSQL server: a fresh database is created on it for the run.
    /// With --url, the database the servers use (for the invariant checks).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the shared queue of started servers.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Items in the bounty.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Simulated contributors, each a thread with its own key.
    #[arg(long, default_value_t = 64)]
    contributors: usize,
    /// Answers per item.
    #[arg(long, default_value_t = 3)]
    overlap: u32,
    /// Stop after this many seconds even if the bounty is not done.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
    /// Share of answers that disagree with the item's truth (creates ties).
    #[arg(long, default_value_t = 0.05)]
    noise: f64,
    /// HTTP worker threads per started server.
    #[arg(long, default_value_t = 2)]
    server_workers: usize,
    /// Database connections per started server.
    #[arg(long, default_value_t = 32)]
    db_pool: u32,
    /// Admin credentials on a --url server (to fund the buyer).
    #[arg(long, default_value = ADMIN_EMAIL)]
    admin_email: String,
    #[arg(long, env = "SAHEL_ADMIN_PASSWORD", default_value = ADMIN_PASSWORD)]
    admin_password: String,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one server (used by the bench itself).
    #[command(hide = true)]
    Serve {
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Time `sahel pull` and `sahel push` (the CLI's code) for one labeler:
    /// pull --items tasks, answer them, push them in batches of 100.
    PushBench,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Cmd::Serve { config }) => serve(*config),
        Some(Cmd::PushBench) => push_bench(args),
        None => run(args),
    }
}

/// The server side of a bench run: a normal server plus the bench admin.
fn serve(config: Config) -> anyhow::Result<()> {
    sahel_server::telemetry::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = sahel_server::startup::Application::build(config).await?;
        sahel_server::accounts::ensure_admin(
            &app.state().db,
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            "Bench admin",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("SAHEL_BENCH_PORT={}", app.port());
        app.run_until_stopped().await?;
        Ok(())
    })
}

struct Servers {
    urls: Vec<String>,
    children: Vec<Child>,
    database_url: String,
    data_dir: Option<PathBuf>,
    /// The Redis URL and key prefix of servers this run started.
    redis: Option<(String, String)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.data_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        // A run ended by its time bound leaves a bounty loaded: its keys
        // go with the servers, as the scratch database does.
        if let Some((url, prefix)) = &self.redis {
            let flushed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async {
                        sahel_server::queue::redis::RedisQueue::connect(url, prefix)
                            .await?
                            .flush_prefix()
                            .await
                    })
                });
            if let Err(e) = flushed {
                eprintln!("warning: the run's Redis keys ({prefix}:*) were not removed: {e}");
            }
        }
    }
}

fn start_servers(args: &Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<Servers> {
    if !args.url.is_empty() {
        let database_url = args
            .database_url
            .clone()
            .context("--url needs --database-url for the invariant checks")?;
        return Ok(Servers {
            urls: args.url.clone(),
            children: vec![],
            database_url,
            data_dir: None,
            redis: None,
        });
    }
    if args.servers > 1 && (args.database_url.is_none() || args.redis_url.is_none()) {
        bail!(
            "--servers {} needs DATABASE_URL and REDIS_URL (replicas share PostgreSQL and Redis)",
            args.servers
        );
    }
    let data_dir = std::env::temp_dir().join(format!(
        "sahel-bench-{}",
        sahel_server::accounts::random_hex(4)
    ));
    let database_url = match &args.database_url {
        Some(url) => rt.block_on(sahel_server::testing::create_scratch_database(
            url,
            "sahel_bench",
        ))?,
        None => format!("sqlite://{}?mode=rwc", data_dir.join("sahel.db").display()),
    };
    let prefix = format!("sahel-bench-{}", sahel_server::accounts::random_hex(4));
    let exe = std::env::current_exe()?;
    let mut servers = Servers {
        urls: vec![],
        children: vec![],
        database_url: database_url.clone(),
        data_dir: Some(data_dir.clone()),
        redis: args.redis_url.clone().map(|url| (url, prefix.clone())),
    };
    for _ in 0..args.servers {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .args(["--bind", "127.0.0.1:0", "--database-url", &database_url])
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--workers",
                &args.server_workers.to_string(),
                "--db-pool",
                &args.db_pool.to_string(),
            ])
            // The servers' own log filter (default: warnings only).
            .env(
                "RUST_LOG",
                std::env::var("SAHEL_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped());
        if let Some(r) = &args.redis_url {
            cmd.args(["--redis-url", r, "--redis-prefix", &prefix]);
        }
        let mut child = cmd.spawn().context("starting a server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .context("the server exited before listening")??;
            if let Some(p) = line.strip_prefix("SAHEL_BENCH_PORT=") {
                break p.trim().to_owned();
            }
        };
        // The server's log, passed on (and the pipe kept drained, so the
        // server never blocks on a full one).
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        servers.urls.push(format!("http://127.0.0.1:{port}"));
        servers.children.push(child);
    }
    Ok(servers)
}

fn new_key(seed: usize) -> SigningKey {
    let mut bytes: [u8; 32] = hex::decode(sahel_server::accounts::random_hex(32))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    bytes[0] ^= seed as u8;
    SigningKey::from_bytes(&bytes)
}

/// Creates the buyer, the funded bounty, and the contributors' accounts.
/// A simulated contributor: its client and the key that signs its answers.
type Labeler = (Client, SigningKey);

fn setup(args: &Args, urls: &[String]) -> anyhow::Result<(i64, String, Vec<Labeler>)> {
    let anon = Client::new(&urls[0], Auth::None);
    let admin = anon
        .login(&api::LoginRequest {
            email: args.admin_email.clone(),
            password: args.admin_password.clone(),
            token_label: None,
        })
        .context("logging in as the admin")?;
    let admin = anon.with_auth(Auth::Bearer(admin.token));
    let tag = sahel_server::accounts::random_hex(4);
    let register = |email: String, roles: Vec<Role>| {
        anon.register(&api::RegisterRequest {
            email,
            password: "bench-password".into(),
            display_name: "bench".into(),
            roles,
        })
    };
    let buyer = register(format!("buyer-{tag}@sahel.bench"), vec![Role::Buyer])?;
    let reward = 1_000i64;
    let budget = Micros(reward * args.overlap as i64 * args.items as i64);
    admin.deposit(&api::DepositRequest {
        user_id: buyer.user.id,
        amount: budget,
        idempotency_key: format!("bench-{tag}"),
    })?;
    let b = anon.with_auth(Auth::Bearer(buyer.token));
    let p = b.create_project(&api::CreateProject {
        title: format!("bench {tag}"),
        instructions: "Pick the sentiment.".into(),
        task_type: TaskType::Classification,
        schema: json!({ "classes": CLASSES }),
        overlap: args.overlap,
        reward: Micros(reward),
        budget,
        priority: 0,
        reviews_per_answer: None,
        review_reward: None,
        gold_review_every: None,
    })?;
    let started = Instant::now();
    let mut chunk = String::new();
    for i in 0..args.items {
        chunk.push_str(&format!(
            "{{\"text\":\"bench review {i}\",\"truth\":\"{}\"}}\n",
            CLASSES[i % 3]
        ));
        if (i + 1) % 20_000 == 0 || i + 1 == args.items {
            b.import_items(p.id, "jsonl", chunk.as_bytes())?;
            chunk.clear();
        }
    }
    b.fund(p.id, "bench-fund")?;
    eprintln!(
        "bounty {} with {} items imported and funded in {:.1?}",
        p.id,
        args.items,
        started.elapsed()
    );

    let handles: Vec<_> = (0..args.contributors)
        .map(|i| {
            let anon = Client::new(&urls[i % urls.len()], Auth::None);
            let email = format!("c{i}-{tag}@sahel.bench");
            std::thread::spawn(move || -> anyhow::Result<Labeler> {
                let reg = anon.register(&api::RegisterRequest {
                    email,
                    password: "bench-password".into(),
                    display_name: format!("contributor {i}"),
                    roles: vec![Role::Contributor],
                })?;
                let key = new_key(i);
                anon.with_auth(Auth::Bearer(reg.token))
                    .link_key(reg.user.id, &key, None)?;
                Ok((anon.with_auth(Auth::Key(key.clone())), key))
            })
        })
        .collect();
    let clients = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let guidelines = sahel_protocol::provenance::guideline_version(&p.instructions, &p.schema);
    Ok((p.id, guidelines, clients))
}

#[derive(Default)]
struct ThreadResult {
    lease_us: Vec<u32>,
    submit_us: Vec<u32>,
    answers: u64,
    errors: BTreeMap<String, u64>,
}

fn error_kind(op: &str, e: &ApiError) -> String {
    match e.code() {
        Some(code) => format!("{op} {} {code}", e.status),
        None if e.is_transport() => format!("{op} transport"),
        None => format!("{op} {}", e.status),
    }
}

/// One simulated contributor: lease, answer, repeat; bounded in rounds
/// and in time.
fn contributor_loop(
    (c, key): Labeler,
    guidelines: &str,
    project: i64,
    seed: u64,
    noise: f64,
    deadline: Instant,
    max_rounds: usize,
) -> ThreadResult {
    let mut r = ThreadResult::default();
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..max_rounds {
        if Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let leased = c.lease(project, 1);
        r.lease_us.push(t0.elapsed().as_micros() as u32);
        let task = match leased {
            Ok(mut tasks) if !tasks.is_empty() => tasks.remove(0),
            Ok(_) => break,
            Err(e) => {
                *r.errors.entry(error_kind("lease", &e)).or_default() += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let truth = task.data["truth"].as_str().unwrap_or("positive").to_owned();
        let label = if (next() % 10_000) as f64 / 10_000.0 < noise {
            CLASSES[(next() % 3) as usize].to_owned()
        } else {
            truth
        };
        // Signed like the CLI signs (provenance), timed with the submit.
        let t1 = Instant::now();
        let answer = json!({ "label": label });
        let content = sahel_protocol::provenance::item_content_hash(&task.data);
        let signature =
            sahel_protocol::provenance::sign_answer(&key, &content, guidelines, &answer);
        let res = c.submit(&api::SubmitAnswer {
            lease_id: task.lease_id,
            answer,
            idempotency_key: format!("lease-{}", task.lease_id),
            signature: Some(signature),
        });
        r.submit_us.push(t1.elapsed().as_micros() as u32);
        match res {
            Ok(_) => r.answers += 1,
            Err(e) => *r.errors.entry(error_kind("submit", &e)).or_default() += 1,
        }
    }
    r
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn peak_rss(servers: &Servers) -> Vec<u64> {
    if !servers.children.is_empty() {
        return servers
            .children
            .iter()
            .map(|c| sahel_server::telemetry::memory_of(&c.id().to_string()).1)
            .collect();
    }
    servers
        .urls
        .iter()
        .map(|u| metric(u, "process_peak_resident_memory_bytes"))
        .collect()
}

/// One counter of a server's `/metrics` (0 when unreadable).
fn metric(url: &str, name: &str) -> u64 {
    metric_f64(url, name) as u64
}

fn metric_f64(url: &str, name: &str) -> f64 {
    let res = Client::new(url, Auth::None)
        .raw("GET", "/metrics", None, "")
        .ok();
    res.and_then(|r| {
        r.text().lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    })
    .unwrap_or(0.0)
}

/// CPU milliseconds the servers have used so far, all together.
fn servers_cpu_ms(servers: &Servers) -> u64 {
    if !servers.children.is_empty() {
        return servers
            .children
            .iter()
            .map(|c| sahel_server::telemetry::cpu_ms_of(&c.id().to_string()))
            .sum();
    }
    servers
        .urls
        .iter()
        .map(|u| (metric_f64(u, "process_cpu_seconds_total") * 1000.0) as u64)
        .sum()
}

/// CPU of the whole machine and of the local database and Redis, read
/// from `/proc` at the start and end of the run: the servers and the load
/// generator are not all it costs, and on a machine that is nearly busy the
/// sum per answer sets the ceiling on answers/s whatever the code does.
struct MachineCpu {
    /// Busy milliseconds over all cores (anything not idle or waiting).
    busy_ms: u64,
    /// Per process of the services named in [`SERVICES`]: pid, name, ms.
    services: Vec<(u32, &'static str, u64)>,
}

/// Service processes counted on their own, by command name.
const SERVICES: [&str; 2] = ["postgres", "redis-server"];

impl MachineCpu {
    fn read() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu user nice system idle iowait irq softirq steal ... (ticks)
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        let mut services = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if let Some(name) = SERVICES.iter().find(|n| comm.trim() == **n) {
                let ms = sahel_server::telemetry::cpu_ms_of(&pid.to_string());
                services.push((pid, *name, ms));
            }
        }
        MachineCpu {
            busy_ms: busy * 10,
            services,
        }
    }

    /// Milliseconds since `before`: the machine's, then each service's (a
    /// process that started meanwhile counts whole; one that ended is lost).
    fn since(&self, before: &MachineCpu) -> (u64, BTreeMap<&'static str, u64>) {
        let mut by_name: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (pid, name, ms) in &self.services {
            let was = before
                .services
                .iter()
                .find(|(p, n, _)| p == pid && n == name)
                .map_or(0, |(_, _, ms)| *ms);
            *by_name.entry(name).or_default() += ms.saturating_sub(was);
        }
        (self.busy_ms.saturating_sub(before.busy_ms), by_name)
    }
}

/// The queue and ledger invariants, read from the database rows.
async fn check_invariants(
    database_url: &str,
    project: i64,
    finished: bool,
) -> anyhow::Result<Vec<String>> {
    use sahel_server::projects::entity::item;
    use sahel_server::queue::entity::answer;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    use std::collections::{HashMap, HashSet};

    let db = sahel_server::db::Db::connect(database_url, 4).await?;
    let mut problems = Vec::new();
    let items: Vec<(i64, i32, i32, String)> = item::Entity::find()
        .select_only()
        .columns([
            item::Column::Id,
            item::Column::Needed,
            item::Column::AnswersCount,
            item::Column::Status,
        ])
        .filter(item::Column::ProjectId.eq(project))
        .into_tuple()
        .all(&db.conn)
        .await?;
    let answers: Vec<(i64, i64)> = answer::Entity::find()
        .select_only()
        .columns([answer::Column::ItemId, answer::Column::UserId])
        .filter(answer::Column::ProjectId.eq(project))
        .into_tuple()
        .all(&db.conn)
        .await?;
    let mut per_item: HashMap<i64, i32> = HashMap::new();
    let mut pairs = HashSet::new();
    for (item, user) in &answers {
        *per_item.entry(*item).or_default() += 1;
        if !pairs.insert((*item, *user)) {
            problems.push(format!("user {user} answered item {item} twice"));
        }
    }
    let mut open = 0;
    for (id, needed, count, status) in &items {
        let n = per_item.get(id).copied().unwrap_or(0);
        if n != *count {
            problems.push(format!("item {id}: counter {count} but {n} answer rows"));
        }
        if n > *needed {
            problems.push(format!("item {id}: {n} answers but needed {needed}"));
        }
        if status == "open" {
            open += 1;
        }
    }
    if finished && open > 0 {
        problems.push(format!(
            "{open} items still open after every contributor ran out of tasks"
        ));
    }
    // Receipts follow their transactions' commits by up to a second: chain
    // what the servers left (unsigned: the bench has no server key).
    sahel_server::ledger::receipts::chain_pending(&db, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit = sahel_server::ledger::audit(&db.conn)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !audit.is_clean() {
        problems.push(format!("ledger audit: {audit:?}"));
    }
    Ok(problems)
}

fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let servers = start_servers(&args, &rt)?;
    let (project, guidelines, clients) = setup(&args, &servers.urls)?;
    let k = clients.len();
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let max_rounds = args.items * (2 * args.overlap as usize) / k.max(1) + 1_000;
    let barrier = Arc::new(Barrier::new(k + 1));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let barrier = barrier.clone();
            let noise = args.noise;
            let guidelines = guidelines.clone();
            std::thread::spawn(move || {
                barrier.wait();
                contributor_loop(
                    c,
                    &guidelines,
                    project,
                    0x9E37_79B9_7F4A_7C15 ^ (i as u64 * 7919),
                    noise,
                    deadline,
                    max_rounds,
                )
            })
        })
        .collect();
    let cpu_before = (
        servers_cpu_ms(&servers),
        sahel_server::telemetry::cpu_ms_of("self"),
    );
    let machine_before = MachineCpu::read();
    barrier.wait();
    let started = Instant::now();
    let results: Vec<ThreadResult> = handles
        .into_iter()
        .map(|h| h.join().expect("contributor thread"))
        .collect();
    let elapsed = started.elapsed();
    // CPU per answer is steadier than answers/s on a shared machine, whose
    // speed drifts from run to run.
    let cpu = (
        servers_cpu_ms(&servers).saturating_sub(cpu_before.0),
        sahel_server::telemetry::cpu_ms_of("self").saturating_sub(cpu_before.1),
    );
    let (machine_ms, services_ms) = MachineCpu::read().since(&machine_before);
    let timed_out = Instant::now() >= deadline;

    let mut lease: Vec<u32> = results
        .iter()
        .flat_map(|r| r.lease_us.iter().copied())
        .collect();
    let mut submit: Vec<u32> = results
        .iter()
        .flat_map(|r| r.submit_us.iter().copied())
        .collect();
    lease.sort_unstable();
    submit.sort_unstable();
    let answers: u64 = results.iter().map(|r| r.answers).sum();
    // At this CPU cost per answer, a machine busy all the time would give
    // `cores` seconds of CPU per second: the most this setup can reach here.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine_us = machine_ms as f64 * 1000.0 / answers.max(1) as f64;
    let ceiling = cores as f64 * 1e6 / machine_us.max(1.0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        for (kind, n) in &r.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    let rss = peak_rss(&servers);
    let total = |name: &str| servers.urls.iter().map(|u| metric(u, name)).sum::<u64>();
    let (lease_calls, lease_writes) = (
        total("sahel_lease_calls_written_total"),
        total("sahel_lease_writes_total"),
    );
    let (answer_calls, answer_writes, answer_splits) = (
        total("sahel_answer_calls_written_total"),
        total("sahel_answer_writes_total"),
        total("sahel_answer_batches_split_total"),
    );
    let held_hits = total("sahel_held_lease_hits_total");
    let busy = |name: &str| {
        servers
            .urls
            .iter()
            .map(|u| metric_f64(u, name))
            .sum::<f64>()
            / (servers.urls.len() as f64 * elapsed.as_secs_f64())
    };
    let (lease_busy, answer_busy) = (
        busy("sahel_lease_batch_seconds_total"),
        busy("sahel_answer_batch_seconds_total"),
    );
    let problems = rt.block_on(check_invariants(&servers.database_url, project, !timed_out))?;
    let backend = match (&args.database_url, &args.redis_url) {
        (Some(_), Some(_)) => "postgresql+redis",
        (Some(_), None) => "postgresql+in-process",
        (None, Some(_)) => "sqlite+redis",
        (None, None) => "sqlite+in-process",
    };
    let summary = json!({
        "setup": backend,
        "servers": servers.urls.len(),
        "items": args.items,
        "contributors": k,
        "overlap": args.overlap,
        "answers": answers,
        "elapsed_s": elapsed.as_secs_f64(),
        "answers_per_s": answers as f64 / elapsed.as_secs_f64(),
        "lease_ms": { "p50": percentile(&lease, 0.50), "p99": percentile(&lease, 0.99), "n": lease.len() },
        "submit_ms": { "p50": percentile(&submit, 0.50), "p99": percentile(&submit, 0.99), "n": submit.len() },
        "errors": errors,
        "server_cpu_ms": cpu.0,
        "bench_cpu_ms": cpu.1,
        "service_cpu_ms": services_ms,
        "machine_cpu_ms": machine_ms,
        "cores": cores,
        "ceiling_answers_per_s": ceiling,
        "lease_calls_written": lease_calls,
        "lease_writes": lease_writes,
        "answer_calls_written": answer_calls,
        "answer_writes": answer_writes,
        "answer_batches_split": answer_splits,
        "held_lease_hits": held_hits,
        "lease_writer_busy": lease_busy,
        "answer_writer_busy": answer_busy,
        "server_peak_rss_mb": rss.iter().map(|b| *b as f64 / 1048576.0).collect::<Vec<_>>(),
        "timed_out": timed_out,
        "invariants_ok": problems.is_empty(),
        "invariant_problems": problems.iter().take(20).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "setup            {backend}, {} server(s), {} items, {k} contributors, overlap {}",
            servers.urls.len(),
            args.items,
            args.overlap
        );
        println!(
            "answers          {answers} in {:.2} s = {:.0} answers/s{}",
            elapsed.as_secs_f64(),
            answers as f64 / elapsed.as_secs_f64(),
            if timed_out {
                " (time bound reached)"
            } else {
                ""
            }
        );
        println!(
            "lease  latency   p50 {:.2} ms  p99 {:.2} ms  ({} calls)",
            percentile(&lease, 0.5),
            percentile(&lease, 0.99),
            lease.len()
        );
        println!(
            "submit latency   p50 {:.2} ms  p99 {:.2} ms  ({} calls)",
            percentile(&submit, 0.5),
            percentile(&submit, 0.99),
            submit.len()
        );
        println!(
            "errors           {}",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                format!("{errors:?}")
            }
        );
        let per = |ms: u64| ms as f64 * 1000.0 / answers.max(1) as f64;
        println!(
            "CPU per answer   servers {:.0} us, load generator {:.0} us ({:.1} s and {:.1} s in {:.1} s)",
            per(cpu.0),
            per(cpu.1),
            cpu.0 as f64 / 1000.0,
            cpu.1 as f64 / 1000.0,
            elapsed.as_secs_f64()
        );
        let mut beside: Vec<String> = services_ms
            .iter()
            // An idle service on the machine is not part of this setup.
            .filter(|(_, ms)| **ms * 100 >= machine_ms)
            .map(|(name, ms)| format!("{name} {:.0} us", per(*ms)))
            .collect();
        beside.push(format!(
            "whole machine {machine_us:.0} us ({:.0} % of {cores} cores busy)",
            machine_ms as f64 / (cores as f64 * elapsed.as_secs_f64() * 10.0)
        ));
        println!("                 {}", beside.join(", "));
        println!(
            "CPU ceiling      {ceiling:.0} answers/s: all {cores} cores busy at {machine_us:.0} us per answer"
        );
        println!(
            "lease writes     {lease_calls} calls in {lease_writes} transactions ({:.1} per transaction)",
            lease_calls as f64 / lease_writes.max(1) as f64
        );
        println!(
            "answer writes    {answer_calls} answers in {answer_writes} transactions ({:.1} per transaction), {answer_splits} batches split",
            answer_calls as f64 / answer_writes.max(1) as f64
        );
        println!(
            "held leases      {held_hits} answers on leases their server still held (no read)"
        );
        println!(
            "writers busy     leases {:.0} %, answers {:.0} % of the time (per server)",
            lease_busy * 100.0,
            answer_busy * 100.0
        );
        println!(
            "server peak RSS  {}",
            rss.iter()
                .map(|b| format!("{:.0} MB", *b as f64 / 1048576.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "invariants       {}",
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                format!("VIOLATED: {problems:?}")
            }
        );
    }
    let clean = problems.is_empty();
    let scratch = servers
        .data_dir
        .is_some()
        .then(|| servers.database_url.clone());
    drop(servers);
    if let (Some(admin_url), Some(url)) = (&args.database_url, scratch) {
        rt.block_on(sahel_server::testing::drop_scratch_database(
            admin_url, &url,
        ))?;
    }
    if !clean {
        std::process::exit(2);
    }
    Ok(())
}

/// One power labeler: pull N tasks, answer them offline, push them.
fn push_bench(mut args: Args) -> anyhow::Result<()> {
    use sahel_worker::batch;
    args.contributors = 1;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let servers = start_servers(&args, &rt)?;
    let (project, _, mut labelers) = setup(&args, &servers.urls)?;
    let (client, key) = labelers.remove(0);
    let dir = std::env::temp_dir().join(format!(
        "sahel-push-bench-{}",
        sahel_server::accounts::random_hex(4)
    ));
    std::fs::create_dir_all(&dir)?;
    let pulled = dir.join("tasks.jsonl");
    let hidden = indicatif::ProgressBar::hidden();

    let t0 = Instant::now();
    let n = batch::pull(&client, project, args.items as u32, &pulled, true, &hidden)?;
    let pull_s = t0.elapsed().as_secs_f64();

    let answers = dir.join("answers.jsonl");
    let mut out = String::new();
    for line in std::fs::read_to_string(&pulled)?.lines() {
        let mut t: batch::TaskLine = serde_json::from_str(line)?;
        t.answer = json!({ "label": t.data["truth"].as_str().unwrap_or("positive") });
        out.push_str(&serde_json::to_string(&t)?);
        out.push('\n');
    }
    std::fs::write(&answers, out)?;

    let journal = dir.join("journal.jsonl");
    let t1 = Instant::now();
    let report = batch::push(&client, &key, &answers, &journal, 100, &hidden)?;
    let push_s = t1.elapsed().as_secs_f64();
    let stored = rt.block_on(async {
        use sahel_server::queue::entity::answer;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let db = sahel_server::db::Db::connect(&servers.database_url, 2).await?;
        Ok::<_, anyhow::Error>(
            answer::Entity::find()
                .filter(answer::Column::ProjectId.eq(project))
                .count(&db.conn)
                .await?,
        )
    })?;
    let summary = json!({
        "tasks_pulled": n,
        "pull_s": pull_s,
        "pulled_per_s": n as f64 / pull_s,
        "answers_pushed": report.recorded,
        "push_s": push_s,
        "pushed_per_s": report.recorded as f64 / push_s,
        "refused": report.refused.len() + report.expired.len() + report.invalid.len(),
        "answers_in_database": stored,
        "server_peak_rss_mb": peak_rss(&servers).iter().map(|b| *b as f64 / 1048576.0).collect::<Vec<_>>(),
    });
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "pull   {n} tasks in {pull_s:.2} s = {:.0} tasks/s",
            n as f64 / pull_s
        );
        println!(
            "push   {} answers in {push_s:.2} s = {:.0} answers/s (batches of 100, signed)",
            report.recorded,
            report.recorded as f64 / push_s
        );
        println!(
            "check  {stored} answers in the database, {} lines refused",
            report.refused.len() + report.expired.len() + report.invalid.len()
        );
    }
    if stored != n as u64 || report.recorded != n as u64 {
        bail!("pushed {} of {n} answers, {stored} stored", report.recorded);
    }
    Ok(())
}
