//! Bounties: creation, item import, funding, and progress.
//!
//! A project is created as a draft, takes its items, and is funded: funding
//! moves its budget from the buyer into the project's escrow and opens it
//! to contributors. Imports are all-or-nothing unless the buyer asks for
//! only the good lines.

pub mod entity;
pub mod import;

use sahel_protocol::api::{self, ProjectStatus, Role, TaskType};
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use crate::accounts::AuthUser;
use crate::consensus::{LabelSchema, max_answers_for};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::ledger::{self, AccountRef, Posted};
use crate::queue::entity::answer;
use entity::{item, project};

pub const MAX_OVERLAP: u32 = 15;

pub fn status_str(s: ProjectStatus) -> &'static str {
    match s {
        ProjectStatus::Draft => "draft",
        ProjectStatus::Open => "open",
        ProjectStatus::Paused => "paused",
        ProjectStatus::Completed => "completed",
        ProjectStatus::Closed => "closed",
    }
}

pub fn parse_status(s: &str) -> ProjectStatus {
    match s {
        "open" => ProjectStatus::Open,
        "paused" => ProjectStatus::Paused,
        "completed" => ProjectStatus::Completed,
        "closed" => ProjectStatus::Closed,
        _ => ProjectStatus::Draft,
    }
}

/// The task type stored on a project row (written from
/// [`TaskType::as_str`]).
pub fn parse_task_type(s: &str) -> Result<TaskType> {
    TaskType::parse(s).ok_or_else(|| anyhow::anyhow!("stored task type {s:?}").into())
}

/// A project row with its schema parsed: what the rest of the server uses.
#[derive(Clone, Debug)]
pub struct Project {
    pub row: project::Model,
    pub schema: LabelSchema,
}

impl Project {
    pub fn from_row(row: project::Model) -> Result<Project> {
        let raw: serde_json::Value =
            serde_json::from_str(&row.schema).map_err(|e| anyhow::anyhow!("stored schema: {e}"))?;
        let schema = LabelSchema::parse(parse_task_type(&row.task_type)?, &raw)
            .map_err(|e| anyhow::anyhow!("stored schema of project {}: {e}", row.id))?;
        Ok(Project { row, schema })
    }

    pub fn status(&self) -> ProjectStatus {
        parse_status(&self.row.status)
    }

    pub fn to_api(&self) -> api::Project {
        let r = &self.row;
        api::Project {
            id: r.id,
            buyer_id: r.buyer_id,
            title: r.title.clone(),
            instructions: r.instructions.clone(),
            task_type: self.schema.task_type(),
            schema: self.schema.to_json(),
            overlap: r.overlap as u32,
            max_answers: r.max_answers as u32,
            reward: Micros(r.reward),
            budget: Micros(r.budget),
            status: self.status(),
            priority: r.priority,
            item_count: r.item_count,
            created_at: Timestamp(r.created_at),
            reviews_per_answer: r.reviews_per_answer as u32,
            review_reward: Micros(r.review_reward),
            gold_review_every: r.gold_review_every as u32,
        }
    }

    /// What paying every item's overlap would cost and, when reviews are
    /// paid, reviewing every answer an item may get: see [`cost`].
    pub fn full_cost(&self, items: i64) -> Option<Micros> {
        let r = &self.row;
        let reviews = self
            .schema
            .is_reviewed()
            .then_some((Micros(r.review_reward), r.reviews_per_answer as u32));
        cost(Micros(r.reward), r.overlap as u32, items, reviews)
    }
}

/// What a bounty of `items` items costs at most: `overlap` accepted
/// answers per item at `reward`, and, for reviewed types (`reviews` =
/// reward per review and reviews per answer), a review of each of the
/// `max_answers` answers an item may get (a rejection opens another
/// slot). The escrow covers this worst case so that no answer or review
/// ever goes unpaid; what is left is refunded when the buyer closes the
/// bounty.
pub fn cost(
    reward: Micros,
    overlap: u32,
    items: i64,
    reviews: Option<(Micros, u32)>,
) -> Option<Micros> {
    let answers = reward.checked_mul(overlap as i64)?.checked_mul(items)?;
    let Some((per_review, per_answer)) = reviews else {
        return Some(answers);
    };
    let reviews = per_review
        .checked_mul(std::cmp::max(per_answer, 1) as i64)?
        .checked_mul(crate::consensus::max_answers_for(overlap) as i64)?
        .checked_mul(items)?;
    answers.checked_add(reviews)
}

