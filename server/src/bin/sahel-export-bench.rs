//! Export benchmark: a bounty of N resolved items, each with its accepted
//! answers, exported in each format through the same stream the HTTP
//! route serves. Prints time, throughput and the process's peak RSS before
//! and after, which must not grow with N (the export holds one page).
//!
//! ```sh
//! cargo run --release -p sahel-server --bin sahel-export-bench -- --items 1000000
//! ```

use std::time::Instant;

use clap::Parser;
use futures_util::StreamExt;
use sahel_server::datasets::export::{self, ExportFormat};
use sahel_server::db::Db;
use sahel_server::projects;
use sea_orm::{ConnectionTrait, DbBackend};

#[derive(Parser)]
#[command(about = "Sahel export benchmark")]
struct Cli {
    /// Resolved items in the bounty.
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Accepted answers per item.
    #[arg(long, default_value_t = 3)]
    answers: u64,
    /// Formats to export, in order.
    #[arg(long, value_delimiter = ',', default_value = "jsonl,csv,label_studio")]
    formats: Vec<String>,
    /// Database URL (default: a fresh SQLite file in a temp directory).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
}

/// Peak and current resident memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Fills the database in SQL, without the server's per-row work: the
/// bench measures the export, not the setup.
async fn setup(db: &Db, items: u64, answers: u64) -> anyhow::Result<i64> {
    let c = &db.conn;
    let schema = r#"{"classes":["positive","negative","neutral"]}"#;
    // A buyer (1) and one contributor per answer of an item (100, 101, ...).
    let users: Vec<String> = std::iter::once(1)
        .chain((0..answers).map(|k| 100 + k))
        .map(|id| format!("({id}, 'bench-{id}@sahel.test', 'bench {id}', '', 3, 0)"))
        .collect();
    c.execute_unprepared(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, roles, created_at) VALUES {}",
        users.join(", ")
    ))
    .await?;
    c.execute_unprepared(&format!(
        "INSERT INTO projects (buyer_id, title, instructions, task_type, schema, overlap, \
         max_answers, reward, budget, status, priority, item_count, created_at) VALUES \
         (1, 'export bench', 'Pick the sentiment.', 'classification', '{schema}', {answers}, \
         {max}, 1000, 0, 'completed', 0, {items}, 0)",
        max = 2 * answers - 1
    ))
    .await?;
    let project: i64 = c
        .query_one_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT MAX(id) AS id FROM projects",
        ))
        .await?
        .expect("the project row")
        .try_get("", "id")?;
    let series = match db.backend() {
        DbBackend::Postgres => format!("SELECT generate_series(1, {items}) AS i"),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {items}) \
             SELECT i FROM n"
        ),
    };
    // `||` concatenates in both SQLite and PostgreSQL.
    let concat = |parts: &[&str]| parts.join(" || ");
    let text = concat(&[
        "'{\"text\": \"review number '",
        "CAST(s.i AS TEXT)",
        "' of the export benchmark, long enough to look like a real item\"}'",
    ]);
    c.execute_unprepared(&format!(
        "INSERT INTO items (project_id, seq, data, status, needed, answers_count, result, \
         created_at, resolved_at) SELECT {project}, s.i, {text}, 'resolved', {answers}, \
         {answers}, '{{\"answer\": {{\"label\": \"positive\"}}, \"agreement\": 1.0, \
         \"answers\": {answers}}}', 0, 0 FROM ({series}) s"
    ))
    .await?;
    for k in 0..answers {
        let key = concat(&["'bench-'", "CAST(i.id AS TEXT)", &format!("'-{k}'")]);
        c.execute_unprepared(&format!(
            "INSERT INTO answers (project_id, item_id, user_id, lease_id, payload, status, \
             idempotency_key, request_hash, paid, created_at, decided_at, signature, signer_key, \
             signed_by) SELECT {project}, i.id, {user}, i.id * {answers} + {k}, '{{\"label\": \"positive\"}}', \
             'accepted', {key}, '', 1000, 0, 0, '{sig}', '{pk}', 'custodial' \
             FROM items i WHERE i.project_id = {project}",
            user = 100 + k,
            sig = "ab".repeat(64),
            pk = "cd".repeat(32),
        ))
        .await?;
    }
    Ok(project)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.answers >= 1, "--answers must be at least 1");
    let dir = std::env::temp_dir().join(format!("sahel-export-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = cli
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()));
    let db = Db::connect(&url, 4).await?;
    db.migrate().await?;

    let t = Instant::now();
    let project = setup(&db, cli.items, cli.answers).await?;
    let (peak, rss) = memory();
    println!(
        "setup: {} items x {} answers in {:.1} s; peak RSS {peak:.0} MiB, RSS {rss:.0} MiB",
        cli.items,
        cli.answers,
        t.elapsed().as_secs_f64()
    );
    let p = projects::get(&db.conn, project)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for f in &cli.formats {
        let format = ExportFormat::parse(f).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        let mut stream = Box::pin(
            export::stream(db.conn.clone(), &p, format).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let (mut bytes, mut chunks) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            bytes += chunk.map_err(|e| anyhow::anyhow!("{e}"))?.len() as u64;
            chunks += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        let (peak, rss) = memory();
        println!(
            "export {:<12} {:>8.1} MiB in {chunks} chunks, {secs:.2} s: {:.0} items/s, {:.1} MiB/s; peak RSS {peak:.0} MiB, RSS {rss:.0} MiB",
            format.as_str(),
            bytes as f64 / 1048576.0,
            cli.items as f64 / secs,
            bytes as f64 / 1048576.0 / secs,
        );
    }
    if cli.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
