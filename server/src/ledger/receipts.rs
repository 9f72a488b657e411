//! Receipts: the hash chain over every ledger transaction, and the server
//! key that signs it.
//!
//! A money transaction ([`super::post_many`]) commits without its receipt:
//! it takes no lock shared by every payment, so payments on different
//! accounts (answer batches of several replicas, of one bounty or many)
//! commit side by side. [`chain_pending`] then appends the receipts of
//! committed transactions that have none: it reads them back, hashes each
//! over the previous hash (layout in `sahel_protocol::receipt`) and signs
//! it when it holds the key, then, with the chain head row locked
//! (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite is serialized by the
//! write gate), checks that nothing moved meanwhile, writes the receipts,
//! moves the head and marks the transactions chained in one transaction.
//! It runs every second on each server and before anyone reads receipts or
//! audits, so no reader ever sees a transaction without its receipt; the
//! hash is made from the committed rows, which is what it attests.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sahel_protocol::Micros;
use sahel_protocol::receipt::{
    ChainLink, GENESIS_HASH, Receipt, ReceiptBundle, ReceiptPosting, parse_hash, receipt_hash,
};
use sahel_protocol::signing;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::AccountRef;
use super::entity::{account, chain_head, posting, receipt, transaction};
use crate::db::{Db, shape};
use crate::error::Result;

/// The server's ed25519 key. Its `Debug` never shows the secret.
pub struct ServerKey {
    key: SigningKey,
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey({})", self.public_hex())
    }
}

impl ServerKey {
    pub fn from_secret(secret: [u8; 32]) -> ServerKey {
        ServerKey {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// Reads the key file (hex of the 32-byte secret), creating it with
    /// mode 0600 on first start. Two servers starting at once on one file
    /// agree: the loser of `create_new` reads the winner's key.
    pub fn load_or_create(path: &Path) -> anyhow::Result<ServerKey> {
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            match write_private(path, format!("{}\n", hex::encode(secret)).as_bytes()) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "created the server signing key");
                    return Ok(ServerKey::from_secret(secret));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the server key {}", path.display()))?;
        let secret: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| {
                format!(
                    "{} is not a server key (64 hex digits expected)",
                    path.display()
                )
            })?;
        Ok(ServerKey::from_secret(secret))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        signing::public_key_hex(&self.key.verifying_key())
    }

    pub fn sign_hash(&self, hash: &[u8; 32]) -> String {
        sahel_protocol::receipt::sign_hash(&self.key, hash)
    }

