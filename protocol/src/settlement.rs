//! EVM settlement: payout addresses and OpenZeppelin `StandardMerkleTree`
//! roots and proofs over `(address, uint256)` leaves, so a stock cumulative
//! Merkle distributor contract can pay what each address is owed.
//!
//! The tree is exactly `@openzeppelin/merkle-tree`'s (v1, `standard-v1`):
//!
//! - leaf = keccak256(keccak256(abi.encode(address, uint256))), where
//!   `abi.encode` is the 20-byte address left-padded to 32 bytes followed by
//!   the 32-byte big-endian amount;
//! - leaves sorted ascending by hash bytes;
//! - the tree is an array of `2n - 1` nodes, leaf `i` of the sorted list at
//!   index `len - 1 - i`, node `i` = keccak256(sort(left, right)) of its
//!   children `2i + 1` and `2i + 2`; the root is node 0;
//! - a proof is the list of sibling hashes from the leaf up.
//!
//! `fixtures/settlement/oz-vectors.json` holds vectors produced by the
//! JavaScript library itself; the tests below compare against them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tiny_keccak::{Hasher, Keccak};

pub type Hash = [u8; 32];

pub fn keccak256(data: &[u8]) -> Hash {
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

fn keccak_pair(a: &Hash, b: &Hash) -> Hash {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut k = Keccak::v256();
    k.update(lo);
    k.update(hi);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub fn parse_hash0x(s: &str) -> Option<Hash> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
        .ok()?
        .try_into()
        .ok()
}

// ------------------------------------------------------------------ uint256

/// An unsigned 256-bit integer, big-endian bytes; just enough arithmetic for
/// amounts (decimal text, addition, scaling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct U256(pub [u8; 32]);

impl U256 {
    pub const ZERO: U256 = U256([0; 32]);

    pub fn from_u128(v: u128) -> U256 {
        let mut b = [0u8; 32];
        b[16..].copy_from_slice(&v.to_be_bytes());
        U256(b)
    }

    fn mul_small_add(&self, m: u32, a: u32) -> Option<U256> {
        let mut out = [0u8; 32];
        let mut carry: u64 = a as u64;
        for i in (0..32).rev() {
            let v = self.0[i] as u64 * m as u64 + carry;
            out[i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        (carry == 0).then_some(U256(out))
    }

    pub fn checked_add(&self, other: &U256) -> Option<U256> {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let v = self.0[i] as u16 + other.0[i] as u16 + carry;
            out[i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        (carry == 0).then_some(U256(out))
    }

    /// Divides by a small number, returning quotient and remainder.
    fn div_small(&self, d: u32) -> (U256, u32) {
        let mut out = [0u8; 32];
        let mut rem: u64 = 0;
        for (o, b) in out.iter_mut().zip(self.0) {
            let cur = (rem << 8) | b as u64;
            *o = (cur / d as u64) as u8;
            rem = cur % d as u64;
        }
        (U256(out), rem as u32)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Micro-units scaled to a token with `decimals` decimals (at least 6).
    pub fn from_micros(micros: u64, decimals: u32) -> Option<U256> {
        let mut v = U256::from_u128(micros as u128);
        for _ in 6..decimals {
            v = v.mul_small_add(10, 0)?;
        }
        (decimals >= 6).then_some(v)
    }
}

impl fmt::Display for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let mut digits = Vec::new();
        let mut v = *self;
        while !v.is_zero() {
            let (q, r) = v.div_small(10);
            digits.push(b'0' + r as u8);
            v = q;
        }
        digits.reverse();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a uint256 in decimal: {0:?}")]
pub struct ParseU256Error(String);

impl FromStr for U256 {
    type Err = ParseU256Error;
    fn from_str(s: &str) -> Result<U256, ParseU256Error> {
        let err = || ParseU256Error(s.to_owned());
        if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        s.bytes().try_fold(U256::ZERO, |acc, b| {
            acc.mul_small_add(10, (b - b'0') as u32).ok_or_else(err)
        })
    }
}

impl Serialize for U256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for U256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------ addresses

/// A valid, non-zero EVM address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an EVM address is 0x followed by 40 hex digits")]
    Format,
    #[error("the mixed-case address fails its EIP-55 checksum (a typo?)")]
    Checksum,
    #[error("the zero address cannot receive payouts")]
    Zero,
}

impl Address {
    /// The EIP-55 mixed-case spelling.
    pub fn checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let h = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (h[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Parses `0x` + 40 hex digits. All-lowercase or all-uppercase spellings
    /// carry no checksum; a mixed-case one must match EIP-55. The zero
    /// address is refused: tokens sent there are burned.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let s = s.trim();
        let body = s.strip_prefix("0x").ok_or(AddressError::Format)?;
        if body.len() != 40 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddressError::Format);
        }
        let bytes: [u8; 20] = hex::decode(body)
            .map_err(|_| AddressError::Format)?
            .try_into()
            .map_err(|_| AddressError::Format)?;
        let a = Address(bytes);
        let has_lower = body.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = body.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper && a.checksummed()[2..] != *body {
            return Err(AddressError::Checksum);
        }
        if bytes == [0u8; 20] {
            return Err(AddressError::Zero);
        }
        Ok(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.checksummed())
    }
}

// ------------------------------------------------------------------ the tree

/// keccak256(keccak256(abi.encode(address, uint256))).
pub fn leaf_hash(address: &Address, amount: &U256) -> Hash {
    let mut enc = [0u8; 64];
    enc[12..32].copy_from_slice(&address.0);
    enc[32..].copy_from_slice(&amount.0);
    keccak256(&keccak256(&enc))
}

/// An OpenZeppelin `StandardMerkleTree` over `(address, uint256)`.
#[derive(Clone, Debug)]
pub struct StandardTree {
    /// All `2n - 1` nodes, root first.
    pub tree: Vec<Hash>,
    pub values: Vec<(Address, U256)>,
    /// For each value (in input order), its index in `tree`.
    pub tree_index: Vec<usize>,
}

impl StandardTree {
    /// Builds the tree; `None` when there are no values (OpenZeppelin
    /// refuses an empty tree too).
    pub fn build(values: Vec<(Address, U256)>) -> Option<StandardTree> {
        if values.is_empty() {
            return None;
        }
        let mut hashed: Vec<(Hash, usize)> = values
            .iter()
            .enumerate()
            .map(|(i, (a, v))| (leaf_hash(a, v), i))
            .collect();
        // Stable sort by hash bytes, as the library's Array.sort does.
        hashed.sort_by_key(|x| x.0);
        let n = hashed.len();
        let len = 2 * n - 1;
        let mut tree = vec![[0u8; 32]; len];
        let mut tree_index = vec![0usize; n];
        for (leaf_i, (h, value_i)) in hashed.iter().enumerate() {
            tree[len - 1 - leaf_i] = *h;
            tree_index[*value_i] = len - 1 - leaf_i;
        }
        for i in (0..len - n).rev() {
            tree[i] = keccak_pair(&tree[2 * i + 1], &tree[2 * i + 2]);
        }
        Some(StandardTree {
            tree,
            values,
            tree_index,
        })
    }

    pub fn root(&self) -> Hash {
        self.tree[0]
    }

    /// The proof of the value at `value_index` (input order).
    pub fn proof(&self, value_index: usize) -> Vec<Hash> {
        let mut i = self.tree_index[value_index];
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.tree[sibling]);
            i = (i - 1) / 2;
        }
        proof
    }

    /// The `standard-v1` dump `StandardMerkleTree.load()` accepts.
    pub fn dump(&self) -> TreeDump {
        TreeDump {
            format: "standard-v1".into(),
            leaf_encoding: vec!["address".into(), "uint256".into()],
            tree: self.tree.iter().map(|h| hex0x(h)).collect(),
            values: self
                .values
                .iter()
                .zip(&self.tree_index)
                .map(|((a, v), ti)| DumpValue {
                    value: (a.checksummed(), v.to_string()),
                    tree_index: *ti,
                })
                .collect(),
        }
    }
}

/// Folds a proof from a leaf up, with sorted-pair hashing.
pub fn process_proof(leaf: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(leaf, |acc, p| keccak_pair(&acc, p))
}

pub fn verify_proof(root: &Hash, address: &Address, amount: &U256, proof: &[Hash]) -> bool {
    process_proof(leaf_hash(address, amount), proof) == *root
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpValue {
    pub value: (String, String),
    #[serde(rename = "treeIndex")]
    pub tree_index: usize,
}

/// OpenZeppelin's `StandardMerkleTree.dump()` shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDump {
    pub format: String,
    #[serde(rename = "leafEncoding")]
    pub leaf_encoding: Vec<String>,
    pub tree: Vec<String>,
    pub values: Vec<DumpValue>,
}

/// One address's claim in an epoch file (Uniswap's claims shape, amounts in
/// decimal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Position of the value in `tree.values`.
    pub index: usize,
    /// Cumulative amount owed, in the token's smallest unit.
    pub amount: U256,
    pub proof: Vec<String>,
}

