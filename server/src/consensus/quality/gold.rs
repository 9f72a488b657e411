//! Gold items: items with a known answer, mixed into contributors' tasks.
//!
//! A buyer marks gold at import (the item's `_gold` field, which is
//! removed from the stored data and never shown) or later from a resolved
//! item. Imported gold items have status `gold` in `items`: the queue never
//! loads them, progress and funding never count them. They reach a
//! contributor only through [`mix`], which replaces a task the queue has
//! just reserved for them with a gold item, one time in `gold_every`, so
//! a gold task arrives exactly when a real one would have and looks the
//! same: same `Task` fields, a lease like any other, a `pending`
//! submission decided later like any other.

use sahel_protocol::api::{self, ProjectStatus};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Map, Value};

use super::entity::gold_item;
use super::{Admission, gold_allowance};
use crate::accounts::AuthUser;
use crate::consensus::LabelSchema;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::projects::entity::item;
use crate::projects::{self, Project};
use crate::queue::Reservation;
use crate::queue::entity::{answer, lease};
use crate::state::AppState;

/// The item field that carries a gold answer at import.
pub const IMPORT_FIELD: &str = "_gold";

/// The normalized answer of an import field: a class name or an answer
/// object, checked against the item it comes with.
fn normalize(schema: &LabelSchema, item: &Map<String, Value>, v: &Value) -> Result<Value, String> {
    let answer = match v {
        // The shorthand is the voted field: a class, or a pairwise choice.
        Value::String(s) if schema.task_type() == sahel_protocol::api::TaskType::Pairwise => {
            serde_json::json!({ "choice": s })
        }
        Value::String(s) => serde_json::json!({ "label": s }),
        // And a multi-label bounty's set of classes.
        Value::Array(set) => serde_json::json!({ "labels": set }),
        other => other.clone(),
    };
    schema
        .kind()
        .normalize_answer(Some(item), &answer)
        .map_err(|e| format!("\"{IMPORT_FIELD}\": {e}"))
}

/// Checks an imported item's gold field, if it has one.
pub fn check_import(schema: &LabelSchema, obj: &Map<String, Value>) -> Result<(), String> {
    match obj.get(IMPORT_FIELD) {
        None => Ok(()),
        Some(v) => normalize(schema, obj, v).map(|_| ()),
    }
}

/// Splits an imported item into the data contributors see and its gold
/// answer, if any.
pub fn split_import(schema: &LabelSchema, data: &Value) -> (Value, Option<Value>) {
    let Some(obj) = data.as_object() else {
        return (data.clone(), None);
    };
    let Some(g) = obj.get(IMPORT_FIELD) else {
        return (data.clone(), None);
    };
    let mut rest = obj.clone();
    rest.remove(IMPORT_FIELD);
    // Imported pre-annotations would show a gold item's answer as a hint.
    rest.remove("hints");
    let gold = normalize(schema, &rest, g).ok();
    (Value::Object(rest), gold)
}

/// Records an imported gold item.
pub async fn insert_imported(
    conn: &impl ConnectionTrait,
    project_id: i64,
    item_id: i64,
    answer: &Value,
) -> Result<()> {
    gold_item::ActiveModel {
        item_id: Set(item_id),
        project_id: Set(project_id),
        answer: Set(answer.to_string()),
        source: Set("import".into()),
        created_at: Set(now_ms()),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn count(conn: &impl ConnectionTrait, project_id: i64) -> Result<u64> {
    Ok(gold_item::Entity::find()
        .filter(gold_item::Column::ProjectId.eq(project_id))
        .count(conn)
        .await?)
}

async fn ids(conn: &impl ConnectionTrait, project_id: i64) -> Result<Vec<i64>> {
    Ok(gold_item::Entity::find()
        .select_only()
        .column(gold_item::Column::ItemId)
        .filter(gold_item::Column::ProjectId.eq(project_id))
        .into_tuple()
        .all(conn)
        .await?)
}

/// The known answer of an item, if it is gold.
pub async fn gold_of(conn: &impl ConnectionTrait, item_id: i64) -> Result<Option<Value>> {
    let Some(g) = gold_item::Entity::find_by_id(item_id).one(conn).await? else {
        return Ok(None);
    };
    let v = serde_json::from_str(&g.answer)
        .map_err(|e| anyhow::anyhow!("stored gold answer of item {item_id}: {e}"))?;
    Ok(Some(v))
}

/// Every gold item of a bounty with its answer, for aggregation.
pub async fn all(conn: &impl ConnectionTrait, project_id: i64) -> Result<Vec<(i64, Value)>> {
    let rows = gold_item::Entity::find()
        .filter(gold_item::Column::ProjectId.eq(project_id))
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|g| serde_json::from_str(&g.answer).ok().map(|v| (g.item_id, v)))
        .collect())
}