    /// A secret derived from the server key for one purpose (domain) and
    /// one subject: used to wrap the custodial keys the server holds.
    pub fn derive(&self, domain: &str, subject: i64) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(domain.as_bytes());
        h.update([0]);
        h.update(self.key.to_bytes());
        h.update(subject.to_be_bytes());
        h.finalize().into()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

/// The chain head, locked for the rest of the caller's transaction when
/// `lock` is set.
async fn read_head(conn: &impl ConnectionTrait, lock: bool) -> Result<chain_head::Model> {
    let mut find = chain_head::Entity::find_by_id(1);
    if lock {
        find = find.lock_exclusive();
    }
    find.one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the ledger chain head row is missing").into())
}

/// The receipts of transactions, in the order given, after `head`, signed
/// when `key` is given, and the head they end at.
fn link(
    head: &chain_head::Model,
    txs: &[(&transaction::Model, Vec<ReceiptPosting>)],
    key: Option<&ServerKey>,
) -> Result<(Vec<receipt::ActiveModel>, chain_head::Model)> {
    let mut prev = parse_hash(&head.hash)
        .ok_or_else(|| anyhow::anyhow!("the chain head hash is not 32 bytes of hex"))?;
    let mut seq = head.seq;
    let mut rows = Vec::with_capacity(txs.len());
    for (tx, postings) in txs {
        seq += 1;
        let hash = receipt_hash(
            &prev,
            seq as u64,
            tx.id,
            tx.created_at,
            &tx.kind,
            &tx.memo,
            postings,
        );
        rows.push(receipt::ActiveModel {
            seq: Set(seq),
            transaction_id: Set(tx.id),
            prev_hash: Set(hex::encode(prev)),
            hash: Set(hex::encode(hash)),
            signature: Set(key.map(|k| k.sign_hash(&hash))),
        });
        prev = hash;
    }
    let end = chain_head::Model {
        id: head.id,
        seq,
        hash: hex::encode(prev),
    };
    Ok((rows, end))
}

#[derive(Debug, FromQueryResult)]
struct PostingRow {
    transaction_id: i64,
    amount: i64,
    kind: String,
    owner_id: i64,
}

/// The postings of transactions as receipts name them, by transaction,
/// each in the order it was written.
async fn postings_of(
    conn: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<ReceiptPosting>>> {
    let mut postings: HashMap<i64, Vec<ReceiptPosting>> = HashMap::new();
    let prow: Vec<PostingRow> = posting::Entity::find()
        .select_only()
        .column(posting::Column::TransactionId)
        .column(posting::Column::Amount)
        .column_as(Expr::col((account::Entity, account::Column::Kind)), "kind")
        .column_as(
            Expr::col((account::Entity, account::Column::OwnerId)),
            "owner_id",
        )
        .join(
            sea_orm::JoinType::InnerJoin,
            posting::Entity::belongs_to(account::Entity)
                .from(posting::Column::AccountId)
                .to(account::Column::Id)
                .into(),
        )
        .filter(shape::any_of(
            conn.get_database_backend(),
            posting::Column::TransactionId,
            ids.iter().copied(),
        ))
        .order_by_asc(posting::Column::Id)
        .into_model()
        .all(conn)
        .await?;
    for p in prow {
        postings
            .entry(p.transaction_id)
            .or_default()
            .push(ReceiptPosting {
                account: p.kind,
                owner: p.owner_id,
                amount: Micros(p.amount),
            });
    }
    Ok(postings)
}

/// Rebuilds full receipts (content from the transaction and posting rows,
/// hashes and signature from the receipt rows).
pub async fn load(conn: &impl ConnectionTrait, rows: Vec<receipt::Model>) -> Result<Vec<Receipt>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(500) {
        let ids: Vec<i64> = chunk.iter().map(|r| r.transaction_id).collect();
        let txs: HashMap<i64, transaction::Model> = transaction::Entity::find()
            .filter(transaction::Column::Id.is_in(ids.clone()))
            .all(conn)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let mut postings = postings_of(conn, &ids).await?;
        for r in chunk {
            let Some(t) = txs.get(&r.transaction_id) else {
                continue;
            };
            out.push(Receipt {
                seq: r.seq as u64,
                transaction_id: t.id,
                created_at_ms: t.created_at,
                kind: t.kind.clone(),
                memo: t.memo.clone(),
                postings: postings.remove(&t.id).unwrap_or_default(),
                prev_hash: r.prev_hash.clone(),
                hash: r.hash.clone(),
                signature: r.signature.clone(),
            });
        }
    }
    Ok(out)
}

/// Transactions chained per write transaction by [`chain_pending`].
const CHAINED_PER_WRITE: u64 = 200;

/// Appends the receipts of committed transactions that have none, oldest
/// first, signing them with `key` when given (a tool without the key
/// leaves that to [`sign_pending`]). Returns how many it chained.
///
/// A page is read, hashed and signed before the write, which then only
/// checks that nobody moved the head or chained those transactions
/// meanwhile and writes the result (four short statements): on SQLite the
/// write gate is shared with every answer, and a page read and signed
/// inside it held the gate for milliseconds. If another server got there
/// first, the page is read again. A transaction that commits after a later
/// one was chained takes the next place: the chain's order is the order
/// receipts were appended, which is what `seq` records.
pub async fn chain_pending(db: &Db, key: Option<&ServerKey>) -> Result<usize> {
    let mut chained = 0;
    loop {
        let read = &db.conn;
        let head = read_head(read, false).await?;
        let txs: Vec<transaction::Model> = transaction::Entity::find()
            // The partial index's own predicate, so that it serves.
            .filter(Expr::cust("NOT chained"))
            .order_by_asc(transaction::Column::Id)
            .limit(CHAINED_PER_WRITE)
            .all(read)
            .await?;
        if txs.is_empty() {
            return Ok(chained);
        }
        let ids: Vec<i64> = txs.iter().map(|t| t.id).collect();
        let mut postings = postings_of(read, &ids).await?;
        let links: Vec<(&transaction::Model, Vec<ReceiptPosting>)> = txs
            .iter()
            .map(|t| (t, postings.remove(&t.id).unwrap_or_default()))
            .collect();
        let (rows, end) = link(&head, &links, key)?;

        let tx = db.write().await?;
        if read_head(&*tx, true).await? != head {
            continue;
        }
        let marked = transaction::Entity::update_many()
            .col_expr(transaction::Column::Chained, Expr::value(true))
            .filter(shape::any_of(
                db.backend(),
                transaction::Column::Id,
                ids.iter().copied(),
            ))
            .filter(Expr::cust("NOT chained"))
            .exec(&*tx)
            .await?;
        if marked.rows_affected != ids.len() as u64 {
            continue;
        }
        receipt::Entity::insert_many(rows)
            .exec_without_returning(&*tx)
            .await?;
        chain_head::Entity::update_many()
            .col_expr(chain_head::Column::Seq, Expr::value(end.seq))
            .col_expr(chain_head::Column::Hash, Expr::value(end.hash))
            .filter(chain_head::Column::Id.eq(1))
            .exec(&*tx)
            .await?;
        tx.commit().await?;
        chained += txs.len();
        if (txs.len() as u64) < CHAINED_PER_WRITE {
            return Ok(chained);
        }
    }
}

/// Brings the chain up to date (at start-up, and for a reader): every
/// committed transaction chained and every receipt signed. Returns how
/// many transactions it chained.
pub async fn seal(db: &Db, key: &ServerKey) -> Result<usize> {
    let chained = chain_pending(db, Some(key)).await?;
    sign_pending(db, key).await?;
    Ok(chained)
}

/// Receipts signed per write transaction by [`sign_pending`].
const SIGNED_PER_WRITE: usize = 100;

/// Signs receipts committed but not yet signed, oldest first, after
/// checking each one's hash against its rows. Returns how many it signed.
/// Idempotent and safe to run on several servers at once (ed25519 is
/// deterministic: two signers write the same signature).
pub async fn sign_pending(db: &Db, key: &ServerKey) -> Result<usize> {
    let mut signed = 0;
    let mut after = 0i64;
    loop {
        let rows = receipt::Entity::find()
            .filter(receipt::Column::Signature.is_null())
            .filter(receipt::Column::Seq.gt(after))
            .order_by_asc(receipt::Column::Seq)
            .limit(1000)
            .all(&db.conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(signed);
        };
        after = last.seq;
        let receipts = load(&db.conn, rows).await?;
        let mut sigs: Vec<(i64, sea_orm::Value)> = Vec::with_capacity(receipts.len());
        for r in &receipts {
            match (r.recompute_hash(), parse_hash(&r.hash)) {
                (Some(a), Some(b)) if a == b => {
                    sigs.push((r.seq as i64, key.sign_hash(&a).into()));
                }
                _ => tracing::error!(
                    seq = r.seq,
                    "receipt content does not match its hash; refusing to sign it"
                ),
            }
        }
        // One statement per slice of the page: a receipt per closed item
        // made this one UPDATE per receipt, a third of a statement per
        // answer. A slice, not the page: on SQLite each row looks its value
        // up among the statement's, so a page of 1,000 held the write gate
        // 22 ms every 2 s under load, in every writer's p99.
        let backend = db.backend();
        for slice in sigs.chunks(SIGNED_PER_WRITE) {
            let tx = db.write().await?;
            receipt::Entity::update_many()
                .col_expr(
                    receipt::Column::Signature,
                    shape::per_id(
                        backend,
                        receipt::Column::Seq,
                        slice,
                        "text",
                        Expr::col(receipt::Column::Signature),
                    ),
                )
                .filter(shape::any_of(
                    backend,
                    receipt::Column::Seq,
                    slice.iter().map(|(seq, _)| *seq),
                ))
                .filter(receipt::Column::Signature.is_null())
                .exec(&*tx)
                .await?;
            tx.commit().await?;
        }
        signed += sigs.len();
    }
}

/// The accounts a user holds, as receipts name them.
pub fn user_accounts(user_id: i64) -> [AccountRef; 2] {
    [AccountRef::User(user_id), AccountRef::Withdrawal(user_id)]
}

/// One page of a user's receipts (those touching any of their accounts)
/// after chain position `after`, with the signed predecessor of each and
/// their accounts' balances.
pub async fn bundle_for_user(
    conn: &impl ConnectionTrait,
    key: &ServerKey,
    user_id: i64,
    after: u64,
    limit: u64,
) -> Result<(ReceiptBundle, Option<u64>)> {
    let mut balances = Vec::new();
    let mut account_ids = Vec::new();
    for r in user_accounts(user_id) {
        if let Some(a) = super::find_account(conn, r).await? {
            account_ids.push(a.id);
            balances.push(ReceiptPosting {
                account: a.kind,
                owner: a.owner_id,
                amount: Micros(a.balance),
            });
        }
    }
    let mut bundle = ReceiptBundle {
        server_key: key.public_hex(),
        balances,
        receipts: Vec::new(),
        predecessors: Vec::new(),
    };
    if account_ids.is_empty() {
        return Ok((bundle, None));
    }
    let touching = Query::select()
        .column(posting::Column::TransactionId)
        .from(posting::Entity)
        .and_where(posting::Column::AccountId.is_in(account_ids))
        .to_owned();
    let rows = receipt::Entity::find()
        .filter(receipt::Column::TransactionId.in_subquery(touching))
        .filter(receipt::Column::Seq.gt(after as i64))
        .order_by_asc(receipt::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?;
    let next = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.seq as u64))
        .flatten();
    let have: std::collections::HashSet<i64> = rows.iter().map(|r| r.seq).collect();
    let wanted: Vec<i64> = rows
        .iter()
        .map(|r| r.seq - 1)
        .filter(|s| *s >= 1 && !have.contains(s))
        .collect();
    for chunk in wanted.chunks(500) {
        let links = receipt::Entity::find()
            .filter(receipt::Column::Seq.is_in(chunk.to_vec()))
            .all(conn)
            .await?;
        bundle
            .predecessors
            .extend(links.into_iter().map(|l| ChainLink {
                seq: l.seq as u64,
                hash: l.hash,
                signature: l.signature,
            }));
    }
    bundle.receipts = load(conn, rows).await?;
    Ok((bundle, next))
}

