//! Sahel's wire protocol: the types and rules a server and its clients must
//! agree on, with no I/O so any Rust client can depend on it.
//!
//! - [`money::Micros`]: integer amounts.
//! - [`time::Timestamp`]: instants, RFC 3339 on the wire.
//! - [`api`]: request and response bodies of `/api/v1`.
//! - [`signing`]: the canonical form of signed CLI requests.
//! - [`receipt`]: the hash-chained, server-signed ledger receipts.
//! - [`provenance`]: contributors' signatures over their answers.
//! - [`settlement`]: EVM payout addresses and OpenZeppelin Merkle trees.

pub mod api;
pub mod money;
pub mod provenance;
pub mod receipt;
pub mod settlement;
pub mod signing;
pub mod time;

pub use money::Micros;
pub use time::Timestamp;
