//! The task queue: leases and the answers submitted on them.
//!
//! A [`QueueBackend`] decides quickly which items a contributor may lease
//! (never one they answered or hold, never more leases than answers still
//! needed). It is advisory and rebuildable: the database is the source of
//! truth, and every lease and answer is committed there before the client
//! hears of it. The database also enforces the hard rules on its own: an
//! answer needs an open, unexpired lease of its author, a unique
//! (item, contributor) pair, and an item that still needs answers.

pub mod entity;
pub mod held;
pub mod memory;
pub mod redis;
pub mod writer;

use sahel_protocol::api::{self, AnswerStatus, ProjectStatus, Role};
use sahel_protocol::{Micros, Timestamp, provenance};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use sha2::{Digest, Sha256};

use crate::accounts::{AuthUser, NonceClaim, PendingNonce};
use crate::consensus::quality;
use crate::consensus::resolve::{self, Outcome};
use crate::db::{Db, now_ms, shape};
use crate::error::{Error, Result, is_unique_violation};
use crate::projects::entity::{item, project};
use crate::projects::{self, Project};
use crate::state::AppState;
use crate::telemetry::Metrics;
use entity::{answer, lease};

/// Most tasks one lease call hands out.
pub const MAX_BATCH: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The backend lost this project's state (e.g. Redis was flushed); it
    /// must be rebuilt from the database before leasing resumes.
    #[error("project {0} is not loaded in the queue")]
    NotLoaded(i64),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type QueueResult<T> = std::result::Result<T, QueueError>;

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Error {
        match e {
            QueueError::Unavailable(why) => Error::unavailable("queue-unavailable", why, 2),
            QueueError::NotLoaded(p) => Error::unavailable(
                "queue-rebuilding",
                format!("the task queue of project {p} is being rebuilt; retry shortly"),
                1,
            ),
            QueueError::Other(e) => Error::Unexpected(e),
        }
    }
}

/// An item set aside for one contributor, not yet recorded as a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub item_id: i64,
}

/// What the database says about one open item, to (re)build a queue.
#[derive(Clone, Debug)]
pub struct ItemSnapshot {
    pub item_id: i64,
    pub needed: u32,
    pub answered_by: Vec<i64>,
    /// (contributor, lease expiry) of each open, unexpired lease.
    pub holders: Vec<(i64, i64)>,
}

#[derive(Clone, Debug)]
pub struct ProjectSnapshot {
    pub project_id: i64,
    pub overlap: u32,
    pub items: Vec<ItemSnapshot>,
}

/// The queue's state machine, one backend per deployment: in-process for
/// a single server, Redis when several replicas share the work.
#[async_trait::async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn health(&self) -> QueueResult<()>;
    /// Whether the project's state is present (another replica may have
    /// loaded it).
    async fn is_loaded(&self, project: i64) -> QueueResult<bool>;
    /// Claims the right to load a project; false while another process
    /// is loading it.
    async fn try_begin_load(&self, project: i64) -> QueueResult<bool>;
    /// Builds a project's state from a database snapshot, merging with any
    /// changes recorded meanwhile, and marks it loaded.
    async fn load(&self, snapshot: ProjectSnapshot) -> QueueResult<()>;
    /// Replaces a loaded project's state with a fresh snapshot, dropping
    /// marks the database no longer has (answers discarded by a
    /// suspension). Reservations not yet committed are lost: rare and
    /// harmless, since the database refuses any answer beyond the need.
    async fn reload(&self, snapshot: ProjectSnapshot) -> QueueResult<()>;
    async fn unload(&self, project: i64) -> QueueResult<()>;
    /// Sets aside up to `count` items for `user` until `until`, freeing
    /// leases that expired by `now` first. One atomic step.
    async fn reserve(
        &self,
        project: i64,
        user: i64,
        count: usize,
        now: i64,
        until: i64,
    ) -> QueueResult<Vec<Reservation>>;
    /// An open lease now lasts until `until`.
    async fn renew(&self, project: i64, item: i64, user: i64, until: i64) -> QueueResult<()>;
    /// A lease ended without an answer.
    async fn release(&self, project: i64, item: i64, user: i64) -> QueueResult<()>;
    /// A lease became an answer.
    async fn answered(&self, project: i64, item: i64, user: i64) -> QueueResult<()>;
    /// The item needs `Some(n)` answers in all now, or is closed (`None`).
    async fn set_needed(&self, project: i64, item: i64, needed: Option<u32>) -> QueueResult<()>;
    /// What committed answers changed, in order: each is
    /// [`answered`](Self::answered) then [`set_needed`](Self::set_needed).
    /// A backend across a network does them all in one round trip.
    async fn record(&self, changes: &[AnswerChange]) -> QueueResult<()> {
        record_step_by_step(self, changes).await
    }
}

/// [`QueueBackend::record`] one call at a time.
pub async fn record_step_by_step<Q: QueueBackend + ?Sized>(
    q: &Q,
    changes: &[AnswerChange],
) -> QueueResult<()> {
    for c in changes {
        if let Some(user) = c.answered_by {
            q.answered(c.project, c.item, user).await?;
        }
        if let Some(needed) = c.needed {
            q.set_needed(c.project, c.item, needed).await?;
        }
    }
    Ok(())
}

/// What one committed answer changes in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerChange {
    pub project: i64,
    pub item: i64,
    /// Whose lease became an answer; none for a gold item, which is never
    /// in the queue (a backend that creates items on first mention, Redis,
    /// would offer it as a task).
    pub answered_by: Option<i64>,
    /// The item's need, if it changed: `Some(n)` answers in all, or
    /// closed (`None`).
    pub needed: Option<Option<u32>>,
}

const SNAPSHOT_PAGE: u64 = 20_000;

