//! Settlement epochs: locked withdrawals become what each EVM payout
//! address is owed, committed to by an OpenZeppelin Merkle root.
//!
//! Closing an epoch, in one database transaction: every pending withdrawal
//! of an account with a payout address moves from its `withdrawal` account
//! to `payouts` (one receipt each) and is marked settled to that address;
//! then each address's cumulative settled amount (every epoch so far)
//! becomes a leaf `(address, micros x 10^(decimals - 6))`. A cumulative
//! distributor contract pays `leaf - already claimed`, so leaves only grow.
//! The tree itself is the pure `sahel_protocol::settlement::StandardTree`.

use std::path::Path;

use sahel_protocol::api;
use sahel_protocol::settlement::{Address, EpochFile, StandardTree, U256, hex0x};
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::entity::{epoch, leaf, payout_address, withdrawal};
use super::payments::check_key;
use super::{AccountRef, post};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

pub fn to_api(e: &epoch::Model) -> api::SettlementEpoch {
    api::SettlementEpoch {
        id: e.id,
        root: e.root.clone(),
        total: e.total.clone(),
        decimals: e.decimals as u32,
        leaves: e.leaves,
        settled: Micros(e.settled_micros),
        cumulative: Micros(e.cumulative_micros),
        created_at: Timestamp(e.created_at),
    }
}

/// Leaves from (address, cumulative micros) rows, scaled to the token.
pub fn tree_of(rows: &[(Address, i64)], decimals: u32) -> Result<Option<StandardTree>> {
    let mut values = Vec::with_capacity(rows.len());
    for (a, micros) in rows {
        let amount = U256::from_micros(*micros as u64, decimals)
            .ok_or_else(|| anyhow::anyhow!("amount {micros} overflows uint256"))?;
        values.push((*a, amount));
    }
    Ok(StandardTree::build(values))
}

#[derive(FromQueryResult)]
struct Cumulative {
    address: String,
    total: Option<i64>,
}

