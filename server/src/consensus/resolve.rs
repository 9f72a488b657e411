//! Applies a consensus decision inside the submitting transaction: the
//! item's status, every answer's verdict, and the payment of accepted
//! answers from escrow commit together or not at all.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::{Decision, Vote, decide, quality};
use crate::db::now_ms;
use crate::error::Result;
use crate::ledger;
use crate::projects::entity::item;
use crate::projects::{self, Project};
use crate::queue::entity::{answer, lease};

/// What happened to the item, for the queue to mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still collecting its answers.
    Pending,
    /// Tied; now needs this many answers in all.
    NeedMore(u32),
    /// Resolved, or closed without consensus.
    Closed,
}

async fn set_answers(
    conn: &impl ConnectionTrait,
    ids: &[i64],
    status: &str,
    paid: i64,
    now: i64,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    answer::Entity::update_many()
        .col_expr(answer::Column::Status, Expr::value(status))
        .col_expr(answer::Column::Paid, Expr::value(paid))
        .col_expr(answer::Column::DecidedAt, Expr::value(now))
        .filter(answer::Column::Id.is_in(ids.to_vec()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Decides `it` (the item row as just updated by the submission) if it has
/// all the answers it needs, under the bounty's quality settings
/// (`settings`, read by the caller).
pub async fn resolve_item(
    conn: &impl ConnectionTrait,
    p: &Project,
    settings: Option<&quality::entity::settings::Model>,
    it: &item::Model,
) -> Result<Outcome> {
    resolve(conn, p, settings, it, false).await
}

/// Resolves an open item if the quality engine's current model settles it
/// already, before it has the answers it waits for (the background
/// re-estimation calls this). Otherwise changes nothing.
pub async fn resolve_early(
    conn: &impl ConnectionTrait,
    p: &Project,
    item_id: i64,
) -> Result<Outcome> {
    let Some(it) = item::Entity::find_by_id(item_id).one(conn).await? else {
        return Ok(Outcome::Pending);
    };
    let settings = quality::settings(conn, p.row.id).await?;
    resolve(conn, p, settings.as_ref(), &it, true).await
}

async fn resolve(
    conn: &impl ConnectionTrait,
    p: &Project,
    settings: Option<&quality::entity::settings::Model>,
    it: &item::Model,
    early: bool,
) -> Result<Outcome> {
    let item_id = it.id;
    if it.status != "open" || (!early && it.answers_count < it.needed) {
        return Ok(Outcome::Pending);
    }
    let rows = answer::Entity::find()
        .filter(answer::Column::ItemId.eq(item_id))
        .filter(answer::Column::Status.eq("pending"))
        .all(conn)
        .await?;
    let votes: Vec<Vote> = rows
        .iter()
        .map(|a| Vote {
            answer_id: a.id,
            answer: serde_json::from_str(&a.payload).unwrap_or_default(),
        })
        .collect();
    let now = now_ms();
    // Bounties with quality settings are decided by the engine; the others
    // keep the plurality vote.
    let decision = match settings {
        Some(s) => quality::decide(conn, p, s, &rows).await?,
        None => decide(&p.schema, &votes, p.row.max_answers as u32),
    };
    match decision {
        // Reviews decide these answers, one at a time (`review.rs`).
        Decision::AwaitReview => Ok(Outcome::Pending),
        Decision::NeedMore { .. } if early => Ok(Outcome::Pending),
        Decision::NeedMore { needed } => {
            item::Entity::update_many()
                .col_expr(item::Column::Needed, Expr::value(needed as i32))
                .filter(item::Column::Id.eq(item_id))
                .exec(conn)
                .await?;
            Ok(Outcome::NeedMore(needed))
        }
        Decision::Resolved {
            result,
            accepted,
            rejected,
            agreement,
            confidence,
        } => {
            let reward = p.row.reward;
            set_answers(conn, &accepted, "accepted", reward, now).await?;
            set_answers(conn, &rejected, "rejected", 0, now).await?;
            let mut stored =
                json!({ "answer": result, "agreement": agreement, "answers": votes.len() });
            if let Some(c) = confidence {
                stored["confidence"] = json!(c);
            }
            close_item(conn, item_id, "resolved", Some(stored.to_string()), now).await?;
            // The project before the ledger: every money transaction locks
            // in one order (leases, items, project, chain head, accounts),
            // so closing a bounty never deadlocks with a payment.
            projects::complete_if_done(conn, p.row.id).await?;
            // Under the engine the decided class may have no answer at all
            // (every answer came from contributors known to invert); then
            // nobody is paid.
            if !accepted.is_empty() {
                let payees: Vec<i64> = rows
                    .iter()
                    .filter(|a| accepted.contains(&a.id))
                    .map(|a| a.user_id)
                    .collect();
                ledger::payments::pay_answers(conn, p.row.id, item_id, &accepted, &payees, reward)
                    .await?;
            }
            Ok(Outcome::Closed)
        }
        Decision::NoConsensus { rejected } => {
            set_answers(conn, &rejected, "rejected", 0, now).await?;
            close_item(conn, item_id, "no_consensus", None, now).await?;
            projects::complete_if_done(conn, p.row.id).await?;
            Ok(Outcome::Closed)
        }
    }
}

pub(crate) async fn close_item(
    conn: &impl ConnectionTrait,
    item_id: i64,
    status: &str,
    result: Option<String>,
    now: i64,
) -> Result<()> {
    item::Entity::update_many()
        .col_expr(item::Column::Status, Expr::value(status))
        .col_expr(item::Column::Result, Expr::value(result))
        .col_expr(item::Column::ResolvedAt, Expr::value(now))
        .filter(item::Column::Id.eq(item_id))
        .exec(conn)
        .await?;
    // A closed item has no use for leases; any left (a holder whose lease
    // lapsed just as the last answer came) end with it.
    lease::Entity::update_many()
        .col_expr(lease::Column::Status, Expr::value("released"))
        .filter(lease::Column::ItemId.eq(item_id))
        .filter(lease::Column::Status.eq("open"))
        .exec(conn)
        .await?;
    Ok(())
}
