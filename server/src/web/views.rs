//! Read-only queries that only pages need: how many items a bounty has
//! left, the lease a contributor already holds, chart series, resolved
//! items with their answers. They read capability tables through the
//! capabilities' entities and never write; every change of state goes
//! through the capability modules.

use std::collections::HashMap;

use sahel_protocol::Timestamp;
use sahel_protocol::api;
use sea_orm::sea_query::{Alias, Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;

use crate::accounts::entity::user;
use crate::error::Result;
use crate::projects::Project;
use crate::projects::entity::item;
use crate::queue::entity::{answer, lease};

const HOUR_MS: i64 = 3_600_000;

/// Open items per project, for the given projects.
pub async fn open_items(conn: &impl ConnectionTrait, ids: &[i64]) -> Result<HashMap<i64, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = item::Entity::find()
        .select_only()
        .column(item::Column::ProjectId)
        .column_as(Expr::col(item::Column::Id).count(), "n")
        .filter(item::Column::ProjectId.is_in(ids.to_vec()))
        .filter(item::Column::Status.eq("open"))
        .group_by(item::Column::ProjectId)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The oldest open, unexpired lease `user` holds on the project, as a task:
/// reloading the labeling page resumes it instead of leasing another.
pub async fn held_task(
    conn: &impl ConnectionTrait,
    p: &Project,
    user: i64,
    now: i64,
) -> Result<Option<api::Task>> {
    let Some(l) = lease::Entity::find()
        .filter(lease::Column::UserId.eq(user))
        .filter(lease::Column::ProjectId.eq(p.row.id))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gt(now + 5_000))
        .order_by_asc(lease::Column::Id)
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let Some(it) = item::Entity::find_by_id(l.item_id).one(conn).await? else {
        return Ok(None);
    };
    if it.status != "open" {
        return Ok(None);
    }
    Ok(Some(api::Task {
        lease_id: l.id,
        project_id: p.row.id,
        item_id: it.id,
        expires_at: Timestamp(l.expires_at),
        data: serde_json::from_str(&it.data).unwrap_or(Value::Null),
        task_type: p.schema.task_type(),
        schema: p.schema.to_json(),
    }))
}

/// A user's answers by status: (pending, accepted, rejected).
pub async fn answer_counts(conn: &impl ConnectionTrait, user: i64) -> Result<(i64, i64, i64)> {
    let rows: Vec<(String, i64)> = answer::Entity::find()
        .select_only()
        .column(answer::Column::Status)
        .column_as(Expr::col(answer::Column::Id).count(), "n")
        .filter(answer::Column::UserId.eq(user))
        .group_by(answer::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let get = |s: &str| rows.iter().find(|r| r.0 == s).map_or(0, |r| r.1);
    Ok((get("pending"), get("accepted"), get("rejected")))
}

/// Items finished (resolved or closed without consensus) per `bucket_ms`,
/// as (bucket start in ms, items). At most one row per item, whatever the
/// bucket.
pub async fn items_done_by(
    conn: &impl ConnectionTrait,
    project: i64,
    bucket_ms: i64,
) -> Result<Vec<(i64, i64)>> {
    let bucket_ms = Ord::max(bucket_ms, 1);
    let bucket = Expr::col(item::Column::ResolvedAt).div(bucket_ms);
    let rows: Vec<(i64, i64)> = item::Entity::find()
        .select_only()
        .column_as(bucket, "bucket")
        .column_as(Expr::col(item::Column::Id).count(), "n")
        .filter(item::Column::ProjectId.eq(project))
        .filter(item::Column::ResolvedAt.is_not_null())
        // By the output name: PostgreSQL would not see two bound copies
        // of the divisor as the same expression.
        .group_by(Expr::col(Alias::new("bucket")))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|(m, n)| (m * bucket_ms, n)).collect())
}

