//! Builds the application from a [`Config`] and runs it on a listener, so
//! tests can bind port 0 and run many servers side by side.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::config::Config;
use crate::db::Db;
use crate::queue::memory::MemoryQueue;
use crate::state::AppState;
use crate::{accounts, api, consensus, demo, queue};

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
        let db = Db::connect(&config.database_url(), config.db_pool).await?;
        db.migrate().await?;
        let state = AppState {
            db,
            queue: Arc::new(MemoryQueue::new()),
            config: Arc::new(config.clone()),
        };
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
            }
        });
        // The quality engine's background re-estimation.
        let state = self.state.clone();
        let quality = tokio::spawn(async move {
            let mut tick = tokio::time::interval(consensus::quality::run::INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = consensus::quality::run::run_once(&state).await {
                    tracing::warn!(error = %e, "quality re-estimation failed");
                }
            }
        });
        let res = self.server.await;
        housekeeping.abort();
        quality.abort();
        res
    }
}
