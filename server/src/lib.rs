//! The Sahel server as a library: `main.rs` only parses configuration and
//! calls [`startup::Application`]; tests drive the same code.
//!
//! Capability modules own their tables and rules; `api` (JSON) and `web`
//! (HTML) call into them and never the other way round. See
//! ARCHITECTURE.md for the map.

pub mod accounts;
pub mod api;
pub mod artifacts;
pub mod config;
pub mod consensus;
pub mod datasets;
pub mod db;
pub mod demo;
pub mod error;
pub mod ledger;
pub mod projects;
pub mod queue;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod web;
