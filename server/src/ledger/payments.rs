//! The money paths beyond deposits: paying accepted answers and reviews
//! (with the platform fee), refunding escrow, and locking withdrawals.
//!
//! Each is one ledger transaction with an idempotency key, written inside
//! the caller's database transaction.
//!
//! The fee rule: the fee is cut from each payment, never added on top.
//! A contributor paid `reward` receives `reward - floor(reward * fee_bps /
//! 10000)` and the fee account the rest, so escrow pays exactly `reward`
//! per accepted answer whatever the fee, and funding `overlap x items x
//! reward` still covers everything.

use sahel_protocol::api;
use sahel_protocol::settlement::Address;
use sahel_protocol::{Micros, Timestamp};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;

use super::entity::{payout_address, review_payment, withdrawal};
use super::{AccountRef, NewTx, Posted, post, post_many};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

/// The fee on `amount` at `bps` basis points, rounded down (the payee
/// keeps the fraction).
pub fn fee_of(amount: i64, bps: i32) -> i64 {
    ((amount as i128 * bps.clamp(0, 10_000) as i128) / 10_000) as i64
}

/// Checks a client idempotency key: 1 to 200 characters.
pub fn check_key(key: &str) -> Result<&str> {
    let key = key.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "invalid-idempotency-key",
            "the idempotency key must be 1 to 200 characters",
        ));
    }
    Ok(key)
}

/// The accepted answers of one resolved item, and who gave them.
#[derive(Clone, Debug)]
pub struct ItemPayment {
    pub item_id: i64,
    pub answer_ids: Vec<i64>,
    pub payees: Vec<i64>,
}

/// Pays `reward` from a project's escrow to each contributor of each
/// item's accepted answers, less the fee: one ledger transaction per item,
/// keyed by the item (an item is paid once), all posted together.
pub async fn pay_answers(
    conn: &impl ConnectionTrait,
    project_id: i64,
    items: &[ItemPayment],
    reward: i64,
) -> Result<Vec<Posted>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let fee_bps = super::settings(conn).await?.fee_bps;
    let fee = fee_of(reward, fee_bps);
    let txs: Vec<NewTx> = items
        .iter()
        .map(|it| {
            let n = it.payees.len() as i64;
            let mut postings = vec![(AccountRef::Escrow(project_id), Micros(-reward * n))];
            for u in &it.payees {
                postings.push((AccountRef::User(*u), Micros(reward - fee)));
            }
            if fee > 0 && n > 0 {
                postings.push((AccountRef::Fee, Micros(fee * n)));
            }
            NewTx {
                kind: "pay_answers",
                memo: json!({
                    "project_id": project_id,
                    "item_id": it.item_id,
                    "answer_ids": it.answer_ids,
                    "reward": reward,
                    "fee": fee,
                }),
                idempotency_key: Some(format!("resolve:{}", it.item_id)),
                postings,
            }
        })
        .collect();
    post_many(conn, &txs).await
}

/// Pays `reward` from a project's escrow for one answer accepted by
/// review, less the fee. Keyed by the answer: reviewed types accept an
/// item's answers one at a time, so the item key of [`pay_answers`] would
/// pay only the first.
pub async fn pay_reviewed_answer(
    conn: &impl ConnectionTrait,
    project_id: i64,
    item_id: i64,
    answer_id: i64,
    payee: i64,
    reward: i64,
) -> Result<Posted> {
    let fee = fee_of(reward, super::settings(conn).await?.fee_bps);
    let mut postings = vec![
        (AccountRef::Escrow(project_id), Micros(-reward)),
        (AccountRef::User(payee), Micros(reward - fee)),
    ];
    if fee > 0 {
        postings.push((AccountRef::Fee, Micros(fee)));
    }
    post(
        conn,
        "pay_answers",
        json!({
            "project_id": project_id,
            "item_id": item_id,
            "answer_ids": [answer_id],
            "reward": reward,
            "fee": fee,
            "reviewed": true,
        }),
        Some(format!("answer:{answer_id}")),
        &postings,
    )
    .await
}