/// Reads one project's queue state from the database.
pub async fn snapshot(
    conn: &impl ConnectionTrait,
    project_id: i64,
    now: i64,
) -> Result<ProjectSnapshot> {
    let p = projects::get(conn, project_id).await?;
    let overlap = p.row.overlap as u32;
    // Read in pages: a million-item project must not materialize a million
    // database rows at once (that alone took hundreds of MB). By `seq`, the
    // order of the bounty's open items in their index: by id, each page
    // sorted every open item.
    let mut items: Vec<ItemSnapshot> = Vec::new();
    let mut after = -1i64;
    loop {
        let page: Vec<(i64, i32, i64)> = item::Entity::find()
            .select_only()
            .column(item::Column::Id)
            .column(item::Column::Needed)
            .column(item::Column::Seq)
            .filter(item::Column::ProjectId.eq(project_id))
            .filter(item::Column::Status.eq("open"))
            .filter(item::Column::Seq.gt(after))
            .order_by_asc(item::Column::Seq)
            .limit(SNAPSHOT_PAGE)
            .into_tuple()
            .all(conn)
            .await?;
        let Some(&(_, _, last)) = page.last() else {
            break;
        };
        after = last;
        items.extend(page.into_iter().map(|(item_id, needed, _)| ItemSnapshot {
            item_id,
            needed: needed as u32,
            answered_by: vec![],
            holders: vec![],
        }));
    }
    items.sort_by_key(|i| i.item_id);
    let pos =
        |items: &Vec<ItemSnapshot>, id: i64| items.binary_search_by_key(&id, |i| i.item_id).ok();

    // Pending answers are exactly the answers of open items: consensus
    // decides every answer of an item when it closes it. Reviewed types
    // decide answers one at a time while their item stays open, and each
    // of those answers holds its slot (a rejection adds a slot instead).
    let mut answered_q = answer::Entity::find()
        .select_only()
        .column(answer::Column::ItemId)
        .column(answer::Column::UserId)
        .filter(answer::Column::ProjectId.eq(project_id));
    if !p.schema.is_reviewed() {
        answered_q = answered_q.filter(answer::Column::Status.eq("pending"));
    }
    let answered: Vec<(i64, i64)> = answered_q.into_tuple().all(conn).await?;
    for (item_id, user) in answered {
        if let Some(i) = pos(&items, item_id) {
            items[i].answered_by.push(user);
        }
    }
    let held: Vec<(i64, i64, i64)> = lease::Entity::find()
        .select_only()
        .column(lease::Column::ItemId)
        .column(lease::Column::UserId)
        .column(lease::Column::ExpiresAt)
        .filter(lease::Column::ProjectId.eq(project_id))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gt(now))
        .into_tuple()
        .all(conn)
        .await?;
    for (item_id, user, until) in held {
        if let Some(i) = pos(&items, item_id) {
            items[i].holders.push((user, until));
        }
    }
    Ok(ProjectSnapshot {
        project_id,
        overlap,
        items,
    })
}

/// Loads every open project into the queue (at start-up, or after the
/// backend lost its state).
pub async fn rebuild(state: &AppState) -> Result<usize> {
    let open: Vec<i64> = project::Entity::find()
        .select_only()
        .column(project::Column::Id)
        .filter(project::Column::Status.eq(projects::status_str(ProjectStatus::Open)))
        .into_tuple()
        .all(&state.db.conn)
        .await?;
    for id in &open {
        load_project(state, *id).await?;
    }
    Ok(open.len())
}

/// Makes sure the queue holds a project, loading it from the database
/// unless another replica already did or is doing it (then 503).
pub async fn load_project(state: &AppState, project_id: i64) -> Result<()> {
    if state.queue.is_loaded(project_id).await? {
        return Ok(());
    }
    if !state.queue.try_begin_load(project_id).await? {
        return Err(QueueError::NotLoaded(project_id).into());
    }
    let snap = snapshot(&state.db.conn, project_id, now_ms()).await?;
    let items = snap.items.len();
    state.queue.load(snap).await?;
    Metrics::add(&state.metrics.queue_rebuilds, 1);
    tracing::info!(
        project = project_id,
        items,
        backend = state.queue.name(),
        "queue loaded from the database"
    );
    unload_if_ended(state, project_id).await
}

/// Rebuilds a loaded project's queue from the database (after the quality
/// engine discarded answers, so their items are offered again).
pub async fn reload_project(state: &AppState, project_id: i64) -> Result<()> {
    let snap = snapshot(&state.db.conn, project_id, now_ms()).await?;
    state.queue.reload(snap).await?;
    Metrics::add(&state.metrics.queue_rebuilds, 1);
    unload_if_ended(state, project_id).await
}

/// Unloads a bounty just loaded if it has ended: its own unload, which
/// follows its commit, may have come before the load (which also cleared
/// its tombstone), and nothing else would ever remove it. Its status is
/// read after the load, so either this read sees the end, or the end's
/// unload comes after the load.
async fn unload_if_ended(state: &AppState, project_id: i64) -> Result<()> {
    if !projects::get(&state.db.conn, project_id)
        .await?
        .status()
        .is_running()
    {
        forget(&*state.queue, project_id).await;
    }
    Ok(())
}

/// Leases up to `count` tasks of a project to a contributor.
///
/// `nonce` (a signed request's) is recorded in the lease transaction when
/// there is one; the caller settles it otherwise.
pub async fn lease(
    state: &AppState,
    user: &AuthUser,
    nonce: &mut PendingNonce,
    project_id: i64,
    count: u32,
) -> Result<Vec<api::Task>> {
    user.require(Role::Contributor)?;
    if !(1..=MAX_BATCH).contains(&count) {
        return Err(Error::invalid(
            "invalid-count",
            format!("lease 1 to {MAX_BATCH} tasks at a time"),
        ));
    }
    // While this process last saw the bounty open, its cached terms serve
    // and the lease batch checks the status where it writes; otherwise
    // the row is read, for the right refusal.
    let p = match state.projects.open_terms(project_id) {
        Some(p) => p,
        None => match read_leasable(state, user, project_id).await? {
            Some(p) => p,
            None => return Ok(Vec::new()),
        },
    };
    let now = now_ms();
    let until = now + state.config.lease_secs as i64 * 1000;
    // The quality engine may refuse the contributor (suspended, exam
    // failed), hold them to its exam, or mix gold items in.
    let admission = quality::admit(state, user, &p).await?;
    let reserved = if matches!(admission, quality::Admission::Exam(..)) {
        Vec::new()
    } else {
        match state
            .queue
            .reserve(project_id, user.id, count as usize, now, until)
            .await
        {
            Ok(r) => r,
            Err(QueueError::NotLoaded(p)) => {
                // A bounty closed or completed is unloaded: say so rather
                // than have the caller retry.
                if read_leasable(state, user, p).await?.is_none() {
                    return Ok(Vec::new());
                }
                // Rebuild in the background; this caller retries after the 503.
                let st = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = load_project(&st, p).await {
                        tracing::info!(project = p, error = %e, "queue rebuild not started here");
                    }
                });
                return Err(QueueError::NotLoaded(p).into());
            }
            Err(e) => return Err(e.into()),
        }
    };
    let (picked, gold) =
        quality::gold::mix(state, user, &p, &admission, reserved, count, now).await?;
    if picked.is_empty() {
        // No batch will check the status: nothing to offer may mean the
        // bounty was closed or paused behind the cached status.
        read_leasable(state, user, project_id).await?;
        return Ok(Vec::new());
    }
    match record_leases(state, nonce, &p, user.id, (&picked, &gold), (now, until)).await {
        Ok((tasks, stale, barred)) => {
            // Items this contributor reviewed answers on: not theirs to take.
            for item in barred {
                if let Err(e) = state.queue.release(project_id, item, user.id).await {
                    tracing::warn!(error = %e, "could not return a reservation to the queue");
                }
            }
            // Items the queue offered but the database has closed: a queue
            // update was lost (e.g. Redis unreachable after a commit).
            for item in stale {
                if let Err(e) = state.queue.set_needed(project_id, item, None).await {
                    tracing::warn!(error = %e, "could not correct the queue");
                }
            }
            Metrics::add(&state.metrics.leases_granted, tasks.len() as u64);
            Ok(tasks)
        }
        Err(e) => {
            for id in picked.iter().filter(|id| !gold.contains(id)) {
                if let Err(qe) = state.queue.release(project_id, *id, user.id).await {
                    tracing::warn!(error = %qe, "could not return a reservation to the queue");
                }
            }
            Err(e)
        }
    }
}

