//! Sahel's schema history. One list of migrations runs on SQLite and on
//! PostgreSQL; each is named `mYYYYMMDD_NNNNNN_verb_noun`. Demo data lives in
//! `fixtures/`, never here.

// async_trait expands the trait methods with late-bound lifetimes that the
// 2018-idioms lint cannot see through.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_core;
mod m20261124_000010_add_import_lock;
mod m20261124_000100_create_receipts;
mod m20261124_000101_create_payouts;
mod m20261124_000102_create_datasets;
mod m20261124_000103_add_answer_provenance;
mod m20261124_000200_create_quality;
mod m20261124_000300_create_web_sessions;
mod m20261124_000400_create_artifacts;
mod m20261124_000500_create_reviews;
mod m20261124_000600_add_gold_feedback;
mod m20261124_000700_create_review_quality;
mod m20261206_000100_add_transaction_chained;
mod m20261207_000100_reshape_hot_indexes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_core::Migration),
            Box::new(m20261124_000010_add_import_lock::Migration),
            Box::new(m20261124_000300_create_web_sessions::Migration),
            Box::new(m20261124_000100_create_receipts::Migration),
            Box::new(m20261124_000101_create_payouts::Migration),
            Box::new(m20261124_000102_create_datasets::Migration),
            Box::new(m20261124_000103_add_answer_provenance::Migration),
            Box::new(m20261124_000200_create_quality::Migration),
            Box::new(m20261124_000400_create_artifacts::Migration),
            Box::new(m20261124_000500_create_reviews::Migration),
            Box::new(m20261124_000600_add_gold_feedback::Migration),
            Box::new(m20261124_000700_create_review_quality::Migration),
            Box::new(m20261206_000100_add_transaction_chained::Migration),
            Box::new(m20261207_000100_reshape_hot_indexes::Migration),
        ]
    }
}
