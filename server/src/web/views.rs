//! Read-only queries that only pages need: how many items a bounty has
//! left, the lease a contributor already holds, chart series, resolved
//! items with their answers, receipts of a page of history, where a
//! contributor's data was used, their standing per bounty. They read capability tables through the
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

use sahel_protocol::Micros;

use crate::accounts::entity::user;
use crate::consensus::quality::entity as quality_entity;
use crate::consensus::quality::gold;
use crate::datasets::entity::{contributor as dataset_contributor, dataset, usage};
use crate::error::Result;
use crate::ledger::AccountRef;
use crate::ledger::entity::{account, posting, receipt, transaction};
use crate::projects::Project;
use crate::projects::entity::{item, project};
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

/// The bounty page's worked examples as (item text, answer summary): see
/// [`gold::worked_examples`], which also keeps them from becoming gold.
pub async fn examples(conn: &impl ConnectionTrait, project: i64) -> Result<Vec<(String, String)>> {
    Ok(gold::worked_examples(conn, project)
        .await?
        .into_iter()
        .filter_map(|(r, result)| {
            let data: Value = serde_json::from_str(&r.data).ok()?;
            let text = data
                .get("text")
                .or(data.get("prompt"))
                .and_then(Value::as_str)?
                .to_owned();
            Some((text, answer_summary(result.get("answer")?)))
        })
        .collect())
}

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
    let label_of = answer_summary;
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

/// The receipts of these ledger transactions, by transaction id.
pub async fn receipts_for(
    conn: &impl ConnectionTrait,
    transaction_ids: &[i64],
) -> Result<Vec<receipt::Model>> {
    if transaction_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(receipt::Entity::find()
        .filter(receipt::Column::TransactionId.is_in(transaction_ids.to_vec()))
        .order_by_desc(receipt::Column::Seq)
        .all(conn)
        .await?)
}

/// A dataset version that contains a contributor's accepted work.
pub struct DataUse {
    pub dataset_id: i64,
    pub title: String,
    pub version: i32,
    pub project_id: i64,
    pub records: i64,
    /// The contributor's share of the royalties, in basis points.
    pub share_bps: i64,
    /// Licensed uses (page reads and exports) so far.
    pub uses: u64,
    /// Royalties credited to the contributor from this dataset so far.
    pub royalties: Micros,
}

