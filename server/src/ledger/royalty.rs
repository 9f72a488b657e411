//! Royalties: every licensed use of a dataset charges the licensee and
//! credits the dataset's pool; rounds split the pool among the people whose
//! accepted work is in the dataset.
//!
//! The split rule ([`split`]): each use's pool amount is divided in
//! proportion to the contributors' weights (the rewards of their accepted
//! answers and reviews in the snapshot), in integer micro-units: everyone
//! gets the floor of their exact share, and the micro-units left over go one
//! each to the largest remainders, ties to the lower account id. The parts
//! always sum exactly to the amount.
//!
//! Distribution is batched, never one query per contributor per use: a use
//! only appends a row. A round ([`run_once`]) freezes the uses waiting for a
//! dataset, groups them by pool amount (a dataset's uses have few distinct
//! amounts: one per page size, one for exports), splits each distinct amount
//! once, multiplies by its count, and stores one allocation per
//! contributor. That is exactly the sum of splitting every use on its own.
//! Later steps pay the allocations in batches of [`PAY_BATCH`] contributors,
//! one ledger transaction each.

use std::collections::BTreeMap;

use sahel_protocol::Micros;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::entity::{royalty_allocation, royalty_round};
use super::payments::fee_of;
use super::{AccountRef, Posted, post};
use crate::datasets::entity::{contributor, usage};
use crate::db::{Db, now_ms};
use crate::error::Result;

/// Contributors paid per ledger transaction of a round.
pub const PAY_BATCH: usize = 1000;

/// Splits `amount` by `weights` (`(account id, weight)`, weights > 0) with
/// the largest-remainder rule; ties go to the lower account id. Returns the
/// parts in the order of `weights`; they sum to `amount` exactly.
pub fn split(amount: i64, weights: &[(i64, i64)]) -> Vec<i64> {
    let total: i128 = weights.iter().map(|(_, w)| *w as i128).sum();
    if weights.is_empty() || total <= 0 || amount <= 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: i128 = 0;
    for (i, (id, w)) in weights.iter().enumerate() {
        let exact = amount as i128 * *w as i128;
        let floor = exact / total;
        given += floor;
        parts.push(floor as i64);
        rems.push((exact % total, *id, i));
    }
    let left = (amount as i128 - given) as usize;
    if left > 0 {
        // Only the `left` largest matter: select them without a full sort.
        let cmp =
            |a: &(i128, i64, usize), b: &(i128, i64, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if left < rems.len() {
            rems.select_nth_unstable_by(left - 1, cmp);
        }
        for r in &rems[..left] {
            parts[r.2] += 1;
        }
    }
    parts
}

/// The charge of one use, divided: platform fee first, then the original
/// buyer's share of the rest, then the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub amount: i64,
    pub fee: i64,
    pub buyer_share: i64,
    pub pool: i64,
}

pub fn divide_charge(amount: i64, fee_bps: i32, buyer_share_bps: i32) -> Charge {
    let fee = fee_of(amount, fee_bps);
    let buyer_share = fee_of(amount - fee, buyer_share_bps);
    Charge {
        amount,
        fee,
        buyer_share,
        pool: amount - fee - buyer_share,
    }
}

/// Charges a licensee for one use inside the caller's transaction: the
/// licensee pays, the fee account, the original buyer and the dataset's
/// pool are credited. `memo` names the dataset and the use.
pub async fn charge_use(
    conn: &impl ConnectionTrait,
    dataset_id: i64,
    buyer_id: i64,
    licensee_id: i64,
    amount: i64,
    memo: serde_json::Value,
    ledger_key: String,
) -> Result<(Posted, Charge)> {
    let s = super::settings(conn).await?;
    let c = divide_charge(amount, s.fee_bps, s.royalty_buyer_share_bps);
    let mut postings = vec![(AccountRef::User(licensee_id), Micros(-c.amount))];
    if c.fee > 0 {
        postings.push((AccountRef::Fee, Micros(c.fee)));
    }
    if c.buyer_share > 0 {
        postings.push((AccountRef::User(buyer_id), Micros(c.buyer_share)));
    }
    if c.pool > 0 {
        postings.push((AccountRef::RoyaltyPool(dataset_id), Micros(c.pool)));
    }
    let posted = post(conn, "royalty_charge", memo, Some(ledger_key), &postings).await?;
    Ok((posted, c))
}