/// Whether a bounty in `status` hands out tasks: yes when open, none (an
/// empty answer) when completed, a refusal saying why otherwise.
fn leasable(status: ProjectStatus) -> Result<bool> {
    match status {
        ProjectStatus::Open => Ok(true),
        ProjectStatus::Completed => Ok(false),
        ProjectStatus::Paused => Err(Error::conflict(
            "project-paused",
            "this bounty is paused by its buyer; tasks you already hold may still be answered",
        )),
        ProjectStatus::Closed => Err(Error::conflict(
            "project-closed",
            "this project was closed by its buyer",
        )),
        ProjectStatus::Draft => Err(Error::conflict(
            "project-not-open",
            "this project is not funded yet",
        )),
    }
}

/// Reads a bounty as `user` may see it and remembers its status: its
/// terms if it is open, none if it is completed, a refusal otherwise.
async fn read_leasable(
    state: &AppState,
    user: &AuthUser,
    project_id: i64,
) -> Result<Option<std::sync::Arc<Project>>> {
    let read = projects::get_visible(&state.db.conn, user, project_id).await?;
    let status = read.status();
    let p = state.projects.saw(read);
    Ok(leasable(status)?.then_some(p))
}

/// Records leases on `picked` (in order); `gold` lists those that are gold
/// items, leased whatever their status.
async fn record_leases(
    state: &AppState,
    nonce: &mut PendingNonce,
    p: &Project,
    user: i64,
    (picked, gold): (&[i64], &[i64]),
    (now, until): (i64, i64),
) -> Result<(Vec<api::Task>, Vec<i64>, Vec<i64>)> {
    // Checked before the write; a review lease taken meanwhile is caught
    // when the answer comes (`reviewed-this-item`).
    let barred = match p.schema.is_reviewed() {
        true => crate::consensus::review::reviewed_items(&state.db.conn, user, picked).await?,
        false => Vec::new(),
    };
    let wanted: Vec<i64> = picked
        .iter()
        .copied()
        .filter(|id| !barred.contains(id))
        .collect();
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new(), barred));
    }
    let written = writer::write_leases(
        &state.lease_writer,
        nonce.claim(),
        (p.row.id, user),
        (wanted.clone(), gold.to_vec()),
        (now, until),
    )
    .await?;
    nonce.committed();
    let (leases, mut open) = match written {
        writer::Leased::Recorded(leases, open) => (leases, open),
        writer::Leased::NotOpen(status) => {
            state.projects.set_status(p.row.id, status);
            // A completed bounty has no open item: the queue was stale.
            leasable(status)?;
            return Ok((Vec::new(), wanted, barred));
        }
    };
    // Items the queue offered but the database has closed.
    let stale: Vec<i64> = wanted
        .into_iter()
        .filter(|id| !open.iter().any(|it| it.id == *id))
        .collect();
    // Leased in the order the queue picked them.
    open.sort_by_key(|it| picked.iter().position(|id| *id == it.id));
    let schema = p.schema.to_json();
    let mut tasks = Vec::with_capacity(open.len());
    let mut held = Vec::with_capacity(open.len());
    for it in open {
        // RETURNING promises no order: match the leases by item.
        let l = leases
            .iter()
            .find(|l| l.item_id == it.id)
            .ok_or_else(|| anyhow::anyhow!("no lease returned for item {}", it.id))?;
        held.push((l.clone(), it.clone()));
        tasks.push(api::Task {
            lease_id: l.id,
            project_id: p.row.id,
            item_id: it.id,
            expires_at: Timestamp(until),
            data: serde_json::from_str(&it.data)
                .map_err(|e| anyhow::anyhow!("stored item {}: {e}", it.id))?,
            task_type: p.schema.task_type(),
            schema: schema.clone(),
        });
    }
    state.held.keep(now, held);
    Ok((tasks, stale, barred))
}

