//! Review of answers for the reviewed task types (free text, file
//! collection).
//!
//! An answer of a reviewed type is stored `pending_review`. Other
//! contributors lease it for review (never their own, never one they
//! reviewed, never while suspended on any bounty) and give a verdict; once
//! it has the bounty's `reviews_per_answer` reviews the majority decides it
//! (a tie rejects). An accepted answer is paid the reward at once; a
//! rejected one frees a slot on its item for another answer, up to
//! `max_answers`. The item resolves when it has `overlap` accepted answers
//! (its result is their list) and closes without consensus when the cap is
//! reached with nothing left to review.
//!
//! Budget: an item's slots are `overlap` plus one per rejection, so its
//! accepted and still-pending answers together never exceed `overlap`, and
//! funding `overlap x items x reward` covers every answer paid. Each review
//! is paid the bounty's `review_reward` when it is given (whatever the
//! verdict: reviewers are measured by gold reviews, [`gold`], not by
//! agreeing with each other); funding covers `reviews_per_answer` reviews
//! of each of the `max_answers` answers an item may get, plus the gold
//! reviews' reserve.

use sahel_protocol::Timestamp;
use sahel_protocol::api::{self, AnswerStatus, ProjectStatus, Role, Verdict};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::resolve::{Outcome, close_item};
use crate::accounts::AuthUser;
use crate::db::now_ms;
use crate::error::{ClientKind, Error, Result, is_unique_violation};
use crate::ledger;
use crate::projects::entity::item;
use crate::projects::{self, Project};
use crate::queue::entity::answer;
use crate::state::AppState;
use entity::{review, review_lease};

pub mod gold;

/// The advisory-lock namespace of a bounty's reviews ("SR"): leasing and
/// deciding reviews of one bounty take turns on PostgreSQL, so an answer
/// never gets more review leases than it needs nor two decisions.
const REVIEW_LOCK_NAMESPACE: i32 = 0x5352;
const MAX_REASON: usize = 2_000;
/// Candidates read per query while looking for an answer to review.
const PAGE: u64 = 500;

pub mod entity {
    pub mod review_lease {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "review_leases")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub project_id: i64,
            pub item_id: i64,
            /// 0 on a gold review's lease.
            pub answer_id: i64,
            pub reviewer_id: i64,
            /// `open`, `submitted` or `released`; an open lease past
            /// `expires_at` is expired.
            pub status: String,
            pub expires_at: i64,
            pub created_at: i64,
            /// Set when the lease serves a gold review.
            pub gold_review_id: Option<i64>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod review {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "reviews")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub lease_id: i64,
            pub project_id: i64,
            pub item_id: i64,
            pub answer_id: i64,
            pub reviewer_id: i64,
            /// `accept` or `reject`.
            pub verdict: String,
            pub reason: Option<String>,
            pub idempotency_key: String,
            pub request_hash: String,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

async fn lock_reviews(conn: &impl ConnectionTrait, project_id: i64) -> Result<()> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [REVIEW_LOCK_NAMESPACE.into(), (project_id as i32).into()],
        ))
        .await?;
    }
    Ok(())
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accept",
        Verdict::Reject => "reject",
    }
}

fn parse_verdict(s: &str) -> Verdict {
    if s == "accept" {
        Verdict::Accept
    } else {
        Verdict::Reject
    }
}

fn status_of(a: &answer::Model) -> AnswerStatus {
    crate::queue::to_api_submission(a).status
}

fn to_api(r: &review::Model, answer_status: AnswerStatus) -> api::Review {
    api::Review {
        id: r.id,
        lease_id: r.lease_id,
        project_id: r.project_id,
        item_id: r.item_id,
        answer_id: r.answer_id,
        verdict: parse_verdict(&r.verdict),
        reason: r.reason.clone(),
        answer_status,
        created_at: Timestamp(r.created_at),
    }
}

/// Refuses reviewers the quality engine suspended on any bounty: a
/// contributor found unreliable does not judge others' work.
async fn refuse_suspended(conn: &impl ConnectionTrait, user: i64) -> Result<()> {
    use super::quality::entity::contributor;
    let suspended = contributor::Entity::find()
        .filter(contributor::Column::UserId.eq(user))
        .filter(contributor::Column::SuspendedAt.is_not_null())
        .one(conn)
        .await?;
    match suspended {
        Some(r) => Err(Error::forbidden(
            "suspended",
            format!(
                "you are suspended on bounty {} ({}) and may not review",
                r.project_id,
                r.suspension_reason.as_deref().unwrap_or("quality")
            ),
        )),
        None => Ok(()),
    }
}

