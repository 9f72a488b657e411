//! Receipts are chained after the money transaction commits, not inside it
//! (`ledger::receipts::chain_pending`): payments no longer queue on the one
//! chain-head row. `chained` marks a transaction whose receipt exists, and
//! a partial index keeps the few that wait for one (a moment after each
//! commit) found without reading the rest.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("ledger_transactions")
                .add_column(boolean("chained").default(false))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE ledger_transactions SET chained = TRUE \
             WHERE id IN (SELECT transaction_id FROM ledger_receipts)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_ledger_transactions_unchained \
             ON ledger_transactions (id) WHERE NOT chained",
        )
        .await?;
        // Receipts chained by a tool without the server key wait for their
        // signature; readers look for them on every receipts read.
        db.execute_unprepared(
            "CREATE INDEX ix_ledger_receipts_unsigned \
             ON ledger_receipts (seq) WHERE signature IS NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX ix_ledger_receipts_unsigned")
            .await?;
        db.execute_unprepared("DROP INDEX ix_ledger_transactions_unchained")
            .await?;
        m.alter_table(
            Table::alter()
                .table("ledger_transactions")
                .drop_column("chained")
                .to_owned(),
        )
        .await
    }
}
