//! Ledger receipts: the hash chain and the server's signature over it.
//!
//! Every ledger transaction becomes one receipt. Its hash is SHA-256 over a
//! fixed binary layout (all integers big-endian, strings length-prefixed):
//!
//! ```text
//! "SAHEL-RECEIPT-V1"            16 bytes, the domain tag
//! prev_hash                     32 bytes (32 zero bytes before the first)
//! seq                           u64, position in the chain, from 1
//! transaction_id                i64
//! created_at                    i64, unix milliseconds
//! kind                          u32 length + UTF-8
//! memo                          u32 length + UTF-8 (the JSON text as stored)
//! postings                      u32 count, then per posting, sorted by
//!                               (account kind bytes, owner id, amount):
//!   account kind                u32 length + UTF-8 (user, escrow, fee, ...)
//!   owner id                    i64 (user, project or dataset id; 0 for singletons)
//!   amount                      i64 micro-units, signed
//! ```
//!
//! The signature is ed25519 by the server's key over the 32 hash bytes.
//! A receipt verifies when its hash is recomputed from its content, its
//! signature checks against the published server key, and (where the
//! previous receipt is known) `prev_hash` is that receipt's hash.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::money::Micros;
use crate::signing::{self, SignatureError};

pub const RECEIPT_DOMAIN: &[u8; 16] = b"SAHEL-RECEIPT-V1";
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// One line of a receipt: an account, named by its kind and owner, and the
/// signed amount it moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPosting {
    /// `user`, `escrow`, `fee`, `deposits`, `royalty_pool`, `withdrawal`, `payouts`.
    pub account: String,
    /// The user, project or dataset the account belongs to; 0 for singletons.
    pub owner: i64,
    pub amount: Micros,
}

/// A signed ledger transaction, as `GET /me/receipts` serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub seq: u64,
    pub transaction_id: i64,
    /// Unix milliseconds (kept numeric so the hash input is unambiguous).
    pub created_at_ms: i64,
    pub kind: String,
    /// The transaction's memo exactly as hashed (a JSON text).
    pub memo: String,
    pub postings: Vec<ReceiptPosting>,
    /// Hex of the previous receipt's hash.
    pub prev_hash: String,
    /// Hex of this receipt's hash.
    pub hash: String,
    /// Hex ed25519 signature of the hash bytes by the server key; absent
    /// only in the moment between commit and signing.
    pub signature: Option<String>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The postings in their canonical (hashed) order.
pub fn canonical_postings(postings: &[ReceiptPosting]) -> Vec<&ReceiptPosting> {
    let mut sorted: Vec<&ReceiptPosting> = postings.iter().collect();
    sorted.sort_by(|a, b| {
        (a.account.as_bytes(), a.owner, a.amount.0).cmp(&(
            b.account.as_bytes(),
            b.owner,
            b.amount.0,
        ))
    });
    sorted
}

/// The exact bytes that are hashed (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn layout(
    prev_hash: &[u8; 32],
    seq: u64,
    transaction_id: i64,
    created_at_ms: i64,
    kind: &str,
    memo: &str,
    postings: &[ReceiptPosting],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + memo.len() + postings.len() * 40);
    out.extend_from_slice(RECEIPT_DOMAIN);
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&created_at_ms.to_be_bytes());
    put_str(&mut out, kind);
    put_str(&mut out, memo);
    out.extend_from_slice(&(postings.len() as u32).to_be_bytes());
    for p in canonical_postings(postings) {
        put_str(&mut out, &p.account);
        out.extend_from_slice(&p.owner.to_be_bytes());
        out.extend_from_slice(&p.amount.0.to_be_bytes());
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub fn receipt_hash(
    prev_hash: &[u8; 32],
    seq: u64,
    transaction_id: i64,
    created_at_ms: i64,
    kind: &str,
    memo: &str,
    postings: &[ReceiptPosting],
) -> [u8; 32] {
    Sha256::digest(layout(
        prev_hash,
        seq,
        transaction_id,
        created_at_ms,
        kind,
        memo,
        postings,
    ))
    .into()
}

pub fn sign_hash(key: &SigningKey, hash: &[u8; 32]) -> String {
    hex::encode(key.sign(hash).to_bytes())
}

pub fn parse_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

/// Why a receipt (or a set of them) does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt {seq}: a hash is not 32 bytes of hex")]
    BadHash { seq: u64 },
    #[error("receipt {seq}: its content does not match its hash (it was altered)")]
    ContentMismatch { seq: u64 },
    #[error("receipt {seq}: not signed")]
    Unsigned { seq: u64 },
    #[error("receipt {seq}: the server signature is invalid ({why})")]
    BadSignature { seq: u64, why: SignatureError },
    #[error("receipt {seq}: does not link to receipt {prev} (chain broken)")]
    BrokenLink { seq: u64, prev: u64 },
    #[error("two receipts claim position {seq} with different hashes (the chain forked)")]
    Fork { seq: u64 },
    #[error("account {account}:{owner}: balance {balance} but its receipts sum to {sum}")]
    BalanceMismatch {
        account: String,
        owner: i64,
        balance: Micros,
        sum: Micros,
    },
}

