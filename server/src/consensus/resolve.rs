//! Applies consensus decisions inside the submitting transaction: the
//! items' status, every answer's verdict, and the payment of accepted
//! answers from escrow commit together or not at all.
//!
//! Decisions are written set-wise: however many items a batch of answers
//! completes, their answers, items, leases and payments cost a fixed
//! number of statements (on SQLite each statement is a round trip made
//! while holding the one write gate).

use std::collections::HashMap;

use sea_orm::sea_query::{CaseStatement, Expr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use super::{Decision, Vote, decide, quality};
use crate::db::{now_ms, shape};
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

/// Gives decided answers their verdict in one statement: the accepted
/// paid `reward`, the rejected nothing. Returns the rows as updated.
async fn set_answers(
    conn: &impl ConnectionTrait,
    (accepted, rejected): (&[i64], &[i64]),
    reward: i64,
    now: i64,
) -> Result<Vec<answer::Model>> {
    if accepted.is_empty() && rejected.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let is_accepted = || shape::any_of(backend, answer::Column::Id, accepted.iter().copied());
    let status = CaseStatement::new()
        .case(is_accepted(), Expr::val("accepted"))
        .finally(Expr::val("rejected"));
    let paid = CaseStatement::new()
        .case(is_accepted(), Expr::val(reward))
        .finally(Expr::val(0i64));
    Ok(answer::Entity::update_many()
        .col_expr(answer::Column::Status, status.into())
        .col_expr(answer::Column::Paid, paid.into())
        .col_expr(answer::Column::DecidedAt, Expr::value(now))
        .filter(shape::any_of(
            backend,
            answer::Column::Id,
            accepted.iter().chain(rejected).copied(),
        ))
        .exec_with_returning(conn)
        .await?)
}

/// Decides each of `items` (the rows as just updated by the submissions)
/// that has all the answers it needs, under the bounty's quality settings
/// (`settings`, read by the caller). One outcome per item, in order, and
/// the answers given a verdict, as updated.
pub async fn resolve_items(
    conn: &impl ConnectionTrait,
    p: &Project,
    settings: Option<&quality::entity::settings::Model>,
    items: &[item::Model],
) -> Result<Resolved> {
    resolve(conn, p, settings, items, false).await
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
    let resolved = resolve(conn, p, settings.as_ref(), std::slice::from_ref(&it), true).await?;
    Ok(resolved
        .outcomes
        .into_iter()
        .next()
        .unwrap_or(Outcome::Pending))
}

/// What deciding a bounty's items did: each item's outcome, the answers
/// given their verdict, and whether the last open item closed (the
/// bounty completed, in the caller's transaction).
pub struct Resolved {
    pub outcomes: Vec<Outcome>,
    pub decided: Vec<answer::Model>,
    pub completed: bool,
}

/// The writes that decisions ask for, gathered over many items.
#[derive(Default)]
struct Writes {
    accepted: Vec<i64>,
    rejected: Vec<i64>,
    need_more: Vec<(i64, u32)>,
    closed: Vec<(i64, &'static str, Option<String>)>,
    payments: Vec<ledger::payments::ItemPayment>,
}

async fn resolve(
    conn: &impl ConnectionTrait,
    p: &Project,
    settings: Option<&quality::entity::settings::Model>,
    items: &[item::Model],
    early: bool,
) -> Result<Resolved> {
    let ready = |it: &item::Model| it.status == "open" && (early || it.answers_count >= it.needed);
    let ids: Vec<i64> = items
        .iter()
        .filter(|it| ready(it))
        .map(|it| it.id)
        .collect();
    if ids.is_empty() {
        return Ok(Resolved {
            outcomes: vec![Outcome::Pending; items.len()],
            decided: Vec::new(),
            completed: false,
        });
    }
    // Every answer of the items, their status checked here: with a status
    // in the query, PostgreSQL (on statistics of a table that grew since
    // it last looked) took the project-status index by its second column
    // and visited every pending answer's row, 2 ms a batch, instead of the
    // few answers of each item.
    let mut pending: HashMap<i64, Vec<answer::Model>> = HashMap::new();
    for a in answer::Entity::find()
        .filter(shape::any_of(
            conn.get_database_backend(),
            answer::Column::ItemId,
            ids,
        ))
        .order_by_asc(answer::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .filter(|a| a.status == "pending")
    {
        pending.entry(a.item_id).or_default().push(a);
    }
    let mut w = Writes::default();
    let mut outcomes = Vec::with_capacity(items.len());
    for it in items {
        if !ready(it) {
            outcomes.push(Outcome::Pending);
            continue;
        }
        let rows = pending.remove(&it.id).unwrap_or_default();
        let votes: Vec<Vote> = rows
            .iter()
            .map(|a| Vote {
                answer_id: a.id,
                answer: serde_json::from_str(&a.payload).unwrap_or_default(),
            })
            .collect();
        // Bounties with quality settings are decided by the engine; the
        // others keep the plurality vote.
        let decision = match settings {
            Some(s) => quality::decide(conn, p, s, &rows).await?,
            None => decide(&p.schema, &votes, p.row.max_answers as u32),
        };
        outcomes.push(match decision {
            // Reviews decide these answers, one at a time (`review.rs`).
            Decision::AwaitReview => Outcome::Pending,
            Decision::NeedMore { .. } if early => Outcome::Pending,
            Decision::NeedMore { needed } => {
                w.need_more.push((it.id, needed));
                Outcome::NeedMore(needed)
            }
            Decision::Resolved {
                result,
                accepted,
                rejected,
                agreement,
                confidence,
            } => {
                let mut stored =
                    json!({ "answer": result, "agreement": agreement, "answers": votes.len() });
                if let Some(c) = confidence {
                    stored["confidence"] = json!(c);
                }
                w.closed.push((it.id, "resolved", Some(stored.to_string())));
                // Under the engine the decided class may have no answer at
                // all (every answer came from contributors known to
                // invert); then nobody is paid.
                if !accepted.is_empty() {
                    w.payments.push(ledger::payments::ItemPayment {
                        item_id: it.id,
                        payees: rows
                            .iter()
                            .filter(|a| accepted.contains(&a.id))
                            .map(|a| a.user_id)
                            .collect(),
                        answer_ids: accepted.clone(),
                    });
                }
                w.accepted.extend(accepted);
                w.rejected.extend(rejected);
                Outcome::Closed
            }
            Decision::NoConsensus { rejected } => {
                w.rejected.extend(rejected);
                w.closed.push((it.id, "no_consensus", None));
                Outcome::Closed
            }
        });
    }
    let (decided, completed) = apply(conn, p, w).await?;
    Ok(Resolved {
        outcomes,
        decided,
        completed,
    })
}

/// Writes the gathered decisions, in the lock order every money
/// transaction keeps (answers, items, leases, project, accounts), so
/// closing a bounty never deadlocks with a payment.
/// Returns the decided answers and whether the bounty completed.
async fn apply(
    conn: &impl ConnectionTrait,
    p: &Project,
    w: Writes,
) -> Result<(Vec<answer::Model>, bool)> {
    let now = now_ms();
    let decided = set_answers(conn, (&w.accepted, &w.rejected), p.row.reward, now).await?;
    if !w.need_more.is_empty() {
        let mut needed = CaseStatement::new();
        for (id, n) in &w.need_more {
            needed = needed.case(item::Column::Id.eq(*id), Expr::val(*n as i32));
        }
        item::Entity::update_many()
            .col_expr(
                item::Column::Needed,
                needed.finally(Expr::col(item::Column::Needed)).into(),
            )
            .filter(item::Column::Id.is_in(w.need_more.iter().map(|(id, _)| *id)))
            .exec(conn)
            .await?;
    }
    let mut completed = false;
    if !w.closed.is_empty() {
        close_items(conn, &w.closed, now).await?;
        completed = projects::complete_if_done(conn, p.row.id).await?;
    }
    ledger::payments::pay_answers(conn, p.row.id, &w.payments, p.row.reward).await?;
    Ok((decided, completed))
}

/// Closes an item with its status and stored result.
pub(crate) async fn close_item(
    conn: &impl ConnectionTrait,
    item_id: i64,
    status: &'static str,
    result: Option<String>,
    now: i64,
) -> Result<()> {
    close_items(conn, &[(item_id, status, result)], now).await
}

/// Closes items, each with its status and stored result, in two statements.
async fn close_items(
    conn: &impl ConnectionTrait,
    closed: &[(i64, &'static str, Option<String>)],
    now: i64,
) -> Result<()> {
    let backend = conn.get_database_backend();
    let status: Vec<(i64, sea_orm::Value)> =
        closed.iter().map(|(id, s, _)| (*id, (*s).into())).collect();
    let result: Vec<(i64, sea_orm::Value)> = closed
        .iter()
        .map(|(id, _, r)| (*id, r.clone().into()))
        .collect();
    let ids = || closed.iter().map(|(id, _, _)| *id);
    let per_item = |values: &[(i64, sea_orm::Value)], col: item::Column| {
        shape::per_id(backend, item::Column::Id, values, "text", Expr::col(col))
    };
    item::Entity::update_many()
        .col_expr(
            item::Column::Status,
            per_item(&status, item::Column::Status),
        )
        .col_expr(
            item::Column::Result,
            per_item(&result, item::Column::Result),
        )
        .col_expr(item::Column::ResolvedAt, Expr::value(now))
        .filter(shape::any_of(backend, item::Column::Id, ids()))
        .exec(conn)
        .await?;
    // A closed item has no use for leases; any left (a holder whose lease
    // lapsed just as the last answer came) end with it.
    lease::Entity::update_many()
        .col_expr(lease::Column::Status, Expr::value("released"))
        .filter(shape::any_of(backend, lease::Column::ItemId, ids()))
        .filter(lease::Column::Status.eq("open"))
        .exec(conn)
        .await?;
    Ok(())
}
