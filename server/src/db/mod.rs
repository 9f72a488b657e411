//! Database connection, migrations, and the write gate.
//!
//! SQLite allows one writer at a time; concurrent write transactions that
//! start as readers fail with SQLITE_BUSY when they upgrade. Rather than
//! retrying, every write transaction on SQLite first takes an in-process
//! async mutex, so writers queue in memory and readers stay concurrent
//! (WAL mode). On PostgreSQL the gate is absent and row locks do the work.

pub mod shape;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sahel_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// Where write transactions run: on SQLite one connection of its own,
    /// on PostgreSQL the shared pool (or, for the write batches, a pool of
    /// their own: `with_own_writers`).
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

    /// The same database, with write transactions on a pool of `size`
    /// connections of their own on PostgreSQL (on SQLite, this handle).
    /// A connection is driven by the runtime that opens it: opened on the
    /// writer thread, a write batch's replies are taken up the moment they
    /// come, not after whatever an HTTP worker had ready (PostgreSQL 925
    /// answers/s with the answer writer waiting on its replies 99 % of
    /// the time, the machine a quarter idle).
    pub async fn with_own_writers(&self, url: &str, size: u32) -> anyhow::Result<Db> {
        if self.gate.is_some() {
            return Ok(self.clone());
        }
        Ok(Db {
            conn: self.conn.clone(),
            writer: Self::pool(url, size, true).await?,
            gate: None,
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
                    .busy_timeout(BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .create_if_missing(true);
                match writer {
                    // A batch's multi-row insert journals every page it
                    // touches (to undo just that statement); past 64 KiB
                    // that journal went to a temporary file. The writer
                    // also keeps a larger page cache (32 MiB): the nonce
                    // and lease indexes it inserts into at random.
                    // Its statements' text varies with the batch size (an
                    // IN list, a multi-row insert), so it keeps many more
                    // prepared (400): at sqlx's default of 100 the cache turned
                    // over and every batch was parsed and planned again.
                    //
                    // Nor does it checkpoint the WAL into the database file
                    // (copying pages, then an fsync) inside a commit, while
                    // the gate is held: `checkpoint` does, in the
                    // background, from a reader connection.
                    true => o
                        .pragma("temp_store", "MEMORY")
                        .pragma("cache_size", "-32768")
                        .pragma("wal_autocheckpoint", "0")
                        .statement_cache_capacity(400),
                    false => o,
                }
            })
            // The write batches' statements all find their rows by a key.
            // A connection keeps a statement's generic plan for its life,
            // planned in its first seconds, when the tables were nearly
            // empty and reading one whole cost nothing: once it had grown,
            // each batch read every answer to find its items' (22 ms).
            // Without sequential scans a key's index is the plan whatever
            // the table's size was (PostgreSQL CPU per answer 568 to 330 us
            // in `sahel-bench`). With that settled, they take the generic
            // plan from the first run: left to choose, PostgreSQL planned
            // every id list's statement afresh, since a plan for the list at
            // hand always looks cheaper than one for any list, and planning
            // cost more than running (planning 1.3 s to 0.5 s of a 30 s
            // bench run, most of what is left the shared pool's).
            .map_sqlx_postgres_opts(move |o| match writer {
                true => o.options([
                    ("enable_seqscan", "off"),
                    ("plan_cache_mode", "force_generic_plan"),
                ]),
                false => o,
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

    /// Copies what the SQLite write-ahead log holds into the database
    /// file, without waiting for (or blocking) the writer or readers; the
    /// writer then starts the log over once it is all copied. Run every
    /// second (`startup`), since the writer does not. Under steady writes
    /// that copy never catches up (a commit lands while it runs), so once
    /// the log is past `restart_after` frames it is copied again under the
    /// write gate, where nothing can land, and the next write starts the
    /// log over. Nothing on PostgreSQL. Returns the log's frames and how
    /// many are copied.
    ///
    /// `before` is what the last call returned: a log all copied and
    /// unchanged since is one nobody writes to, and its file is cut to
    /// nothing (a log once grown to its bound otherwise keeps its size on
    /// disk however long the server then sits idle).
    pub async fn checkpoint(
        &self,
        restart_after: i64,
        before: Option<(i64, i64)>,
    ) -> Result<Option<(i64, i64)>, DbErr> {
        let Some(gate) = &self.gate else {
            return Ok(None);
        };
        match passive_checkpoint(&self.conn).await? {
            // All copied as it ended says nothing: the writer appends all
            // the time, and starts the log over only if a transaction of
            // its begins with all of it copied.
            Some((log, _)) if log > restart_after => {
                let _gate = gate.lock().await;
                passive_checkpoint(&self.writer).await
            }
            Some((log, copied)) if log > 0 && copied == log && before == Some((log, copied)) => {
                let _gate = gate.lock().await;
                truncate_log(&self.writer).await
            }
            done => Ok(done),
        }
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

/// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: the log's frames and how
/// many are copied into the database file.
async fn passive_checkpoint(conn: &DatabaseConnection) -> Result<Option<(i64, i64)>, DbErr> {
    wal_checkpoint(conn, "PASSIVE").await
}

async fn wal_checkpoint(
    conn: &DatabaseConnection,
    mode: &str,
) -> Result<Option<(i64, i64)>, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA wal_checkpoint({mode})"),
        ))
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get_by_index(1)?, r.try_get_by_index(2)?)),
        None => None,
    })
}

