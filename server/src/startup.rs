//! Builds the application from a [`Config`] and runs it on a listener, so
//! tests can bind port 0 and run many servers side by side.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::artifacts::ArtifactStore;
use crate::config::Config;
use crate::db::Db;
use crate::ledger::{self, receipts, receipts::ServerKey};
use crate::queue::QueueBackend;
use crate::queue::held::HeldLeases;
use crate::queue::memory::MemoryQueue;
use crate::queue::redis::RedisQueue;
use crate::state::AppState;
use crate::{accounts, api, consensus, demo, queue};

/// Memory for leases handed out and not yet answered (`HeldLeases`): at
/// 1 KiB items, some 50,000 of them.
const HELD_LEASE_BYTES: usize = 64 << 20;

/// SQLite log frames (4 KiB pages) past which the checkpoint takes the
/// write gate so that the log starts over (`Db::checkpoint`): 256 MiB of
/// log on disk. That copy holds the gate 10 to 40 ms; at 32 MiB it came
/// every 1.3 s under `sahel-bench` (1,613 to 1,659 answers/s, submit p99
/// 54 to 57 ms), at 256 MiB an eighth as often (1,744 to 1,918, 45 to 51
/// ms; three rounds, interleaved).
const CHECKPOINT_RESTART_FRAMES: i64 = 65_536;

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let server_key = Arc::new(ServerKey::load_or_create(&config.signing_key_path())?);
        std::fs::create_dir_all(config.imports_dir())
            .with_context(|| format!("creating {}", config.imports_dir().display()))?;
        let artifacts =
            ArtifactStore::open(config.artifacts_url.as_deref(), &config.artifacts_dir())
                .context("opening the artifact store")?;
        let db = Db::connect(&config.database_url(), config.db_pool).await?;
        db.migrate().await?;
        // The write batches run on a thread of their own, with (on
        // PostgreSQL) connections opened there.
        let batches = {
            let (db, url) = (db.clone(), config.database_url());
            queue::writer::on_writer_thread(async move { db.with_own_writers(&url, 4).await })
                .await??
        };
        let queue: Arc<dyn QueueBackend> = match &config.redis_url {
            Some(url) => Arc::new(
                RedisQueue::connect(url, &config.redis_prefix)
                    .await
                    .with_context(|| {
                        format!("connecting to Redis at {}", crate::config::redact_url(url))
                    })?,
            ),
            None => Arc::new(MemoryQueue::new()),
        };
        ledger::apply_settings(&db, &config)
            .await
            .map_err(|e| anyhow::anyhow!("writing the ledger settings: {e}"))?;
        let metrics: Arc<crate::telemetry::Metrics> = Default::default();
        let state = AppState {
            lease_writer: Arc::new(queue::writer::lease_writer(
                batches.clone(),
                metrics.clone(),
            )),
            answer_writer: Arc::new(queue::answer_writer(
                batches,
                metrics.clone(),
                queue.clone(),
            )),
            db,
            queue,
            config: Arc::new(config.clone()),
            metrics,
            projects: Default::default(),
            keys: Default::default(),
            quality: Default::default(),
            server_key,
            artifacts,
            held: Arc::new(HeldLeases::new(HELD_LEASE_BYTES)),
            gold_draw: Arc::new(crate::consensus::quality::gold::GoldDraw::new(
                config.gold_seed,
            )),
        };
        // Transactions committed by a server that stopped before chaining
        // them (or written before receipts existed) are chained first.
        let chained = receipts::seal(&state.db, &state.server_key)
            .await
            .map_err(|e| anyhow::anyhow!("chaining and signing receipts: {e}"))?;
        if chained > 0 {
            tracing::info!(chained, "ledger transactions chained");
        }
        if config.demo {
            demo::load(&state)
                .await
                .context("loading the demo bounty")?;
        }
        let loaded = queue::rebuild(&state)
            .await
            .map_err(|e| anyhow::anyhow!("rebuilding the queue: {e}"))?;
        tracing::info!(
            projects = loaded,
            backend = state.queue.name(),
            "queue rebuilt from the database"
        );

        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let app_state = web::Data::new(state.clone());
        let max_import = config.max_import_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(|cfg| api::routes(cfg, max_import))
                // HTML pages, static assets, and the site-wide 404.
                .configure(crate::web::routes)
        })
        .listen(listener)?
        .shutdown_timeout(5);
        if let Some(w) = config.workers {
            server = server.workers(w.max(1));
        }
        Ok(Application {
            port,
            server: server.run(),
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (signal or handle), running the
    /// periodic housekeeping alongside.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let state = self.state.clone();
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = accounts::sweep_nonces(&state.db).await {
                    tracing::warn!(error = %e, "sweeping request nonces failed");
                }
                // Uploads interrupted by a crash leave temporary objects.
                match state
                    .artifacts
                    .sweep_temporary(Duration::from_secs(86_400))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "stale temporary uploads removed"),
                    Err(e) => tracing::warn!(error = %e, "sweeping temporary uploads failed"),
                }
            }
        });
        // Receipts are appended and signed within a second of their
        // transaction's commit by this loop, and at the latest when anyone
        // reads them (receipts, audit). Every replica runs it; the chain
        // head's lock makes them take turns.
        let state = self.state.clone();
        let signer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = receipts::chain_pending(&state.db, Some(&state.server_key)).await {
                    tracing::warn!(error = %e, "chaining receipts failed");
                }
            }
        });
        // SQLite's log is copied into the database file here, not by the
        // writer inside a commit (`Db::checkpoint`).
        let state = self.state.clone();
        let checkpoints = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last = None;
            loop {
                tick.tick().await;
                last = match state.db.checkpoint(CHECKPOINT_RESTART_FRAMES, last).await {
                    Ok(log) => log,
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpointing the SQLite log failed");
                        None
                    }
                };
            }
        });
        // Royalty rounds: steppable, idempotent, safe on several servers.
        let state = self.state.clone();
        let royalties = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = ledger::royalty::run_until_idle(&state.db, 1000).await {
                    tracing::warn!(error = %e, "royalty distribution failed");
                }
            }
        });
        // The quality engine's background re-estimation.
        let state = self.state.clone();
        let every = self.state.config.quality_interval_secs;
        let quality = tokio::spawn(async move {
            if every == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            loop {
                tick.tick().await;
                if let Err(e) = consensus::quality::run::run_once(&state).await {
                    tracing::warn!(error = %e, "quality re-estimation failed");
                }
            }
        });
        let res = self.server.await;
        housekeeping.abort();
        signer.abort();
        checkpoints.abort();
        royalties.abort();
        quality.abort();
        res
    }
}