/// Projects' terms (schema, overlap, caps, reward, owner, item count) by
/// id. They never change once a project is funded, and every lease and
/// answer needs them, so they are read once; drafts are never kept (their
/// items and settings still change).
///
/// Each entry also remembers the status this process last saw. Only the
/// lease path uses it, as a hint: while it says open, a lease call skips
/// reading the project and the lease batch checks the status in its own
/// transaction instead (`queue::writer`), since any replica may pause,
/// resume or close the bounty meanwhile. Anything else that needs the
/// status reads the row.
#[derive(Default)]
pub struct ProjectCache(
    std::sync::Mutex<std::collections::HashMap<i64, (std::sync::Arc<Project>, ProjectStatus)>>,
);

impl ProjectCache {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<i64, (std::sync::Arc<Project>, ProjectStatus)>,
    > {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn terms(
        &self,
        conn: &impl ConnectionTrait,
        id: i64,
    ) -> Result<std::sync::Arc<Project>> {
        if let Some((p, _)) = self.lock().get(&id) {
            return Ok(p.clone());
        }
        Ok(self.saw(get(conn, id).await?))
    }

    /// Keeps a project just read (unless a draft) with its status.
    pub fn saw(&self, p: Project) -> std::sync::Arc<Project> {
        let status = p.status();
        let p = std::sync::Arc::new(p);
        if status != ProjectStatus::Draft {
            let mut map = self.lock();
            let entry = map.entry(p.row.id).or_insert_with(|| (p.clone(), status));
            entry.1 = status;
            return entry.0.clone();
        }
        p
    }

    /// A funded project's terms when this process last saw it open.
    pub fn open_terms(&self, id: i64) -> Option<std::sync::Arc<Project>> {
        match self.lock().get(&id) {
            Some((p, ProjectStatus::Open)) => Some(p.clone()),
            _ => None,
        }
    }

    /// The project was found in `status` (a lease batch saw it).
    pub fn set_status(&self, id: i64, status: ProjectStatus) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.1 = status;
        }
    }
}

/// A validated new project.
pub struct NewProject {
    pub title: String,
    pub instructions: String,
    pub schema: LabelSchema,
    pub overlap: u32,
    pub reward: Micros,
    pub budget: Micros,
    pub priority: i32,
    pub reviews_per_answer: u32,
    pub review_reward: Micros,
    pub gold_review_every: u32,
}

/// One review in this many is gold unless the bounty says otherwise.
pub const DEFAULT_GOLD_REVIEW_EVERY: u32 = 10;

/// The most reviews a bounty may ask for per answer.
pub const MAX_REVIEWS_PER_ANSWER: u32 = 5;

impl TryFrom<api::CreateProject> for NewProject {
    type Error = Error;