impl Receipt {
    pub fn recompute_hash(&self) -> Option<[u8; 32]> {
        let prev = parse_hash(&self.prev_hash)?;
        Some(receipt_hash(
            &prev,
            self.seq,
            self.transaction_id,
            self.created_at_ms,
            &self.kind,
            &self.memo,
            &self.postings,
        ))
    }

    /// Checks the content against the hash and the signature against the
    /// server key.
    pub fn verify(&self, server_key: &VerifyingKey) -> Result<(), ReceiptError> {
        let seq = self.seq;
        let stated = parse_hash(&self.hash).ok_or(ReceiptError::BadHash { seq })?;
        let computed = self.recompute_hash().ok_or(ReceiptError::BadHash { seq })?;
        if stated != computed {
            return Err(ReceiptError::ContentMismatch { seq });
        }
        let sig = self
            .signature
            .as_deref()
            .ok_or(ReceiptError::Unsigned { seq })?;
        signing::verify(server_key, &stated, sig)
            .map_err(|why| ReceiptError::BadSignature { seq, why })
    }

    /// The sum of this receipt's postings to one account.
    pub fn amount_for(&self, account: &str, owner: i64) -> i64 {
        self.postings
            .iter()
            .filter(|p| p.account == account && p.owner == owner)
            .map(|p| p.amount.0)
            .sum()
    }
}

/// A signed chain position: enough to check a link without the content of
/// somebody else's transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub seq: u64,
    pub hash: String,
    pub signature: Option<String>,
}

/// What an account holder verifies offline: their receipts, the signed
/// predecessor of each, and their balances as the server states them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBundle {
    /// Hex of the server's ed25519 public key.
    pub server_key: String,
    /// Balances of the caller's accounts, by `(account kind, owner)`.
    pub balances: Vec<ReceiptPosting>,
    pub receipts: Vec<Receipt>,
    /// The signed chain entries just before each receipt, so each link can
    /// be checked.
    pub predecessors: Vec<ChainLink>,
}

/// The result of verifying a bundle.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub receipts: usize,
    pub links_checked: usize,
    pub errors: Vec<ReceiptError>,
}

/// Signatures checked per ed25519 batch.
const BATCH: usize = 1024;

/// Checks receipts' content against their hashes, then their signatures
/// in ed25519 batches (much faster than one by one); a batch that fails is
/// re-checked one signature at a time, strictly, to name the bad receipts.
/// The batch path is used only for a key that is not of small order.
fn verify_chunk(part: &[Receipt], key: &VerifyingKey) -> Vec<ReceiptError> {
    let mut errors = Vec::new();
    let mut pending: Vec<(u64, [u8; 32], &str, ed25519_dalek::Signature)> = Vec::new();
    for r in part {
        let seq = r.seq;
        let Some(stated) = parse_hash(&r.hash) else {
            errors.push(ReceiptError::BadHash { seq });
            continue;
        };
        match r.recompute_hash() {
            None => {
                errors.push(ReceiptError::BadHash { seq });
                continue;
            }
            Some(h) if h != stated => {
                errors.push(ReceiptError::ContentMismatch { seq });
                continue;
            }
            Some(_) => {}
        }
        let Some(sig_hex) = r.signature.as_deref() else {
            errors.push(ReceiptError::Unsigned { seq });
            continue;
        };
        match signing::parse_signature(sig_hex) {
            Ok(sig) => pending.push((seq, stated, sig_hex, sig)),
            Err(why) => errors.push(ReceiptError::BadSignature { seq, why }),
        }
    }
    let batchable = !key.is_weak();
    for block in pending.chunks(BATCH) {
        if batchable {
            let messages: Vec<&[u8]> = block.iter().map(|(_, h, _, _)| &h[..]).collect();
            let sigs: Vec<ed25519_dalek::Signature> = block.iter().map(|(.., s)| *s).collect();
            let keys = vec![*key; block.len()];
            if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
                continue;
            }
        }
        for (seq, h, sig_hex, _) in block {
            if let Err(why) = signing::verify(key, h, sig_hex) {
                errors.push(ReceiptError::BadSignature { seq: *seq, why });
            }
        }
    }
    errors
}