fn require_reviewed(p: &Project) -> Result<()> {
    if p.schema.is_reviewed() {
        return Ok(());
    }
    Err(Error::conflict(
        "not-reviewed",
        format!(
            "{} answers are decided by consensus, not by review",
            p.schema.task_type().as_str()
        ),
    ))
}

/// Leases one answer of a bounty for review by `user`, or `None` when
/// nothing is waiting for them.
pub async fn lease(
    state: &AppState,
    user: &AuthUser,
    project_id: i64,
) -> Result<Option<api::ReviewTask>> {
    if !(user.roles.has(Role::Contributor) || user.roles.has(Role::Reviewer)) {
        user.require(Role::Contributor)?;
    }
    let p = projects::get_visible(&state.db.conn, user, project_id).await?;
    require_reviewed(&p)?;
    match p.status() {
        ProjectStatus::Open => {}
        ProjectStatus::Completed => return Ok(None),
        ProjectStatus::Paused => {
            return Err(Error::conflict(
                "project-paused",
                "this bounty is paused by its buyer; reviews you already hold may still be given",
            ));
        }
        ProjectStatus::Draft => {
            return Err(Error::conflict(
                "project-not-open",
                "this project is not funded yet",
            ));
        }
        ProjectStatus::Closed => {
            return Err(Error::conflict(
                "project-closed",
                "this project was closed by its buyer",
            ));
        }
    }
    if p.row.buyer_id == user.id {
        return Err(Error::forbidden(
            "own-bounty",
            "a buyer does not review answers to their own bounty",
        ));
    }
    refuse_suspended(&state.db.conn, user.id).await?;
    gold::refuse_suspended(&state.db.conn, project_id, user.id).await?;
    let tx = state.db.write().await?;
    lock_reviews(&*tx, project_id).await?;
    let now = now_ms();
    // A reviewer never judges a rival answer on an item they answer or hold.
    let own_items: Vec<i64> = answer::Entity::find()
        .select_only()
        .column(answer::Column::ItemId)
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::UserId.eq(user.id))
        .into_tuple()
        .all(&*tx)
        .await?;
    let held_items: Vec<i64> = crate::queue::entity::lease::Entity::find()
        .select_only()
        .column(crate::queue::entity::lease::Column::ItemId)
        .filter(crate::queue::entity::lease::Column::ProjectId.eq(project_id))
        .filter(crate::queue::entity::lease::Column::UserId.eq(user.id))
        .filter(crate::queue::entity::lease::Column::Status.eq("open"))
        .filter(crate::queue::entity::lease::Column::ExpiresAt.gt(now))
        .into_tuple()
        .all(&*tx)
        .await?;
    let wanted = p.row.reviews_per_answer.max(1) as usize;
    let mut after = 0i64;
    let found = loop {
        let page = answer::Entity::find()
            .filter(answer::Column::ProjectId.eq(project_id))
            .filter(answer::Column::Status.eq("pending_review"))
            .filter(answer::Column::UserId.ne(user.id))
            .filter(answer::Column::Id.gt(after))
            .order_by_asc(answer::Column::Id)
            .limit(PAGE)
            .all(&*tx)
            .await?;
        let Some(last) = page.last() else { break None };
        after = last.id;
        let ids: Vec<i64> = page.iter().map(|a| a.id).collect();
        let done: Vec<(i64, i64)> = review::Entity::find()
            .select_only()
            .column(review::Column::AnswerId)
            .column(review::Column::ReviewerId)
            .filter(review::Column::AnswerId.is_in(ids.clone()))
            .into_tuple()
            .all(&*tx)
            .await?;
        let held: Vec<(i64, i64)> = review_lease::Entity::find()
            .select_only()
            .column(review_lease::Column::AnswerId)
            .column(review_lease::Column::ReviewerId)
            .filter(review_lease::Column::AnswerId.is_in(ids))
            .filter(review_lease::Column::Status.eq("open"))
            .filter(review_lease::Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(&*tx)
            .await?;
        let skipped: Vec<i64> = review_lease::Entity::find()
            .select_only()
            .column(review_lease::Column::AnswerId)
            .filter(review_lease::Column::AnswerId.is_in(page.iter().map(|a| a.id)))
            .filter(review_lease::Column::ReviewerId.eq(user.id))
            .filter(review_lease::Column::Status.eq("released"))
            .into_tuple()
            .all(&*tx)
            .await?;
        let pick = page.into_iter().find(|a| {
            if own_items.contains(&a.item_id)
                || held_items.contains(&a.item_id)
                || skipped.contains(&a.id)
            {
                return false;
            }
            let marks = || done.iter().chain(held.iter()).filter(|(id, _)| *id == a.id);
            marks().count() < wanted && marks().all(|(_, r)| *r != user.id)
        });
        if pick.is_some() {
            break pick;
        }
    };
    let Some(a) = found else {
        return Ok(None);
    };
    // Gold only stands in for a real answer: a reviewer with nothing to
    // review gets nothing, gold or not.
    let (item_id, answer_id, payload, gold_review_id) = match gold::pick(
        state,
        &*tx,
        &p,
        user.id,
        &[own_items, held_items].concat(),
        now,
    )
    .await?
    {
        Some(g) => (g.item_id, 0, g.answer, Some(g.id)),
        None => (a.item_id, a.id, a.payload, None),
    };
    let it = item::Entity::find_by_id(item_id)
        .one(&*tx)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item {item_id} under review vanished"))?;
    let expires_at = now + state.config.lease_secs as i64 * 1000;
    let l = review_lease::ActiveModel {
        project_id: Set(project_id),
        item_id: Set(item_id),
        answer_id: Set(answer_id),
        reviewer_id: Set(user.id),
        status: Set("open".into()),
        expires_at: Set(expires_at),
        created_at: Set(now),
        gold_review_id: Set(gold_review_id),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(Some(api::ReviewTask {
        lease_id: l.id,
        project_id,
        item_id,
        expires_at: Timestamp(expires_at),
        data: serde_json::from_str(&it.data).unwrap_or(Value::Null),
        answer: serde_json::from_str(&payload).unwrap_or(Value::Null),
        task_type: p.schema.task_type(),
        schema: p.schema.to_json(),
    }))
}

/// Gives a review lease back unused (`DELETE /reviews/{lease}`): the
/// answer goes to another reviewer and is not offered to this one again
/// (they skipped it). Releasing a released lease changes nothing.
pub async fn release(state: &AppState, user: &AuthUser, lease_id: i64) -> Result<()> {
    let tx = state.db.write().await?;
    let l = review_lease::Entity::find_by_id(lease_id)
        .one(&*tx)
        .await?
        .filter(|l| l.reviewer_id == user.id)
        .ok_or_else(|| {
            Error::not_found(
                "review-lease-not-found",
                format!("you have no review lease {lease_id}"),
            )
        })?;
    match l.status.as_str() {
        "released" => return Ok(()),
        "submitted" => {
            return Err(Error::conflict(
                "review-lease-used",
                "this review lease already has a review",
            ));
        }
        _ => {}
    }
    review_lease::Entity::update_many()
        .col_expr(review_lease::Column::Status, Expr::value("released"))
        .filter(review_lease::Column::Id.eq(l.id))
        .filter(review_lease::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn request_hash(lease_id: i64, verdict: Verdict, reason: Option<&str>) -> String {
    hex::encode(Sha256::digest(
        format!(
            "{lease_id}\n{}\n{}",
            verdict_str(verdict),
            reason.unwrap_or("")
        )
        .as_bytes(),
    ))
}

/// Records a review on a lease and, when the answer has all its reviews,
/// decides it (paying an accepted answer, reopening a rejected one's slot)
/// in the same transaction. Idempotent per (reviewer, key).
pub async fn submit(
    state: &AppState,
    user: &AuthUser,
    lease_id: i64,
    req: api::SubmitReview,
) -> Result<api::GivenReview> {
    let key = ledger::payments::check_key(&req.idempotency_key)?.to_owned();
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = reason
        && r.chars().count() > MAX_REASON
    {
        return Err(Error::invalid(
            "invalid-reason",
            format!("the reason is limited to {MAX_REASON} characters"),
        ));
    }
    if req.verdict == Verdict::Reject && reason.is_none() {
        return Err(Error::invalid(
            "reason-required",
            "a rejection needs a reason: tell the author what is wrong",
        ));
    }
    let hash = request_hash(lease_id, req.verdict, reason);
    match record(state, user, lease_id, req.verdict, reason, &key, &hash).await {
        Ok(r) => Ok(r),
        // A concurrent twin (same key, same request) may have won the
        // race: its result is this one's too.
        Err(e) if e.client_kind() == Some(ClientKind::Conflict) => {
            match previous(&state.db.conn, user.id, &key, &hash).await? {
                Some(Ok(r)) => Ok(r),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The review a key already names, real or gold: `Ok` for the same
/// request, `Err` for a different one.
async fn previous(
    conn: &impl ConnectionTrait,
    reviewer: i64,
    key: &str,
    hash: &str,
) -> Result<Option<std::result::Result<api::GivenReview, Error>>> {
    let reused = || {
        Error::conflict(
            "idempotency-key-reused",
            "this idempotency key was used for a different review",
        )
    };
    if let Some(prev) = review::Entity::find()
        .filter(review::Column::ReviewerId.eq(reviewer))
        .filter(review::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?
    {
        if prev.request_hash != hash {
            return Ok(Some(Err(reused())));
        }
        return Ok(Some(Ok(given(&prev))));
    }
    if let Some(prev) = gold::previous(conn, reviewer, key).await? {
        if prev.request_hash != hash {
            return Ok(Some(Err(reused())));
        }
        let item_id = review_lease::Entity::find_by_id(prev.lease_id)
            .one(conn)
            .await?
            .map_or(0, |l| l.item_id);
        return Ok(Some(Ok(gold::given(&prev, item_id))));
    }
    Ok(None)
}

fn given(r: &review::Model) -> api::GivenReview {
    api::GivenReview {
        id: r.id,
        lease_id: r.lease_id,
        project_id: r.project_id,
        item_id: r.item_id,
        verdict: parse_verdict(&r.verdict),
        reason: r.reason.clone(),
        created_at: Timestamp(r.created_at),
    }
}

/// Pays a reviewer the bounty's review reward, once per review `key`.
async fn pay(
    conn: &impl ConnectionTrait,
    p: &Project,
    item_id: i64,
    reviewer_id: i64,
    key: &str,
) -> Result<()> {
    if p.row.review_reward > 0 {
        ledger::payments::pay_review(
            conn,
            p.row.id,
            Some(item_id),
            reviewer_id,
            sahel_protocol::Micros(p.row.review_reward),
            key,
        )
        .await?;
    }
    Ok(())
}

async fn record(
    state: &AppState,
    user: &AuthUser,
    lease_id: i64,
    verdict: Verdict,
    reason: Option<&str>,
    key: &str,
    hash: &str,
) -> Result<api::GivenReview> {
    let tx = state.db.write().await?;
    if let Some(prev) = previous(&*tx, user.id, key, hash).await? {
        return prev;
    }
    let l = review_lease::Entity::find_by_id(lease_id)
        .one(&*tx)
        .await?
        .filter(|l| l.reviewer_id == user.id)
        .ok_or_else(|| {
            Error::not_found(
                "review-lease-not-found",
                format!("you have no review lease {lease_id}"),
            )
        })?;
    lock_reviews(&*tx, l.project_id).await?;
    let now = now_ms();
    match l.status.as_str() {
        "submitted" => {
            return Err(Error::conflict(
                "review-lease-used",
                "this review lease already has a review",
            ));
        }
        "released" => {
            return Err(Error::gone(
                "review-lease-released",
                "this review lease was released",
            ));
        }
        _ if l.expires_at < now => {
            return Err(Error::gone(
                "review-lease-expired",
                "this review lease expired; lease a review again",
            ));
        }
        _ => {}
    }
    let p = projects::get(&*tx, l.project_id).await?;
    if p.status() == ProjectStatus::Closed {
        return Err(Error::conflict(
            "project-closed",
            "this project was closed by its buyer",
        ));
    }
    if let Some(g) = l.gold_review_id {
        let r = gold::record(&*tx, &p, &l, g, verdict, reason, key, hash, now).await?;
        tx.commit().await?;
        return Ok(r);
    }
    let a = answer::Entity::find_by_id(l.answer_id)
        .one(&*tx)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("answer {} of review lease {} vanished", l.answer_id, l.id)
        })?;
    if a.status != "pending_review" {
        return Err(Error::conflict(
            "answer-already-decided",
            "this answer has all its reviews already",
        ));
    }
    review_lease::Entity::update_many()
        .col_expr(review_lease::Column::Status, Expr::value("submitted"))
        .filter(review_lease::Column::Id.eq(l.id))
        .exec(&*tx)
        .await?;
    let inserted = review::ActiveModel {
        lease_id: Set(l.id),
        project_id: Set(l.project_id),
        item_id: Set(l.item_id),
        answer_id: Set(l.answer_id),
        reviewer_id: Set(user.id),
        verdict: Set(verdict_str(verdict).into()),
        reason: Set(reason.map(str::to_owned)),
        idempotency_key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&*tx)
    .await;
    let r = match inserted {
        Ok(r) => r,
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::conflict(
                "already-reviewed",
                "you already reviewed this answer",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let verdicts: Vec<String> = review::Entity::find()
        .select_only()
        .column(review::Column::Verdict)
        .filter(review::Column::AnswerId.eq(a.id))
        .into_tuple()
        .all(&*tx)
        .await?;
    let (mut outcome, mut completed) = (Outcome::Pending, false);
    if verdicts.len() >= p.row.reviews_per_answer.max(1) as usize {
        let accepts = verdicts.iter().filter(|v| *v == "accept").count();
        let accepted = 2 * accepts > verdicts.len();
        (outcome, completed) = decide_answer(&*tx, &p, &a, accepted, now).await?;
    }
    gold::count_review(&*tx, p.row.id, user.id, None, now).await?;
    pay(&*tx, &p, l.item_id, user.id, &r.id.to_string()).await?;
    tx.commit().await?;
    let q = &state.queue;
    let told = match outcome {
        Outcome::Pending => Ok(()),
        Outcome::NeedMore(n) => q.set_needed(l.project_id, l.item_id, Some(n)).await,
        Outcome::Closed => q.set_needed(l.project_id, l.item_id, None).await,
    };
    if let Err(e) = told {
        tracing::warn!(error = %e, "queue update after a review failed");
    }
    if completed {
        crate::queue::forget(&**q, l.project_id).await;
    }
    Ok(given(&r))
}

/// Applies the reviews' verdict on one answer, then settles its item:
/// resolved at `overlap` accepted answers, one more slot after a
/// rejection, or closed at the cap with nothing left to review. Says too
/// whether that completed the bounty.
async fn decide_answer(
    conn: &impl ConnectionTrait,
    p: &Project,
    a: &answer::Model,
    accepted: bool,
    now: i64,
) -> Result<(Outcome, bool)> {
    let reward = p.row.reward;
    answer::Entity::update_many()
        .col_expr(
            answer::Column::Status,
            Expr::value(if accepted { "accepted" } else { "rejected" }),
        )
        .col_expr(
            answer::Column::Paid,
            Expr::value(if accepted { reward } else { 0 }),
        )
        .col_expr(answer::Column::DecidedAt, Expr::value(now))
        .filter(answer::Column::Id.eq(a.id))
        .exec(conn)
        .await?;
    let it = item::Entity::find_by_id(a.item_id)
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item {} vanished", a.item_id))?;
    let (mut outcome, mut completed) = (Outcome::Pending, false);
    if it.status == "open" {
        let overlap = p.row.overlap as usize;
        let answers = answer::Entity::find()
            .filter(answer::Column::ItemId.eq(it.id))
            .order_by_asc(answer::Column::Id)
            .all(conn)
            .await?;
        let kept: Vec<&answer::Model> = answers.iter().filter(|x| x.status == "accepted").collect();
        let waiting = answers
            .iter()
            .filter(|x| x.status == "pending_review")
            .count();
        let result = || {
            let accepted: Vec<Value> = kept
                .iter()
                .map(|x| serde_json::from_str::<Value>(&x.payload).unwrap_or(Value::Null))
                .collect();
            json!({
                "answer": p.schema.reviewed_result(&accepted),
                "answer_ids": kept.iter().map(|x| x.id).collect::<Vec<_>>(),
                "answers": answers.len(),
            })
            .to_string()
        };
        if kept.len() >= overlap {
            close_item(conn, it.id, "resolved", Some(result()), now).await?;
            outcome = Outcome::Closed;
        } else if !accepted && it.needed < p.row.max_answers {
            let needed = it.needed + 1;
            item::Entity::update_many()
                .col_expr(item::Column::Needed, Expr::value(needed))
                .filter(item::Column::Id.eq(it.id))
                .exec(conn)
                .await?;
            outcome = Outcome::NeedMore(needed as u32);
        } else if waiting == 0 && it.answers_count >= it.needed {
            close_item(conn, it.id, "no_consensus", Some(result()), now).await?;
            outcome = Outcome::Closed;
        }
        if outcome == Outcome::Closed {
            review_lease::Entity::update_many()
                .col_expr(review_lease::Column::Status, Expr::value("released"))
                .filter(review_lease::Column::ItemId.eq(it.id))
                .filter(review_lease::Column::Status.eq("open"))
                .exec(conn)
                .await?;
            completed = projects::complete_if_done(conn, p.row.id).await?;
        }
    }
    if accepted {
        ledger::payments::pay_reviewed_answer(conn, p.row.id, a.item_id, a.id, a.user_id, reward)
            .await?;
    }
    Ok((outcome, completed))
}

/// Reviews given on one answer, oldest first (for tests and reports).
/// The latest reviews of `user_id`'s answers, newest first: how a
/// contributor learns why an answer was rejected.
pub async fn reviews_of_author(
    conn: &impl ConnectionTrait,
    user_id: i64,
    limit: u64,
) -> Result<Vec<api::Review>> {
    let mine: Vec<answer::Model> = answer::Entity::find()
        .filter(answer::Column::UserId.eq(user_id))
        .filter(
            answer::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(review::Column::AnswerId)
                    .from(review::Entity)
                    .to_owned(),
            ),
        )
        .order_by_desc(answer::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    let status: std::collections::HashMap<i64, AnswerStatus> =
        mine.iter().map(|a| (a.id, status_of(a))).collect();
    let rows = review::Entity::find()
        .filter(review::Column::AnswerId.is_in(status.keys().copied().collect::<Vec<_>>()))
        .order_by_desc(review::Column::Id)
        .all(conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| to_api(r, status[&r.answer_id]))
        .collect())
}

/// Of `items`, those on which `user` has held a review lease: having
/// seen (and perhaps rejected) another contributor's answer there, they may
/// not answer the item themselves.
pub async fn reviewed_items(
    conn: &impl ConnectionTrait,
    user: i64,
    items: &[i64],
) -> Result<Vec<i64>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    Ok(review_lease::Entity::find()
        .select_only()
        .column(review_lease::Column::ItemId)
        .filter(review_lease::Column::ReviewerId.eq(user))
        .filter(review_lease::Column::ItemId.is_in(items.to_vec()))
        .distinct()
        .into_tuple()
        .all(conn)
        .await?)
}

pub async fn reviews_of(conn: &impl ConnectionTrait, answer_id: i64) -> Result<Vec<review::Model>> {
    Ok(review::Entity::find()
        .filter(review::Column::AnswerId.eq(answer_id))
        .order_by_asc(review::Column::Id)
        .all(conn)
        .await?)
}

/// How many reviews a bounty has received.
pub async fn count(conn: &impl ConnectionTrait, project_id: i64) -> Result<u64> {
    Ok(review::Entity::find()
        .filter(review::Column::ProjectId.eq(project_id))
        .count(conn)
        .await?)
}

/// Checks a file-collection answer's artifact before the answer is
/// stored: it exists and fits the schema's `accept` types and `max_bytes`
/// (an upload made without naming the bounty was not held to them).
/// That it is the author's own upload is checked when it is linked
/// (`artifacts::link_answer`).
pub async fn check_answer_artifacts(
    conn: &impl ConnectionTrait,
    p: &Project,
    _user_id: i64,
    answer: &Value,
) -> Result<()> {
    if p.schema.task_type() != api::TaskType::FileCollection {
        return Ok(());
    }
    let Some(sha) = answer.get("artifact").and_then(Value::as_str) else {
        return Err(Error::invalid(
            "invalid-answer",
            "a file-collection answer names its artifact",
        ));
    };
    let Some(a) = crate::artifacts::find(conn, sha).await? else {
        return Err(Error::invalid(
            "unknown-artifact",
            format!(
                "artifact {sha} does not exist; upload the file first (POST /api/v1/artifacts)"
            ),
        ));
    };
    let schema = p.schema.to_json();
    let max = schema
        .get("max_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if a.size as u64 > max {
        return Err(Error::invalid(
            "artifact-too-large",
            format!(
                "the file has {} bytes; this bounty takes at most {max}",
                a.size
            ),
        ));
    }
    let accept: Vec<&str> = schema
        .get("accept")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !accept.is_empty()
        && !accept
            .iter()
            .any(|pat| crate::artifacts::store::media_type_matches(pat, &a.media_type))
    {
        return Err(Error::invalid(
            "artifact-type-refused",
            format!(
                "the file is {}; this bounty takes {}",
                a.media_type,
                accept.join(", ")
            ),
        ));
    }
    Ok(())
}