    fn try_from(c: api::CreateProject) -> Result<NewProject> {
        let title = c.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(Error::invalid(
                "invalid-title",
                "the title must be 1 to 200 characters",
            ));
        }
        if c.instructions.len() > 50_000 {
            return Err(Error::invalid(
                "invalid-instructions",
                "instructions are limited to 50,000 bytes",
            ));
        }
        let schema = LabelSchema::parse(c.task_type, &c.schema)
            .map_err(|e| Error::invalid("invalid-schema", e))?;
        if !(1..=MAX_OVERLAP).contains(&c.overlap) {
            return Err(Error::invalid(
                "invalid-overlap",
                format!("overlap must be 1 to {MAX_OVERLAP} answers per item"),
            ));
        }
        if c.reward.0 <= 0 {
            return Err(Error::invalid(
                "invalid-reward",
                "the reward per accepted answer must be positive",
            ));
        }
        if c.budget.0 < 0 {
            return Err(Error::invalid(
                "invalid-budget",
                "the budget cannot be negative",
            ));
        }
        let reviews_per_answer = match (c.reviews_per_answer, schema.is_reviewed()) {
            (None, _) => 1,
            (Some(n), true) if (1..=MAX_REVIEWS_PER_ANSWER).contains(&n) => n,
            (Some(_), true) => {
                return Err(Error::invalid(
                    "invalid-reviews-per-answer",
                    format!("reviews_per_answer must be 1 to {MAX_REVIEWS_PER_ANSWER}"),
                ));
            }
            (Some(_), false) => {
                return Err(Error::invalid(
                    "invalid-reviews-per-answer",
                    format!(
                        "{} answers are not reviewed; reviews_per_answer applies to free_text and file_collection",
                        schema.task_type().as_str()
                    ),
                ));
            }
        };
        let reviewed_only = |code: &'static str, field: &str| {
            Error::invalid(
                code,
                format!(
                    "{} answers are not reviewed; {field} applies to free_text and file_collection",
                    schema.task_type().as_str()
                ),
            )
        };
        let review_reward = match c.review_reward {
            Some(_) if !schema.is_reviewed() => {
                return Err(reviewed_only("invalid-review-reward", "review_reward"));
            }
            Some(r) if r.0 < 0 => {
                return Err(Error::invalid(
                    "invalid-review-reward",
                    "the reward per review cannot be negative",
                ));
            }
            Some(r) => r,
            None => Micros::ZERO,
        };
        let gold_review_every = match c.gold_review_every {
            Some(_) if !schema.is_reviewed() => {
                return Err(reviewed_only(
                    "invalid-gold-review-every",
                    "gold_review_every",
                ));
            }
            Some(n) if n == 1 || n > 1000 => {
                return Err(Error::invalid(
                    "invalid-gold-review-every",
                    "gold_review_every is 0 (no gold reviews) or 2 to 1000",
                ));
            }
            Some(n) => n,
            None if schema.is_reviewed() => DEFAULT_GOLD_REVIEW_EVERY,
            None => 0,
        };
        Ok(NewProject {
            reviews_per_answer,
            review_reward,
            gold_review_every,
            title,
            instructions: c.instructions,
            schema,
            overlap: c.overlap,
            reward: c.reward,
            budget: c.budget,
            priority: c.priority.clamp(-1000, 1000),
        })
    }
}

pub async fn create(db: &Db, buyer: &AuthUser, new: NewProject) -> Result<Project> {
    buyer.require(Role::Buyer)?;
    let tx = db.write().await?;
    let row = project::ActiveModel {
        buyer_id: Set(buyer.id),
        title: Set(new.title),
        instructions: Set(new.instructions),
        task_type: Set(new.schema.task_type().as_str().to_owned()),
        schema: Set(new.schema.to_json().to_string()),
        overlap: Set(new.overlap as i32),
        max_answers: Set(max_answers_for(new.overlap) as i32),
        reward: Set(new.reward.0),
        budget: Set(new.budget.0),
        status: Set(status_str(ProjectStatus::Draft).to_owned()),
        priority: Set(new.priority),
        item_count: Set(0),
        created_at: Set(now_ms()),
        funded_at: Set(None),
        reviews_per_answer: Set(new.reviews_per_answer as i32),
        review_reward: Set(new.review_reward.0),
        gold_review_every: Set(new.gold_review_every as i32),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    ledger::ensure_account(&*tx, AccountRef::Escrow(row.id)).await?;
    tx.commit().await?;
    Project::from_row(row)
}

pub async fn get(conn: &impl ConnectionTrait, id: i64) -> Result<Project> {
    let row = project::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("project-not-found", format!("no project {id}")))?;
    Project::from_row(row)
}

/// A project as `viewer` may see it: drafts only by their buyer.
pub async fn get_visible(
    conn: &impl ConnectionTrait,
    viewer: &AuthUser,
    id: i64,
) -> Result<Project> {
    let p = get(conn, id).await?;
    if p.status() == ProjectStatus::Draft
        && p.row.buyer_id != viewer.id
        && !viewer.roles.has(Role::Admin)
    {
        return Err(Error::not_found(
            "project-not-found",
            format!("no project {id}"),
        ));
    }
    Ok(p)
}

