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
        ProjectStatus::Completed => "completed",
    }
}

pub fn parse_status(s: &str) -> ProjectStatus {
    match s {
        "open" => ProjectStatus::Open,
        "completed" => ProjectStatus::Completed,
        _ => ProjectStatus::Draft,
    }
}

pub fn parse_task_type(_s: &str) -> TaskType {
    TaskType::Classification
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
        let schema = LabelSchema::parse(parse_task_type(&row.task_type), &raw)
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
        }
    }

    /// What paying every item's overlap would cost.
    pub fn full_cost(&self, items: i64) -> Option<Micros> {
        Micros(self.row.reward)
            .checked_mul(self.row.overlap as i64)?
            .checked_mul(items)
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
}

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
        Ok(NewProject {
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
    let reserve = crate::consensus::quality::gold_reserve(&*tx, &p).await?;
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
                    format!(" + gold answers {reserve}")
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

/// Marks a project completed once no item is open. Cheap: the check is an
/// index probe for one open item.
pub async fn complete_if_done(conn: &impl ConnectionTrait, project_id: i64) -> Result<bool> {
    let open = item::Entity::find()
        .select_only()
        .column(item::Column::Id)
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        .limit(1)
        .into_tuple::<i64>()
        .one(conn)
        .await?;
    if open.is_some() {
        return Ok(false);
    }
    project::Entity::update_many()
        .col_expr(
            project::Column::Status,
            Expr::value(status_str(ProjectStatus::Completed)),
        )
        .filter(project::Column::Id.eq(project_id))
        .filter(project::Column::Status.eq(status_str(ProjectStatus::Open)))
        .exec(conn)
        .await?;
    Ok(true)
}