/// What one [`run_once`] step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Froze the waiting uses of a dataset into a round and allocated them.
    Opened {
        round: i64,
        uses: i64,
        payees: usize,
    },
    /// Paid a batch of a round's allocations.
    Paid { round: i64, payees: usize },
    /// Nothing to do.
    Idle,
}

#[derive(FromQueryResult)]
struct AmountCount {
    pool_amount: i64,
    n: i64,
}

#[derive(FromQueryResult)]
struct Waiting {
    dataset_id: i64,
    first: Option<i64>,
    last: Option<i64>,
}

/// One step of royalty distribution, in one database transaction: pay the
/// next batch of an open round, or else open a round for a dataset with
/// waiting uses. Idempotent and safe to run from several servers (the
/// round's cursor row and the pool balance are updated conditionally).
pub async fn run_once(db: &Db) -> Result<Step> {
    let tx = db.write().await?;
    if let Some(r) = royalty_round::Entity::find()
        .filter(royalty_round::Column::Status.eq("paying"))
        .order_by_asc(royalty_round::Column::Id)
        .one(&*tx)
        .await?
    {
        let batch = royalty_allocation::Entity::find()
            .filter(royalty_allocation::Column::RoundId.eq(r.id))
            .filter(royalty_allocation::Column::UserId.gt(r.cursor_user_id))
            .order_by_asc(royalty_allocation::Column::UserId)
            .limit(PAY_BATCH as u64)
            .all(&*tx)
            .await?;
        let paid: i64 = batch.iter().map(|a| a.amount).sum();
        let last_user = batch.last().map_or(r.cursor_user_id, |a| a.user_id);
        let done = batch.len() < PAY_BATCH;
        let moved = royalty_round::Entity::update_many()
            .col_expr(royalty_round::Column::CursorUserId, Expr::value(last_user))
            .col_expr(
                royalty_round::Column::PaidTotal,
                Expr::col(royalty_round::Column::PaidTotal).add(paid),
            )
            .col_expr(
                royalty_round::Column::Status,
                Expr::value(if done { "done" } else { "paying" }),
            )
            .filter(royalty_round::Column::Id.eq(r.id))
            .filter(royalty_round::Column::CursorUserId.eq(r.cursor_user_id))
            .exec(&*tx)
            .await?;
        if moved.rows_affected != 1 {
            return Ok(Step::Paid {
                round: r.id,
                payees: 0,
            });
        }
        if let (Some(first), Some(_)) = (batch.first(), batch.last()) {
            let mut postings = Vec::with_capacity(batch.len() + 1);
            postings.push((AccountRef::RoyaltyPool(r.dataset_id), Micros(-paid)));
            postings.extend(
                batch
                    .iter()
                    .map(|a| (AccountRef::User(a.user_id), Micros(a.amount))),
            );
            post(
                &*tx,
                "royalty",
                json!({
                    "dataset_id": r.dataset_id,
                    "round": r.id,
                    "uses": r.uses,
                    "first_use_id": r.first_use_id,
                    "last_use_id": r.last_use_id,
                }),
                Some(format!("royalty:{}:{}", r.id, first.user_id)),
                &postings,
            )
            .await?;
        }
        tx.commit().await?;
        return Ok(Step::Paid {
            round: r.id,
            payees: batch.len(),
        });
    }

    let Some(w) = usage::Entity::find()
        .select_only()
        .column(usage::Column::DatasetId)
        .column_as(usage::Column::Id.min(), "first")
        .column_as(usage::Column::Id.max(), "last")
        .filter(usage::Column::RoundId.is_null())
        .filter(usage::Column::PoolAmount.gt(0))
        .group_by(usage::Column::DatasetId)
        .order_by_asc(usage::Column::DatasetId)
        .into_model::<Waiting>()
        .one(&*tx)
        .await?
    else {
        return Ok(Step::Idle);
    };
    let (Some(first), Some(last)) = (w.first, w.last) else {
        return Ok(Step::Idle);
    };
    let scope = || {
        usage::Entity::find()
            .filter(usage::Column::DatasetId.eq(w.dataset_id))
            .filter(usage::Column::RoundId.is_null())
            .filter(usage::Column::PoolAmount.gt(0))
            .filter(usage::Column::Id.lte(last))
    };
    let groups: Vec<AmountCount> = scope()
        .select_only()
        .column(usage::Column::PoolAmount)
        .column_as(usage::Column::Id.count(), "n")
        .group_by(usage::Column::PoolAmount)
        .into_model()
        .all(&*tx)
        .await?;
    let weights: Vec<(i64, i64)> = contributor::Entity::find()
        .select_only()
        .column(contributor::Column::UserId)
        .column(contributor::Column::Weight)
        .filter(contributor::Column::DatasetId.eq(w.dataset_id))
        .filter(contributor::Column::Weight.gt(0))
        .order_by_asc(contributor::Column::UserId)
        .into_tuple()
        .all(&*tx)
        .await?;
    let mut totals = vec![0i64; weights.len()];
    let mut pool_total = 0i64;
    let mut uses = 0i64;
    for g in &groups {
        for (t, part) in totals.iter_mut().zip(split(g.pool_amount, &weights)) {
            *t += part * g.n;
        }
        pool_total += g.pool_amount * g.n;
        uses += g.n;
    }
    if weights.is_empty() || totals.iter().sum::<i64>() != pool_total {
        return Err(anyhow::anyhow!(
            "royalty split of dataset {} does not add up (no contributors?)",
            w.dataset_id
        )
        .into());
    }
    let round = royalty_round::ActiveModel {
        dataset_id: Set(w.dataset_id),
        first_use_id: Set(first),
        last_use_id: Set(last),
        uses: Set(uses),
        pool_total: Set(pool_total),
        paid_total: Set(0),
        cursor_user_id: Set(0),
        status: Set("paying".into()),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    let marked = usage::Entity::update_many()
        .col_expr(usage::Column::RoundId, Expr::value(round.id))
        .filter(usage::Column::DatasetId.eq(w.dataset_id))
        .filter(usage::Column::RoundId.is_null())
        .filter(usage::Column::PoolAmount.gt(0))
        .filter(usage::Column::Id.lte(last))
        .exec(&*tx)
        .await?;
    if marked.rows_affected as i64 != uses {
        // Another server froze some of these uses first: start again.
        return Ok(Step::Idle);
    }
    let allocations: Vec<(i64, i64)> = weights
        .iter()
        .zip(&totals)
        .filter(|(_, t)| **t > 0)
        .map(|((id, _), t)| (*id, *t))
        .collect();
    for chunk in allocations.chunks(2000) {
        royalty_allocation::Entity::insert_many(chunk.iter().map(|(user, amount)| {
            royalty_allocation::ActiveModel {
                round_id: Set(round.id),
                user_id: Set(*user),
                amount: Set(*amount),
            }
        }))
        .exec(&*tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Step::Opened {
        round: round.id,
        uses,
        payees: allocations.len(),
    })
}

/// Runs [`run_once`] until it is idle or `max_steps` were taken; returns
/// the steps taken.
pub async fn run_until_idle(db: &Db, max_steps: usize) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    while steps.len() < max_steps {
        match run_once(db).await? {
            Step::Idle => break,
            s => steps.push(s),
        }
    }
    Ok(steps)
}

#[derive(FromQueryResult)]
struct PoolRow {
    dataset_id: i64,
    waiting: Option<i64>,
}

/// Checks every royalty charge and round: each use's charge divided
/// exactly, each round's allocations summing to its uses' pool amounts,
/// and each pool holding exactly what is not paid out yet.
pub async fn audit(conn: &impl ConnectionTrait) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let bad: Vec<i64> = usage::Entity::find()
        .select_only()
        .column(usage::Column::Id)
        .filter(
            Expr::col(usage::Column::Fee)
                .add(Expr::col(usage::Column::BuyerShare))
                .add(Expr::col(usage::Column::PoolAmount))
                .ne(Expr::col(usage::Column::Amount)),
        )
        .limit(20)
        .into_tuple()
        .all(conn)
        .await?;
    for id in bad {
        problems.push(format!("use {id}: fee + buyer share + pool != charge"));
    }
    let mut owed: BTreeMap<i64, i64> = BTreeMap::new();
    let waiting: Vec<PoolRow> = usage::Entity::find()
        .select_only()
        .column(usage::Column::DatasetId)
        .column_as(
            Expr::col(usage::Column::PoolAmount).sum().cast_as("BIGINT"),
            "waiting",
        )
        .filter(usage::Column::RoundId.is_null())
        .group_by(usage::Column::DatasetId)
        .into_model()
        .all(conn)
        .await?;
    for w in waiting {
        *owed.entry(w.dataset_id).or_default() += w.waiting.unwrap_or(0);
    }
    for r in royalty_round::Entity::find().all(conn).await? {
        let allocs = royalty_allocation::Entity::find()
            .filter(royalty_allocation::Column::RoundId.eq(r.id))
            .all(conn)
            .await?;
        let total: i64 = allocs.iter().map(|a| a.amount).sum();
        let from_uses: Option<i64> = usage::Entity::find()
            .select_only()
            .column_as(
                Expr::col(usage::Column::PoolAmount).sum().cast_as("BIGINT"),
                "s",
            )
            .filter(usage::Column::RoundId.eq(r.id))
            .into_tuple()
            .one(conn)
            .await?
            .flatten();
        if total != r.pool_total || from_uses.unwrap_or(0) != r.pool_total {
            problems.push(format!(
                "round {}: allocations {} and uses {} differ from the pool total {}",
                r.id,
                total,
                from_uses.unwrap_or(0),
                r.pool_total
            ));
        }
        let unpaid: i64 = allocs
            .iter()
            .filter(|a| r.status != "done" && a.user_id > r.cursor_user_id)
            .map(|a| a.amount)
            .sum();
        if r.paid_total + unpaid != r.pool_total {
            problems.push(format!(
                "round {}: paid {} + unpaid {} != {}",
                r.id, r.paid_total, unpaid, r.pool_total
            ));
        }
        *owed.entry(r.dataset_id).or_default() += unpaid;
    }
    for (dataset, want) in owed {
        let have = super::balance(conn, AccountRef::RoyaltyPool(dataset)).await?;
        if have.0 != want {
            problems.push(format!(
                "dataset {dataset}'s pool holds {have} but {} is owed from it",
                Micros(want)
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_sums_exactly_and_breaks_ties_by_account_id() {
        // 10 among three equal weights: 3 each, the spare to the lowest id.
        assert_eq!(split(10, &[(5, 1), (7, 1), (9, 1)]), vec![4, 3, 3]);
        // Remainders: 7*1/6 = 1 r1, 7*2/6 = 2 r2, 7*3/6 = 3 r3 -> the spare to the largest.
        assert_eq!(split(7, &[(1, 1), (2, 2), (3, 3)]), vec![1, 2, 4]);
        assert_eq!(split(0, &[(1, 1)]), vec![0]);
        assert_eq!(split(5, &[]), Vec::<i64>::new());
        assert_eq!(
            split(1, &[(3, 1), (2, 1)]),
            vec![0, 1],
            "tie: lower id wins"
        );
        let weights: Vec<(i64, i64)> = (1..=1000).map(|i| (i, (i * 7919) % 97 + 1)).collect();
        for amount in [1, 999, 1_000_000, 123_456_789, i64::MAX / 4] {
            let parts = split(amount, &weights);
            assert_eq!(parts.iter().sum::<i64>(), amount);
            let total: i128 = weights.iter().map(|w| w.1 as i128).sum();
            for (p, (_, w)) in parts.iter().zip(&weights) {
                let exact = amount as i128 * *w as i128;
                assert!(
                    (*p as i128) * total <= exact + total && (*p as i128) * total >= exact - total
                );
            }
        }
    }

    #[test]
    fn batching_uses_by_amount_equals_splitting_each_use() {
        let weights = vec![(1, 3), (4, 5), (6, 7), (9, 11)];
        let uses = [17i64, 17, 5, 17, 5, 1, 1000, 17];
        let mut one_by_one = vec![0i64; 4];
        for u in uses {
            for (t, p) in one_by_one.iter_mut().zip(split(u, &weights)) {
                *t += p;
            }
        }
        let mut grouped: BTreeMap<i64, i64> = BTreeMap::new();
        for u in uses {
            *grouped.entry(u).or_default() += 1;
        }
        let mut batched = vec![0i64; 4];
        for (amount, n) in grouped {
            for (t, p) in batched.iter_mut().zip(split(amount, &weights)) {
                *t += p * n;
            }
        }
        assert_eq!(one_by_one, batched);
        assert_eq!(batched.iter().sum::<i64>(), uses.iter().sum::<i64>());
    }

    #[test]
    fn a_charge_divides_into_fee_buyer_share_and_pool_exactly() {
        let c = divide_charge(1_000, 500, 2_000);
        assert_eq!(
            c,
            Charge {
                amount: 1_000,
                fee: 50,
                buyer_share: 190,
                pool: 760
            }
        );
        for amount in [1, 3, 999, 10_001] {
            let c = divide_charge(amount, 250, 3_333);
            assert_eq!(c.fee + c.buyer_share + c.pool, amount);
            assert!(c.pool >= 0);
        }
    }
}