/// Verifies every receipt of a bundle (in parallel over `threads`), every
/// link to a known predecessor, and that each stated balance equals the
/// sum of the receipts' postings to that account.
pub fn verify_bundle(bundle: &ReceiptBundle, key: &VerifyingKey, threads: usize) -> BundleReport {
    let mut report = BundleReport {
        receipts: bundle.receipts.len(),
        ..Default::default()
    };
    let threads = threads.max(1);
    let chunk = bundle.receipts.len().div_ceil(threads).max(1);
    let mut errors: Vec<ReceiptError> = std::thread::scope(|s| {
        let handles: Vec<_> = bundle
            .receipts
            .chunks(chunk)
            .map(|part| s.spawn(move || verify_chunk(part, key)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });

    // Every known chain position, from the receipts and the predecessors.
    let mut known: BTreeMap<u64, String> = BTreeMap::new();
    fn add(
        known: &mut BTreeMap<u64, String>,
        seq: u64,
        hash: &str,
        errors: &mut Vec<ReceiptError>,
    ) {
        match known.get(&seq) {
            Some(h) if !h.eq_ignore_ascii_case(hash) => errors.push(ReceiptError::Fork { seq }),
            Some(_) => {}
            None => {
                known.insert(seq, hash.to_owned());
            }
        }
    }
    for r in &bundle.receipts {
        add(&mut known, r.seq, &r.hash, &mut errors);
    }
    for l in &bundle.predecessors {
        let sig_ok = match (&l.signature, parse_hash(&l.hash)) {
            (Some(sig), Some(h)) => signing::verify(key, &h, sig).is_ok(),
            _ => false,
        };
        if !sig_ok {
            errors.push(ReceiptError::BadSignature {
                seq: l.seq,
                why: SignatureError::Mismatch,
            });
            continue;
        }
        add(&mut known, l.seq, &l.hash, &mut errors);
    }
    for r in &bundle.receipts {
        if r.seq <= 1 {
            if r.prev_hash != hex::encode(GENESIS_HASH) {
                errors.push(ReceiptError::BrokenLink {
                    seq: r.seq,
                    prev: 0,
                });
            }
            report.links_checked += 1;
            continue;
        }
        if let Some(prev) = known.get(&(r.seq - 1)) {
            report.links_checked += 1;
            if !prev.eq_ignore_ascii_case(&r.prev_hash) {
                errors.push(ReceiptError::BrokenLink {
                    seq: r.seq,
                    prev: r.seq - 1,
                });
            }
        }
    }

    for b in &bundle.balances {
        let sum: i64 = bundle
            .receipts
            .iter()
            .map(|r| r.amount_for(&b.account, b.owner))
            .sum();
        if sum != b.amount.0 {
            errors.push(ReceiptError::BalanceMismatch {
                account: b.account.clone(),
                owner: b.owner,
                balance: b.amount,
                sum: Micros(sum),
            });
        }
    }
    report.errors = errors;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    /// A chain of `n` receipts paying user 7 one micro each.
    pub(crate) fn chain(n: u64) -> Vec<Receipt> {
        let k = key();
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let postings = vec![
                    ReceiptPosting {
                        account: "user".into(),
                        owner: 7,
                        amount: Micros(1),
                    },
                    ReceiptPosting {
                        account: "escrow".into(),
                        owner: 3,
                        amount: Micros(-1),
                    },
                ];
                let memo = format!("{{\"item_id\":{seq}}}");
                let h = receipt_hash(
                    &prev,
                    seq,
                    seq as i64,
                    1_700_000_000_000,
                    "pay",
                    &memo,
                    &postings,
                );
                let r = Receipt {
                    seq,
                    transaction_id: seq as i64,
                    created_at_ms: 1_700_000_000_000,
                    kind: "pay".into(),
                    memo,
                    postings,
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(h),
                    signature: Some(sign_hash(&k, &h)),
                };
                prev = h;
                r
            })
            .collect()
    }

    fn bundle(n: u64) -> ReceiptBundle {
        ReceiptBundle {
            server_key: hex::encode(key().verifying_key().as_bytes()),
            balances: vec![ReceiptPosting {
                account: "user".into(),
                owner: 7,
                amount: Micros(n as i64),
            }],
            receipts: chain(n),
            predecessors: vec![],
        }
    }

    #[test]
    fn a_clean_chain_verifies_with_every_link_checked() {
        let b = bundle(5);
        let r = verify_bundle(&b, &key().verifying_key(), 2);
        assert_eq!(r.errors, vec![]);
        assert_eq!(r.receipts, 5);
        assert_eq!(r.links_checked, 5);
    }

    #[test]
    fn posting_order_does_not_change_the_hash_but_any_value_does() {
        let r = &chain(1)[0];
        let mut swapped = r.clone();
        swapped.postings.reverse();
        assert_eq!(swapped.recompute_hash(), r.recompute_hash());
        let mut changed = r.clone();
        changed.postings[0].amount = Micros(2);
        assert_ne!(changed.recompute_hash(), r.recompute_hash());
        let mut memo = r.clone();
        memo.memo.push(' ');
        assert_ne!(memo.recompute_hash(), r.recompute_hash());
    }

    #[test]
    fn tampering_breaks_hash_signature_link_or_balance() {
        let vk = key().verifying_key();
        let mut b = bundle(4);
        b.receipts[1].postings[0].amount = Micros(5);
        let errs = verify_bundle(&b, &vk, 1).errors;
        assert!(
            errs.contains(&ReceiptError::ContentMismatch { seq: 2 }),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| matches!(e, ReceiptError::BalanceMismatch { .. })),
            "{errs:?}"
        );

        let mut b = bundle(3);
        b.receipts[2].signature = Some(sign_hash(&SigningKey::from_bytes(&[1; 32]), &[0; 32]));
        let errs = verify_bundle(&b, &vk, 1).errors;
        assert!(
            matches!(errs[..], [ReceiptError::BadSignature { seq: 3, .. }]),
            "{errs:?}"
        );

        // A receipt re-hashed and re-signed by someone else's key is refused;
        // re-hashed over another predecessor, the link breaks.
        let mut b = bundle(3);
        b.receipts[2].prev_hash = hex::encode([1u8; 32]);
        let errs = verify_bundle(&b, &vk, 1).errors;
        assert!(
            errs.contains(&ReceiptError::BrokenLink { seq: 3, prev: 2 }),
            "{errs:?}"
        );

        let mut b = bundle(2);
        b.receipts.remove(0);
        let errs = verify_bundle(&b, &vk, 1).errors;
        assert!(
            errs.iter()
                .any(|e| matches!(e, ReceiptError::BalanceMismatch { .. })),
            "a withheld receipt shows in the balance: {errs:?}"
        );
    }

    #[test]
    fn the_layout_is_fixed() {
        let p = vec![ReceiptPosting {
            account: "user".into(),
            owner: 1,
            amount: Micros(-2),
        }];
        let bytes = layout(&GENESIS_HASH, 1, 2, 3, "k", "{}", &p);
        let mut expected = b"SAHEL-RECEIPT-V1".to_vec();
        expected.extend([0u8; 32]);
        expected.extend(1u64.to_be_bytes());
        expected.extend(2i64.to_be_bytes());
        expected.extend(3i64.to_be_bytes());
        expected.extend([0, 0, 0, 1, b'k']);
        expected.extend([0, 0, 0, 2, b'{', b'}']);
        expected.extend([0, 0, 0, 1]);
        expected.extend([0, 0, 0, 4, b'u', b's', b'e', b'r']);
        expected.extend(1i64.to_be_bytes());
        expected.extend((-2i64).to_be_bytes());
        assert_eq!(bytes, expected);
    }
}
