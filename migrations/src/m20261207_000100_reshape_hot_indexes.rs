//! Indexes shaped for the rows every answer rewrites.
//!
//! A lease's status changes once (answered or released) a moment after it
//! is written. On PostgreSQL an update that leaves every indexed column
//! alone and finds room on its page is a HOT update: no index gets a new
//! entry. Under load none of the lease updates was one: status sat in two
//! indexes, and a page was full by the time its leases were answered.
//! Every read of live leases asks for the unexpired ones, and an expired
//! lease keeps its `open` status (expiry frees it, nothing rewrites it):
//! leases are now found by owner or bounty and expiry, which skips the
//! expired too, and status is tested on the row; and their pages keep
//! room for each row's one update.
//!
//! An item's status change still adds index entries, and the entry for
//! `open` stays behind until vacuum. The completion check, which asks
//! whether any item of a bounty is open in every transaction that closes
//! one, stepped over the entries of every item closed so far; items close
//! roughly in import order, so with `seq` in the index it looks from the
//! other end.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(table: &str, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table));
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

fn drop_statement(table: &str, name: &str) -> IndexDropStatement {
    Index::drop().name(name).table(Alias::new(table)).to_owned()
}

/// (table, old index and its columns, new index and its columns).
type Swap = (
    &'static str,
    (&'static str, &'static [&'static str]),
    (&'static str, &'static [&'static str]),
);

const SWAPS: [Swap; 3] = [
    (
        "leases",
        ("ix_leases_project_status", &["project_id", "status"]),
        ("ix_leases_project_expiry", &["project_id", "expires_at"]),
    ),
    (
        "leases",
        ("ix_leases_user_status", &["user_id", "status"]),
        ("ix_leases_user_expiry", &["user_id", "expires_at"]),
    ),
    (
        "items",
        ("ix_items_project_status", &["project_id", "status"]),
        (
            "ix_items_project_status_seq",
            &["project_id", "status", "seq"],
        ),
    ),
];

/// How full new pages are filled, leaving room for their rows' updates.
const FILL: [(&str, u8); 1] = [("leases", 70)];

async fn fill(m: &SchemaManager<'_>, reset: bool) -> Result<(), DbErr> {
    if m.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    for (table, percent) in FILL {
        let sql = match reset {
            false => format!("ALTER TABLE {table} SET (fillfactor = {percent})"),
            true => format!("ALTER TABLE {table} RESET (fillfactor)"),
        };
        m.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, (old, _), (new, cols)) in SWAPS {
            m.create_index(index(table, new, cols)).await?;
            m.drop_index(drop_statement(table, old)).await?;
        }
        fill(m, false).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        fill(m, true).await?;
        for (table, (old, cols), (new, _)) in SWAPS {
            m.create_index(index(table, old, cols)).await?;
            m.drop_index(drop_statement(table, new)).await?;
        }
        Ok(())
    }
}