/// Gives a lease back before it expires, so someone else can take the item.
/// Run to the end whether or not the client waits (`to_the_end`): a commit
/// the queue did not hear of would keep the item's slot until the lease's
/// expiry.
pub async fn release(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<()> {
    let (state, user) = (state.clone(), *user);
    to_the_end(async move { release_now(&state, &user, lease_id).await }).await
}

async fn release_now(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<()> {
    state.held.forget(lease_id);
    let tx = state.db.write().await?;
    let l = own_lease(&*tx, user, lease_id).await?;
    let res = lease::Entity::update_many()
        .col_expr(lease::Column::Status, Expr::value("released"))
        .filter(lease::Column::Id.eq(lease_id))
        .filter(lease::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    if res.rows_affected == 0 {
        return Err(Error::conflict(
            "lease-not-open",
            "this lease was already answered or released",
        ));
    }
    tx.commit().await?;
    state
        .queue
        .release(l.project_id, l.item_id, user.id)
        .await?;
    Ok(())
}

/// Extends an open, unexpired lease to a full lease period from now. Run
/// to the end whether or not the client waits (`to_the_end`): a renewal the
/// queue did not hear of would end there at the old expiry, and the item
/// be handed to someone else while the lease still holds it.
pub async fn renew(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<api::LeaseInfo> {
    let (state, user) = (state.clone(), *user);
    to_the_end(async move { renew_now(&state, &user, lease_id).await }).await
}

async fn renew_now(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<api::LeaseInfo> {
    let now = now_ms();
    let until = now + state.config.lease_secs as i64 * 1000;
    state.held.forget(lease_id);
    let tx = state.db.write().await?;
    let l = own_lease(&*tx, user, lease_id).await?;
    lease_usable(&l, now)?;
    lease::Entity::update_many()
        .col_expr(lease::Column::ExpiresAt, Expr::value(until))
        .filter(lease::Column::Id.eq(lease_id))
        .filter(lease::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    state
        .queue
        .renew(l.project_id, l.item_id, user.id, until)
        .await?;
    Ok(api::LeaseInfo {
        lease_id,
        project_id: l.project_id,
        item_id: l.item_id,
        expires_at: Timestamp(until),
    })
}

/// The caller's open, unexpired leases, soonest expiry first.
pub async fn my_leases(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
) -> Result<Vec<api::LeaseInfo>> {
    let rows = lease::Entity::find()
        .filter(lease::Column::UserId.eq(user.id))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gt(now_ms()))
        .order_by_asc(lease::Column::ExpiresAt)
        .limit(10_000)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|l| api::LeaseInfo {
            lease_id: l.id,
            project_id: l.project_id,
            item_id: l.item_id,
            expires_at: Timestamp(l.expires_at),
        })
        .collect())
}

async fn own_lease(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    lease_id: i64,
) -> Result<lease::Model> {
    let l = lease::Entity::find_by_id(lease_id).one(conn).await?;
    owned(l, user, lease_id)
}

/// The caller's lease and its item, in one read.
async fn lease_and_item(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    lease_id: i64,
) -> Result<(lease::Model, item::Model)> {
    let found = lease::Entity::find_by_id(lease_id)
        .join(
            sea_orm::JoinType::InnerJoin,
            lease::Entity::belongs_to(item::Entity)
                .from(lease::Column::ItemId)
                .to(item::Column::Id)
                .into(),
        )
        .select_also(item::Entity)
        .one(conn)
        .await?;
    let (l, it) = match found {
        Some((l, it)) => (Some(l), it),
        None => (None, None),
    };
    let l = owned(l, user, lease_id)?;
    let it = it.ok_or_else(|| anyhow::anyhow!("item {} of lease {} vanished", l.item_id, l.id))?;
    Ok((l, it))
}

fn owned(l: Option<lease::Model>, user: &AuthUser, lease_id: i64) -> Result<lease::Model> {
    let l = l.ok_or_else(|| Error::not_found("lease-not-found", format!("no lease {lease_id}")))?;
    if l.user_id != user.id {
        return Err(Error::forbidden(
            "foreign-lease",
            "this lease belongs to another contributor",
        ));
    }
    Ok(l)
}

fn request_hash(lease_id: i64, answer: &serde_json::Value) -> String {
    // serde_json's map is ordered, so equal answers serialize equally.
    hex::encode(Sha256::digest(format!("{lease_id}\n{answer}").as_bytes()))
}

pub fn to_api_submission(a: &answer::Model) -> api::Submission {
    api::Submission {
        id: a.id,
        lease_id: a.lease_id,
        item_id: a.item_id,
        project_id: a.project_id,
        answer: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
        status: match a.status.as_str() {
            "accepted" => AnswerStatus::Accepted,
            "rejected" => AnswerStatus::Rejected,
            "pending_review" => AnswerStatus::PendingReview,
            _ => AnswerStatus::Pending,
        },
        paid: Micros(a.paid),
        created_at: Timestamp(a.created_at),
        // Given once, in the response to the answer itself.
        gold_feedback: None,
    }
}

async fn find_by_key(
    conn: &impl ConnectionTrait,
    user: i64,
    key: &str,
) -> Result<Option<answer::Model>> {
    Ok(answer::Entity::find()
        .filter(answer::Column::UserId.eq(user))
        .filter(answer::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?)
}

/// Records an answer on a lease, resolving the item when it has enough.
///
/// Idempotent per (contributor, key): a retry gets the first submission
/// back, as it stands now, and changes nothing; reusing a key for another
/// request is a conflict.
pub async fn submit(
    state: &AppState,
    user: &AuthUser,
    nonce: &mut PendingNonce,
    req: api::SubmitAnswer,
) -> Result<api::Submission> {
    let (key, hash) = submission_key(&req)?;
    let attempt = async {
        let prepared = prepare_answer(state, user, &req, nonce.signer()).await?;
        // Answers wait for the writer's turn on PostgreSQL too: a batch
        // per commit halves the server's CPU per answer and cuts submit
        // p99 by 6x (README, load table). Replicas' batches may still
        // meet on an item; a deadlock only splits the batch
        // (`write_answer_batch`).
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = AnswerJob {
            nonce: nonce.claim().cloned(),
            user: *user,
            prepared,
            key: key.clone(),
            hash: hash.clone(),
            done,
        };
        // The writer tells the queue; what is left runs to the end too.
        let st = state.clone();
        let submission = to_the_end(async move {
            let (submission, effects) = st.answer_writer.run(job, answer).await?;
            rebuild_after(&st, std::slice::from_ref(&effects)).await;
            Ok(submission)
        })
        .await?;
        nonce.committed();
        Ok::<_, Error>(submission)
    };
    match attempt.await {
        Ok(submission) => Ok(submission),
        Err(e) => twin_result(&state.db.conn, user, &key, &hash, e).await,
    }
}

/// The idempotency key and request hash of a submission.
fn submission_key(req: &api::SubmitAnswer) -> Result<(String, String)> {
    let key = req.idempotency_key.trim().to_owned();
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "invalid-idempotency-key",
            "the idempotency key must be 1 to 200 characters",
        ));
    }
    Ok((key, request_hash(req.lease_id, &req.answer)))
}

/// After a refusal: this request may have been answered already (a
/// retry, whose lease is now used, or whose project has since paused or
/// closed) or by a concurrent twin (same key, same request); if so, that
/// answer is this one's result too. Any refusal is looked up, not only
/// "lease used", so a retry never turns into an error after a state change.
async fn twin_result(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    key: &str,
    hash: &str,
    e: Error,
) -> Result<api::Submission> {
    if e.client_kind().is_some()
        && let Some(prev) = find_by_key(conn, user.id, key).await?
    {
        return match prev.request_hash == hash {
            true => Ok(to_api_submission(&prev)),
            false => Err(key_reused()),
        };
    }
    Err(e)
}

/// What a committed answer asks of the queue and the quality engine.
pub struct Effects {
    project: i64,
    item: i64,
    user: i64,
    gold: bool,
    outcome: Outcome,
    /// A suspension discarded answers: the project's queue is rebuilt.
    reload: bool,
    /// This answer's transaction completed the bounty: the queue forgets it.
    completed: bool,
}

/// A submission checked and signed outside the write gate: everything
/// the answer needs that a concurrent request cannot change, or whose
/// change the gated writes notice (the lease is re-checked by the
/// conditional UPDATE that uses it).
#[derive(Clone)]
struct Prepared {
    lease: lease::Model,
    project: std::sync::Arc<Project>,
    normalized: serde_json::Value,
    provenance: crate::accounts::provenance::Provenance,
    settings: Option<quality::entity::settings::Model>,
    now: i64,
}

/// Reads and checks what a submission needs before any write, on the
/// shared pool, so the write transaction (one at a time on SQLite) holds
/// only the writes: the lease, the answer's shape and offsets, and its
/// provenance signature (verified or made here, not under the gate).
///
/// A retry of an answered request is not looked for here: its lease is
/// used, so it is refused as such, and [`twin_result`] then finds the
/// first answer by its key (retries are rare; every answer paid a read).
async fn prepare_answer(
    state: &AppState,
    user: &AuthUser,
    req: &api::SubmitAnswer,
    request_key: Option<&str>,
) -> Result<Box<Prepared>> {
    let conn = &state.db.conn;
    let now = now_ms();
    // Handed out here: only what never changes is used, the writes
    // re-check the rest. Looking expired, it may have been renewed
    // elsewhere; someone else's, it gets the read's refusal.
    let (l, item_row) = match state.held.take(req.lease_id, user.id, now) {
        Some(held) => {
            Metrics::add(&state.metrics.held_lease_hits, 1);
            held
        }
        None => lease_and_item(conn, user, req.lease_id).await?,
    };
    lease_usable(&l, now)?;
    let p = state.projects.terms(conn, l.project_id).await?;
    let shaped = p
        .schema
        .normalize_answer(&req.answer)
        .map_err(|e| Error::invalid("invalid-answer", e))?;
    let item_data: serde_json::Value = serde_json::from_str(&item_row.data)
        .map_err(|e| anyhow::anyhow!("stored item {}: {e}", l.item_id))?;
    // Offsets and coordinates are checked against the item.
    let normalized = if p.schema.answers_point_into_item() {
        p.schema
            .normalize_answer_for(&item_data, &shaped)
            .map_err(|e| Error::invalid("invalid-answer", e))?
    } else {
        shaped
    };
    // Provenance: the contributor's signature over what they saw and said,
    // or the custodial key's when they sent none.
    let provenance = crate::accounts::provenance::sign_or_verify(
        conn,
        &state.server_key,
        user.id,
        (
            &provenance::item_content_hash(&item_data),
            &provenance::guideline_version(&p.row.instructions, &p.schema.to_json()),
        ),
        &normalized,
        (req.signature.as_deref(), request_key),
    )
    .await?;
    let settings = state.quality.of(conn, &p).await?.map(|s| (*s).clone());
    Ok(Box::new(Prepared {
        lease: l,
        project: p,
        normalized,
        provenance,
        settings,
        now,
    }))
}

fn key_reused() -> Error {
    Error::conflict(
        "idempotency-key-reused",
        "this idempotency key was used for a different submission",
    )
}

/// Refuses a lease that cannot take an answer (any more).
fn lease_usable(l: &lease::Model, now: i64) -> Result<()> {
    match l.status.as_str() {
        "submitted" => Err(Error::conflict(
            "lease-already-used",
            "this lease already has an answer",
        )),
        "released" => Err(Error::gone("lease-released", "this lease was released")),
        _ if l.expires_at < now => Err(Error::gone(
            "lease-expired",
            "this lease expired; lease the task again",
        )),
        _ => Ok(()),
    }
}

/// One prepared answer to write, with its author and idempotency key.
struct Writing<'a> {
    user: &'a AuthUser,
    prepared: &'a Prepared,
    key: &'a str,
    hash: &'a str,
}