/// Every dataset version holding `user`'s work, newest first, with its
/// uses and the royalties it has paid them.
pub async fn data_uses(conn: &impl ConnectionTrait, user: i64) -> Result<Vec<DataUse>> {
    let mine = dataset_contributor::Entity::find()
        .filter(dataset_contributor::Column::UserId.eq(user))
        .all(conn)
        .await?;
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = mine.iter().map(|m| m.dataset_id).collect();
    let sets = dataset::Entity::find()
        .filter(dataset::Column::Id.is_in(ids.clone()))
        .order_by_desc(dataset::Column::Id)
        .all(conn)
        .await?;
    let uses: HashMap<i64, i64> = usage::Entity::find()
        .select_only()
        .column(usage::Column::DatasetId)
        .column_as(Expr::col(usage::Column::Id).count(), "n")
        .filter(usage::Column::DatasetId.is_in(ids))
        .group_by(usage::Column::DatasetId)
        .into_tuple::<(i64, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    // Royalty payments name their dataset in the memo.
    let mut royalties: HashMap<i64, i64> = HashMap::new();
    if let Some(acc) = account::Entity::find()
        .filter(account::Column::Kind.eq(AccountRef::User(user).kind()))
        .filter(account::Column::OwnerId.eq(user))
        .one(conn)
        .await?
    {
        let rows: Vec<(i64, String)> = posting::Entity::find()
            .select_only()
            .column(posting::Column::Amount)
            .column_as(
                Expr::col((transaction::Entity, transaction::Column::Memo)),
                "memo",
            )
            .join(
                sea_orm::JoinType::InnerJoin,
                posting::Entity::belongs_to(transaction::Entity)
                    .from(posting::Column::TransactionId)
                    .to(transaction::Column::Id)
                    .into(),
            )
            .filter(posting::Column::AccountId.eq(acc.id))
            .filter(Expr::col((transaction::Entity, transaction::Column::Kind)).eq("royalty"))
            .into_tuple()
            .all(conn)
            .await?;
        for (amount, memo) in rows {
            let memo: Value = serde_json::from_str(&memo).unwrap_or(Value::Null);
            if let Some(d) = memo.get("dataset_id").and_then(Value::as_i64) {
                *royalties.entry(d).or_default() += amount;
            }
        }
    }
    Ok(sets
        .into_iter()
        .map(|d| {
            let weight = mine
                .iter()
                .find(|m| m.dataset_id == d.id)
                .map_or(0, |m| m.weight);
            DataUse {
                dataset_id: d.id,
                title: d.title,
                version: d.version,
                project_id: d.project_id,
                records: d.record_count,
                share_bps: (i128::from(weight) * 10_000)
                    .checked_div(i128::from(d.total_weight))
                    .unwrap_or(0) as i64,
                uses: uses.get(&d.id).copied().unwrap_or(0) as u64,
                royalties: Micros(royalties.get(&d.id).copied().unwrap_or(0)),
            }
        })
        .collect())
}

/// A contributor's standing on one bounty.
pub struct MyQuality {
    pub project_id: i64,
    pub title: String,
    pub accepted: i64,
    pub rejected: i64,
    pub pending: i64,
    /// `None` on a bounty decided by plain vote (no quality engine).
    pub standing: Option<quality_entity::contributor::Model>,
}

/// Every bounty `user` answered or was served on, newest first.
pub async fn my_quality(conn: &impl ConnectionTrait, user: i64) -> Result<Vec<MyQuality>> {
    let counts: Vec<(i64, String, i64)> = answer::Entity::find()
        .select_only()
        .column(answer::Column::ProjectId)
        .column(answer::Column::Status)
        .column_as(Expr::col(answer::Column::Id).count(), "n")
        .filter(answer::Column::UserId.eq(user))
        .group_by(answer::Column::ProjectId)
        .group_by(answer::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let standings = quality_entity::contributor::Entity::find()
        .filter(quality_entity::contributor::Column::UserId.eq(user))
        .all(conn)
        .await?;
    let mut ids: Vec<i64> = counts
        .iter()
        .map(|c| c.0)
        .chain(standings.iter().map(|s| s.project_id))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let titles: HashMap<i64, String> = project::Entity::find()
        .filter(project::Column::Id.is_in(ids.clone()))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| (p.id, p.title))
        .collect();
    let count = |p: i64, s: &str| {
        counts
            .iter()
            .find(|c| c.0 == p && c.1 == s)
            .map_or(0, |c| c.2)
    };
    Ok(ids
        .into_iter()
        .map(|id| MyQuality {
            project_id: id,
            title: titles.get(&id).cloned().unwrap_or_default(),
            accepted: count(id, "accepted"),
            rejected: count(id, "rejected"),
            pending: count(id, "pending"),
            standing: standings.iter().find(|s| s.project_id == id).cloned(),
        })
        .collect())
}

/// `user`'s reliability estimate (posterior mean accuracy) per bounty, for
/// the bounties that have one.
pub async fn reliability(
    conn: &impl ConnectionTrait,
    user: i64,
    projects: &[i64],
) -> Result<HashMap<i64, f64>> {
    if projects.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(quality_entity::contributor::Entity::find()
        .filter(quality_entity::contributor::Column::UserId.eq(user))
        .filter(quality_entity::contributor::Column::ProjectId.is_in(projects.to_vec()))
        .all(conn)
        .await?
        .into_iter()
        // A fresh standing row holds zeros until its first estimate.
        .filter(has_estimate)
        .map(|r| (r.project_id, r.accuracy_mean))
        .collect())
}

/// Whether a standing row has been estimated from any evidence yet.
pub fn has_estimate(r: &quality_entity::contributor::Model) -> bool {
    r.gold_total > 0 || r.peer_answers > 0
}

/// A bounty's published dataset versions, newest first.
pub async fn datasets_of(conn: &impl ConnectionTrait, project: i64) -> Result<Vec<dataset::Model>> {
    Ok(dataset::Entity::find()
        .filter(dataset::Column::ProjectId.eq(project))
        .order_by_desc(dataset::Column::Version)
        .all(conn)
        .await?)
}

/// Display names by user id.
pub async fn names(conn: &impl ConnectionTrait, ids: &[i64]) -> Result<HashMap<i64, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids.to_vec()))
        .all(conn)
        .await?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect())
}

