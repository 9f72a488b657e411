//! Group commit for the hot writes (leases and answers).
//!
//! Every lease call and every answer ends in a small write. On SQLite each
//! write transaction holds the one write gate, and each statement is a
//! round trip to the connection's thread; under load the gate, not the
//! CPU, sets the pace. So a call does not write alone: it sends its job to
//! a writer, a task that takes everything waiting, writes it in one
//! transaction, hands each call its own result, and starts over. One
//! writer per kind of job and process, both on a thread of their own
//! (`writer_runtime`), where each reply from the database is taken up the
//! moment it comes. On PostgreSQL the batches save commits and round trips
//! rather than a gate, and run on connections opened on that thread
//! (`Db::with_own_writers`); replicas' batches that deadlock are split and
//! written one by one.
//!
//! The next batch starts the moment the last one ends: a writer that was
//! a caller holding a turn had first to be woken on a busy HTTP worker,
//! which left the SQLite gate idle a third of the time between batches.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::FutureExt;
use sahel_protocol::api::ProjectStatus;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use tokio::sync::{mpsc, oneshot};

use super::entity::lease;
use crate::accounts::{self, NonceCheck, NonceClaim};
use crate::db::{Db, shape};
use crate::error::{Error, Result};
use crate::projects::entity::{item, project};
use crate::projects::parse_status;
use crate::telemetry::Metrics;

/// A job's share of a batch, and the most a batch takes (one job more at
/// most): bounds a transaction's statements and their bound parameters.
pub trait Job: Send + 'static {
    fn weight(&self) -> usize;
    const MAX_BATCH_WEIGHT: usize;
}

/// Jobs that may wait for a writer: past this, callers wait to queue
/// theirs, so a stalled database holds requests back instead of memory
/// growing with every retry.
const WAITING_JOBS: usize = 4_096;

/// Sends jobs to their writer.
pub struct GroupCommit<J> {
    jobs: mpsc::Sender<J>,
}