/// Pays a reviewer from a project's escrow, less the fee, and records the
/// review's weight for the royalty splits of datasets published from the
/// project. `review_key` names the review (unique per review).
pub async fn pay_review(
    conn: &impl ConnectionTrait,
    project_id: i64,
    item_id: Option<i64>,
    reviewer_id: i64,
    amount: Micros,
    review_key: &str,
) -> Result<Posted> {
    if amount.0 <= 0 {
        return Err(Error::invalid(
            "invalid-amount",
            "a review payment must be positive",
        ));
    }
    let review_key = check_key(review_key)?;
    let fee = fee_of(amount.0, super::settings(conn).await?.fee_bps);
    let mut postings = vec![
        (AccountRef::Escrow(project_id), Micros(-amount.0)),
        (AccountRef::User(reviewer_id), Micros(amount.0 - fee)),
    ];
    if fee > 0 {
        postings.push((AccountRef::Fee, Micros(fee)));
    }
    let posted = post(
        conn,
        "pay_review",
        json!({
            "project_id": project_id,
            "item_id": item_id,
            "reviewer_id": reviewer_id,
            "review": review_key,
            "amount": amount,
            "fee": fee,
        }),
        Some(format!("review:{project_id}:{review_key}")),
        &postings,
    )
    .await?;
    if let Posted::New(tx) = posted {
        review_payment::ActiveModel {
            project_id: Set(project_id),
            item_id: Set(item_id),
            reviewer_id: Set(reviewer_id),
            amount: Set(amount.0),
            transaction_id: Set(tx),
            created_at: Set(now_ms()),
            ..Default::default()
        }
        .insert(conn)
        .await?;
    }
    Ok(posted)
}

/// Moves whatever is left in a project's escrow back to its buyer. Keyed by
/// the project: a bounty is refunded once.
pub async fn refund_escrow(
    conn: &impl ConnectionTrait,
    project_id: i64,
    buyer_id: i64,
    client_key: &str,
) -> Result<Micros> {
    let left = super::balance(conn, AccountRef::Escrow(project_id)).await?;
    if left.0 <= 0 {
        return Ok(Micros::ZERO);
    }
    let posted = post(
        conn,
        "refund",
        json!({ "project_id": project_id, "buyer_id": buyer_id, "request": client_key }),
        Some(format!("refund:{project_id}")),
        &[
            (AccountRef::Escrow(project_id), Micros(-left.0)),
            (AccountRef::User(buyer_id), left),
        ],
    )
    .await?;
    Ok(match posted {
        Posted::New(_) => left,
        Posted::Replayed(_) => Micros::ZERO,
    })
}

// ------------------------------------------------------------ payouts

pub fn parse_address(s: &str) -> Result<Address> {
    Address::parse(s).map_err(|e| Error::invalid("invalid-address", e.to_string()))
}