/// Writes prepared answers inside `conn` (a transaction or savepoint) and
/// returns, for each, what to tell its client and the queue once it is
/// committed.
///
/// Set-wise: the leases, item counts and answer rows of the whole batch
/// are one statement each, and the items it completes are decided and
/// paid together ([`resolve::resolve_items`]); only what a task type or
/// the quality engine asks of single answers runs per answer. All or
/// nothing: any refusal refuses the call and the caller must roll back. For
/// a single answer the refusal names its reason; for several, the caller
/// writes each alone to learn whose it was and refuse only that one.
async fn record_answers(
    conn: &impl ConnectionTrait,
    batch: &[Writing<'_>],
) -> Result<Vec<(api::Submission, Effects)>> {
    let Some(latest) = batch.iter().map(|w| w.prepared.now).max() else {
        return Ok(Vec::new());
    };
    let backend = conn.get_database_backend();
    // The leases as read before the gate: still open and unexpired when
    // the last of the batch was checked, or this UPDATE misses one. (Each
    // was read as its author's by `own_lease`; a lease never changes
    // hands.)
    let used = lease::Entity::update_many()
        .col_expr(lease::Column::Status, Expr::value("submitted"))
        .filter(shape::any_of(
            backend,
            lease::Column::Id,
            batch.iter().map(|w| w.prepared.lease.id),
        ))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gte(latest))
        .exec(conn)
        .await?;
    if used.rows_affected != batch.len() as u64 {
        // Changed since it was read: answered by a concurrent twin, ended
        // by the buyer closing the bounty, or expired meanwhile.
        if let [w] = batch {
            let now_lease = own_lease(conn, w.user, w.prepared.lease.id).await?;
            lease_usable(&now_lease, latest)?;
        }
        return Err(Error::conflict(
            "lease-already-used",
            "this lease already has an answer",
        ));
    }
    for w in batch {
        let p = &w.prepared.project;
        if p.schema.is_reviewed()
            && !crate::consensus::review::reviewed_items(
                conn,
                w.user.id,
                &[w.prepared.lease.item_id],
            )
            .await?
            .is_empty()
        {
            return Err(Error::conflict(
                "reviewed-this-item",
                "you reviewed another contributor's answer to this item, so you may not answer it",
            ));
        }
    }
    let counted = count_answers(conn, batch).await?;
    // A gold item is never `open`, so only a miss can be one; its answers
    // are not counted towards a decision.
    let mut gold: Vec<Option<serde_json::Value>> = Vec::with_capacity(batch.len());
    for w in batch {
        let item = w.prepared.lease.item_id;
        gold.push(match counted.iter().any(|it| it.id == item) {
            true => None,
            false => match quality::gold::gold_of(conn, item).await? {
                Some(g) => Some(g),
                None => {
                    return Err(Error::conflict(
                        "item-complete",
                        "this item already has all the answers it needs",
                    ));
                }
            },
        });
    }
    for w in batch {
        crate::consensus::check_answer_artifacts(
            conn,
            &w.prepared.project,
            w.user.id,
            &w.prepared.normalized,
        )
        .await?;
    }

    let rows = batch.iter().map(|w| {
        let Prepared {
            lease: l,
            project: p,
            normalized,
            provenance,
            now,
            ..
        } = w.prepared;
        answer::ActiveModel {
            project_id: Set(l.project_id),
            item_id: Set(l.item_id),
            user_id: Set(w.user.id),
            lease_id: Set(l.id),
            payload: Set(normalized.to_string()),
            status: Set(match p.schema.is_reviewed() {
                true => "pending_review".into(),
                false => "pending".into(),
            }),
            idempotency_key: Set(w.key.to_owned()),
            request_hash: Set(w.hash.to_owned()),
            paid: Set(0),
            created_at: Set(*now),
            decided_at: Set(None),
            signature: Set(Some(provenance.signature.clone())),
            signer_key: Set(Some(provenance.public_key.clone())),
            signed_by: Set(Some(provenance.signed_by.to_owned())),
            ..Default::default()
        }
    });
    let inserted = match shape::insert_rows(conn, rows.collect()).await {
        Ok(a) => a,
        // An item and contributor pair, or (a concurrent request on
        // another lease) an idempotency key: `twin_result` tells which.
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::conflict(
                "already-answered",
                "you already answered this item",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // RETURNING promises no order: an answer is its (item, author) pair.
    let mut answers = Vec::with_capacity(batch.len());
    for w in batch {
        let a = inserted
            .iter()
            .find(|a| a.item_id == w.prepared.lease.item_id && a.user_id == w.user.id)
            .ok_or_else(|| {
                anyhow::anyhow!("no answer row returned for lease {}", w.prepared.lease.id)
            })?;
        answers.push(a.clone());
    }
    let mut reload = Vec::with_capacity(batch.len());
    for ((w, a), g) in batch.iter().zip(&answers).zip(&gold) {
        let pr = w.prepared;
        // A file-collection answer names its upload by hash: it must be the
        // contributor's own, and the link lets the bounty's buyer read it.
        crate::artifacts::link_answer(conn, a.id, w.user.id, &pr.normalized).await?;
        reload.push(
            quality::after_answer(
                conn,
                &pr.project,
                pr.settings.as_ref(),
                w.user.id,
                &pr.normalized,
                g.as_ref(),
                (pr.lease.created_at, pr.now),
            )
            .await?,
        );
    }

    // Each project's counted items are decided together, under the
    // quality settings its answers were checked with. Bounties in id
    // order: deciding takes each one's completion lock, and two writers
    // taking two bounties' locks in opposite orders would deadlock.
    let mut outcome: std::collections::HashMap<i64, Outcome> = Default::default();
    let mut decided: Vec<answer::Model> = Vec::new();
    let mut completed: Vec<i64> = Vec::new();
    // The first writing of each bounty (a stable sort keeps batch order).
    let mut firsts: Vec<&Writing<'_>> = batch.iter().collect();
    firsts.sort_by_key(|w| w.prepared.project.row.id);
    firsts.dedup_by_key(|w| w.prepared.project.row.id);
    for w in firsts {
        let p = &w.prepared.project;
        let mine: Vec<item::Model> = counted
            .iter()
            .filter(|it| it.project_id == p.row.id)
            .cloned()
            .collect();
        let resolved = resolve::resolve_items(conn, p, w.prepared.settings.as_ref(), &mine).await?;
        outcome.extend(mine.iter().map(|it| it.id).zip(resolved.outcomes));
        decided.extend(resolved.decided);
        if resolved.completed {
            completed.push(p.row.id);
        }
    }

    let mut out = Vec::with_capacity(batch.len());
    for (((w, a), g), reload) in batch.iter().zip(answers).zip(gold).zip(reload) {
        let item = a.item_id;
        // Only a decision changes an answer's status and pay.
        let a = decided.iter().find(|d| d.id == a.id).cloned().unwrap_or(a);
        let mut submission = to_api_submission(&a);
        if let Some(g) = &g
            && w.prepared
                .settings
                .as_ref()
                .is_some_and(|s| s.gold_feedback)
        {
            submission.gold_feedback = Some(api::GoldFeedback {
                correct: quality::same_answer(&w.prepared.normalized, g),
                answer: g.clone(),
            });
        }
        let effects = Effects {
            project: a.project_id,
            item,
            user: w.user.id,
            gold: g.is_some(),
            outcome: outcome.get(&item).copied().unwrap_or(Outcome::Pending),
            reload,
            completed: completed.contains(&a.project_id),
        };
        out.push((submission, effects));
    }
    Ok(out)
}

/// Counts each answer of the batch towards its item, in one statement:
/// `k` answers on one item need `k` open slots on it, or that item is not
/// counted at all. Returns the items counted, as updated.
async fn count_answers(
    conn: &impl ConnectionTrait,
    batch: &[Writing<'_>],
) -> Result<Vec<item::Model>> {
    let mut per_item: Vec<(i64, i32)> = Vec::new();
    for w in batch {
        let item = w.prepared.lease.item_id;
        match per_item.iter_mut().find(|(i, _)| *i == item) {
            Some((_, k)) => *k += 1,
            None => per_item.push((item, 1)),
        }
    }
    let backend = conn.get_database_backend();
    let per_item: Vec<(i64, sea_orm::Value)> =
        per_item.into_iter().map(|(i, k)| (i, k.into())).collect();
    let added = || {
        shape::plus_per_id(
            backend,
            item::Column::Id,
            item::Column::AnswersCount,
            &per_item,
            "integer",
            0i32.into(),
        )
    };
    Ok(item::Entity::update_many()
        .col_expr(item::Column::AnswersCount, added())
        .filter(shape::any_of_locked_in_order(
            backend,
            item::Entity,
            item::Column::Id,
            per_item.iter().map(|(i, _)| *i),
        ))
        .filter(item::Column::Status.eq("open"))
        .filter(added().lte(Expr::col(item::Column::Needed)))
        .exec_with_returning(conn)
        .await?)
}

/// One prepared answer waiting for the writer's turn.
pub struct AnswerJob {
    nonce: Option<NonceClaim>,
    user: AuthUser,
    prepared: Box<Prepared>,
    key: String,
    hash: String,
    done: tokio::sync::oneshot::Sender<Result<(api::Submission, Effects)>>,
}

pub type AnswerWriter = writer::GroupCommit<AnswerJob>;

impl writer::Job for AnswerJob {
    fn weight(&self) -> usize {
        1
    }
    /// Answer rows in one INSERT (14 values each).
    const MAX_BATCH_WEIGHT: usize = 256;
}

/// The answer writer of a server, which also tells `queue` what each
/// batch committed.
pub fn answer_writer(
    db: Db,
    metrics: std::sync::Arc<Metrics>,
    queue: std::sync::Arc<dyn QueueBackend>,
) -> AnswerWriter {
    writer::GroupCommit::start(true, move |jobs| {
        write_answer_batch(db.clone(), metrics.clone(), queue.clone(), jobs)
    })
}

impl AnswerJob {
    fn writing(&self) -> Writing<'_> {
        Writing {
            user: &self.user,
            prepared: &self.prepared,
            key: &self.key,
            hash: &self.hash,
        }
    }
}

/// Writes a batch of prepared answers in one transaction: one statement
/// for all nonces, then [`record_answers`] on all of them at once. Every
/// answer of the batch is expected to go through; if one is refused, or
/// anything fails, the transaction is rolled back and each answer is
/// written alone, in its own transaction, so a refusal touches nobody
/// else's answer.
async fn write_answer_batch(
    db: Db,
    metrics: std::sync::Arc<Metrics>,
    queue: std::sync::Arc<dyn QueueBackend>,
    mut jobs: Vec<AnswerJob>,
) {
    let _busy = Metrics::time(&metrics.answer_batch_us);
    // Replicas write batches concurrently on PostgreSQL: rows locked one
    // answer at a time (a contributor's standing in a project) are taken
    // in one order by every batch, so two batches wait, never deadlock.
    jobs.sort_by_key(|j| {
        (
            j.user.id,
            j.prepared.lease.project_id,
            j.prepared.lease.item_id,
        )
    });
    let together = async {
        let tx = db.write().await?;
        let nonces: Vec<Option<&NonceClaim>> = jobs.iter().map(|j| j.nonce.as_ref()).collect();
        let fresh = writer::fresh_nonces(&*tx, &nonces).await?;
        let writing: Vec<Writing<'_>> = jobs
            .iter()
            .zip(&fresh)
            .filter(|(_, check)| check.is_fresh())
            .map(|(j, _)| j.writing())
            .collect();
        let mut written = record_answers(&*tx, &writing).await?.into_iter();
        tx.commit().await?;
        Ok::<_, Error>(
            fresh
                .into_iter()
                .map(|check| {
                    check.into_result().and_then(|()| {
                        written.next().ok_or_else(|| {
                            anyhow::anyhow!("an answer was written without a result").into()
                        })
                    })
                })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    let results = match together {
        Ok(out) => {
            Metrics::add(&metrics.answer_writes, 1);
            Metrics::add(
                &metrics.answer_calls_written,
                out.iter().filter(|done| done.is_ok()).count() as u64,
            );
            out
        }
        Err(first) if jobs.len() == 1 => vec![Err(first)],
        Err(_) => {
            Metrics::add(&metrics.answer_batches_split, 1);
            let mut out = Vec::with_capacity(jobs.len());
            for job in &jobs {
                out.push(
                    write_answer_alone((&db, &metrics), job.nonce.as_ref(), job.writing()).await,
                );
            }
            out
        }
    };
    // The queue hears of the batch in one step before any caller hears of
    // its answer, on a task of its own: the next batch need not wait for
    // it, and a caller that hangs up cannot stop it.
    let callers: Vec<_> = jobs.into_iter().map(|j| j.done).collect();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let committed: Vec<&Effects> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(_, e)| e))
            .collect();
        tell_queue(&*queue, &metrics, &committed).await;
        for (caller, result) in callers.into_iter().zip(results) {
            let _ = caller.send(result);
        }
    });
}

