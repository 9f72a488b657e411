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
pub mod memory;

use sahel_protocol::api::{self, AnswerStatus, ProjectStatus, Role};
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use sha2::{Digest, Sha256};

use crate::accounts::AuthUser;
use crate::consensus::quality;
use crate::consensus::resolve::{self, Outcome};
use crate::db::{Db, now_ms};
use crate::error::{ClientKind, Error, Result, is_unique_violation};
use crate::projects::entity::{item, project};
use crate::projects::{self, Project};
use crate::state::AppState;
use entity::{answer, lease};

/// Most tasks one lease call hands out.
pub const MAX_BATCH: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type QueueResult<T> = std::result::Result<T, QueueError>;

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Error {
        match e {
            QueueError::Unavailable(why) => Error::unavailable("queue-unavailable", why, 2),
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
    pub items: Vec<ItemSnapshot>,
}

/// The queue's state machine, one backend per deployment: in-process for
/// a single server, Redis when several replicas share the work.
#[async_trait::async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn health(&self) -> QueueResult<()>;
    /// Replaces a project's queue state with a database snapshot.
    async fn load(&self, snapshot: ProjectSnapshot) -> QueueResult<()>;
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
    /// A lease ended without an answer.
    async fn release(&self, project: i64, item: i64, user: i64) -> QueueResult<()>;
    /// A lease became an answer.
    async fn answered(&self, project: i64, item: i64, user: i64) -> QueueResult<()>;
    /// The item needs `Some(n)` answers in all now, or is closed (`None`).
    async fn set_needed(&self, project: i64, item: i64, needed: Option<u32>) -> QueueResult<()>;
}

/// Reads one project's queue state from the database.
pub async fn snapshot(
    conn: &impl ConnectionTrait,
    project_id: i64,
    now: i64,
) -> Result<ProjectSnapshot> {
    let open: Vec<(i64, i32)> = item::Entity::find()
        .select_only()
        .column(item::Column::Id)
        .column(item::Column::Needed)
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        .into_tuple()
        .all(conn)
        .await?;
    let mut items: Vec<ItemSnapshot> = open
        .into_iter()
        .map(|(item_id, needed)| ItemSnapshot {
            item_id,
            needed: needed as u32,
            answered_by: vec![],
            holders: vec![],
        })
        .collect();
    items.sort_by_key(|i| i.item_id);
    let pos =
        |items: &Vec<ItemSnapshot>, id: i64| items.binary_search_by_key(&id, |i| i.item_id).ok();

    // Pending answers are exactly the answers of open items: consensus
    // decides every answer of an item when it closes it.
    let answered: Vec<(i64, i64)> = answer::Entity::find()
        .select_only()
        .column(answer::Column::ItemId)
        .column(answer::Column::UserId)
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::Status.eq("pending"))
        .into_tuple()
        .all(conn)
        .await?;
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
    Ok(ProjectSnapshot { project_id, items })
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

pub async fn load_project(state: &AppState, project_id: i64) -> Result<()> {
    let snap = snapshot(&state.db.conn, project_id, now_ms()).await?;
    state.queue.load(snap).await?;
    Ok(())
}

/// Leases up to `count` tasks of a project to a contributor.
pub async fn lease(
    state: &AppState,
    user: &AuthUser,
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
    let p = projects::get_visible(&state.db.conn, user, project_id).await?;
    match p.status() {
        ProjectStatus::Open => {}
        ProjectStatus::Completed => return Ok(Vec::new()),
        ProjectStatus::Draft => {
            return Err(Error::conflict(
                "project-not-open",
                "this project is not funded yet",
            ));
        }
    }
    let now = now_ms();
    let until = now + state.config.lease_secs as i64 * 1000;
    // The quality engine may refuse the contributor (suspended, exam
    // failed), hold them to its exam, or mix gold items in.
    let admission = quality::admit(&state.db.conn, user, &p).await?;
    let picked = if matches!(admission, quality::Admission::Exam(..)) {
        Vec::new()
    } else {
        state
            .queue
            .reserve(project_id, user.id, count as usize, now, until)
            .await?
    };
    let (picked, gold) =
        quality::gold::mix(state, user, &p, &admission, picked, count, now).await?;
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    match record_leases(&state.db, &p, user.id, &picked, &gold, now, until).await {
        Ok(tasks) => Ok(tasks),
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

/// Records leases on `picked` (in order); `gold` lists those that are gold
/// items, leased whatever their status.
async fn record_leases(
    db: &Db,
    p: &Project,
    user: i64,
    picked: &[i64],
    gold: &[i64],
    now: i64,
    until: i64,
) -> Result<Vec<api::Task>> {
    let ids: Vec<i64> = picked.to_vec();
    let tx = db.write().await?;
    let rows = item::Entity::find()
        .filter(item::Column::Id.is_in(ids.clone()))
        .all(&*tx)
        .await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for id in ids {
        let Some(it) = rows
            .iter()
            .find(|r| r.id == id && (r.status == "open" || gold.contains(&id)))
        else {
            // The queue was behind the database; skip the item.
            continue;
        };
        let l = lease::ActiveModel {
            project_id: Set(p.row.id),
            item_id: Set(id),
            user_id: Set(user),
            status: Set("open".into()),
            expires_at: Set(until),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&*tx)
        .await?;
        tasks.push(api::Task {
            lease_id: l.id,
            project_id: p.row.id,
            item_id: id,
            expires_at: Timestamp(until),
            data: serde_json::from_str(&it.data)
                .map_err(|e| anyhow::anyhow!("stored item {id}: {e}"))?,
            task_type: p.schema.task_type(),
            schema: p.schema.to_json(),
        });
    }
    tx.commit().await?;
    Ok(tasks)
}

/// Gives a lease back before it expires, so someone else can take the item.
pub async fn release(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<()> {
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

async fn own_lease(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    lease_id: i64,
) -> Result<lease::Model> {
    let l = lease::Entity::find_by_id(lease_id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("lease-not-found", format!("no lease {lease_id}")))?;
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
            _ => AnswerStatus::Pending,
        },
        paid: Micros(a.paid),
        created_at: Timestamp(a.created_at),
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
    req: api::SubmitAnswer,
) -> Result<api::Submission> {
    let key = req.idempotency_key.trim().to_owned();
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "invalid-idempotency-key",
            "the idempotency key must be 1 to 200 characters",
        ));
    }
    let hash = request_hash(req.lease_id, &req.answer);
    match submit_once(state, user, &req, &key, &hash).await {
        Ok(s) => Ok(s),
        Err(e) => {
            // A concurrent twin of this request may have won the race; if
            // so, its result is this request's result too.
            if matches!(
                e.client_kind(),
                Some(ClientKind::Conflict | ClientKind::Gone)
            ) && let Some(prev) = find_by_key(&state.db.conn, user.id, &key).await?
                && prev.request_hash == hash
            {
                return Ok(to_api_submission(&prev));
            }
            Err(e)
        }
    }
}