/// What a walk of the whole chain found.
#[derive(Debug, Default)]
pub struct ChainAudit {
    pub receipts: u64,
    /// Human-readable problems: a gap, a broken link, content that no longer
    /// matches its hash, a bad signature, a head that is not the last link.
    pub problems: Vec<String>,
    /// Transactions with no receipt.
    pub unchained: Vec<i64>,
    /// Receipts not signed yet (normal for a moment after each commit).
    pub unsigned: u64,
}

/// Walks the chain from the first receipt: every position present once,
/// every link to its predecessor, every hash re-derived from the rows and,
/// with a key, every signature checked.
pub async fn check_chain(
    conn: &impl ConnectionTrait,
    key: Option<&VerifyingKey>,
) -> Result<ChainAudit> {
    let mut out = ChainAudit::default();
    let mut prev_hash = hex::encode(GENESIS_HASH);
    let mut expected = 1i64;
    loop {
        let rows = receipt::Entity::find()
            .filter(receipt::Column::Seq.gte(expected))
            .order_by_asc(receipt::Column::Seq)
            .limit(1000)
            .all(conn)
            .await?;
        if rows.is_empty() {
            break;
        }
        let receipts = load(conn, rows.clone()).await?;
        if receipts.len() != rows.len() {
            out.problems
                .push("a receipt names a transaction that does not exist".into());
        }
        for r in &receipts {
            out.receipts += 1;
            let seq = r.seq as i64;
            if seq != expected {
                out.problems
                    .push(format!("receipts {expected}..{} are missing", seq - 1));
            }
            if r.prev_hash != prev_hash {
                out.problems.push(format!(
                    "receipt {seq} (transaction {}) does not link to its predecessor",
                    r.transaction_id
                ));
            }
            let stated = parse_hash(&r.hash);
            if r.recompute_hash().is_none() || r.recompute_hash() != stated {
                out.problems.push(format!(
                    "receipt {seq}: transaction {} no longer matches its hash (altered)",
                    r.transaction_id
                ));
            }
            match (&r.signature, key, stated) {
                (None, _, _) => out.unsigned += 1,
                (Some(sig), Some(k), Some(h)) if signing::verify(k, &h, sig).is_err() => {
                    out.problems.push(format!(
                        "receipt {seq}: the signature is not the server key's"
                    ));
                }
                _ => {}
            }
            prev_hash = r.hash.clone();
            expected = seq + 1;
        }
    }
    let head = chain_head::Entity::find_by_id(1).one(conn).await?;
    match head {
        Some(h) if h.seq == expected - 1 && h.hash == prev_hash => {}
        Some(h) => out.problems.push(format!(
            "the chain head says {} but the last receipt is {}",
            h.seq,
            expected - 1
        )),
        None => out.problems.push("the chain head row is missing".into()),
    }
    let chained = Query::select()
        .column(receipt::Column::TransactionId)
        .from(receipt::Entity)
        .to_owned();
    out.unchained = transaction::Entity::find()
        .select_only()
        .column(transaction::Column::Id)
        .filter(transaction::Column::Id.not_in_subquery(chained))
        .order_by_asc(transaction::Column::Id)
        .limit(100)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(out)
}
