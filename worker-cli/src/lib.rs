//! The `sahel` command-line client as a library: its HTTP client, local
//! files, batch pull/push and the interactive loop, so tests and the load
//! generator run the same code.

pub mod aggregate;
pub mod artifacts;
pub mod batch;
pub mod client;
pub mod home;
pub mod work;
