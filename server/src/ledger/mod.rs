//! The double-entry ledger.
//!
//! A transaction is a set of postings that sums to zero; an account's
//! balance is the sum of its postings. Each account row also carries that
//! sum as `balance`, updated in the same database transaction as the
//! postings by a conditional `UPDATE ... WHERE balance + amount >= 0`: the
//! overdraft check and the write are one atomic statement, so two
//! concurrent payments cannot both spend the same escrow. [`audit`]
//! re-derives every balance from the postings.
//!
//! Every transaction is also a link of a hash chain ([`receipts`]),
//! appended after its commit.

pub mod entity;
pub mod payments;
pub mod receipts;
pub mod royalty;
pub mod settlement;

use sahel_protocol::api;
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::db::{now_ms, shape};
use crate::error::{Error, Result};
use entity::{account, posting, transaction};

/// The accounts money can sit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountRef {
    User(i64),
    /// A project's escrow: funded by its buyer, pays accepted answers.
    Escrow(i64),
    /// Where deposits come from: the outside world. The only account that
    /// may go negative; its balance is minus everything ever deposited.
    Deposits,
    /// The platform's cut of payments.
    Fee,
    /// A dataset's royalty pool: licence charges waiting to be split.
    RoyaltyPool(i64),
    /// A user's amount locked by withdrawal requests until settled.
    Withdrawal(i64),
    /// Where settled withdrawals go: owed on chain. Its balance is the
    /// cumulative total of every settlement epoch.
    Payouts,
}

impl AccountRef {
    pub fn kind(self) -> &'static str {
        match self {
            AccountRef::User(_) => "user",
            AccountRef::Escrow(_) => "escrow",
            AccountRef::Deposits => "deposits",
            AccountRef::Fee => "fee",
            AccountRef::RoyaltyPool(_) => "royalty_pool",
            AccountRef::Withdrawal(_) => "withdrawal",
            AccountRef::Payouts => "payouts",
        }
    }

    pub fn owner(self) -> i64 {
        match self {
            AccountRef::User(id)
            | AccountRef::Escrow(id)
            | AccountRef::RoyaltyPool(id)
            | AccountRef::Withdrawal(id) => id,
            AccountRef::Deposits | AccountRef::Fee | AccountRef::Payouts => 0,
        }
    }

    fn allow_negative(self) -> bool {
        matches!(self, AccountRef::Deposits)
    }
}

/// Returns the id of an account, creating it on first use.
pub async fn ensure_account(conn: &impl ConnectionTrait, r: AccountRef) -> Result<i64> {
    Ok(ensure_accounts(conn, [r]).await?[&r])
}

