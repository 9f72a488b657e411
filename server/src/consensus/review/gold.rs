//! Gold reviews: answers whose right verdict the buyer knows, mixed into
//! reviewers' streams to measure them, as gold items measure contributors.
//!
//! A gold review is served in place of a real answer, one time in the
//! bounty's `gold_review_every`, only when a real answer is waiting (so the
//! stream looks the same), never twice to one reviewer, and while the
//! budget above the bounty's full cost can pay for it. It is leased,
//! shown and answered through the same routes as any review; nothing a
//! reviewer receives tells them apart. Each verdict updates the reviewer's
//! record on the bounty: accuracy on gold reviews as a Beta posterior,
//! under the same rule as contributors' gold (two outcomes: accept or
//! reject). A reviewer whose lower credible bound falls under the rule's
//! threshold is suspended from reviewing the bounty, and the buyer sees
//! why at `GET /projects/{id}/reviewers`.

use sahel_protocol::api::{self, Verdict};
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use serde_json::Value;

use super::entity::review_lease;
use super::{MAX_REASON, lock_reviews, parse_verdict, verdict_str};
use crate::accounts::AuthUser;
use crate::consensus::quality::engine::reliability::{GoldRecord, SuspensionRule};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::projects::entity::item;
use crate::projects::{self, Project};
use crate::state::AppState;
use entity::{gold_review, gold_verdict, reviewer};