/// Closes an epoch (see the module docs). Idempotent on its key: a retry
/// returns the epoch it made.
pub async fn close_epoch(
    db: &Db,
    idempotency_key: &str,
    decimals: u32,
    publish_dir: Option<&Path>,
) -> Result<api::SettlementEpoch> {
    let key = check_key(idempotency_key)?.to_owned();
    let tx = db.write().await?;
    if let Some(e) = epoch::Entity::find()
        .filter(epoch::Column::IdempotencyKey.eq(key.clone()))
        .one(&*tx)
        .await?
    {
        return Ok(to_api(&e));
    }
    let now = now_ms();
    let e = epoch::ActiveModel {
        root: Set(String::new()),
        total: Set("0".into()),
        decimals: Set(decimals as i32),
        leaves: Set(0),
        settled_micros: Set(0),
        cumulative_micros: Set(0),
        idempotency_key: Set(key),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;

    let pending = withdrawal::Entity::find()
        .filter(withdrawal::Column::Status.eq("pending"))
        .order_by_asc(withdrawal::Column::Id)
        .all(&*tx)
        .await?;
    let mut settled = 0i64;
    for w in pending {
        let Some(addr) = payout_address::Entity::find_by_id(w.user_id)
            .one(&*tx)
            .await?
        else {
            continue;
        };
        // Claim the withdrawal first: a concurrent epoch that saw it pending
        // too finds it taken and skips it.
        let claimed = withdrawal::Entity::update_many()
            .col_expr(withdrawal::Column::Status, Expr::value("settled"))
            .col_expr(withdrawal::Column::EpochId, Expr::value(e.id))
            .col_expr(
                withdrawal::Column::Address,
                Expr::value(addr.address.clone()),
            )
            .col_expr(withdrawal::Column::SettledAt, Expr::value(now))
            .filter(withdrawal::Column::Id.eq(w.id))
            .filter(withdrawal::Column::Status.eq("pending"))
            .exec(&*tx)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        post(
            &*tx,
            "settle",
            json!({
                "withdrawal_id": w.id,
                "user_id": w.user_id,
                "epoch": e.id,
                "address": addr.address,
            }),
            Some(format!("settle:{}", w.id)),
            &[
                (AccountRef::Withdrawal(w.user_id), Micros(-w.amount)),
                (AccountRef::Payouts, Micros(w.amount)),
            ],
        )
        .await?;
        settled += w.amount;
    }

    let cumulative: Vec<Cumulative> = withdrawal::Entity::find()
        .select_only()
        .column(withdrawal::Column::Address)
        .column_as(
            Expr::col(withdrawal::Column::Amount)
                .sum()
                .cast_as("BIGINT"),
            "total",
        )
        .filter(withdrawal::Column::Status.eq("settled"))
        .group_by(withdrawal::Column::Address)
        .into_model()
        .all(&*tx)
        .await?;
    let mut rows = Vec::with_capacity(cumulative.len());
    for c in cumulative {
        let a = Address::parse(&c.address)
            .map_err(|err| anyhow::anyhow!("stored payout address {}: {err}", c.address))?;
        rows.push((a, c.total.unwrap_or(0)));
    }
    let Some(tree) = tree_of(&rows, decimals)? else {
        return Err(Error::conflict(
            "nothing-to-settle",
            "no withdrawal has been settled to a payout address yet",
        ));
    };
    let file = EpochFile::build(e.id, decimals, &tree);
    let cumulative_micros: i64 = rows.iter().map(|(_, m)| m).sum();
    for chunk in rows.chunks(1000) {
        leaf::Entity::insert_many(chunk.iter().map(|(a, m)| leaf::ActiveModel {
            epoch_id: Set(e.id),
            address: Set(format!("0x{}", hex::encode(a.0))),
            micros: Set(*m),
        }))
        .exec(&*tx)
        .await?;
    }
    epoch::Entity::update_many()
        .col_expr(epoch::Column::Root, Expr::value(file.merkle_root.clone()))
        .col_expr(
            epoch::Column::Total,
            Expr::value(file.token_total.to_string()),
        )
        .col_expr(epoch::Column::Leaves, Expr::value(rows.len() as i64))
        .col_expr(epoch::Column::SettledMicros, Expr::value(settled))
        .col_expr(
            epoch::Column::CumulativeMicros,
            Expr::value(cumulative_micros),
        )
        .filter(epoch::Column::Id.eq(e.id))
        .exec(&*tx)
        .await?;
    tx.commit().await?;

    if let Some(dir) = publish_dir {
        // Committed; the file is a copy (the API rebuilds it from the rows).
        let path = dir.join(format!("epoch-{}.json", e.id));
        let written = std::fs::create_dir_all(dir).and_then(|_| {
            std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap_or_default())
        });
        if let Err(err) = written {
            tracing::warn!(error = %err, path = %path.display(), "could not publish the epoch file");
        }
    }
    get(&db.conn, Some(e.id)).await
}

async fn find(conn: &impl ConnectionTrait, id: Option<i64>) -> Result<epoch::Model> {
    let q = match id {
        Some(id) => epoch::Entity::find().filter(epoch::Column::Id.eq(id)),
        None => epoch::Entity::find().filter(epoch::Column::Root.ne("")),
    };
    q.order_by_desc(epoch::Column::Id)
        .one(conn)
        .await?
        .filter(|e| !e.root.is_empty())
        .ok_or_else(|| match id {
            Some(id) => Error::not_found("epoch-not-found", format!("no settlement epoch {id}")),
            None => Error::not_found("epoch-not-found", "no settlement epoch was closed yet"),
        })
}

/// An epoch by id, or the latest.
pub async fn get(conn: &impl ConnectionTrait, id: Option<i64>) -> Result<api::SettlementEpoch> {
    Ok(to_api(&find(conn, id).await?))
}

