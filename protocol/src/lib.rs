//! Sahel's wire protocol: the types and rules a server and its clients must
//! agree on, with no I/O so any Rust client can depend on it.
//!
//! - [`money::Micros`]: integer amounts.
//! - [`time::Timestamp`]: instants, RFC 3339 on the wire.
//! - [`api`]: request and response bodies of `/api/v1`.
//! - [`signing`]: the canonical form of signed CLI requests.

pub mod api;
pub mod money;
pub mod signing;
pub mod time;

pub use money::Micros;
pub use time::Timestamp;