pub mod entity {
    pub mod gold_review {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "gold_reviews")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub project_id: i64,
            pub item_id: i64,
            /// The answer under review, normalized by the schema (JSON).
            pub answer: String,
            /// `accept` or `reject`: what a good reviewer says.
            pub verdict: String,
            pub reason: Option<String>,
            pub artifact: Option<String>,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod gold_verdict {
        use sea_orm::entity::prelude::*;

        /// A reviewer's verdict on a gold review.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "gold_review_verdicts")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub lease_id: i64,
            pub project_id: i64,
            pub gold_review_id: i64,
            pub reviewer_id: i64,
            pub verdict: String,
            pub reason: Option<String>,
            pub correct: bool,
            pub idempotency_key: String,
            pub request_hash: String,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod reviewer {
        use sea_orm::entity::prelude::*;

        /// One reviewer's record on one bounty.
        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "reviewer_quality")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub project_id: i64,
            pub user_id: i64,
            pub reviews: i32,
            pub gold_correct: i32,
            pub gold_total: i32,
            pub accuracy_mean: f64,
            pub accuracy_lower: f64,
            pub suspended_at: Option<i64>,
            pub suspension_reason: Option<String>,
            pub updated_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

/// How reviewers are judged on gold reviews: the contributors' rule for
/// two outcomes (threshold 0.625, 95% lower bound, after 8 gold reviews).
pub fn rule() -> SuspensionRule {
    SuspensionRule::for_classes(2)
}

async fn to_api(conn: &impl ConnectionTrait, g: gold_review::Model) -> Result<api::GoldReview> {
    let verdicts: Vec<gold_verdict::Model> = gold_verdict::Entity::find()
        .filter(gold_verdict::Column::GoldReviewId.eq(g.id))
        .all(conn)
        .await?;
    Ok(api::GoldReview {
        id: g.id,
        project_id: g.project_id,
        item_id: g.item_id,
        answer: serde_json::from_str(&g.answer).unwrap_or(Value::Null),
        verdict: parse_verdict(&g.verdict),
        reason: g.reason,
        judged: verdicts.len() as u32,
        judged_right: verdicts.iter().filter(|v| v.correct).count() as u32,
        created_at: Timestamp(g.created_at),
    })
}

/// Adds a gold review to a reviewed bounty (its buyer, any time before it
/// is closed). The answer is checked like a contributor's.
pub async fn create(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    req: api::NewGoldReview,
) -> Result<api::GoldReview> {
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON) {
        return Err(Error::invalid(
            "invalid-reason",
            format!("the reason is limited to {MAX_REASON} characters"),
        ));
    }
    let tx = db.write().await?;
    let p = projects::get_owned(&*tx, owner, project_id).await?;
    super::require_reviewed(&p)?;
    if p.status() == api::ProjectStatus::Closed {
        return Err(Error::conflict(
            "project-closed",
            "this project was closed by its buyer",
        ));
    }
    let it = item::Entity::find_by_id(req.item_id)
        .one(&*tx)
        .await?
        .filter(|it| it.project_id == project_id)
        .ok_or_else(|| {
            Error::not_found(
                "item-not-found",
                format!("bounty {project_id} has no item {}", req.item_id),
            )
        })?;
    let mut answer = p
        .schema
        .normalize_answer(&req.answer)
        .map_err(|e| Error::invalid("invalid-answer", e))?;
    if p.schema.answers_point_into_item() {
        let data: Value = serde_json::from_str(&it.data).unwrap_or(Value::Null);
        answer = p
            .schema
            .normalize_answer_for(&data, &answer)
            .map_err(|e| Error::invalid("invalid-answer", e))?;
    }
    crate::consensus::check_answer_artifacts(&*tx, &p, owner.id, &answer).await?;
    let artifact = answer
        .get("artifact")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let g = gold_review::ActiveModel {
        project_id: Set(project_id),
        item_id: Set(it.id),
        answer: Set(answer.to_string()),
        verdict: Set(verdict_str(req.verdict).to_owned()),
        reason: Set(reason.map(str::to_owned)),
        artifact: Set(artifact),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    to_api(&db.conn, g).await
}

/// A bounty's gold reviews, with how reviewers fared on each (its buyer).
pub async fn list(
    conn: &impl ConnectionTrait,
    owner: &AuthUser,
    project_id: i64,
) -> Result<Vec<api::GoldReview>> {
    projects::get_owned(conn, owner, project_id).await?;
    let rows = gold_review::Entity::find()
        .filter(gold_review::Column::ProjectId.eq(project_id))
        .order_by_asc(gold_review::Column::Id)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for g in rows {
        out.push(to_api(conn, g).await?);
    }
    Ok(out)
}

/// Every reviewer's record on a bounty (its buyer).
pub async fn reviewers(
    conn: &impl ConnectionTrait,
    owner: &AuthUser,
    project_id: i64,
) -> Result<Vec<api::ReviewerStanding>> {
    projects::get_owned(conn, owner, project_id).await?;
    Ok(reviewer::Entity::find()
        .filter(reviewer::Column::ProjectId.eq(project_id))
        .order_by_asc(reviewer::Column::UserId)
        .all(conn)
        .await?
        .into_iter()
        .map(|r| api::ReviewerStanding {
            user_id: r.user_id,
            reviews: r.reviews as u32,
            gold_correct: r.gold_correct as u32,
            gold_total: r.gold_total as u32,
            accuracy_mean: r.accuracy_mean,
            accuracy_lower: r.accuracy_lower,
            suspended: r.suspended_at.is_some(),
            suspension_reason: r.suspension_reason,
        })
        .collect())
}

/// Refuses a reviewer suspended from reviewing this bounty.
pub async fn refuse_suspended(
    conn: &impl ConnectionTrait,
    project_id: i64,
    user_id: i64,
) -> Result<()> {
    let r = reviewer::Entity::find()
        .filter(reviewer::Column::ProjectId.eq(project_id))
        .filter(reviewer::Column::UserId.eq(user_id))
        .filter(reviewer::Column::SuspendedAt.is_not_null())
        .one(conn)
        .await?;
    match r {
        Some(r) => Err(Error::forbidden(
            "review-suspended",
            format!(
                "you are suspended from reviewing bounty {project_id}: {}",
                r.suspension_reason.as_deref().unwrap_or("quality")
            ),
        )),
        None => Ok(()),
    }
}

async fn standing(
    conn: &impl ConnectionTrait,
    project_id: i64,
    user_id: i64,
) -> Result<reviewer::Model> {
    let found = reviewer::Entity::find()
        .filter(reviewer::Column::ProjectId.eq(project_id))
        .filter(reviewer::Column::UserId.eq(user_id))
        .one(conn)
        .await?;
    if let Some(r) = found {
        return Ok(r);
    }
    let prior = rule().estimate(GoldRecord::default());
    Ok(reviewer::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        reviews: Set(0),
        gold_correct: Set(0),
        gold_total: Set(0),
        accuracy_mean: Set(prior.mean),
        accuracy_lower: Set(prior.lower),
        suspended_at: Set(None),
        suspension_reason: Set(None),
        updated_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}

/// Counts a review (real or gold) on the reviewer's record and, for a
/// gold one, scores it; suspends the reviewer when the rule says so.
/// Called under the bounty's review lock.
pub(super) async fn count_review(
    conn: &impl ConnectionTrait,
    project_id: i64,
    user_id: i64,
    gold_correct: Option<bool>,
    now: i64,
) -> Result<()> {
    let r = standing(conn, project_id, user_id).await?;
    let mut record = GoldRecord {
        correct: r.gold_correct as u32,
        total: r.gold_total as u32,
    };
    if let Some(c) = gold_correct {
        record.add(c);
    }
    let rule = rule();
    let est = rule.estimate(record);
    let suspend = r.suspended_at.is_none() && gold_correct.is_some() && rule.suspends(record);
    let mut row: reviewer::ActiveModel = r.into();
    row.reviews = Set(row.reviews.take().unwrap_or(0) + 1);
    row.gold_correct = Set(record.correct as i32);
    row.gold_total = Set(record.total as i32);
    row.accuracy_mean = Set(est.mean);
    row.accuracy_lower = Set(est.lower);
    row.updated_at = Set(now);
    if suspend {
        let reason = format!(
            "{} of {} gold reviews right: accuracy is below {:.2} with 95% confidence (lower bound {:.2})",
            record.correct, record.total, rule.threshold, est.lower
        );
        tracing::info!(
            project = project_id,
            user = user_id,
            reason,
            "reviewer suspended"
        );
        row.suspended_at = Set(Some(now));
        row.suspension_reason = Set(Some(reason));
        // Their review leases on the bounty end now.
        review_lease::Entity::update_many()
            .col_expr(review_lease::Column::Status, Expr::value("released"))
            .filter(review_lease::Column::ProjectId.eq(project_id))
            .filter(review_lease::Column::ReviewerId.eq(user_id))
            .filter(review_lease::Column::Status.eq("open"))
            .exec(conn)
            .await?;
    }
    row.update(conn).await?;
    Ok(())
}

/// Gold reviews served or promised (open leases) on a bounty.
async fn spent(conn: &impl ConnectionTrait, project_id: i64, now: i64) -> Result<i64> {
    let judged = gold_verdict::Entity::find()
        .filter(gold_verdict::Column::ProjectId.eq(project_id))
        .count(conn)
        .await?;
    let held = review_lease::Entity::find()
        .filter(review_lease::Column::ProjectId.eq(project_id))
        .filter(review_lease::Column::GoldReviewId.is_not_null())
        .filter(review_lease::Column::Status.eq("open"))
        .filter(review_lease::Column::ExpiresAt.gt(now))
        .count(conn)
        .await?;
    Ok((judged + held) as i64)
}

/// How many more gold reviews the escrow can pay: the budget above the
/// bounty's full cost, at the review reward each (no limit when reviews
/// are unpaid).
async fn allowance(conn: &impl ConnectionTrait, p: &Project, now: i64) -> Result<i64> {
    if p.row.review_reward <= 0 {
        return Ok(i64::MAX);
    }
    let full = p.full_cost(p.row.item_count).map_or(i64::MAX, |m| m.0);
    let above = p.row.budget.saturating_sub(full).max(0) / p.row.review_reward;
    Ok(above - spent(conn, p.row.id, now).await?)
}

/// What funding adds so that gold reviews at one in `gold_review_every`
/// of the most real reviews the bounty may need can be paid.
pub async fn reserve(conn: &impl ConnectionTrait, p: &Project) -> Result<Micros> {
    let every = p.row.gold_review_every as i64;
    if every < 2 || p.row.review_reward <= 0 || !p.schema.is_reviewed() {
        return Ok(Micros::ZERO);
    }
    let any = gold_review::Entity::find()
        .filter(gold_review::Column::ProjectId.eq(p.row.id))
        .count(conn)
        .await?;
    if any == 0 {
        return Ok(Micros::ZERO);
    }
    let real = p.row.item_count
        * crate::consensus::max_answers_for(p.row.overlap as u32) as i64
        * std::cmp::max(p.row.reviews_per_answer, 1) as i64;
    let gold = (real + every - 2) / (every - 1);
    Ok(Micros(p.row.review_reward.saturating_mul(gold)))
}

/// The gold review to serve `user` instead of the real answer found for
/// them, if the draw says so and the budget allows; never on an item in
/// `barred` (items they answer or hold: nobody judges and answers one
/// item, gold or not). Under the review lock.
pub(super) async fn pick(
    state: &AppState,
    conn: &impl ConnectionTrait,
    p: &Project,
    user_id: i64,
    barred: &[i64],
    now: i64,
) -> Result<Option<gold_review::Model>> {
    let every = p.row.gold_review_every as u64;
    if every < 2 || !state.gold_draw.next().is_multiple_of(every) {
        return Ok(None);
    }
    if allowance(conn, p, now).await? <= 0 {
        return Ok(None);
    }
    let seen: Vec<i64> = gold_verdict::Entity::find()
        .filter(gold_verdict::Column::ProjectId.eq(p.row.id))
        .filter(gold_verdict::Column::ReviewerId.eq(user_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|v| v.gold_review_id)
        .chain(
            review_lease::Entity::find()
                .filter(review_lease::Column::ProjectId.eq(p.row.id))
                .filter(review_lease::Column::ReviewerId.eq(user_id))
                .filter(review_lease::Column::GoldReviewId.is_not_null())
                .filter(review_lease::Column::Status.eq("open"))
                .all(conn)
                .await?
                .into_iter()
                .filter_map(|l| l.gold_review_id),
        )
        .collect();
    let pool: Vec<gold_review::Model> = gold_review::Entity::find()
        .filter(gold_review::Column::ProjectId.eq(p.row.id))
        .all(conn)
        .await?
        .into_iter()
        .filter(|g| !seen.contains(&g.id) && !barred.contains(&g.item_id))
        .collect();
    if pool.is_empty() {
        return Ok(None);
    }
    let i = (state.gold_draw.next() % pool.len() as u64) as usize;
    Ok(pool.into_iter().nth(i))
}

/// The verdict a key already names, for idempotent retries.
pub(super) async fn previous(
    conn: &impl ConnectionTrait,
    reviewer_id: i64,
    key: &str,
) -> Result<Option<gold_verdict::Model>> {
    Ok(gold_verdict::Entity::find()
        .filter(gold_verdict::Column::ReviewerId.eq(reviewer_id))
        .filter(gold_verdict::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?)
}

pub(super) fn given(v: &gold_verdict::Model, item_id: i64) -> api::GivenReview {
    api::GivenReview {
        id: v.id,
        lease_id: v.lease_id,
        project_id: v.project_id,
        item_id,
        verdict: parse_verdict(&v.verdict),
        reason: v.reason.clone(),
        created_at: Timestamp(v.created_at),
    }
}

/// Records a verdict on a gold review lease (already checked open and
/// the reviewer's): scores it, pays it like any review, and returns what
/// a real review returns.
#[allow(clippy::too_many_arguments)]
pub(super) async fn record(
    conn: &impl ConnectionTrait,
    p: &Project,
    l: &review_lease::Model,
    gold_review_id: i64,
    verdict: Verdict,
    reason: Option<&str>,
    key: &str,
    hash: &str,
    now: i64,
) -> Result<api::GivenReview> {
    lock_reviews(conn, p.row.id).await?;
    let g = gold_review::Entity::find_by_id(gold_review_id)
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gold review {gold_review_id} vanished"))?;
    let correct = g.verdict == verdict_str(verdict);
    review_lease::Entity::update_many()
        .col_expr(review_lease::Column::Status, Expr::value("submitted"))
        .filter(review_lease::Column::Id.eq(l.id))
        .exec(conn)
        .await?;
    let v = gold_verdict::ActiveModel {
        lease_id: Set(l.id),
        project_id: Set(p.row.id),
        gold_review_id: Set(g.id),
        reviewer_id: Set(l.reviewer_id),
        verdict: Set(verdict_str(verdict).to_owned()),
        reason: Set(reason.map(str::to_owned)),
        correct: Set(correct),
        idempotency_key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    count_review(conn, p.row.id, l.reviewer_id, Some(correct), now).await?;
    super::pay(conn, p, l.item_id, l.reviewer_id, &format!("gold:{}", v.id)).await?;
    Ok(given(&v, l.item_id))
}