/// Writes one prepared answer, with its request's nonce, in a transaction
/// of its own.
async fn write_answer_alone(
    (db, metrics): (&Db, &Metrics),
    nonce: Option<&NonceClaim>,
    w: Writing<'_>,
) -> Result<(api::Submission, Effects)> {
    let tx = db.write().await?;
    writer::fresh_nonces(&*tx, &[nonce]).await?[0].into_result()?;
    let done = record_answers(&*tx, std::slice::from_ref(&w))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("an answer was written without a result"))?;
    tx.commit().await?;
    Metrics::add(&metrics.answer_writes, 1);
    Metrics::add(&metrics.answer_calls_written, 1);
    Ok(done)
}

/// Runs `work` on a task of its own and waits for its result. A client
/// that hangs up drops its request, and with it anything the request still
/// had to do: a commit already sent would land (the writer writes every
/// job it was sent; a commit on its way to the database completes) while
/// the queue update after it never ran.
async fn to_the_end<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| anyhow::anyhow!("the request's work failed: {e}"))?
}

/// Runs `commit` and then tells the queue about the answers it committed,
/// to the end (`to_the_end`), before the client hears of them: a queue not
/// told would go on offering an answered item's slot (answers then refused
/// as `item-complete`) until the next rebuild.
async fn commit_then_tell<T: Send + 'static>(
    state: &AppState,
    commit: impl Future<Output = Result<(T, Vec<Effects>)>> + Send + 'static,
) -> Result<T> {
    let st = state.clone();
    to_the_end(async move {
        let (out, effects) = commit.await?;
        apply_effects(&st, &effects).await;
        Ok(out)
    })
    .await
}