/// A project its caller owns (or an admin).
pub async fn get_owned(conn: &impl ConnectionTrait, owner: &AuthUser, id: i64) -> Result<Project> {
    let p = get_visible(conn, owner, id).await?;
    if p.row.buyer_id != owner.id && !owner.roles.has(Role::Admin) {
        return Err(Error::forbidden(
            "not-project-owner",
            "only the project's buyer may do this",
        ));
    }
    Ok(p)
}

/// Buyers see their own projects; everyone sees open ones.
pub async fn list(conn: &impl ConnectionTrait, viewer: &AuthUser) -> Result<Vec<api::Project>> {
    let mut q = project::Entity::find();
    if !viewer.roles.has(Role::Admin) {
        q = q.filter(
            sea_orm::Condition::any()
                .add(project::Column::Status.eq(status_str(ProjectStatus::Open)))
                .add(project::Column::BuyerId.eq(viewer.id)),
        );
    }
    let rows = q
        .order_by_desc(project::Column::Priority)
        .order_by_asc(project::Column::Id)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|r| Project::from_row(r).map(|p| p.to_api()))
        .collect()
}

/// Moves the budget into escrow and opens the project. Retrying with the
/// same idempotency key returns the project unchanged.
pub async fn fund(
    db: &Db,
    buyer: &AuthUser,
    project_id: i64,
    idempotency_key: &str,
) -> Result<Project> {
    let key = idempotency_key.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "invalid-idempotency-key",
            "the idempotency key must be 1 to 200 characters",
        ));
    }
    let tx = db.write().await?;
    let p = get_owned(&*tx, buyer, project_id).await?;
    let ledger_key = format!("fund:{project_id}:{key}");
    if p.status() == ProjectStatus::Closed {
        return Err(Error::conflict(
            "project-closed",
            "this project was closed by its buyer",
        ));
    }
    if p.status() != ProjectStatus::Draft {
        let same = crate::ledger::entity::transaction::Entity::find()
            .filter(crate::ledger::entity::transaction::Column::IdempotencyKey.eq(ledger_key))
            .one(&*tx)
            .await?;
        return match same {
            Some(_) => Ok(p),
            None => Err(Error::conflict(
                "already-funded",
                "this project is already funded",
            )),
        };
    }
    if p.row.item_count == 0 {
        return Err(Error::conflict(
            "no-items",
            "import items before funding the project",
        ));
    }
    // Gold answers (quality engine) are paid from a reserve on top.
    let reserve = crate::consensus::quality::gold_reserve(&*tx, &p)
        .await?
        .checked_add(crate::consensus::review::gold::reserve(&*tx, &p).await?)
        .ok_or_else(|| Error::invalid("budget-too-small", "the gold reserve overflows"))?;
    let cost = p
        .full_cost(p.row.item_count)
        .and_then(|c| c.checked_add(reserve))
        .ok_or_else(|| Error::invalid("budget-too-small", "overlap x items x reward overflows"))?;
    if p.row.budget < cost.0 {
        return Err(Error::invalid(
            "budget-too-small",
            format!(
                "the budget {} cannot pay overlap {} x {} items x reward {}{} = {}",
                Micros(p.row.budget),
                p.row.overlap,
                p.row.item_count,
                Micros(p.row.reward),
                if reserve.0 > 0 {
                    format!(" + gold {reserve}")
                } else {
                    String::new()
                },
                cost
            ),
        ));
    }
    let posted = ledger::post(
        &*tx,
        "fund",
        json!({ "project_id": project_id }),
        Some(ledger_key),
        &[
            (AccountRef::User(p.row.buyer_id), Micros(-p.row.budget)),
            (AccountRef::Escrow(project_id), Micros(p.row.budget)),
        ],
    )
    .await?;
    debug_assert!(matches!(posted, Posted::New(_)));
    project::Entity::update_many()
        .col_expr(
            project::Column::Status,
            Expr::value(status_str(ProjectStatus::Open)),
        )
        .col_expr(project::Column::FundedAt, Expr::value(now_ms()))
        .filter(project::Column::Id.eq(project_id))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    get(&db.conn, project_id).await
}