pub async fn set_payout_address(
    db: &Db,
    user_id: i64,
    req: api::SetPayoutAddress,
) -> Result<api::PayoutAddress> {
    let a = parse_address(&req.address)?;
    let now = now_ms();
    let tx = db.write().await?;
    let lower = format!("0x{}", hex::encode(a.0));
    match payout_address::Entity::find_by_id(user_id)
        .one(&*tx)
        .await?
    {
        Some(_) => {
            payout_address::Entity::update_many()
                .col_expr(
                    payout_address::Column::Address,
                    sea_orm::sea_query::Expr::value(lower),
                )
                .col_expr(
                    payout_address::Column::UpdatedAt,
                    sea_orm::sea_query::Expr::value(now),
                )
                .filter(payout_address::Column::UserId.eq(user_id))
                .exec(&*tx)
                .await?;
        }
        None => {
            payout_address::ActiveModel {
                user_id: Set(user_id),
                address: Set(lower),
                updated_at: Set(now),
            }
            .insert(&*tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(api::PayoutAddress {
        address: a.checksummed(),
        updated_at: Timestamp(now),
    })
}

pub async fn payout_address(
    conn: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Option<api::PayoutAddress>> {
    Ok(payout_address::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .and_then(|r| {
            Address::parse(&r.address).ok().map(|a| api::PayoutAddress {
                address: a.checksummed(),
                updated_at: Timestamp(r.updated_at),
            })
        }))
}

pub fn to_api_withdrawal(w: &withdrawal::Model) -> api::Withdrawal {
    api::Withdrawal {
        id: w.id,
        amount: Micros(w.amount),
        status: if w.status == "settled" {
            api::WithdrawalStatus::Settled
        } else {
            api::WithdrawalStatus::Pending
        },
        epoch: w.epoch_id,
        address: w
            .address
            .as_deref()
            .and_then(|a| Address::parse(a).ok())
            .map(|a| a.checksummed()),
        transaction_id: w.transaction_id,
        created_at: Timestamp(w.created_at),
        settled_at: w.settled_at.map(Timestamp),
    }
}

/// Locks `amount` of the user's balance in their withdrawal account until
/// a settlement epoch pays it out. Needs a payout address. Idempotent per
/// (user, key).
pub async fn request_withdrawal(
    db: &Db,
    user_id: i64,
    req: api::WithdrawalRequest,
) -> Result<api::Withdrawal> {
    let key = check_key(&req.idempotency_key)?.to_owned();
    if req.amount.0 <= 0 {
        return Err(Error::invalid(
            "invalid-amount",
            "a withdrawal must be positive",
        ));
    }
    let tx = db.write().await?;
    if let Some(prev) = withdrawal::Entity::find()
        .filter(withdrawal::Column::UserId.eq(user_id))
        .filter(withdrawal::Column::IdempotencyKey.eq(key.clone()))
        .one(&*tx)
        .await?
    {
        return if prev.amount == req.amount.0 {
            Ok(to_api_withdrawal(&prev))
        } else {
            Err(Error::conflict(
                "idempotency-key-reused",
                "this idempotency key was used for a different withdrawal",
            ))
        };
    }
    if payout_address::Entity::find_by_id(user_id)
        .one(&*tx)
        .await?
        .is_none()
    {
        return Err(Error::conflict(
            "no-payout-address",
            "set a payout address first (PUT /api/v1/me/payout-address)",
        ));
    }
    let posted = post(
        &*tx,
        "withdrawal_lock",
        json!({ "user_id": user_id, "amount": req.amount }),
        Some(format!("withdraw:{user_id}:{key}")),
        &[
            (AccountRef::User(user_id), Micros(-req.amount.0)),
            (AccountRef::Withdrawal(user_id), req.amount),
        ],
    )
    .await?;
    let w = withdrawal::ActiveModel {
        user_id: Set(user_id),
        amount: Set(req.amount.0),
        status: Set("pending".into()),
        idempotency_key: Set(key),
        transaction_id: Set(posted.id()),
        epoch_id: Set(None),
        address: Set(None),
        created_at: Set(now_ms()),
        settled_at: Set(None),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(to_api_withdrawal(&w))
}

pub async fn withdrawals(
    conn: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<api::Withdrawal>> {
    Ok(withdrawal::Entity::find()
        .filter(withdrawal::Column::UserId.eq(user_id))
        .order_by_desc(withdrawal::Column::Id)
        .all(conn)
        .await?
        .iter()
        .map(to_api_withdrawal)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::fee_of;

    #[test]
    fn the_fee_rounds_down_and_never_exceeds_the_amount() {
        assert_eq!(fee_of(10_000, 250), 250);
        assert_eq!(fee_of(10_001, 250), 250);
        assert_eq!(fee_of(39, 250), 0);
        assert_eq!(fee_of(40, 250), 1);
        assert_eq!(fee_of(7, 0), 0);
        assert_eq!(fee_of(i64::MAX, 10_000), i64::MAX);
        for a in [1, 17, 999, 123_456] {
            for bps in [0, 1, 500, 5000] {
                let f = fee_of(a, bps);
                assert!((0..=a).contains(&f));
            }
        }
    }
}
