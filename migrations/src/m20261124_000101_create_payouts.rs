//! Reviews paid from escrow, withdrawal requests, payout addresses and
//! settlement epochs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(table: &str, name: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(format!("ix_{table}_{name}"))
        .table(Alias::new(table));
    for c in cols {
        i.col(Alias::new(*c));
    }
    if unique {
        i.unique();
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A review paid from a project's escrow: its amount also weighs in
        // the royalty split of datasets published from that project.
        m.create_table(
            Table::create()
                .table("review_payments")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer_null("item_id"))
                .col(big_integer("reviewer_id"))
                .col(big_integer("amount"))
                .col(big_integer("transaction_id"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("review_payments", "project", &["project_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("payout_addresses")
                .col(big_integer("user_id").primary_key())
                // Lowercase `0x` + 40 hex digits.
                .col(string("address"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("withdrawals")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(big_integer("amount"))
                .col(string("status"))
                .col(string("idempotency_key"))
                .col(big_integer("transaction_id"))
                .col(big_integer_null("epoch_id"))
                .col(string_null("address"))
                .col(big_integer("created_at"))
                .col(big_integer_null("settled_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "withdrawals",
            "user_key",
            &["user_id", "idempotency_key"],
            true,
        ))
        .await?;
        m.create_index(index("withdrawals", "status", &["status"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("settlement_epochs")
                .col(big_pk_auto("id"))
                .col(string("root"))
                // Decimal uint256: the sum of every leaf.
                .col(string("total"))
                .col(integer("decimals"))
                .col(big_integer("leaves"))
                // Micro-units settled in this epoch (withdrawals moved to payouts).
                .col(big_integer("settled_micros"))
                // Cumulative micro-units in the tree.
                .col(big_integer("cumulative_micros"))
                .col(string_uniq("idempotency_key"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("settlement_leaves")
                .col(big_integer("epoch_id"))
                .col(string("address"))
                .col(big_integer("micros"))
                .primary_key(Index::create().col("epoch_id").col("address"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "settlement_leaves",
            "settlement_epochs",
            "withdrawals",
            "payout_addresses",
            "review_payments",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
