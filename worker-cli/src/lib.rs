//! The `sahel` command-line client as a library: its HTTP client and its
//! local files, so tests and the load generator use the same code.

pub mod aggregate;
pub mod client;
pub mod home;