/// Where gold placement draws from: the OS, unless the embedding code
/// seeded it (`Config::gold_seed`) for a simulation that must replay.
pub struct GoldDraw(Option<std::sync::Mutex<super::engine::sim::Rng>>);

impl GoldDraw {
    pub fn new(seed: Option<u64>) -> GoldDraw {
        GoldDraw(seed.map(|s| std::sync::Mutex::new(super::engine::sim::Rng::new(s))))
    }

    pub fn next(&self) -> u64 {
        match &self.0 {
            Some(rng) => rng.lock().expect("gold rng lock").next_u64(),
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).expect("the OS random source failed");
                u64::from_le_bytes(b)
            }
        }
    }
}

/// Gold items `user` has neither answered nor holds, in random order.
async fn unseen(
    draw: &GoldDraw,
    conn: &impl ConnectionTrait,
    project_id: i64,
    user: i64,
    now: i64,
) -> Result<Vec<i64>> {
    let gold = ids(conn, project_id).await?;
    if gold.is_empty() {
        return Ok(gold);
    }
    let answered: Vec<i64> = answer::Entity::find()
        .select_only()
        .column(answer::Column::ItemId)
        .filter(answer::Column::UserId.eq(user))
        .filter(answer::Column::ItemId.is_in(gold.clone()))
        .into_tuple()
        .all(conn)
        .await?;
    let held: Vec<i64> = lease::Entity::find()
        .select_only()
        .column(lease::Column::ItemId)
        .filter(lease::Column::UserId.eq(user))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gt(now))
        .filter(lease::Column::ItemId.is_in(gold.clone()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut out: Vec<i64> = gold
        .into_iter()
        .filter(|g| !answered.contains(g) && !held.contains(g))
        .collect();
    for i in (1..out.len()).rev() {
        let j = (draw.next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    Ok(out)
}

/// Gold answers given or promised (open leases) on a bounty.
async fn spent(conn: &impl ConnectionTrait, project_id: i64, now: i64) -> Result<i64> {
    let gold = ids(conn, project_id).await?;
    if gold.is_empty() {
        return Ok(0);
    }
    let answered = answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::ItemId.is_in(gold.clone()))
        .count(conn)
        .await?;
    let held = lease::Entity::find()
        .filter(lease::Column::ProjectId.eq(project_id))
        .filter(lease::Column::Status.eq("open"))
        .filter(lease::Column::ExpiresAt.gt(now))
        .filter(lease::Column::ItemId.is_in(gold))
        .count(conn)
        .await?;
    Ok((answered + held) as i64)
}

/// The items to lease, in order, and which of them are gold.
///
/// Under the vote, the queue's reservations unchanged. In an exam, only
/// gold items, up to what is left of the exam. Otherwise each reserved
/// item is replaced, with probability `1 / gold_every`, by a gold item the
/// contributor has not seen (its reservation is given back to the queue),
/// while the budget above overlap x items x reward can pay for it.
pub async fn mix(
    state: &AppState,
    user: &AuthUser,
    p: &Project,
    admission: &Admission,
    picked: Vec<Reservation>,
    count: u32,
    now: i64,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let conn = &state.db.conn;
    let mut order: Vec<i64> = picked.iter().map(|r| r.item_id).collect();
    match admission {
        Admission::Vote => Ok((order, Vec::new())),
        Admission::Exam(_, left) => {
            let held = lease::Entity::find()
                .filter(lease::Column::ProjectId.eq(p.row.id))
                .filter(lease::Column::UserId.eq(user.id))
                .filter(lease::Column::Status.eq("open"))
                .filter(lease::Column::ExpiresAt.gt(now))
                .count(conn)
                .await? as u32;
            let n = count.min(left.saturating_sub(held)) as usize;
            let gold: Vec<i64> = unseen(&state.gold_draw, conn, p.row.id, user.id, now)
                .await?
                .into_iter()
                .take(n)
                .collect();
            Ok((gold.clone(), gold))
        }
        Admission::Work(s) => {
            if s.gold_every < 2 || order.is_empty() {
                return Ok((order, Vec::new()));
            }
            let mut allowance = gold_allowance(p) - spent(conn, p.row.id, now).await?;
            let mut pool = unseen(&state.gold_draw, conn, p.row.id, user.id, now).await?;
            let mut gold = Vec::new();
            for slot in order.iter_mut() {
                if allowance <= 0 || pool.is_empty() {
                    break;
                }
                if !state.gold_draw.next().is_multiple_of(s.gold_every as u64) {
                    continue;
                }
                let g = pool.pop().expect("pool is not empty");
                if let Err(e) = state.queue.release(p.row.id, *slot, user.id).await {
                    tracing::warn!(error = %e, "could not give a reservation back to the queue");
                }
                *slot = g;
                gold.push(g);
                allowance -= 1;
            }
            Ok((order, gold))
        }
    }
}

/// How many worked examples a bounty page shows.
pub const WORKED_EXAMPLES: usize = 3;

/// The bounty page's worked examples: the first resolved items, in import
/// order, that every answer agreed on, never gold, with their results.
/// They show everyone an answer, so [`mark`] refuses to make them gold.
pub async fn worked_examples(
    conn: &impl ConnectionTrait,
    project_id: i64,
) -> Result<Vec<(item::Model, Value)>> {
    let gold = sea_orm::sea_query::Query::select()
        .column(gold_item::Column::ItemId)
        .from(gold_item::Entity)
        .and_where(sea_orm::sea_query::ExprTrait::eq(
            sea_orm::sea_query::Expr::col(gold_item::Column::ProjectId),
            project_id,
        ))
        .to_owned();
    let rows = item::Entity::find()
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("resolved"))
        .filter(item::Column::Id.not_in_subquery(gold))
        .order_by_asc(item::Column::Seq)
        .limit(WORKED_EXAMPLES as u64 * 10)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let result: Value = serde_json::from_str(r.result.as_deref()?).ok()?;
            if result.get("agreement").and_then(Value::as_f64)? < 1.0 {
                return None;
            }
            Some((r, result))
        })
        .take(WORKED_EXAMPLES)
        .collect())
}