pub async fn progress(conn: &impl ConnectionTrait, p: &Project) -> Result<api::Progress> {
    let id = p.row.id;
    let count_items = |status: &'static str| {
        item::Entity::find()
            .filter(item::Column::ProjectId.eq(id))
            .filter(item::Column::Status.eq(status))
            .count(conn)
    };
    let count_answers = |status: &'static str| {
        answer::Entity::find()
            .filter(answer::Column::ProjectId.eq(id))
            .filter(answer::Column::Status.eq(status))
            .count(conn)
    };
    let resolved = count_items("resolved").await? as i64;
    let without = count_items("no_consensus").await? as i64;
    let accepted = count_answers("accepted").await? as i64;
    let rejected = count_answers("rejected").await? as i64;
    let pending = count_answers("pending").await? as i64;
    let paid: Option<i64> = answer::Entity::find()
        .select_only()
        .column_as(
            Expr::col(answer::Column::Paid).sum().cast_as("BIGINT"),
            "paid",
        )
        .filter(answer::Column::ProjectId.eq(id))
        .into_tuple()
        .one(conn)
        .await?
        .flatten();
    Ok(api::Progress {
        project_id: id,
        status: p.status(),
        items_total: p.row.item_count,
        items_resolved: resolved,
        items_without_consensus: without,
        answers_total: accepted + rejected + pending,
        answers_accepted: accepted,
        answers_rejected: rejected,
        budget: Micros(p.row.budget),
        escrow_balance: ledger::balance(conn, AccountRef::Escrow(id)).await?,
        paid_out: Micros(paid.unwrap_or(0)),
    })
}

/// Whether any item of the project is still open.
async fn any_open(conn: &impl ConnectionTrait, project_id: i64) -> Result<bool> {
    let open: Option<i64> = item::Entity::find()
        .select_only()
        .column(item::Column::Id)
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        // Items close roughly in import order, and on PostgreSQL each one
        // closed leaves its `open` index entry until vacuum: looked for
        // from the newest end, an open item is found at once.
        .order_by_desc(item::Column::Seq)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(open.is_some())
}

/// The advisory-lock namespace of project completion ("SC").
const COMPLETION_LOCK_NAMESPACE: i32 = 0x5343;

/// Marks a project completed once no item is open. Called by every
/// transaction that closed an item, right after, before any payment: the
/// project row comes before accounts in every transaction's lock order
/// (paying first, then completing, deadlocked with a bounty's close).
///
/// On PostgreSQL two transactions closing the last two items cannot see
/// each other's uncommitted work, so each could think the other's item is
/// still open and neither would complete the project. Each therefore
/// takes the project's completion lock before it looks: holders go one at
/// a time, and a statement after the lock sees the commits of every
/// holder before it, so the last to close an item sees none open, however
/// many closed items at once. (Skipping the lock while more than 1,024
/// items were open cost a read of 1,025 open items in every closing
/// batch, 0.7 ms of PostgreSQL's time, and relied on fewer items than
/// that closing in uncommitted transactions at once.)
pub async fn complete_if_done(conn: &impl ConnectionTrait, project_id: i64) -> Result<bool> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // An advisory lock, not the project row: row locks on `projects`
        // are also taken implicitly (shared) by other statements, and two
        // transactions upgrading shared locks deadlock.
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [COMPLETION_LOCK_NAMESPACE.into(), (project_id as i32).into()],
        ))
        .await?;
    }
    if any_open(conn, project_id).await? {
        return Ok(false);
    }
    project::Entity::update_many()
        .col_expr(
            project::Column::Status,
            Expr::value(status_str(ProjectStatus::Completed)),
        )
        .filter(project::Column::Id.eq(project_id))
        // A paused bounty completes too: its last leases may still be
        // answered after the pause.
        .filter(project::Column::Status.is_in([
            status_str(ProjectStatus::Open),
            status_str(ProjectStatus::Paused),
        ]))
        .exec(conn)
        .await?;
    Ok(true)
}

/// Pauses an open bounty: no new lease is handed out until it is resumed
/// (`queue::lease` refuses by status), while leases already taken may still
/// be answered and paid. Pausing a paused bounty changes nothing; a draft,
/// completed or closed one cannot be paused.
pub async fn pause(db: &Db, buyer: &AuthUser, project_id: i64) -> Result<Project> {
    set_running(
        db,
        buyer,
        project_id,
        ProjectStatus::Open,
        ProjectStatus::Paused,
    )
    .await
}