async fn leaves(conn: &impl ConnectionTrait, epoch_id: i64) -> Result<Vec<(Address, i64)>> {
    let rows = leaf::Entity::find()
        .filter(leaf::Column::EpochId.eq(epoch_id))
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|l| {
            Address::parse(&l.address)
                .map(|a| (a, l.micros))
                .map_err(|err| anyhow::anyhow!("stored leaf address {}: {err}", l.address).into())
        })
        .collect()
}

/// The published file of an epoch, rebuilt from its stored leaves.
pub async fn file(conn: &impl ConnectionTrait, id: Option<i64>) -> Result<EpochFile> {
    let e = find(conn, id).await?;
    let rows = leaves(conn, e.id).await?;
    let tree = tree_of(&rows, e.decimals as u32)?
        .ok_or_else(|| anyhow::anyhow!("epoch {} has no leaves", e.id))?;
    Ok(EpochFile::build(e.id, e.decimals as u32, &tree))
}

/// The caller's claim in an epoch (latest by default): the leaf of their
/// payout address and its proof.
pub async fn proof_for_user(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: Option<i64>,
) -> Result<api::SettlementProof> {
    let e = find(conn, id).await?;
    let addr = payout_address::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("no-payout-address", "no payout address is set"))?;
    let rows = leaves(conn, e.id).await?;
    let a = Address::parse(&addr.address)
        .map_err(|err| anyhow::anyhow!("stored payout address: {err}"))?;
    let Some(index) = rows.iter().position(|(x, _)| *x == a) else {
        return Err(Error::not_found(
            "no-claim",
            format!(
                "epoch {} owes nothing to {}; request a withdrawal and wait for the next epoch",
                e.id,
                a.checksummed()
            ),
        ));
    };
    let tree = tree_of(&rows, e.decimals as u32)?
        .ok_or_else(|| anyhow::anyhow!("epoch {} has no leaves", e.id))?;
    Ok(api::SettlementProof {
        epoch: e.id,
        root: e.root.clone(),
        address: a.checksummed(),
        amount: tree.values[index].1.to_string(),
        amount_micros: Micros(rows[index].1),
        decimals: e.decimals as u32,
        proof: tree.proof(index).iter().map(|h| hex0x(h)).collect(),
    })
}

/// Cross-checks settlement against the ledger: `payouts` holds exactly the
/// settled withdrawals, each user's `withdrawal` account exactly their
/// pending ones, and the latest epoch's leaves add up to what was settled
/// up to it.
pub async fn audit(conn: &impl ConnectionTrait) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let all = withdrawal::Entity::find().all(conn).await?;
    let settled: i64 = all
        .iter()
        .filter(|w| w.status == "settled")
        .map(|w| w.amount)
        .sum();
    let payouts = super::balance(conn, AccountRef::Payouts).await?;
    if payouts.0 != settled {
        problems.push(format!(
            "payouts holds {payouts} but settled withdrawals total {}",
            Micros(settled)
        ));
    }
    let mut pending: std::collections::BTreeMap<i64, i64> = Default::default();
    for w in all.iter().filter(|w| w.status == "pending") {
        *pending.entry(w.user_id).or_default() += w.amount;
    }
    let users: std::collections::BTreeSet<i64> = all.iter().map(|w| w.user_id).collect();
    for u in users {
        let locked = super::balance(conn, AccountRef::Withdrawal(u)).await?;
        let want = pending.get(&u).copied().unwrap_or(0);
        if locked.0 != want {
            problems.push(format!(
                "user {u} has {locked} locked but {} pending in withdrawals",
                Micros(want)
            ));
        }
    }
    if let Ok(e) = find(conn, None).await {
        let upto: i64 = all
            .iter()
            .filter(|w| w.epoch_id.is_some_and(|id| id <= e.id))
            .map(|w| w.amount)
            .sum();
        let leaves: i64 = leaves(conn, e.id).await?.iter().map(|(_, m)| m).sum();
        if leaves != upto || e.cumulative_micros != upto {
            problems.push(format!(
                "epoch {}'s leaves sum to {} but {} was settled up to it",
                e.id,
                Micros(leaves),
                Micros(upto)
            ));
        }
    }
    Ok(problems)
}
