//! Group commit for the hot writes (leases and answers).
//!
//! Every lease call and every answer ends in a small write. On SQLite each
//! write transaction holds the one write gate, and each statement is a
//! round trip to the connection's thread; under load the gate, not the
//! CPU, sets the pace. So a call does not write alone: it queues its job,
//! and whichever call takes the writer's turn next writes everything queued
//! in one transaction and hands each call its own result. A call whose job
//! another call wrote just waits for its answer. On SQLite batches run on
//! a thread of their own (`writer_runtime`). On PostgreSQL leases and
//! answers are batched too: the turn is per process, so it saves commits
//! and round trips, not a gate; replicas' batches that deadlock are split
//! and written one by one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use sahel_protocol::api::ProjectStatus;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use tokio::sync::oneshot;

use super::entity::lease;
use crate::accounts::{self, NonceCheck, NonceClaim};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::projects::entity::{item, project};
use crate::projects::parse_status;
use crate::telemetry::Metrics;

/// Jobs waiting for the writer's turn.
pub struct GroupCommit<J> {
    queued: Mutex<Vec<J>>,
    turn: tokio::sync::Mutex<()>,
    own_thread: bool,
}

impl<J: Send + 'static> GroupCommit<J> {
    /// `own_thread`: run batches on the writer thread (`writer_runtime`).
    /// For SQLite only, whose connections answer through channels; a
    /// PostgreSQL socket is driven by the runtime that opened it.
    pub fn new(own_thread: bool) -> Self {
        GroupCommit {
            queued: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            own_thread,
        }
    }

    /// Queues `job` and waits for its result on `answer`. Whenever this
    /// call holds the turn meanwhile, it runs `write` on everything queued.
    pub async fn run<T, F>(
        &self,
        job: J,
        mut answer: oneshot::Receiver<Result<T>>,
        write: impl Fn(Vec<J>) -> F,
    ) -> Result<T>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.lock_queue().push(job);
        loop {
            tokio::select! {
                biased;
                r = &mut answer => {
                    return r.unwrap_or_else(|_| {
                        Err(anyhow::anyhow!("the write batch holding this call was abandoned").into())
                    });
                }
                _turn = self.turn.lock() => {
                    // Whoever held the turn before wrote everything queued
                    // then, and answered before letting go: an empty queue
                    // means this call's answer is waiting.
                    let jobs = std::mem::take(&mut *self.lock_queue());
                    if !jobs.is_empty() {
                        // Its own task: the batch answers other calls too,
                        // so it must finish even if this call is dropped.
                        let batch = match self.own_thread {
                            true => writer_runtime().spawn(write(jobs)),
                            false => tokio::spawn(write(jobs)),
                        };
                        if let Err(e) = batch.await {
                            tracing::error!(error = %e, "a write batch task failed");
                        }
                    }
                }
            }
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<J>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The thread that runs write batches, and nothing else. A batch is a
/// chain of statements, each a round trip to the database; run on an HTTP
/// worker, each reply waited behind every request that worker had ready,
/// and the write gate was held meanwhile. Here each reply is taken up at
/// once (SQLite 818 to 925 answers/s in `sahel-bench`).
fn writer_runtime() -> &'static tokio::runtime::Handle {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sahel-writer")
            .enable_all()
            .build()
            .expect("writer runtime")
    })
    .handle()
}

/// Records the nonces of a batch's jobs in the caller's transaction: which
/// jobs may go on (unsigned, or signed with a fresh nonce).
pub(super) async fn fresh_nonces(
    conn: &impl sea_orm::ConnectionTrait,
    nonces: &[Option<&NonceClaim>],
) -> Result<Vec<NonceCheck>> {
    let claims: Vec<&NonceClaim> = nonces.iter().flatten().copied().collect();
    let mut checks = accounts::record_nonces(conn, &claims).await?.into_iter();
    Ok(nonces
        .iter()
        .map(|n| match n {
            None => NonceCheck::Fresh,
            Some(_) => checks.next().unwrap_or(NonceCheck::Replayed),
        })
        .collect())
}

/// One lease call's rows, waiting to be written.
pub struct LeaseJob {
    nonce: Option<NonceClaim>,
    project: i64,
    user: i64,
    items: Vec<i64>,
    /// Those of `items` that are gold: leased whatever their status.
    gold: Vec<i64>,
    created: i64,
    expires: i64,
    done: oneshot::Sender<Result<Leased>>,
}

/// What a lease call's write found.
pub enum Leased {
    /// Its leases (in no particular order) and the items they are on.
    /// Items the call asked for but found closed are in neither.
    Recorded(Vec<lease::Model>, Vec<item::Model>),
    /// The project was not open when the batch wrote: nothing was leased
    /// (the request's nonce is spent all the same).
    NotOpen(ProjectStatus),
}

pub type LeaseWriter = GroupCommit<LeaseJob>;

/// Records open leases of `user` on those of `items` still open, if the
/// project is still open (with the request's nonce, if signed). A replayed
/// nonce refuses this call alone.
pub async fn write_leases(
    writer: &LeaseWriter,
    (db, metrics): (&Db, &Arc<Metrics>),
    nonce: Option<&NonceClaim>,
    (project, user): (i64, i64),
    (items, gold): (Vec<i64>, Vec<i64>),
    (created, expires): (i64, i64),
) -> Result<Leased> {
    let (done, answer) = oneshot::channel();
    let job = LeaseJob {
        nonce: nonce.cloned(),
        project,
        user,
        items,
        gold,
        created,
        expires,
        done,
    };
    writer
        .run(job, answer, |jobs| {
            write_lease_batch(db.clone(), metrics.clone(), jobs)
        })
        .await
}