/// Marks a resolved item gold, with a given answer or its result
/// (`POST /projects/{id}/gold`). Not a worked example: its answer is
/// already public.
pub async fn mark(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    req: api::MarkGold,
) -> Result<api::GoldItem> {
    let tx = db.write().await?;
    let p = projects::get_owned(&*tx, owner, project_id).await?;
    let it = item::Entity::find_by_id(req.item_id)
        .one(&*tx)
        .await?
        .filter(|i| i.project_id == project_id)
        .ok_or_else(|| {
            Error::not_found(
                "item-not-found",
                format!("no item {} in this bounty", req.item_id),
            )
        })?;
    let answer = match (&req.answer, it.status.as_str()) {
        (_, "open") => {
            return Err(Error::conflict(
                "item-not-resolved",
                "an item still collecting answers cannot become gold; import gold with the \"_gold\" field, or mark it once resolved",
            ));
        }
        (Some(a), _) => p
            .schema
            .normalize_answer(a)
            .map_err(|e| Error::invalid("invalid-answer", e))?,
        (None, "resolved") => it
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .and_then(|r| r.get("answer").cloned())
            .ok_or_else(|| Error::conflict("item-not-resolved", "this item has no result"))?,
        (None, _) => {
            return Err(Error::invalid(
                "answer-required",
                "this item has no result to take as its gold answer; give one",
            ));
        }
    };
    if p.status() == ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-open",
            "mark gold on a draft with the \"_gold\" import field",
        ));
    }
    if worked_examples(&*tx, project_id)
        .await?
        .iter()
        .any(|(e, _)| e.id == it.id)
    {
        return Err(Error::conflict(
            "item-is-example",
            "this item is a worked example on the bounty page: its answer is public, so it cannot be gold",
        ));
    }
    let row = gold_item::ActiveModel {
        item_id: Set(it.id),
        project_id: Set(project_id),
        answer: Set(answer.to_string()),
        source: Set(if it.status == "gold" {
            "import"
        } else {
            "resolved"
        }
        .into()),
        created_at: Set(now_ms()),
    };
    gold_item::Entity::delete_by_id(it.id).exec(&*tx).await?;
    let g = row.insert(&*tx).await?;
    tx.commit().await?;
    Ok(api::GoldItem {
        item_id: g.item_id,
        answer,
        source: g.source,
    })
}

/// A bounty's gold items, for its buyer.
pub async fn list(
    conn: &impl ConnectionTrait,
    owner: &AuthUser,
    project_id: i64,
) -> Result<Vec<api::GoldItem>> {
    projects::get_owned(conn, owner, project_id).await?;
    let rows = gold_item::Entity::find()
        .filter(gold_item::Column::ProjectId.eq(project_id))
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|g| api::GoldItem {
            item_id: g.item_id,
            answer: serde_json::from_str(&g.answer).unwrap_or(Value::Null),
            source: g.source,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sahel_protocol::api::TaskType;
    use serde_json::json;

    #[test]
    fn a_gold_item_loses_its_hints_and_other_items_keep_them() {
        let schema =
            LabelSchema::parse(TaskType::Classification, &json!({"classes": ["a", "b"]})).unwrap();
        let hints = json!([[{"type": "choices", "value": {"choices": ["a"]}}]]);
        let (data, gold) = split_import(
            &schema,
            &json!({"text": "t", "_gold": "a", "hints": hints.clone()}),
        );
        assert_eq!(
            data,
            json!({"text": "t"}),
            "a hint would give the answer away"
        );
        assert_eq!(gold, Some(json!({"label": "a"})));
        let (data, gold) = split_import(&schema, &json!({"text": "t", "hints": hints.clone()}));
        assert_eq!(data, json!({"text": "t", "hints": hints}));
        assert_eq!(gold, None);
    }
}