/// The ids of many accounts, creating the missing ones: a few queries per
/// thousand accounts instead of two per account (royalty batches pay a
/// thousand contributors in one transaction).
pub async fn ensure_accounts(
    conn: &impl ConnectionTrait,
    refs: impl IntoIterator<Item = AccountRef>,
) -> Result<std::collections::HashMap<AccountRef, i64>> {
    use std::collections::HashMap;
    let mut all: Vec<AccountRef> = refs.into_iter().collect();
    all.sort_by_key(|r| (r.kind(), r.owner()));
    all.dedup();
    // One query per 500 accounts, whatever their kinds: a payment's few
    // accounts cost one round trip, not one per kind.
    async fn lookup(
        conn: &impl ConnectionTrait,
        refs: &[AccountRef],
        out: &mut HashMap<AccountRef, i64>,
    ) -> Result<()> {
        for chunk in refs.chunks(500) {
            let pairs: Vec<(&str, i64)> = chunk.iter().map(|r| (r.kind(), r.owner())).collect();
            let any = shape::pairs_in(
                conn.get_database_backend(),
                (account::Column::Kind, account::Column::OwnerId),
                &pairs,
            );
            let found: Vec<(i64, String, i64)> = account::Entity::find()
                .select_only()
                .column(account::Column::Id)
                .column(account::Column::Kind)
                .column(account::Column::OwnerId)
                .filter(any)
                .into_tuple()
                .all(conn)
                .await?;
            for (id, kind, owner) in found {
                if let Some(r) = chunk
                    .iter()
                    .find(|r| r.kind() == kind && r.owner() == owner)
                {
                    out.insert(*r, id);
                }
            }
        }
        Ok(())
    }
    let mut found: HashMap<AccountRef, i64> = HashMap::new();
    lookup(conn, &all, &mut found).await?;
    let missing: Vec<AccountRef> = all
        .iter()
        .copied()
        .filter(|r| !found.contains_key(r))
        .collect();
    if !missing.is_empty() {
        let now = now_ms();
        // Payments run side by side (no lock serializes them), so two may
        // create one account at once: the second insert waits for the
        // first to commit and skips the row, and the lookup after it,
        // a statement later, sees it.
        for chunk in missing.chunks(500) {
            let rows = chunk.iter().map(|r| account::ActiveModel {
                kind: Set(r.kind().to_owned()),
                owner_id: Set(r.owner()),
                balance: Set(0),
                allow_negative: Set(r.allow_negative()),
                created_at: Set(now),
                ..Default::default()
            });
            shape::insert_rows_skipping_conflicts(
                conn,
                rows.collect(),
                &[account::Column::Kind, account::Column::OwnerId],
            )
            .await?;
        }
        lookup(conn, &missing, &mut found).await?;
    }
    all.into_iter()
        .map(|r| {
            found.get(&r).map(|id| (r, *id)).ok_or_else(|| {
                anyhow::anyhow!("account {}:{} vanished", r.kind(), r.owner()).into()
            })
        })
        .collect()
}

async fn find_account(
    conn: &impl ConnectionTrait,
    r: AccountRef,
) -> Result<Option<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::Kind.eq(r.kind()))
        .filter(account::Column::OwnerId.eq(r.owner()))
        .one(conn)
        .await?)
}

/// Writes the money settings from the configuration into the database,
/// where every payment reads them inside its own transaction.
pub async fn apply_settings(db: &crate::db::Db, config: &crate::config::Config) -> Result<()> {
    let tx = db.write().await?;
    entity::settings::Entity::update_many()
        .col_expr(
            entity::settings::Column::FeeBps,
            Expr::value(config.fee_bps as i32),
        )
        .col_expr(
            entity::settings::Column::RoyaltyBuyerShareBps,
            Expr::value(config.royalty_buyer_share_bps as i32),
        )
        .filter(entity::settings::Column::Id.eq(1))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The money settings in force (see [`apply_settings`]).
pub async fn settings(conn: &impl ConnectionTrait) -> Result<entity::settings::Model> {
    entity::settings::Entity::find_by_id(1)
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the ledger settings row is missing").into())
}

pub async fn balance(conn: &impl ConnectionTrait, r: AccountRef) -> Result<Micros> {
    Ok(Micros(
        find_account(conn, r).await?.map_or(0, |a| a.balance),
    ))
}

/// What [`post`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    New(i64),
    /// A transaction with this idempotency key already existed; nothing
    /// was written.
    Replayed(i64),
}

impl Posted {
    pub fn id(self) -> i64 {
        match self {
            Posted::New(id) | Posted::Replayed(id) => id,
        }
    }
}

/// One ledger transaction to write with [`post_many`].
#[derive(Clone, Debug)]
pub struct NewTx {
    pub kind: &'static str,
    pub memo: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub postings: Vec<(AccountRef, Micros)>,
}

/// Writes one balanced transaction inside the caller's database
/// transaction (its receipt follows the commit:
/// [`receipts::chain_pending`]). Refuses (and the caller must roll back)
/// if any account that may not go negative would.
pub async fn post(
    conn: &impl ConnectionTrait,
    kind: &'static str,
    memo: serde_json::Value,
    idempotency_key: Option<String>,
    postings: &[(AccountRef, Micros)],
) -> Result<Posted> {
    let tx = NewTx {
        kind,
        memo,
        idempotency_key,
        postings: postings.to_vec(),
    };
    let posted = post_many(conn, std::slice::from_ref(&tx)).await?;
    posted
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("ledger transaction {kind} was not posted").into())
}