async fn submit_once(
    state: &AppState,
    user: &AuthUser,
    req: &api::SubmitAnswer,
    key: &str,
    hash: &str,
) -> Result<api::Submission> {
    let tx = state.db.write().await?;
    if let Some(prev) = find_by_key(&*tx, user.id, key).await? {
        return if prev.request_hash == hash {
            Ok(to_api_submission(&prev))
        } else {
            Err(Error::conflict(
                "idempotency-key-reused",
                "this idempotency key was used for a different submission",
            ))
        };
    }
    let l = own_lease(&*tx, user, req.lease_id).await?;
    let now = now_ms();
    match l.status.as_str() {
        "submitted" => {
            return Err(Error::conflict(
                "lease-already-used",
                "this lease already has an answer",
            ));
        }
        "released" => return Err(Error::gone("lease-released", "this lease was released")),
        _ if l.expires_at < now => {
            return Err(Error::gone(
                "lease-expired",
                "this lease expired; lease the task again",
            ));
        }
        _ => {}
    }
    let p = projects::get(&*tx, l.project_id).await?;
    let normalized = p
        .schema
        .normalize_answer(&req.answer)
        .map_err(|e| Error::invalid("invalid-answer", e))?;

    let used = lease::Entity::update_many()
        .col_expr(lease::Column::Status, Expr::value("submitted"))
        .filter(lease::Column::Id.eq(l.id))
        .filter(lease::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    if used.rows_affected != 1 {
        return Err(Error::conflict(
            "lease-already-used",
            "this lease already has an answer",
        ));
    }
    // A gold item's answers are not counted towards a decision.
    let gold = quality::gold::gold_of(&*tx, l.item_id).await?;
    let counted = item::Entity::update_many()
        .col_expr(
            item::Column::AnswersCount,
            Expr::col(item::Column::AnswersCount).add(1),
        )
        .filter(item::Column::Id.eq(l.item_id))
        .filter(item::Column::Status.eq("open"))
        .filter(Expr::col(item::Column::AnswersCount).lt(Expr::col(item::Column::Needed)))
        .exec(&*tx)
        .await?;
    if counted.rows_affected != 1 && gold.is_none() {
        return Err(Error::conflict(
            "item-complete",
            "this item already has all the answers it needs",
        ));
    }
    let inserted = answer::ActiveModel {
        project_id: Set(l.project_id),
        item_id: Set(l.item_id),
        user_id: Set(user.id),
        lease_id: Set(l.id),
        payload: Set(normalized.to_string()),
        status: Set("pending".into()),
        idempotency_key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        paid: Set(0),
        created_at: Set(now),
        decided_at: Set(None),
        ..Default::default()
    }
    .insert(&*tx)
    .await;
    let a = match inserted {
        Ok(a) => a,
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::conflict(
                "already-answered",
                "you already answered this item",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let reload = quality::after_answer(
        &*tx,
        &p,
        user.id,
        l.created_at,
        &normalized,
        gold.as_ref(),
        now,
    )
    .await?;
    let outcome = if gold.is_some() {
        Outcome::Pending
    } else {
        resolve::resolve_item(&*tx, &p, l.item_id).await?
    };
    let a = answer::Entity::find_by_id(a.id)
        .one(&*tx)
        .await?
        .unwrap_or(a);
    tx.commit().await?;

    // The database has it; now tell the queue. A failure here only makes
    // the queue stale, and the next rebuild corrects it.
    let q = &state.queue;
    let effects = async {
        q.answered(l.project_id, l.item_id, user.id).await?;
        match outcome {
            Outcome::Pending => {}
            Outcome::NeedMore(n) => q.set_needed(l.project_id, l.item_id, Some(n)).await?,
            Outcome::Closed => q.set_needed(l.project_id, l.item_id, None).await?,
        }
        Ok::<_, QueueError>(())
    };
    if let Err(e) = effects.await {
        tracing::warn!(error = %e, "queue update after a committed answer failed");
    }
    if reload {
        // A suspension discarded answers on open items: offer them again.
        quality::refresh_queue(state, l.project_id).await;
    }
    Ok(to_api_submission(&a))
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
