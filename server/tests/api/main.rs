//! Integration tests: a real server on port 0, fresh state per test, on
//! SQLite by default and PostgreSQL when DATABASE_URL is set.

mod accounts;
mod artifacts;
mod formats;
mod helpers;
mod invariants;
mod money;
mod payments;
mod projects;
mod provenance;
mod quality;
mod queue;
mod receipts;
mod reviewers;
mod royalties;
mod settlement;
mod types;
mod web;
mod work;
