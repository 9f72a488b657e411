//! Database connection, migrations, and the write gate.
//!
//! SQLite allows one writer at a time; concurrent write transactions that
//! start as readers fail with SQLITE_BUSY when they upgrade. Rather than
//! retrying, every write transaction on SQLite first takes an in-process
//! async mutex, so writers queue in memory and readers stay concurrent
//! (WAL mode). On PostgreSQL the gate is absent and row locks do the work.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sahel_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// Where write transactions run: on SQLite one connection of its own,
    /// on PostgreSQL the shared pool.
    writer: DatabaseConnection,
    gate: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the write gate until it is
/// committed or dropped (dropping rolls back).
pub struct WriteTx {
    tx: DatabaseTransaction,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.tx
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.tx.commit().await
    }
}

impl Db {
    pub async fn connect(url: &str, pool: u32) -> anyhow::Result<Db> {
        let conn = Self::pool(url, pool.max(2), false).await?;
        if conn.get_database_backend() != DbBackend::Sqlite {
            return Ok(Db {
                writer: conn.clone(),
                conn,
                gate: None,
            });
        }
        // SQLite empties a connection's page cache whenever another
        // connection wrote since its last transaction. Writes taking any
        // pooled connection in turn found every B-tree page cold and read
        // it again (an insert of 17 nonces took 1 ms); one connection that
        // does every write keeps its cache.
        let writer = Self::pool(url, 1, true).await?;
        Ok(Db {
            conn,
            writer,
            gate: Some(Arc::new(Mutex::new(()))),
        })
    }

    async fn pool(url: &str, size: u32, writer: bool) -> anyhow::Result<DatabaseConnection> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // sqlx pings a pooled connection on every checkout by default:
            // one more round trip (on SQLite, two thread switches) per
            // statement outside a transaction. Only idle ones need it.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .sqlx_logging(std::env::var_os("SAHEL_DEBUG_SQL").is_some())
            .map_sqlx_sqlite_opts(move |o| {
                let o = o
                    .journal_mode(SqliteJournalMode::Wal)
                    // NORMAL in WAL mode is durable across application
                    // crashes; only an OS crash can lose the last commits.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    .create_if_missing(true);
                match writer {
                    // A batch's multi-row insert journals every page it
                    // touches (to undo just that statement); past 64 KiB
                    // that journal went to a temporary file. The writer
                    // also keeps a larger page cache (32 MiB): the nonce
                    // and lease indexes it inserts into at random.
                    true => o
                        .pragma("temp_store", "MEMORY")
                        .pragma("cache_size", "-32768"),
                    false => o,
                }
            });
        let conn = Database::connect(opts)
            .await
            .with_context(|| format!("connecting to {}", crate::config::redact_url(url)))?;
        Ok(conn)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.conn, None)
            .await
            .context("running migrations")
    }

    /// Whether write transactions take turns in this process (SQLite's
    /// write gate): then batching them cannot deadlock.
    pub fn serializes_writes(&self) -> bool {
        self.gate.is_some()
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Begins a write transaction (taking the SQLite write gate first).
    pub async fn write(&self) -> Result<WriteTx, DbErr> {
        let gate = match &self.gate {
            Some(g) => Some(g.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN, waiting (busy
        // timeout) for any writer outside the gate. A deferred transaction
        // that read first would instead fail at once with "database is
        // locked" when such a writer committed in between.
        let options = TransactionOptions {
            sqlite_transaction_mode: gate.is_some().then_some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let tx = self.writer.begin_with_options(options).await?;
        Ok(WriteTx { tx, _gate: gate })
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }
}

pub fn now_ms() -> i64 {
    sahel_protocol::Timestamp::now().millis()
}