impl<J: Job> GroupCommit<J> {
    /// Starts the writer, which runs `write` on each batch until every
    /// sender is gone. `own_thread`: on the writer thread
    /// (`writer_runtime`), else on the current runtime. A PostgreSQL
    /// socket is driven by the runtime that opened it: a writer on the
    /// writer thread writes through connections opened there.
    pub fn start<F>(own_thread: bool, write: impl Fn(Vec<J>) -> F + Send + 'static) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (jobs, mut waiting) = mpsc::channel::<J>(WAITING_JOBS);
        let writer = async move {
            while let Some(first) = waiting.recv().await {
                let mut weight = first.weight();
                let mut batch = vec![first];
                while weight < J::MAX_BATCH_WEIGHT {
                    match waiting.try_recv() {
                        Ok(job) => {
                            weight += job.weight();
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                // A batch that panics drops its jobs (their callers hear
                // that it was abandoned); the writer goes on with the next.
                let written = std::panic::AssertUnwindSafe(write(batch)).catch_unwind();
                if written.await.is_err() {
                    tracing::error!(
                        "a write batch panicked; its calls were answered with an error"
                    );
                }
            }
        };
        match own_thread {
            true => drop(writer_runtime().spawn(writer)),
            false => drop(tokio::spawn(writer)),
        }
        GroupCommit { jobs }
    }

    /// Sends `job` to the writer and waits for its result on `answer`. A
    /// caller that goes away does not take its job back: the writer still
    /// writes it, with the batch it is in.
    pub async fn run<T>(&self, job: J, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("the writer has stopped"))?;
        answer.await.unwrap_or_else(|_| {
            Err(anyhow::anyhow!("the write batch holding this call was abandoned").into())
        })
    }
}

/// Runs `work` on the writer thread, where the connections it opens are
/// then driven.
pub async fn on_writer_thread<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> anyhow::Result<T> {
    writer_runtime()
        .spawn(work)
        .await
        .map_err(|e| anyhow::anyhow!("the writer thread failed: {e}"))
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
    writer.run(job, answer).await
}

impl Job for LeaseJob {
    fn weight(&self) -> usize {
        self.items.len().max(1)
    }
    /// Lease rows in one INSERT (7 values each).
    const MAX_BATCH_WEIGHT: usize = 1_000;
}

/// The lease writer of a server.
pub fn lease_writer(db: Db, metrics: Arc<Metrics>) -> LeaseWriter {
    GroupCommit::start(true, move |jobs| {
        write_lease_batch(db.clone(), metrics.clone(), jobs)
    })
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
        // close by any replica is seen by the next batch. Shared-locked
        // on PostgreSQL until the leases commit: a pause or close waits
        // for them (and `projects::close` then ends them), never lets
        // them in after it.
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
                .lock_shared()
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
                .filter(shape::any_of(
                    tx.get_database_backend(),
                    item::Column::Id,
                    wanted,
                ))
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
            false => shape::insert_rows(&*tx, rows).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe {
        n: usize,
        done: oneshot::Sender<Result<usize>>,
    }

    impl Job for Probe {
        fn weight(&self) -> usize {
            self.n
        }
        const MAX_BATCH_WEIGHT: usize = 10;
    }

    /// Jobs sent while a batch is being written wait for the next one,
    /// which takes them all up to the weight bound; each caller gets its
    /// own result, and a caller that left still has its job written.
    #[tokio::test]
    async fn jobs_queued_during_a_batch_are_written_together_within_the_bound() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::<Vec<usize>>::new()));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let seen = batches.clone();
        let writer = GroupCommit::start(false, move |jobs: Vec<Probe>| {
            let seen = seen.clone();
            let mut gate = gate_rx.clone();
            async move {
                // The first batch holds until the test has queued the rest.
                let _ = gate.wait_for(|open| *open).await;
                seen.lock()
                    .unwrap()
                    .push(jobs.iter().map(|j| j.n).collect());
                for j in jobs {
                    let _ = j.done.send(Ok(j.n * 100));
                }
            }
        });
        let send = |n: usize| {
            let (done, answer) = oneshot::channel();
            (Probe { n, done }, answer)
        };
        let (first, first_answer) = send(1);
        let first_call = writer.run(first, first_answer);
        let mut rest = Vec::new();
        let mut first_call = Box::pin(first_call);
        // Let the writer take the first job alone before the others come.
        tokio::select! {
            _ = &mut first_call => panic!("the first batch cannot finish yet"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
        for n in [4, 4, 4, 2] {
            rest.push(send(n));
        }
        // This caller leaves at once: its job is written all the same.
        let (gone, gone_answer) = send(3);
        drop(
            tokio::time::timeout(
                std::time::Duration::from_millis(1),
                writer.run(gone, gone_answer),
            )
            .await,
        );
        let calls: Vec<_> = rest.into_iter().map(|(j, a)| writer.run(j, a)).collect();
        gate_tx.send(true).unwrap();
        assert_eq!(first_call.await.unwrap(), 100);
        let results = futures_util::future::join_all(calls).await;
        let results: Vec<usize> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(results, vec![400, 400, 400, 200]);
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches[0], vec![1]);
        let later: Vec<usize> = batches[1..].iter().flatten().copied().collect();
        assert_eq!(
            later.iter().sum::<usize>(),
            3 + 4 + 4 + 4 + 2,
            "{batches:?}"
        );
        for b in &batches[1..] {
            // A batch stops taking jobs once it reaches the bound.
            assert!(b[..b.len() - 1].iter().sum::<usize>() < 10, "{batches:?}");
        }
        assert!(batches.len() >= 3, "the bound split the burst: {batches:?}");
    }

    /// A batch that panics answers its callers with an error and does not
    /// take the writer down: the next job is written.
    #[tokio::test]
    async fn a_panicking_batch_fails_its_calls_and_the_writer_goes_on() {
        let writer = GroupCommit::start(false, |jobs: Vec<Probe>| async move {
            if jobs.iter().any(|j| j.n == 0) {
                panic!("a bad batch");
            }
            for j in jobs {
                let _ = j.done.send(Ok(j.n));
            }
        });
        let call = |n: usize| {
            let (done, answer) = oneshot::channel();
            writer.run(Probe { n, done }, answer)
        };
        assert!(call(0).await.is_err());
        assert_eq!(call(7).await.unwrap(), 7);
    }
}