/// Reopens a paused bounty. Resuming an open bounty changes nothing. The
/// caller makes sure the queue holds it afterwards.
pub async fn resume(db: &Db, buyer: &AuthUser, project_id: i64) -> Result<Project> {
    set_running(
        db,
        buyer,
        project_id,
        ProjectStatus::Paused,
        ProjectStatus::Open,
    )
    .await
}

async fn set_running(
    db: &Db,
    buyer: &AuthUser,
    project_id: i64,
    from: ProjectStatus,
    to: ProjectStatus,
) -> Result<Project> {
    let tx = db.write().await?;
    let p = get_owned(&*tx, buyer, project_id).await?;
    let now = p.status();
    if now == to {
        return Ok(p);
    }
    if now != from {
        let (code, verb, needed) = if to == ProjectStatus::Paused {
            ("project-not-open", "paused", "open")
        } else {
            ("project-not-paused", "resumed", "paused")
        };
        return Err(Error::conflict(
            code,
            format!(
                "this bounty is {} and cannot be {verb}: only a bounty that is {needed} can",
                status_str(now)
            ),
        ));
    }
    // Conditional on the status read above, so a completion or close that
    // committed meanwhile is never overwritten.
    let done = project::Entity::update_many()
        .col_expr(project::Column::Status, Expr::value(status_str(to)))
        .filter(project::Column::Id.eq(project_id))
        .filter(project::Column::Status.eq(status_str(from)))
        .exec(&*tx)
        .await?;
    if done.rows_affected != 1 {
        return Err(Error::conflict(
            "project-changed",
            "the bounty changed meanwhile; reload and try again",
        ));
    }
    tx.commit().await?;
    get(&db.conn, project_id).await
}

/// Closes a bounty for good, in one transaction: open leases end, items
/// still open are cancelled, the project is marked `closed`, and whatever
/// escrow is left goes back to the buyer. Closing a closed project changes
/// nothing and reports nothing refunded. The caller unloads the queue after
/// the commit.
pub async fn close(
    db: &Db,
    buyer: &AuthUser,
    project_id: i64,
    idempotency_key: &str,
) -> Result<api::ClosedProject> {
    let key = ledger::payments::check_key(idempotency_key)?;
    let tx = db.write().await?;
    let p = get_owned(&*tx, buyer, project_id).await?;
    if p.status() == ProjectStatus::Closed {
        return Ok(api::ClosedProject {
            project: p.to_api(),
            refunded: Micros::ZERO,
            leases_ended: 0,
            items_cancelled: 0,
        });
    }
    let now = now_ms();
    // A lease past its expiry has already ended (its status stays `open`:
    // nothing rewrites it), and the bounty's live leases are found by expiry.
    let end_leases = || {
        crate::queue::entity::lease::Entity::update_many()
            .col_expr(
                crate::queue::entity::lease::Column::Status,
                Expr::value("released"),
            )
            .filter(crate::queue::entity::lease::Column::ProjectId.eq(project_id))
            .filter(crate::queue::entity::lease::Column::Status.eq("open"))
            .filter(crate::queue::entity::lease::Column::ExpiresAt.gt(now))
            .exec(&*tx)
    };
    // Row locks in the order every payment takes them: leases, items,
    // project, then (in the ledger) accounts.
    let leases = end_leases().await?;
    let items = item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value("cancelled"))
        .col_expr(item::Column::ResolvedAt, Expr::value(now))
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    project::Entity::update_many()
        .col_expr(
            project::Column::Status,
            Expr::value(status_str(ProjectStatus::Closed)),
        )
        .filter(project::Column::Id.eq(project_id))
        .exec(&*tx)
        .await?;
    // On PostgreSQL a lease batch that read the bounty open holds its row
    // shared until it commits (`queue::writer`): the update above waited
    // for it, and the leases it wrote meanwhile end here. None comes after.
    let late = end_leases().await?;
    let refunded = ledger::payments::refund_escrow(&*tx, project_id, p.row.buyer_id, key).await?;
    tx.commit().await?;
    Ok(api::ClosedProject {
        project: get(&db.conn, project_id).await?.to_api(),
        refunded,
        leases_ended: leases.rows_affected + late.rows_affected,
        items_cancelled: items.rows_affected,
    })
}