/// The published file of one settlement epoch: the root, the total, per
/// address its cumulative amount and proof (Uniswap's `claims` shape), and
/// the OpenZeppelin dump under `tree` so `StandardMerkleTree.load` reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochFile {
    pub epoch: i64,
    #[serde(rename = "merkleRoot")]
    pub merkle_root: String,
    /// Sum of every leaf's amount, in the token's smallest unit.
    #[serde(rename = "tokenTotal")]
    pub token_total: U256,
    pub decimals: u32,
    pub claims: std::collections::BTreeMap<String, Claim>,
    pub tree: TreeDump,
}

impl EpochFile {
    pub fn build(epoch: i64, decimals: u32, tree: &StandardTree) -> EpochFile {
        let mut total = U256::ZERO;
        let mut claims = std::collections::BTreeMap::new();
        for (i, (a, v)) in tree.values.iter().enumerate() {
            total = total.checked_add(v).unwrap_or(total);
            claims.insert(
                a.checksummed(),
                Claim {
                    index: i,
                    amount: *v,
                    proof: tree.proof(i).iter().map(|h| hex0x(h)).collect(),
                },
            );
        }
        EpochFile {
            epoch,
            merkle_root: hex0x(&tree.root()),
            token_total: total,
            decimals,
            claims,
            tree: tree.dump(),
        }
    }

