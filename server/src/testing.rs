//! Test support, shared by the server's and the CLI's integration tests:
//! a real server on port 0 with fresh state.
//!
//! Every [`TestApp`] gets its own data directory and database: a fresh
//! SQLite file by default, or a fresh PostgreSQL database created next to
//! the one `DATABASE_URL` names. When `SAHEL_TEST_REQUIRE_SERVICES=1`, a
//! service that cannot be reached fails the test instead of being skipped.

use std::future::Future;

use actix_web::dev::ServerHandle;
use sahel_protocol::api::{self, Role};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::accounts::{self, Roles};
use crate::config::Config;
use crate::ledger;
use crate::queue::QueueBackend;
use crate::queue::redis::RedisQueue;
use crate::startup::Application;
use crate::state::AppState;

/// True when unreachable services must fail tests (CI sets it).
pub fn require_services() -> bool {
    matches!(
        std::env::var("SAHEL_TEST_REQUIRE_SERVICES").as_deref(),
        Ok("1" | "true" | "yes")
    )
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
struct PgScratch {
    admin_url: String,
    name: String,
    url: String,
}

/// The URL of database `name` on the server that `url` points at.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Creates a fresh, empty database next to the one `admin_url` names and
/// returns its URL (tests and benchmarks start from nothing).
pub async fn create_scratch_database(admin_url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", accounts::random_hex(8));
    let admin = Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    admin.close().await?;
    Ok(with_database(admin_url, &name))
}

/// Drops a database made by [`create_scratch_database`].
pub async fn drop_scratch_database(admin_url: &str, url: &str) -> anyhow::Result<()> {
    let name = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    let admin = Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    admin.close().await?;
    Ok(())
}

impl PgScratch {
    async fn create(admin_url: &str) -> anyhow::Result<PgScratch> {
        let url = create_scratch_database(admin_url, "sahel_test").await?;
        let name = url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(PgScratch {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = Database::connect(&self.admin_url).await?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await?;
        admin.close().await?;
        Ok(())
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub state: AppState,
    pub config: Config,
    handle: ServerHandle,
    pg: Option<PgScratch>,
    /// False for replicas: the first app owns the data dir and database.
    owns_storage: bool,
    rt: Option<tokio::runtime::Runtime>,
}

pub fn spawn_app() -> TestApp {
    TestApp::spawn(|_| {})
}

impl TestApp {
    /// Starts a server with fresh state; `tweak` adjusts its config.
    pub fn spawn(tweak: impl FnOnce(&mut Config)) -> TestApp {
        if std::env::var_os("SAHEL_TEST_LOG").is_some() {
            crate::telemetry::init();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = std::env::temp_dir().join(format!("sahel-test-{}", accounts::random_hex(8)));
        let mut config = Config::for_data_dir(dir);
        let pg = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => match rt.block_on(PgScratch::create(&url)) {
                Ok(pg) => Some(pg),
                Err(e) if require_services() => {
                    panic!("DATABASE_URL is set but PostgreSQL is not usable: {e:#}")
                }
                Err(e) => {
                    eprintln!(
                        "warning: PostgreSQL at DATABASE_URL unreachable ({e:#}); this test runs on SQLite"
                    );
                    None
                }
            },
            _ => None,
        };
        config.database_url = pg.as_ref().map(|p| p.url.clone());
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.is_empty()
        {
            let prefix = format!("sahel-test-{}", accounts::random_hex(6));
            let reachable = rt.block_on(async {
                let q = RedisQueue::connect(&url, &prefix).await?;
                q.health().await.map_err(|e| anyhow::anyhow!("{e}"))
            });
            match reachable {
                Ok(()) => {
                    config.redis_url = Some(url);
                    config.redis_prefix = prefix;
                }
                Err(e) if require_services() => {
                    panic!("REDIS_URL is set but Redis is not usable: {e:#}")
                }
                Err(e) => eprintln!(
                    "warning: Redis at REDIS_URL unreachable ({e:#}); this test uses the in-process queue"
                ),
            }
        }
        // Tests step background work themselves (`run_once`), so that
        // what they assert never races a timer.
        config.quality_interval_secs = 0;
        tweak(&mut config);
        let (address, port, state, handle) = Self::start(&rt, config.clone());
        TestApp {
            address,
            port,
            state,
            config,
            handle,
            pg,
            owns_storage: true,
            rt: Some(rt),
        }
    }

    /// Another server process on the same database and queue, as a
    /// replica behind a load balancer would be.
    pub fn spawn_replica(&self) -> TestApp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let config = self.config.clone();
        let (address, port, state, handle) = Self::start(&rt, config.clone());
        TestApp {
            address,
            port,
            state,
            config,
            handle,
            pg: None,
            owns_storage: false,
            rt: Some(rt),
        }
    }

    pub fn uses_redis(&self) -> bool {
        self.config.redis_url.is_some()
    }

    /// Deletes this app's Redis keys, as a `FLUSHALL` would, without
    /// touching other tests sharing the Redis. Returns the number of keys.
    pub fn flush_redis(&self) -> u64 {
        let url = self.config.redis_url.clone().expect("this app uses Redis");
        self.block_on(async {
            let q = RedisQueue::connect(&url, &self.config.redis_prefix)
                .await
                .expect("redis");
            q.flush_prefix().await.expect("flush")
        })
    }

    /// Whether this app's task queue holds `project` (loaded, either
    /// backend).
    pub fn queue_holds(&self, project: i64) -> bool {
        self.block_on(self.state.queue.is_loaded(project))
            .expect("the queue answers")
    }

    /// This app's Redis keys, its prefix left out, sorted.
    pub fn redis_keys(&self) -> Vec<String> {
        let url = self.config.redis_url.clone().expect("this app uses Redis");
        let prefix = self.config.redis_prefix.clone();
        let mut keys: Vec<String> = self.block_on(async {
            let q = RedisQueue::connect(&url, &prefix).await.expect("redis");
            q.keys().await.expect("scan")
        });
        for k in &mut keys {
            k.replace_range(..prefix.len(), "");
        }
        keys.sort();
        keys
    }

    /// What an unloaded project leaves in this app's Redis once its item
    /// keys, deleted in the background, are gone (up to 10 s): its keys,
    /// the prefix left out, sorted (only its tombstone, when all is well).
    pub fn redis_keys_left_by(&self, project: i64) -> Vec<String> {
        let mine = format!(":p{project}:");
        let of_project = || {
            self.redis_keys()
                .into_iter()
                .filter(|k| k.starts_with(&mine))
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut left = of_project();
        while left.len() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            left = of_project();
        }
        left
    }

    fn start(
        rt: &tokio::runtime::Runtime,
        config: Config,
    ) -> (String, u16, AppState, ServerHandle) {
        let app = rt
            .block_on(Application::build(config))
            .expect("the server starts");
        let port = app.port();
        let state = app.state().clone();
        let handle = app.handle();
        rt.spawn(app.run_until_stopped());
        (format!("http://127.0.0.1:{port}"), port, state, handle)
    }

    /// Stops the server and starts a new one on the same database, as a
    /// crash and restart would (in-memory state is lost, rows are not).
    pub fn restart(&mut self) {
        let rt = self.rt.as_ref().expect("runtime");
        rt.block_on(self.handle.stop(false));
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".into();
        let (address, port, state, handle) = Self::start(rt, config);
        self.address = address;
        self.port = port;
        self.state = state;
        self.handle = handle;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db.conn
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// Creates an admin directly (admins cannot sign up) and returns their
    /// id and a bearer token.
    pub fn create_admin(&self) -> (i64, String) {
        let email = format!("admin-{}@test.sahel", accounts::random_hex(4));
        self.block_on(async {
            let u = accounts::ensure_admin(&self.state.db, &email, "admin-password", "Admin")
                .await
                .expect("admin");
            let token = accounts::create_token(&self.state.db, u.id, None)
                .await
                .expect("token");
            (u.id, token)
        })
    }

    /// Creates a user with the given roles directly, for tests whose
    /// subject is not sign-up.
    pub fn create_user(&self, email: &str, roles: &[Role]) -> (i64, String) {
        self.block_on(async {
            let new = accounts::NewUser::new(
                email.into(),
                "password-123".into(),
                email.into(),
                Roles::of(roles),
            )
            .expect("valid");
            let u = accounts::create_user(&self.state.db, new)
                .await
                .expect("user");
            let token = accounts::create_token(&self.state.db, u.id, None)
                .await
                .expect("token");
            (u.id, token)
        })
    }

    pub fn deposit(&self, user_id: i64, amount: sahel_protocol::Micros) {
        self.block_on(async {
            ledger::deposit(
                &self.state.db,
                api::DepositRequest {
                    user_id,
                    amount,
                    idempotency_key: accounts::random_hex(8),
                },
            )
            .await
            .expect("deposit")
        });
    }

    /// Seals the chain (chains and signs what is pending), then audits
    /// the whole ledger, receipt signatures included.
    pub fn audit(&self) -> ledger::Audit {
        self.block_on(async {
            ledger::receipts::seal(&self.state.db, &self.state.server_key).await?;
            let key = self.state.server_key.verifying_key();
            ledger::audit_with_key(self.db(), Some(&key)).await
        })
        .expect("audit runs")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.block_on(self.handle.stop(false));
            // Tests share one Redis: leave nothing of this app behind.
            if let (true, Some(url)) = (self.owns_storage, self.config.redis_url.clone()) {
                let prefix = self.config.redis_prefix.clone();
                let _ = rt.block_on(async move {
                    RedisQueue::connect(&url, &prefix)
                        .await?
                        .flush_prefix()
                        .await
                });
            }
            if let Some(pg) = &self.pg {
                let state = self.state.clone();
                rt.block_on(async move {
                    let _ = state.db.conn.clone().close().await;
                });
                if let Err(e) = rt.block_on(pg.drop_database()) {
                    eprintln!("warning: could not drop test database {}: {e:#}", pg.name);
                }
            }
            rt.shutdown_background();
        }
        if self.owns_storage {
            let _ = std::fs::remove_dir_all(&self.config.data_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn scratch_database_urls_keep_host_and_options() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
