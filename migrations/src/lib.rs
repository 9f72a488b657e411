//! Sahel's schema history. One list of migrations runs on SQLite and on
//! PostgreSQL; each is named `mYYYYMMDD_NNNNNN_verb_noun`. Demo data lives in
//! `fixtures/`, never here.

// async_trait expands the trait methods with late-bound lifetimes that the
// 2018-idioms lint cannot see through.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_core;
mod m20261124_000200_create_quality;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_core::Migration),
            Box::new(m20261124_000200_create_quality::Migration),
        ]
    }
}