    /// Recomputes the root from the leaves alone and checks every proof,
    /// the total, and that the claims match the tree's values. Returns the
    /// number of claims checked.
    pub fn verify(&self) -> Result<usize, String> {
        if self.tree.format != "standard-v1"
            || self.tree.leaf_encoding != ["address".to_owned(), "uint256".to_owned()]
        {
            return Err("the tree is not a standard-v1 (address, uint256) dump".into());
        }
        let mut values = Vec::with_capacity(self.tree.values.len());
        for v in &self.tree.values {
            let a = Address::parse(&v.value.0).map_err(|e| format!("{}: {e}", v.value.0))?;
            let amount: U256 = v.value.1.parse().map_err(|e| format!("{e}"))?;
            values.push((a, amount));
        }
        let rebuilt = StandardTree::build(values).ok_or("the epoch has no leaves")?;
        let root = hex0x(&rebuilt.root());
        if !root.eq_ignore_ascii_case(&self.merkle_root) {
            return Err(format!(
                "the leaves give root {root}, the file says {}",
                self.merkle_root
            ));
        }
        let stated_tree: Vec<String> = rebuilt.tree.iter().map(|h| hex0x(h)).collect();
        if stated_tree.len() != self.tree.tree.len()
            || stated_tree
                .iter()
                .zip(&self.tree.tree)
                .any(|(a, b)| !a.eq_ignore_ascii_case(b))
        {
            return Err("the dumped tree's nodes differ from the rebuilt tree".into());
        }
        let root_bytes = rebuilt.root();
        let mut total = U256::ZERO;
        if self.claims.len() != rebuilt.values.len() {
            return Err(format!(
                "{} claims for {} leaves",
                self.claims.len(),
                rebuilt.values.len()
            ));
        }
        for (addr, claim) in &self.claims {
            let a = Address::parse(addr).map_err(|e| format!("{addr}: {e}"))?;
            let (va, vv) = rebuilt
                .values
                .get(claim.index)
                .ok_or_else(|| format!("{addr}: index {} out of range", claim.index))?;
            if *va != a || *vv != claim.amount {
                return Err(format!(
                    "{addr}: the claim differs from leaf {}",
                    claim.index
                ));
            }
            let proof: Vec<Hash> = claim
                .proof
                .iter()
                .map(|p| parse_hash0x(p).ok_or_else(|| format!("{addr}: bad proof node {p}")))
                .collect::<Result<_, _>>()?;
            if !verify_proof(&root_bytes, &a, &claim.amount, &proof) {
                return Err(format!("{addr}: the proof does not lead to the root"));
            }
            total = total
                .checked_add(&claim.amount)
                .ok_or("the total overflows uint256")?;
        }
        if total != self.token_total {
            return Err(format!(
                "the claims sum to {total}, the file says {}",
                self.token_total
            ));
        }
        Ok(self.claims.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        values: Vec<(String, String)>,
        root: String,
        #[serde(rename = "leafHashes")]
        leaf_hashes: Vec<String>,
        proofs: Vec<Vec<String>>,
        dump: TreeDump,
    }

    #[derive(Deserialize)]
    struct Eip55 {
        lower: String,
        checksummed: String,
    }

    #[derive(Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
        eip55: Vec<Eip55>,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(include_str!("../../fixtures/settlement/oz-vectors.json")).unwrap()
    }