/// Writes balanced transactions inside the caller's database transaction
/// (their receipts follow the commit), in a fixed number of statements whatever their
/// count: a batch of answers closing many items pays them all at once. The
/// result is what posting each in turn would give (a replayed key is
/// [`Posted::Replayed`]); if any account that may not go negative would
/// end below zero, the whole call is refused and the caller must roll back.
/// Only balances that fall matter, and every transaction's debits come
/// before anything is read back, so the net of the batch decides exactly
/// as the sequence would.
///
/// The only rows it locks are its accounts', all in one statement and in
/// id order, so two payments wait for each other's shared accounts (a
/// bounty's escrow, the fee account) and never deadlock.
pub async fn post_many(conn: &impl ConnectionTrait, txs: &[NewTx]) -> Result<Vec<Posted>> {
    for t in txs {
        let sum = t
            .postings
            .iter()
            .try_fold(0i64, |acc, (_, m)| acc.checked_add(m.0));
        if sum != Some(0) || t.postings.is_empty() {
            return Err(Error::Unexpected(anyhow::anyhow!(
                "unbalanced ledger transaction {}: {:?}",
                t.kind,
                t.postings
            )));
        }
    }
    // Keys match the returned rows to the batch (RETURNING promises no
    // order); a transaction without one is posted alone.
    if txs.len() > 1 && txs.iter().any(|t| t.idempotency_key.is_none()) {
        return Err(Error::Unexpected(anyhow::anyhow!(
            "a batch of ledger transactions needs an idempotency key on each"
        )));
    }
    let Some(first) = txs.first() else {
        return Ok(Vec::new());
    };
    // A replayed key is found by the insert itself (one round trip
    // instead of a lookup and an insert); a concurrent twin's insert waits
    // for the first to commit and then finds its row.
    let now = now_ms();
    let mut rows = shape::insert_rows_skipping_conflicts(
        conn,
        txs.iter()
            .map(|t| transaction::ActiveModel {
                kind: Set(t.kind.to_owned()),
                memo: Set(t.memo.to_string()),
                idempotency_key: Set(t.idempotency_key.clone()),
                created_at: Set(now),
                ..Default::default()
            })
            .collect(),
        &[transaction::Column::IdempotencyKey],
    )
    .await?;
    rows.sort_by_key(|r| r.id);
    let row_of = |t: &NewTx, rows: &[transaction::Model]| match &t.idempotency_key {
        Some(k) => rows
            .iter()
            .position(|r| r.idempotency_key.as_deref() == Some(k.as_str())),
        None => (!rows.is_empty()).then_some(0),
    };
    // Each new row belongs to the first transaction of the batch with its
    // key; a later one with the same key is a replay of it.
    let mut new: Vec<(usize, usize)> = Vec::new();
    let mut claimed = vec![false; rows.len()];
    for (i, t) in txs.iter().enumerate() {
        if let Some(r) = row_of(t, &rows)
            && !claimed[r]
        {
            claimed[r] = true;
            new.push((r, i));
        }
    }
    let replayed: Vec<String> = txs
        .iter()
        .enumerate()
        .filter(|(i, _)| !new.iter().any(|(_, n)| n == i))
        .filter_map(|(_, t)| t.idempotency_key.clone())
        .collect();
    let earlier: std::collections::HashMap<String, i64> = match replayed.is_empty() {
        true => Default::default(),
        false => transaction::Entity::find()
            .filter(transaction::Column::IdempotencyKey.is_in(replayed))
            .all(conn)
            .await?
            .into_iter()
            .filter_map(|t| Some((t.idempotency_key?, t.id)))
            .collect(),
    };

    if !new.is_empty() {
        let all = new.iter().flat_map(|(_, i)| &txs[*i].postings);
        let ids = ensure_accounts(conn, all.clone().map(|(r, _)| *r)).await?;
        // One net amount per account, in posting order.
        let mut net: Vec<(i64, i64)> = Vec::new();
        let mut slot: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        for (r, amount) in all.clone() {
            let i = *slot.entry(ids[r]).or_insert_with(|| {
                net.push((ids[r], 0));
                net.len() - 1
            });
            net[i].1 += amount.0;
        }
        // Locked in id order across chunks too (see `move_balances`).
        net.sort_unstable_by_key(|(id, _)| *id);
        let flat: Vec<(AccountRef, Micros)> = all.clone().copied().collect();
        for chunk in net.chunks(200) {
            move_balances(conn, chunk, &flat, &ids).await?;
        }
        let posting_rows: Vec<posting::ActiveModel> = new
            .iter()
            .flat_map(|(r, i)| {
                let tx_id = rows[*r].id;
                txs[*i]
                    .postings
                    .iter()
                    .map(move |(a, amount)| (tx_id, *a, *amount))
            })
            .map(|(tx_id, r, amount)| posting::ActiveModel {
                transaction_id: Set(tx_id),
                account_id: Set(ids[&r]),
                amount: Set(amount.0),
                ..Default::default()
            })
            .collect();
        for chunk in posting_rows.chunks(1000) {
            shape::insert_rows(conn, chunk.to_vec()).await?;
        }
    }

    txs.iter()
        .enumerate()
        .map(|(i, t)| match new.iter().find(|(_, n)| *n == i) {
            Some((r, _)) => Ok(Posted::New(rows[*r].id)),
            None => t
                .idempotency_key
                .as_ref()
                .and_then(|k| earlier.get(k))
                .map(|id| Posted::Replayed(*id))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "ledger transaction {} neither inserted nor found",
                        first.kind
                    )
                    .into()
                }),
        })
        .collect()
}

