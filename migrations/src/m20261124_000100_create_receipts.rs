//! Receipts: every ledger transaction hash-chained to the one before it and
//! signed by the server. `ledger_chain_head` is the chain's single head row:
//! appending locks it (`SELECT ... FOR UPDATE` on PostgreSQL), so the chain
//! stays one line however many servers write.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("ledger_receipts")
                .col(big_integer("seq").primary_key())
                .col(big_integer_uniq("transaction_id"))
                .col(string("prev_hash"))
                .col(string("hash"))
                .col(string_null("signature"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_ledger_receipts_transaction_id")
                        .from(Alias::new("ledger_receipts"), Alias::new("transaction_id"))
                        .to(Alias::new("ledger_transactions"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("ledger_chain_head")
                .col(integer("id").primary_key())
                .col(big_integer("seq"))
                .col(string("hash"))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(Alias::new("ledger_chain_head"))
                .columns([Alias::new("id"), Alias::new("seq"), Alias::new("hash")])
                .values_panic([1.into(), 0i64.into(), "0".repeat(64).into()])
                .to_owned(),
        )
        .await?;
        // The platform's settings that every replica must apply alike; the
        // server writes them from its configuration at start-up.
        m.create_table(
            Table::create()
                .table("ledger_settings")
                .col(integer("id").primary_key())
                .col(integer("fee_bps"))
                .col(integer("royalty_buyer_share_bps"))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(Alias::new("ledger_settings"))
                .columns([
                    Alias::new("id"),
                    Alias::new("fee_bps"),
                    Alias::new("royalty_buyer_share_bps"),
                ])
                .values_panic([1.into(), 0.into(), 0.into()])
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["ledger_settings", "ledger_chain_head", "ledger_receipts"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