    fn values(c: &Case) -> Vec<(Address, U256)> {
        c.values
            .iter()
            .map(|(a, v)| (Address::parse(a).unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn roots_leaves_proofs_and_dumps_match_openzeppelin() {
        for c in vectors().cases {
            let t = StandardTree::build(values(&c)).unwrap();
            assert_eq!(hex0x(&t.root()), c.root, "{}", c.name);
            for (i, (a, v)) in t.values.iter().enumerate() {
                assert_eq!(hex0x(&leaf_hash(a, v)), c.leaf_hashes[i], "{}", c.name);
                let proof: Vec<String> = t.proof(i).iter().map(|h| hex0x(h)).collect();
                assert_eq!(proof, c.proofs[i], "{} value {i}", c.name);
                assert!(verify_proof(&t.root(), a, v, &t.proof(i)));
            }
            let dump = t.dump();
            assert_eq!(dump.tree, c.dump.tree, "{}", c.name);
            for (ours, theirs) in dump.values.iter().zip(&c.dump.values) {
                assert_eq!(ours.tree_index, theirs.tree_index, "{}", c.name);
                assert_eq!(ours.value.1, theirs.value.1);
                assert!(ours.value.0.eq_ignore_ascii_case(&theirs.value.0));
            }
        }
    }

    #[test]
    fn an_epoch_file_verifies_and_any_change_is_caught() {
        let c = vectors()
            .cases
            .into_iter()
            .find(|c| c.values.len() == 7)
            .unwrap();
        let t = StandardTree::build(values(&c)).unwrap();
        let f = EpochFile::build(3, 18, &t);
        assert_eq!(f.verify(), Ok(7));
        let text = serde_json::to_string(&f).unwrap();
        let back: EpochFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.verify(), Ok(7));

        let mut bad = f.clone();
        bad.merkle_root = hex0x(&[1; 32]);
        assert!(bad.verify().is_err());
        let mut bad = f.clone();
        let first = bad.claims.keys().next().unwrap().clone();
        bad.claims.get_mut(&first).unwrap().proof.pop();
        assert!(bad.verify().unwrap_err().contains("proof"));
        let mut bad = f.clone();
        bad.tree.values[0].value.1 = "12345".into();
        assert!(bad.verify().is_err());
        let mut bad = f;
        bad.token_total = U256::from_u128(1);
        assert!(bad.verify().unwrap_err().contains("sum"));
    }

    #[test]
    fn addresses_follow_eip55_and_refuse_zero() {
        for v in vectors().eip55 {
            let a = Address::parse(&v.lower).unwrap();
            assert_eq!(a.checksummed(), v.checksummed);
            assert_eq!(Address::parse(&v.checksummed), Ok(a));
            assert_eq!(
                Address::parse(&v.lower.to_uppercase().replace("0X", "0x")),
                Ok(a)
            );
            // Flip the case of one letter: the checksum catches it.
            let mut chars: Vec<char> = v.checksummed.chars().collect();
            let i = chars
                .iter()
                .enumerate()
                .skip(2)
                .find(|(_, c)| c.is_ascii_alphabetic())
                .unwrap()
                .0;
            chars[i] = if chars[i].is_ascii_uppercase() {
                chars[i].to_ascii_lowercase()
            } else {
                chars[i].to_ascii_uppercase()
            };
            let flipped: String = chars.into_iter().collect();
            if flipped.bytes().skip(2).any(|b| b.is_ascii_lowercase())
                && flipped.bytes().skip(2).any(|b| b.is_ascii_uppercase())
            {
                assert_eq!(Address::parse(&flipped), Err(AddressError::Checksum));
            }
        }
        // The examples of EIP-55 itself.
        for s in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(Address::parse(s).unwrap().checksummed(), s);
        }
        assert_eq!(
            Address::parse("0x0000000000000000000000000000000000000000"),
            Err(AddressError::Zero)
        );
        for bad in [
            "",
            "0x",
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x12",
            "0xzz",
        ] {
            assert_eq!(Address::parse(bad), Err(AddressError::Format), "{bad:?}");
        }
    }

    #[test]
    fn uint256_text_round_trips_and_micros_scale_by_decimals() {
        for s in [
            "0",
            "1",
            "340282366920938463463374607431768211455",
            "1000000000000",
        ] {
            assert_eq!(s.parse::<U256>().unwrap().to_string(), s);
        }
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(max.parse::<U256>().unwrap().to_string(), max);
        assert!(
            "115792089237316195423570985008687907853269984665640564039457584007913129639936"
                .parse::<U256>()
                .is_err()
        );
        assert!("-1".parse::<U256>().is_err());
        assert_eq!(
            U256::from_micros(1, 18).unwrap().to_string(),
            "1000000000000"
        );
        assert_eq!(U256::from_micros(7, 6).unwrap().to_string(), "7");
        assert_eq!(U256::from_micros(7, 5), None);
    }
}