/// Adds each `(account id, amount)` to its balance in one statement,
/// refusing (with the first account that falls short) if any balance that
/// may not go negative would. The rows are locked in id order
/// (`shape::any_of_locked_in_order`): no chain-head lock serializes
/// payments any more, so two that share accounts must take them in one
/// order.
async fn move_balances(
    conn: &impl ConnectionTrait,
    moves: &[(i64, i64)],
    postings: &[(AccountRef, Micros)],
    ids: &std::collections::HashMap<AccountRef, i64>,
) -> Result<()> {
    let backend = conn.get_database_backend();
    let amounts: Vec<(i64, sea_orm::Value)> = moves
        .iter()
        .map(|(id, amount)| (*id, (*amount).into()))
        .collect();
    let delta = || {
        shape::plus_per_id(
            backend,
            account::Column::Id,
            account::Column::Balance,
            &amounts,
            "bigint",
            0i64.into(),
        )
    };
    let res = account::Entity::update_many()
        .col_expr(account::Column::Balance, delta())
        .filter(shape::any_of_locked_in_order(
            backend,
            account::Entity,
            account::Column::Id,
            moves.iter().map(|(id, _)| *id),
        ))
        .filter(
            Condition::any()
                .add(account::Column::AllowNegative.eq(true))
                .add(delta().gte(0)),
        )
        .exec(conn)
        .await?;
    if res.rows_affected == moves.len() as u64 {
        return Ok(());
    }
    let short = postings
        .iter()
        .find(|(r, m)| m.0 < 0 && moves.iter().any(|(id, _)| *id == ids[r]))
        .map_or_else(
            || ("an".to_owned(), Micros(0)),
            |(r, m)| (r.kind().to_owned(), Micros(-m.0)),
        );
    Err(Error::conflict(
        "insufficient-funds",
        format!("the {} account holds less than {}", short.0, short.1),
    ))
}

#[derive(Debug, FromQueryResult)]
struct EntryRow {
    transaction_id: i64,
    amount: i64,
    kind: String,
    memo: String,
    created_at: i64,
}

/// An account's postings, newest first, with its balance.
pub async fn history(
    conn: &impl ConnectionTrait,
    r: AccountRef,
    limit: u64,
) -> Result<api::LedgerHistory> {
    history_page(conn, r, 0, limit).await
}