/// Writes the lease jobs in one transaction (one statement for all nonces,
/// one to read their projects' statuses, one to read all their items, one
/// for all leases) and answers each.
async fn write_lease_batch(db: Db, metrics: Arc<Metrics>, jobs: Vec<LeaseJob>) {
    let _busy = Metrics::time(&metrics.lease_batch_us);
    let written = async {
        let tx = db.write().await?;
        let nonces: Vec<Option<&NonceClaim>> = jobs.iter().map(|j| j.nonce.as_ref()).collect();
        let accepted = fresh_nonces(&*tx, &nonces).await?;
        // Read here, in the transaction that writes the leases, so that a
        // lease call needs no read of its project of its own: a pause or
        // close by any replica is seen by the next batch.
        let mut projects: Vec<i64> = jobs
            .iter()
            .zip(&accepted)
            .filter(|(_, check)| check.is_fresh())
            .map(|(j, _)| j.project)
            .collect();
        projects.sort_unstable();
        projects.dedup();
        let status: HashMap<i64, ProjectStatus> = match projects.is_empty() {
            true => HashMap::new(),
            false => project::Entity::find()
                .select_only()
                .columns([project::Column::Id, project::Column::Status])
                .filter(project::Column::Id.is_in(projects))
                .into_tuple::<(i64, String)>()
                .all(&*tx)
                .await?
                .into_iter()
                .map(|(id, s)| (id, parse_status(&s)))
                .collect(),
        };
        let open = |j: &LeaseJob| status.get(&j.project) == Some(&ProjectStatus::Open);
        let wanted: Vec<i64> = jobs
            .iter()
            .zip(&accepted)
            .filter(|(j, check)| check.is_fresh() && open(j))
            .flat_map(|(j, _)| j.items.iter().copied())
            .collect();
        let items: HashMap<i64, item::Model> = match wanted.is_empty() {
            true => HashMap::new(),
            false => item::Entity::find()
                .filter(item::Column::Id.is_in(wanted))
                .all(&*tx)
                .await?
                .into_iter()
                .map(|it| (it.id, it))
                .collect(),
        };
        // An item the queue offered may have closed since (a queue update
        // lost with Redis): the database decides, inside the transaction.
        let usable: Vec<Vec<i64>> = jobs
            .iter()
            .zip(&accepted)
            .map(|(j, check)| match check.is_fresh() && open(j) {
                false => Vec::new(),
                true => j
                    .items
                    .iter()
                    .copied()
                    .filter(|id| {
                        items
                            .get(id)
                            .is_some_and(|it| it.status == "open" || j.gold.contains(id))
                    })
                    .collect(),
            })
            .collect();
        let rows: Vec<lease::ActiveModel> = jobs
            .iter()
            .zip(&usable)
            .flat_map(|(j, ids)| {
                ids.iter().map(|item| lease::ActiveModel {
                    project_id: Set(j.project),
                    item_id: Set(*item),
                    user_id: Set(j.user),
                    status: Set("open".into()),
                    expires_at: Set(j.expires),
                    created_at: Set(j.created),
                    ..Default::default()
                })
            })
            .collect();
        let leases = match rows.is_empty() {
            true => Vec::new(),
            false => {
                lease::Entity::insert_many(rows)
                    .exec_with_returning(&*tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok::<_, Error>((accepted, status, usable, items, leases))
    }
    .await;
    match written {
        Ok((accepted, status, usable, items, leases)) => {
            Metrics::add(&metrics.lease_writes, 1);
            Metrics::add(
                &metrics.lease_calls_written,
                accepted.iter().filter(|c| c.is_fresh()).count() as u64,
            );
            // RETURNING promises no order: each job takes, per item, one
            // lease of its user on that item not yet handed to another.
            let mut left: HashMap<(i64, i64), Vec<lease::Model>> = HashMap::new();
            for l in leases {
                left.entry((l.user_id, l.item_id)).or_default().push(l);
            }
            for ((job, check), ids) in jobs.into_iter().zip(accepted).zip(usable) {
                if let Err(refused) = check.into_result() {
                    let _ = job.done.send(Err(refused));
                    continue;
                }
                // A project gone is a draft as far as leasing goes.
                match status.get(&job.project).copied() {
                    Some(ProjectStatus::Open) => {}
                    other => {
                        let not = other.unwrap_or(ProjectStatus::Draft);
                        let _ = job.done.send(Ok(Leased::NotOpen(not)));
                        continue;
                    }
                }
                let mine: Vec<lease::Model> = ids
                    .iter()
                    .filter_map(|item| left.get_mut(&(job.user, *item)).and_then(Vec::pop))
                    .collect();
                let on: Vec<item::Model> =
                    ids.iter().filter_map(|id| items.get(id)).cloned().collect();
                let _ = job.done.send(Ok(Leased::Recorded(mine, on)));
            }
        }
        Err(e) => {
            tracing::error!(error = ?e, calls = jobs.len(), "a lease batch failed");
            for job in jobs {
                let _ = job.done.send(Err(
                    anyhow::anyhow!("recording the leases failed: {e}").into()
                ));
            }
        }
    }
}