/// Tells the queue about committed answers, then rebuilds the queues
/// their quality checks asked for.
async fn apply_effects(state: &AppState, effects: &[Effects]) {
    tell_queue(
        &*state.queue,
        &state.metrics,
        &effects.iter().collect::<Vec<_>>(),
    )
    .await;
    rebuild_after(state, effects).await;
}

/// Tells the queue about committed answers, in one step. A failure here
/// only makes the queue stale; the next rebuild corrects it.
async fn tell_queue(queue: &dyn QueueBackend, metrics: &Metrics, effects: &[&Effects]) {
    let changes: Vec<AnswerChange> = effects
        .iter()
        .map(|e| AnswerChange {
            project: e.project,
            item: e.item,
            answered_by: (!e.gold).then_some(e.user),
            needed: match e.outcome {
                Outcome::Pending => None,
                Outcome::NeedMore(n) => Some(Some(n)),
                Outcome::Closed => Some(None),
            },
        })
        .collect();
    Metrics::add(&metrics.answers_recorded, effects.len() as u64);
    Metrics::add(
        &metrics.items_closed,
        effects
            .iter()
            .filter(|e| e.outcome == Outcome::Closed)
            .count() as u64,
    );
    if let Err(err) = queue.record(&changes).await {
        tracing::warn!(error = %err, "queue update after committed answers failed");
    }
    let mut completed: Vec<i64> = effects
        .iter()
        .filter(|e| e.completed)
        .map(|e| e.project)
        .collect();
    completed.sort_unstable();
    completed.dedup();
    for project in completed {
        forget(queue, project).await;
    }
}