/// Like [`history`], skipping the `offset` newest postings (the web UI's
/// pages).
pub async fn history_page(
    conn: &impl ConnectionTrait,
    r: AccountRef,
    offset: u64,
    limit: u64,
) -> Result<api::LedgerHistory> {
    let Some(acc) = find_account(conn, r).await? else {
        return Ok(api::LedgerHistory {
            balance: Micros::ZERO,
            entries: Vec::new(),
        });
    };
    let rows = posting::Entity::find()
        .select_only()
        .column(posting::Column::TransactionId)
        .column(posting::Column::Amount)
        .column_as(
            Expr::col((transaction::Entity, transaction::Column::Kind)),
            "kind",
        )
        .column_as(
            Expr::col((transaction::Entity, transaction::Column::Memo)),
            "memo",
        )
        .column_as(
            Expr::col((transaction::Entity, transaction::Column::CreatedAt)),
            "created_at",
        )
        .join(
            sea_orm::JoinType::InnerJoin,
            posting::Entity::belongs_to(transaction::Entity)
                .from(posting::Column::TransactionId)
                .to(transaction::Column::Id)
                .into(),
        )
        .filter(posting::Column::AccountId.eq(acc.id))
        .order_by_desc(posting::Column::Id)
        .offset(offset)
        .limit(limit)
        .into_model::<EntryRow>()
        .all(conn)
        .await?;
    let entries = rows
        .into_iter()
        .map(|r| api::LedgerEntry {
            transaction_id: r.transaction_id,
            kind: r.kind,
            amount: Micros(r.amount),
            memo: serde_json::from_str(&r.memo).unwrap_or(serde_json::Value::Null),
            created_at: Timestamp(r.created_at),
        })
        .collect();
    Ok(api::LedgerHistory {
        balance: Micros(acc.balance),
        entries,
    })
}

/// What an audit of the whole ledger found. Every list is empty on a
/// healthy ledger.
#[derive(Debug, Default)]
pub struct Audit {
    pub postings_total: i64,
    /// Transactions whose postings do not sum to zero.
    pub unbalanced_transactions: Vec<i64>,
    /// Accounts whose stored balance differs from the sum of postings.
    pub balance_mismatches: Vec<(i64, i64, i64)>,
    /// Accounts below zero that may not be.
    pub negative_accounts: Vec<i64>,
    /// Escrow accounts (by project) that paid out more than was put in.
    pub overpaid_escrows: Vec<i64>,
    /// Withdrawals, payouts and epoch leaves that disagree.
    pub settlement: Vec<String>,
    /// Royalty charges or rounds that do not split exactly.
    pub royalties: Vec<String>,
    /// The receipt chain: gaps, broken links, altered transactions, bad
    /// signatures, transactions without a receipt.
    pub chain: receipts::ChainAudit,
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.postings_total == 0
            && self.unbalanced_transactions.is_empty()
            && self.balance_mismatches.is_empty()
            && self.negative_accounts.is_empty()
            && self.overpaid_escrows.is_empty()
            && self.settlement.is_empty()
            && self.royalties.is_empty()
            && self.chain.problems.is_empty()
            && self.chain.unchained.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "clean": self.is_clean(),
            "postings_total": self.postings_total,
            "unbalanced_transactions": self.unbalanced_transactions,
            "balance_mismatches": self.balance_mismatches,
            "negative_accounts": self.negative_accounts,
            "overpaid_escrows": self.overpaid_escrows,
            "settlement_problems": self.settlement,
            "royalty_problems": self.royalties,
            "receipts": self.chain.receipts,
            "receipt_problems": self.chain.problems,
            "unchained_transactions": self.chain.unchained,
            "unsigned_receipts": self.chain.unsigned,
        })
    }
}

#[derive(Debug, FromQueryResult)]
struct SumRow {
    id: i64,
    total: Option<i64>,
}

/// Re-derives the ledger's invariants from its rows, receipts included
/// (signatures are not checked without the key: see [`audit_with_key`]).
pub async fn audit(conn: &impl ConnectionTrait) -> Result<Audit> {
    audit_with_key(conn, None).await
}