/// Cuts the log file to nothing, on the writer (the caller holds the
/// gate). A reader still on the log's last pages makes it wait for them;
/// with the gate held it must not, so it gives up at once instead (and
/// the next idle second tries again).
async fn truncate_log(writer: &DatabaseConnection) -> Result<Option<(i64, i64)>, DbErr> {
    let busy_timeout = |ms: u128| async move {
        writer
            .execute_unprepared(&format!("PRAGMA busy_timeout = {ms}"))
            .await
    };
    busy_timeout(0).await?;
    let cut = wal_checkpoint(writer, "TRUNCATE").await;
    busy_timeout(BUSY_TIMEOUT.as_millis()).await?;
    cut
}

/// How long a connection waits for SQLite's locks held outside the gate
/// (the background checkpoint's) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite database in a directory of its own.
    async fn scratch() -> (std::path::PathBuf, Db) {
        let dir =
            std::env::temp_dir().join(format!("sahel-db-test-{}", crate::accounts::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        (dir, db)
    }

    /// `sql` in a write transaction of its own.
    async fn write(db: &Db, sql: &str) {
        let tx = db.write().await.unwrap();
        tx.execute_unprepared(sql).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// The rows of table `t`, as `conn` sees them.
    async fn rows_of_t(conn: &impl ConnectionTrait) -> i64 {
        conn.query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT count(*) FROM t",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
    }

    /// The writer leaves the log alone; `checkpoint` copies all of it into
    /// the database file while nothing else runs, and the writer then
    /// starts the log over instead of growing it.
    #[tokio::test]
    async fn the_background_checkpoint_copies_the_log_the_writer_leaves() {
        let (dir, db) = scratch().await;
        write(&db, "CREATE TABLE t (x TEXT)").await;
        for _ in 0..400 {
            write(&db, "INSERT INTO t VALUES (hex(randomblob(6000)))").await;
        }
        let wal = dir.join("t.db-wal");
        let grown = std::fs::metadata(&wal).unwrap().len();
        // 400 rows of 12 KB: past the 1,000 pages at which SQLite would
        // have checkpointed inside a commit by default.
        let (frames, copied) = db.checkpoint(i64::MAX, None).await.unwrap().unwrap();
        assert!(frames > 1_000, "{frames} frames in the log");
        assert_eq!(copied, frames, "all of the log copied");
        for _ in 0..50 {
            write(&db, "INSERT INTO t VALUES (hex(randomblob(6000)))").await;
        }
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            grown,
            "the log started over rather than grew"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under writes that never pause, the log is still started over, by
    /// the checkpoint taking the gate once it is past its bound. Each
    /// round below is what steady load does: a write transaction is open
    /// while the passive copy runs, so the copy is never complete when the
    /// next write begins, and without the gated copy the log only grows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_steady_writes_the_log_stays_bounded() {
        let (dir, db) = scratch().await;
        let tx = db.write().await.unwrap();
        tx.execute_unprepared("CREATE TABLE t (x TEXT)")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut last = None;
        for _ in 0..200 {
            let tx = db.write().await.unwrap();
            let copying = db.clone();
            let checkpoint = tokio::spawn(async move { copying.checkpoint(100, last).await });
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            tx.execute_unprepared("INSERT INTO t VALUES (hex(randomblob(6000)))")
                .await
                .unwrap();
            tx.commit().await.unwrap();
            last = checkpoint.await.unwrap().unwrap();
        }
        // 200 rows of 12 KB wrote some 700 pages; the log restarted each
        // time it passed 100.
        let wal = std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
        assert!(wal < 200 * 4096, "the log grew to {wal} bytes");
        assert!(wal > 0, "a log written every round was never idle");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The plan of a lookup by key, as `conn` would run it.
    async fn plan_of_lookup(conn: &impl ConnectionTrait) -> String {
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "EXPLAIN SELECT * FROM t WHERE k = ANY($1)",
                [super::shape::pg_array(&[1, 2])],
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A scratch PostgreSQL database (the server named by `DATABASE_URL`)
    /// set up by `setup`, with the admin URL to drop it by; none when the
    /// tests run on SQLite.
    async fn scratch_postgres(setup: &str) -> Option<(String, String, Db)> {
        let admin = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))?;
        let url = crate::testing::create_scratch_database(&admin, "sahel_test")
            .await
            .unwrap();
        let db = Db::connect(&url, 4).await.unwrap();
        db.conn.execute_unprepared(setup).await.unwrap();
        Some((admin, url, db))
    }

    /// The write batches' connections find rows by an index even on a
    /// table too small to need one, where a plan they keep may have been
    /// made: it still serves once the table has grown. (The shared pool,
    /// for contrast, reads the small table whole.) PostgreSQL only.
    #[tokio::test]
    async fn the_batch_writers_find_rows_by_index_on_a_small_table() {
        let Some((admin, url, db)) = scratch_postgres(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT); \
             CREATE INDEX t_k ON t (k); \
             INSERT INTO t SELECT g, g % 7, 'x' FROM generate_series(1, 20) g; \
             ANALYZE t",
        )
        .await
        else {
            return;
        };
        let writers = db.with_own_writers(&url, 1).await.unwrap();
        let shared = plan_of_lookup(&db.conn).await;
        assert!(shared.contains("Seq Scan on t"), "{shared}");
        let tx = writers.write().await.unwrap();
        let batch = plan_of_lookup(&*tx).await;
        tx.commit().await.unwrap();
        assert!(
            batch.contains("t_k") && !batch.contains("Seq Scan"),
            "{batch}"
        );
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }

    /// The write batches' connections plan a statement once and keep that
    /// plan, whatever its ids: left to choose, PostgreSQL planned an id
    /// list's statement afresh on every run (a plan for the list it was
    /// given looks cheaper than one for any list), and planning cost more
    /// than running (the lease batch's item read: 52 us planning, 16
    /// running). The shared pool, for contrast, plans its first runs for
    /// their values. PostgreSQL only.
    #[tokio::test]
    async fn the_batch_writers_plan_a_statement_once() {
        let Some((admin, url, db)) = scratch_postgres(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL); \
             INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 50) g; \
             ANALYZE t",
        )
        .await
        else {
            return;
        };
        async fn plans(conn: &impl ConnectionTrait) -> (i64, i64) {
            for n in 1..=8 {
                let rows = conn
                    .query_all_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT id FROM t WHERE id = ANY($1)",
                        [super::shape::pg_array(&(1..=n).collect::<Vec<_>>())],
                    ))
                    .await
                    .unwrap();
                assert_eq!(rows.len() as i64, n);
            }
            let row = conn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                     WHERE statement = 'SELECT id FROM t WHERE id = ANY($1)'",
                ))
                .await
                .unwrap()
                .expect("the select was prepared");
            (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
            )
        }
        let writers = db.with_own_writers(&url, 1).await.unwrap();
        let tx = writers.write().await.unwrap();
        assert_eq!(plans(&*tx).await, (8, 0), "generic, custom");
        tx.commit().await.unwrap();
        let tx = db.conn.begin().await.unwrap();
        let (_, custom) = plans(&tx).await;
        assert!(custom >= 5, "the shared pool made {custom} custom plans");
        tx.commit().await.unwrap();
        drop((writers, db));
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }

    /// A set of ids reaches PostgreSQL as one `bigint[]` parameter, which a
    /// scan tests rows against as it is, not as text cast in the statement,
    /// which it parsed again for every row. PostgreSQL only.
    #[tokio::test]
    async fn ids_reach_postgres_as_one_array_parameter() {
        use sea_orm::sea_query::{Alias, Query};
        let Some((admin, url, db)) = scratch_postgres(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL); \
             INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 50) g",
        )
        .await
        else {
            return;
        };
        let select = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("t"))
            .and_where(super::shape::any_of(
                DbBackend::Postgres,
                Alias::new("k"),
                [3, 5],
            ))
            .order_by(Alias::new("id"), sea_orm::sea_query::Order::Asc)
            .to_owned();
        // One connection, so that the prepared statement is its own.
        let tx = db.conn.begin().await.unwrap();
        let ids: Vec<i64> = tx
            .query_all_raw(DbBackend::Postgres.build(&select))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        let expected: Vec<i64> = (1..=50).filter(|g| [3, 5].contains(&(g % 7))).collect();
        assert_eq!(ids, expected);
        let types = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT parameter_types::text FROM pg_prepared_statements \
                 WHERE statement LIKE '%= ANY(%' AND NOT from_sql",
            ))
            .await
            .unwrap()
            .expect("the select was prepared");
        assert_eq!(types.try_get_by_index::<String>(0).unwrap(), "{bigint[]}");
        tx.commit().await.unwrap();
        drop(db);
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }

    /// `shape::per_id` gives each listed row its own value and the others
    /// theirs, and on a batch writer's kept generic plan its JSON is cast
    /// once per run (an `InitPlan`), not once for every row it updates.
    /// PostgreSQL only.
    #[tokio::test]
    async fn per_row_values_are_parsed_once_per_statement() {
        use sea_orm::Value;
        use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
        let Some((admin, url, db)) = scratch_postgres(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT); \
             INSERT INTO t SELECT g, 0 FROM generate_series(1, 50) g",
        )
        .await
        else {
            return;
        };
        let pairs: Vec<(i64, Value)> = vec![(3, 30i64.into()), (7, Value::BigInt(None))];
        let update = Query::update()
            .table(Alias::new("t"))
            .value(
                Alias::new("n"),
                super::shape::per_id(
                    DbBackend::Postgres,
                    Alias::new("id"),
                    &pairs,
                    "bigint",
                    Expr::val(1i64),
                ),
            )
            .and_where(Expr::col(Alias::new("id")).lte(10))
            .to_owned();
        let update = DbBackend::Postgres.build(&update);
        let explain = Statement {
            sql: format!("EXPLAIN {}", update.sql),
            ..update.clone()
        };
        let writers = db.with_own_writers(&url, 1).await.unwrap();
        let tx = writers.write().await.unwrap();
        let plan: Vec<String> = tx
            .query_all_raw(explain)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        assert!(plan.iter().any(|l| l.contains("InitPlan")), "{plan:#?}");
        tx.execute_raw(update).await.unwrap();
        let rows: Vec<(i64, Option<i64>)> = tx
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT id, n FROM t WHERE id <= 11 ORDER BY id",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.try_get_by_index(0).unwrap(),
                    r.try_get_by_index(1).unwrap(),
                )
            })
            .collect();
        tx.commit().await.unwrap();
        let want: Vec<(i64, Option<i64>)> = (1..=11)
            .map(|id| match id {
                3 => (id, Some(30)),
                7 => (id, None),
                11 => (id, Some(0)),
                _ => (id, Some(1)),
            })
            .collect();
        assert_eq!(rows, want);
        drop((writers, db));
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }

    /// A table of counters for the lock-order test.
    mod counter {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "t")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub n: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// A set-wise update through `shape::any_of_locked_in_order` takes its
    /// row locks in id order, not in the order its scan meets the rows:
    /// row 1, whose live version lies after row 2's in the heap, is
    /// already locked while the update waits for row 2. (In scan order it
    /// would wait on row 2 holding nothing, then lock row 1 after it, and
    /// two batches holding one each waited for each other: the deadlocks
    /// three replicas' answer batches met.) PostgreSQL only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_wise_updates_lock_rows_in_id_order() {
        use sea_orm::sea_query::{Expr, ExprTrait};
        use sea_orm::{EntityTrait, QueryFilter, QueryOrder};
        // Analyzed, two rows are a sequential scan's (an index scan would
        // meet them in id order whatever the update's form).
        let Some((admin, url, db)) = scratch_postgres(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); \
             INSERT INTO t VALUES (1, 0), (2, 0); \
             UPDATE t SET n = 1 WHERE id = 1; \
             ANALYZE t",
        )
        .await
        else {
            return;
        };
        let sql = |q: &str| Statement::from_string(DbBackend::Postgres, q);
        let heap_order: Vec<i64> = db
            .conn
            .query_all_raw(sql("SELECT id FROM t ORDER BY ctid"))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        assert_eq!(heap_order, [2, 1], "the setup moves row 1 behind row 2");

        let holder = db.conn.begin().await.unwrap();
        holder
            .execute_raw(sql("SELECT id FROM t WHERE id = 2 FOR NO KEY UPDATE"))
            .await
            .unwrap();
        let batch = db.conn.begin().await.unwrap();
        let update = tokio::spawn(async move {
            counter::Entity::update_many()
                .col_expr(counter::Column::N, Expr::col(counter::Column::N).add(1))
                .filter(super::shape::any_of_locked_in_order(
                    DbBackend::Postgres,
                    counter::Entity,
                    counter::Column::Id,
                    [2, 1],
                ))
                .exec(&batch)
                .await
                .unwrap();
            batch.commit().await.unwrap();
        });
        // Bounded wait until the update is blocked on the holder's lock.
        let mut waiting = false;
        for _ in 0..250 {
            let row = db
                .conn
                .query_one_raw(sql("SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE 'UPDATE%'"))
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<i64>(0).unwrap() > 0 {
                waiting = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(waiting, "the update never waited for row 2");
        let probe = db.conn.begin().await.unwrap();
        let row1 = probe
            .execute_raw(sql(
                "SELECT id FROM t WHERE id = 1 FOR NO KEY UPDATE NOWAIT",
            ))
            .await;
        probe.rollback().await.unwrap();
        let err = row1.expect_err("row 1 was free while the update waited for row 2");
        assert!(err.to_string().contains("could not obtain lock"), "{err}");

        holder.commit().await.unwrap();
        update.await.unwrap();
        let rows = counter::Entity::find()
            .order_by_asc(counter::Column::Id)
            .all(&db.conn)
            .await
            .unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.id, r.n)).collect::<Vec<_>>(),
            [(1, 2), (2, 1)]
        );
        drop(db);
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }

    /// A log that nobody wrote to between two checkpoints, all copied,
    /// has its file cut to nothing; one a reader still reads from is left
    /// as it is, and the writer goes on either way.
    #[tokio::test]
    async fn an_idle_log_gives_its_disk_space_back() {
        let (dir, db) = scratch().await;
        let wal = dir.join("t.db-wal");
        let size = || std::fs::metadata(&wal).unwrap().len();
        write(&db, "CREATE TABLE t (x TEXT)").await;
        for _ in 0..100 {
            write(&db, "INSERT INTO t VALUES (hex(randomblob(6000)))").await;
        }
        // A reader whose snapshot was taken from the log holds it until
        // its read ends.
        let reader = db.conn.begin().await.unwrap();
        assert_eq!(rows_of_t(&reader).await, 100);
        let first = db.checkpoint(i64::MAX, None).await.unwrap();
        assert!(size() > 100 * 4096, "{} bytes of log", size());
        let held = db.checkpoint(i64::MAX, first).await.unwrap();
        assert!(size() > 100 * 4096, "cut under a reader: {} bytes", size());
        assert_eq!(held, first, "the log, unchanged, is tried again");
        reader.commit().await.unwrap();
        let cut = db.checkpoint(i64::MAX, held).await.unwrap();
        assert_eq!(cut, Some((0, 0)));
        assert_eq!(size(), 0, "the idle log was cut");
        write(&db, "INSERT INTO t VALUES ('after')").await;
        assert_eq!(rows_of_t(&db.conn).await, 101);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