/// Answers per clock hour, as (hours since the epoch, answers).
pub async fn answers_by_hour(conn: &impl ConnectionTrait, project: i64) -> Result<Vec<(i64, i64)>> {
    let hour = Expr::col(answer::Column::CreatedAt).div(HOUR_MS);
    Ok(answer::Entity::find()
        .select_only()
        .column_as(hour, "hour")
        .column_as(Expr::col(answer::Column::Id).count(), "n")
        .filter(answer::Column::ProjectId.eq(project))
        .group_by(Expr::col(Alias::new("hour")))
        .into_tuple()
        .all(conn)
        .await?)
}

/// The most recent answer's instant, if any.
pub async fn last_answer_at(conn: &impl ConnectionTrait, project: i64) -> Result<Option<i64>> {
    let v: Option<Option<i64>> = answer::Entity::find()
        .select_only()
        .column_as(Expr::col(answer::Column::CreatedAt).max(), "last")
        .filter(answer::Column::ProjectId.eq(project))
        .into_tuple()
        .one(conn)
        .await?;
    Ok(v.flatten())
}

pub struct AnswerView {
    pub who: String,
    pub label: String,
    pub status: String,
    pub paid: sahel_protocol::Micros,
}

pub struct ResolvedItem {
    pub seq: i64,
    pub text: String,
    pub status: String,
    pub result: String,
    /// Share of the answers that agree with the result, in percent.
    pub agreement: Option<u32>,
    pub resolved_at: String,
    pub answers: Vec<AnswerView>,
}

pub const ITEMS_PER_PAGE: u64 = 50;

/// One page of a project's finished items, newest first, with every
/// answer and who gave it; and how many finished items there are.
pub async fn resolved_items(
    conn: &impl ConnectionTrait,
    project: i64,
    page: u64,
) -> Result<(Vec<ResolvedItem>, u64)> {
    let finished = item::Entity::find()
        .filter(item::Column::ProjectId.eq(project))
        .filter(item::Column::Status.is_in(["resolved", "no_consensus"]));
    let total = finished.clone().count(conn).await?;
    let rows = finished
        .order_by_desc(item::Column::ResolvedAt)
        .order_by_desc(item::Column::Id)
        .limit(ITEMS_PER_PAGE)
        .offset(page * ITEMS_PER_PAGE)
        .all(conn)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let answers = if ids.is_empty() {
        Vec::new()
    } else {
        answer::Entity::find()
            .filter(answer::Column::ItemId.is_in(ids))
            .order_by_asc(answer::Column::Id)
            .all(conn)
            .await?
    };
    let mut user_ids: Vec<i64> = answers.iter().map(|a| a.user_id).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let names: HashMap<i64, String> = if user_ids.is_empty() {
        HashMap::new()
    } else {
        user::Entity::find()
            .filter(user::Column::Id.is_in(user_ids))
            .all(conn)
            .await?
            .into_iter()
            .map(|u| (u.id, u.display_name))
            .collect()
    };
    let label_of = |payload: &Value| match payload.get("label").and_then(Value::as_str) {
        Some(l) => l.to_owned(),
        None => payload.to_string(),
    };
    let items = rows
        .into_iter()
        .map(|r| {
            let data: Value = serde_json::from_str(&r.data).unwrap_or(Value::Null);
            let result: Value = r
                .result
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            ResolvedItem {
                seq: r.seq,
                text: data
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or_else(|| data.to_string(), str::to_owned),
                status: r.status.clone(),
                result: match result.get("answer") {
                    Some(a) => label_of(a),
                    None => "no consensus".to_owned(),
                },
                agreement: result
                    .get("agreement")
                    .and_then(Value::as_f64)
                    .map(|a| (a * 100.0).round() as u32),
                resolved_at: r.resolved_at.map(super::when).unwrap_or_default(),
                answers: answers
                    .iter()
                    .filter(|a| a.item_id == r.id)
                    .map(|a| AnswerView {
                        who: names
                            .get(&a.user_id)
                            .cloned()
                            .unwrap_or_else(|| format!("user {}", a.user_id)),
                        label: label_of(&serde_json::from_str(&a.payload).unwrap_or(Value::Null)),
                        status: a.status.clone(),
                        paid: sahel_protocol::Micros(a.paid),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok((items, total))
}