/// Drops a bounty that ended (completed or closed, committed) from the
/// queue: it hands out nothing more, and its items would otherwise stay
/// in the queue (Redis, or this process's memory) for good. A failure
/// leaves only that memory behind; leases are refused by status anyway.
pub async fn forget(queue: &dyn QueueBackend, project: i64) {
    if let Err(err) = queue.unload(project).await {
        tracing::warn!(error = %err, project, "unloading an ended project from the queue failed");
    }
}

/// Rebuilds the queue of each project where a suspension discarded answers
/// on open items, to offer them again.
async fn rebuild_after(state: &AppState, effects: &[Effects]) {
    for e in effects.iter().filter(|e| e.reload) {
        quality::refresh_queue(state, e.project).await;
    }
}

pub async fn get_submission(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    id: i64,
) -> Result<api::Submission> {
    let a = answer::Entity::find_by_id(id)
        .one(conn)
        .await?
        .filter(|a| a.user_id == user.id)
        .ok_or_else(|| {
            Error::not_found(
                "submission-not-found",
                format!("you have no submission {id}"),
            )
        })?;
    Ok(to_api_submission(&a))
}

/// Submits up to [`MAX_BATCH`] answers in one transaction: all at once,
/// set-wise, when every one goes through; otherwise each in its own
/// savepoint, so one refusal rolls back only that answer. Either way the
/// batch costs one commit instead of one per answer.
pub async fn submit_batch(
    state: &AppState,
    user: &AuthUser,
    nonce: &mut PendingNonce,
    batch: api::SubmitBatch,
) -> Result<Vec<api::BatchResult>> {
    if batch.submissions.is_empty() || batch.submissions.len() > MAX_BATCH as usize {
        return Err(Error::invalid(
            "invalid-count",
            format!("submit 1 to {MAX_BATCH} answers at a time"),
        ));
    }
    // Every answer is checked and signed before the gate.
    enum Slot {
        Done(Result<api::Submission>),
        Ready(String, String, Box<Prepared>),
        Refused(String, String, Error),
    }
    let mut slots = Vec::with_capacity(batch.submissions.len());
    for req in &batch.submissions {
        slots.push(match submission_key(req) {
            Err(e) => Slot::Done(Err(e)),
            Ok((key, hash)) => match prepare_answer(state, user, req, nonce.signer()).await {
                Ok(p) => Slot::Ready(key, hash, p),
                Err(e) => Slot::Refused(key, hash, e),
            },
        });
    }
    let tx = state.db.write().await?;
    nonce.record_in(&*tx).await?;
    let all: Vec<Writing<'_>> = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Ready(key, hash, prepared) => Some(Writing {
                user,
                prepared,
                key,
                hash,
            }),
            _ => None,
        })
        .collect();
    let sp = sea_orm::TransactionTrait::begin(&*tx).await?;
    let mut together = match record_answers(&sp, &all).await {
        Ok(written) => {
            sp.commit().await?;
            Some(written.into_iter())
        }
        Err(_) => {
            sp.rollback().await?;
            Metrics::add(&state.metrics.answer_batches_split, 1);
            None
        }
    };
    let mut results: Vec<std::result::Result<api::Submission, Error>> =
        Vec::with_capacity(batch.submissions.len());
    let mut effects = Vec::new();
    drop(all);
    for slot in slots {
        let one = async {
            let (key, hash, refusal) = match slot {
                Slot::Done(done) => return done.map(|s| (s, None)),
                Slot::Refused(key, hash, e) => (key, hash, e),
                Slot::Ready(key, hash, prepared) => {
                    if let Some(written) = together.as_mut() {
                        let (s, e) = written.next().ok_or_else(|| {
                            anyhow::anyhow!("an answer was written without a result")
                        })?;
                        return Ok((s, Some(e)));
                    }
                    let w = Writing {
                        user,
                        prepared: &prepared,
                        key: &key,
                        hash: &hash,
                    };
                    let sp = sea_orm::TransactionTrait::begin(&*tx).await?;
                    match record_answers(&sp, std::slice::from_ref(&w)).await {
                        Ok(mut done) => {
                            sp.commit().await?;
                            let (s, e) = done.pop().ok_or_else(|| {
                                anyhow::anyhow!("an answer was written without a result")
                            })?;
                            return Ok((s, Some(e)));
                        }
                        Err(e) => {
                            sp.rollback().await?;
                            (key, hash, e)
                        }
                    }
                }
            };
            twin_result(&*tx, user, &key, &hash, refusal)
                .await
                .map(|s| (s, None))
        };
        match one.await {
            Ok((s, e)) => {
                results.push(Ok(s));
                effects.extend(e);
            }
            Err(e) => {
                if let Error::Unexpected(_) = &e {
                    tracing::error!(error = ?e, "a batch submission failed");
                }
                results.push(Err(e));
            }
        }
    }
    commit_then_tell(state, async move {
        tx.commit().await?;
        Ok(((), effects))
    })
    .await?;
    nonce.committed();
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(s) => api::BatchResult {
                submission: Some(s),
                error: None,
            },
            Err(e) => api::BatchResult {
                submission: None,
                error: Some(e.to_problem()),
            },
        })
        .collect())
}

/// Leases from every open project the contributor may work on, in project
/// priority order, until `count` tasks are found.
pub async fn lease_any(
    state: &AppState,
    user: &AuthUser,
    nonce: PendingNonce,
    count: u32,
) -> Result<Vec<api::Task>> {
    nonce.settle(&state.db).await?;
    user.require(Role::Contributor)?;
    if !(1..=MAX_BATCH).contains(&count) {
        return Err(Error::invalid(
            "invalid-count",
            format!("lease 1 to {MAX_BATCH} tasks at a time"),
        ));
    }
    let open: Vec<(i64, i64)> = project::Entity::find()
        .select_only()
        .column(project::Column::Id)
        .column(project::Column::BuyerId)
        .filter(project::Column::Status.eq(projects::status_str(ProjectStatus::Open)))
        .order_by_desc(project::Column::Priority)
        .order_by_asc(project::Column::Id)
        .into_tuple()
        .all(&state.db.conn)
        .await?;
    let mut tasks = Vec::new();
    for (id, buyer) in open {
        if buyer == user.id {
            continue;
        }
        let want = count - tasks.len() as u32;
        tasks.extend(lease(state, user, &mut PendingNonce::default(), id, want).await?);
        if tasks.len() as u32 >= count {
            break;
        }
    }
    Ok(tasks)
}