/// Per contributor on a bounty: (user, accepted, rejected, pending)
/// answers, for bounties decided by plain vote, where agreement with the
/// result is the accuracy there is.
pub async fn answers_by_user(
    conn: &impl ConnectionTrait,
    project: i64,
) -> Result<Vec<(i64, i64, i64, i64)>> {
    let rows: Vec<(i64, String, i64)> = answer::Entity::find()
        .select_only()
        .column(answer::Column::UserId)
        .column(answer::Column::Status)
        .column_as(Expr::col(answer::Column::Id).count(), "n")
        .filter(answer::Column::ProjectId.eq(project))
        .group_by(answer::Column::UserId)
        .group_by(answer::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let mut by: std::collections::BTreeMap<i64, (i64, i64, i64)> = Default::default();
    for (u, s, n) in rows {
        let e = by.entry(u).or_default();
        match s.as_str() {
            "accepted" => e.0 += n,
            "rejected" => e.1 += n,
            _ => e.2 += n,
        }
    }
    Ok(by.into_iter().map(|(u, (a, r, p))| (u, a, r, p)).collect())
}

/// An answer in a few words, for tables: the class, the classes, the
/// choice, the text, or what spans and boxes were drawn.
pub fn answer_summary(answer: &Value) -> String {
    let names = |v: &Value, key: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.get(key).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    if let Some(l) = answer.get("label").and_then(Value::as_str) {
        return l.to_owned();
    }
    if let Some(ls) = answer.get("labels").and_then(Value::as_array) {
        let ls: Vec<&str> = ls.iter().filter_map(Value::as_str).collect();
        return if ls.is_empty() {
            "(none)".into()
        } else {
            ls.join(", ")
        };
    }
    if let Some(c) = answer.get("choice").and_then(Value::as_str) {
        return match c {
            "tie" => "tie".into(),
            c => format!("{} is better", c.to_uppercase()),
        };
    }
    if let Some(t) = answer.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    if let Some(a) = answer.get("artifact").and_then(Value::as_str) {
        return format!("file {}", &a[..a.len().min(12)]);
    }
    for (key, what) in [("spans", "span"), ("boxes", "box")] {
        if let Some(list) = answer.get(key) {
            let labels = names(list, "label");
            let n = labels.len();
            let plural = if n == 1 {
                ""
            } else if what == "box" {
                "es"
            } else {
                "s"
            };
            return format!("{n} {what}{plural}: {}", labels.join(", "));
        }
    }
    if let Some(list) = answer.as_array() {
        return list
            .iter()
            .map(answer_summary)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    answer.to_string()
}

#[cfg(test)]
mod summary_tests {
    use super::answer_summary;
    use serde_json::json;

    #[test]
    fn each_answer_shape_reads_in_a_few_words() {
        for (answer, want) in [
            (json!({"label": "pos"}), "pos"),
            (json!({"labels": ["a", "c"]}), "a, c"),
            (json!({"labels": []}), "(none)"),
            (json!({"choice": "b"}), "B is better"),
            (json!({"text": "Why?"}), "Why?"),
            (
                json!({"spans": [{"start": 0, "end": 3, "label": "PER"}]}),
                "1 span: PER",
            ),
            (
                json!({"boxes": [{"label": "car"}, {"label": "person"}]}),
                "2 boxes: car, person",
            ),
            (json!([{"text": "a"}, {"text": "b"}]), "a | b"),
        ] {
            assert_eq!(answer_summary(&answer), want);
        }
    }
}