/// [`audit`], also checking every receipt signature against `key`.
pub async fn audit_with_key(
    conn: &impl ConnectionTrait,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Audit> {
    let mut out = Audit {
        chain: receipts::check_chain(conn, key).await?,
        settlement: settlement::audit(conn).await?,
        royalties: royalty::audit(conn).await?,
        ..Default::default()
    };
    let by_tx: Vec<SumRow> = posting::Entity::find()
        .select_only()
        .column_as(posting::Column::TransactionId, "id")
        .column_as(
            Expr::col(posting::Column::Amount).sum().cast_as("BIGINT"),
            "total",
        )
        .group_by(posting::Column::TransactionId)
        .into_model()
        .all(conn)
        .await?;
    for r in &by_tx {
        let t = r.total.unwrap_or(0);
        out.postings_total += t;
        if t != 0 {
            out.unbalanced_transactions.push(r.id);
        }
    }
    let by_account: Vec<SumRow> = posting::Entity::find()
        .select_only()
        .column_as(posting::Column::AccountId, "id")
        .column_as(
            Expr::col(posting::Column::Amount).sum().cast_as("BIGINT"),
            "total",
        )
        .group_by(posting::Column::AccountId)
        .into_model()
        .all(conn)
        .await?;
    let derived: std::collections::HashMap<i64, i64> = by_account
        .into_iter()
        .map(|r| (r.id, r.total.unwrap_or(0)))
        .collect();
    for a in account::Entity::find().all(conn).await? {
        let d = derived.get(&a.id).copied().unwrap_or(0);
        if d != a.balance {
            out.balance_mismatches.push((a.id, a.balance, d));
        }
        if d < 0 && !a.allow_negative {
            out.negative_accounts.push(a.id);
        }
    }
    // Escrow: what went out never exceeds what came in.
    #[derive(FromQueryResult)]
    struct Flow {
        owner_id: i64,
        inflow: Option<i64>,
        outflow: Option<i64>,
    }
    let flows: Vec<Flow> = posting::Entity::find()
        .select_only()
        .column_as(
            Expr::col((account::Entity, account::Column::OwnerId)),
            "owner_id",
        )
        .column_as(
            Expr::cust(
                "SUM(CASE WHEN ledger_postings.amount > 0 THEN ledger_postings.amount ELSE 0 END)",
            )
            .cast_as("BIGINT"),
            "inflow",
        )
        .column_as(
            Expr::cust(
                "SUM(CASE WHEN ledger_postings.amount < 0 THEN -ledger_postings.amount ELSE 0 END)",
            )
            .cast_as("BIGINT"),
            "outflow",
        )
        .join(
            sea_orm::JoinType::InnerJoin,
            posting::Entity::belongs_to(account::Entity)
                .from(posting::Column::AccountId)
                .to(account::Column::Id)
                .into(),
        )
        .filter(account::Column::Kind.eq(AccountRef::Escrow(0).kind()))
        .group_by(Expr::col((account::Entity, account::Column::OwnerId)))
        .into_model()
        .all(conn)
        .await?;
    for f in flows {
        if f.outflow.unwrap_or(0) > f.inflow.unwrap_or(0) {
            out.overpaid_escrows.push(f.owner_id);
        }
    }
    Ok(out)
}

/// An admin credits a user's balance from outside money (until real
/// on-ramps exist). Idempotent on its key: a retry returns the first
/// transaction; the same key for another deposit is a conflict.
pub async fn deposit(
    db: &crate::db::Db,
    req: api::DepositRequest,
) -> Result<api::TransactionReceipt> {
    if req.amount.0 <= 0 {
        return Err(Error::invalid(
            "invalid-amount",
            "a deposit must be positive",
        ));
    }
    let key = req.idempotency_key.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "invalid-idempotency-key",
            "the idempotency key must be 1 to 200 characters",
        ));
    }
    let tx = db.write().await?;
    crate::accounts::get_user(&*tx, req.user_id).await?;
    let memo = serde_json::json!({ "user_id": req.user_id, "amount": req.amount });
    let posted = post(
        &*tx,
        "deposit",
        memo.clone(),
        Some(format!("deposit:{key}")),
        &[
            (AccountRef::Deposits, Micros(-req.amount.0)),
            (AccountRef::User(req.user_id), req.amount),
        ],
    )
    .await?;
    let row = transaction::Entity::find_by_id(posted.id())
        .one(&*tx)
        .await?
        .ok_or_else(|| anyhow::anyhow!("transaction {} vanished", posted.id()))?;
    if matches!(posted, Posted::Replayed(_)) && row.memo != memo.to_string().as_str() {
        return Err(Error::conflict(
            "idempotency-key-reused",
            "this idempotency key was used for a different deposit",
        ));
    }
    tx.commit().await?;
    Ok(api::TransactionReceipt {
        transaction_id: row.id,
        kind: row.kind,
        created_at: Timestamp(row.created_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use sea_orm::{DbBackend, Statement};

    /// The statement texts a connection has prepared that touch the ledger.
    async fn prepared(conn: &impl ConnectionTrait) -> std::collections::BTreeSet<String> {
        conn.query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%ledger_%'",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
    }

    /// On PostgreSQL a batch of payments prepares the same statements
    /// whatever its size (`db::shape`): its transactions, new accounts,
    /// balances and postings once grew a statement text per size, each
    /// parsed and planned afresh. Balances come out as posting each alone
    /// would leave them.
    #[tokio::test]
    async fn a_payment_batch_prepares_the_same_statements_whatever_its_size() {
        let Some(admin) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            return;
        };
        let url = crate::testing::create_scratch_database(&admin, "sahel_test")
            .await
            .unwrap();
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let writers = db.with_own_writers(&url, 1).await.unwrap();
        let deposit = NewTx {
            kind: "deposit",
            memo: serde_json::json!({}),
            idempotency_key: Some("deposit".into()),
            postings: vec![
                (AccountRef::Deposits, Micros(-1_000_000)),
                (AccountRef::Escrow(1), Micros(1_000_000)),
            ],
        };
        let tx = writers.write().await.unwrap();
        post_many(&*tx, &[deposit]).await.unwrap();
        tx.commit().await.unwrap();
        let mut texts = None;
        let mut user = 0;
        for n in 1..=5 {
            // Each batch pays contributors the ledger has not seen yet.
            let batch: Vec<NewTx> = (0..n)
                .map(|i| {
                    user += 1;
                    NewTx {
                        kind: "pay_answers",
                        memo: serde_json::json!({ "n": n, "i": i }),
                        idempotency_key: Some(format!("pay:{n}:{i}")),
                        postings: vec![
                            (AccountRef::Escrow(1), Micros(-100)),
                            (AccountRef::User(user), Micros(97)),
                            (AccountRef::Fee, Micros(3)),
                        ],
                    }
                })
                .collect();
            let tx = writers.write().await.unwrap();
            let posted = post_many(&*tx, &batch).await.unwrap();
            assert!(posted.iter().all(|p| matches!(p, Posted::New(_))));
            let now = prepared(&*tx).await;
            tx.commit().await.unwrap();
            match &texts {
                None => texts = Some(now),
                Some(first) => assert_eq!(&now, first, "after a batch of {n}"),
            }
        }
        let escrow = balance(&db.conn, AccountRef::Escrow(1)).await.unwrap();
        assert_eq!(escrow, Micros(1_000_000 - 100 * user));
        assert_eq!(
            balance(&db.conn, AccountRef::Fee).await.unwrap(),
            Micros(3 * user)
        );
        for u in 1..=user {
            assert_eq!(
                balance(&db.conn, AccountRef::User(u)).await.unwrap(),
                Micros(97)
            );
        }
        let audit = audit(&db.conn).await.unwrap();
        assert_eq!(audit.postings_total, 0);
        assert!(audit.balance_mismatches.is_empty(), "{audit:?}");
        assert!(audit.unbalanced_transactions.is_empty(), "{audit:?}");
        drop((writers, db));
        crate::testing::drop_scratch_database(&admin, &url)
            .await
            .unwrap();
    }
}
