//! Datasets (frozen snapshots of finished bounties), their licensed uses,
//! and royalty rounds that split a dataset's pool among its contributors.

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
        m.create_table(
            Table::create()
                .table("datasets")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("buyer_id"))
                .col(integer("version"))
                .col(string("title"))
                .col(big_integer_null("price_per_record"))
                .col(big_integer_null("price_per_export"))
                .col(big_integer("record_count"))
                .col(big_integer("contributors"))
                .col(big_integer("total_weight"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "datasets",
            "project_version",
            &["project_id", "version"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("dataset_records")
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_id"))
                .col(big_integer("seq"))
                .col(big_integer("item_id"))
                .col(text("data"))
                .col(text("result"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "dataset_records",
            "dataset_seq",
            &["dataset_id", "seq"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("dataset_contributors")
                .col(big_integer("dataset_id"))
                .col(big_integer("user_id"))
                .col(big_integer("weight"))
                .primary_key(Index::create().col("dataset_id").col("user_id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("dataset_uses")
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_id"))
                .col(big_integer("licensee_id"))
                .col(string("kind"))
                .col(big_integer_null("page"))
                .col(big_integer("records"))
                .col(big_integer("amount"))
                .col(big_integer("fee"))
                .col(big_integer("buyer_share"))
                .col(big_integer("pool_amount"))
                .col(big_integer("transaction_id"))
                .col(big_integer_null("round_id"))
                .col(string("idempotency_key"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "dataset_uses",
            "licensee_key",
            &["licensee_id", "idempotency_key"],
            true,
        ))
        .await?;
        m.create_index(index(
            "dataset_uses",
            "dataset_round",
            &["dataset_id", "round_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("royalty_rounds")
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_id"))
                .col(big_integer("first_use_id"))
                .col(big_integer("last_use_id"))
                .col(big_integer("uses"))
                .col(big_integer("pool_total"))
                .col(big_integer("paid_total"))
                .col(big_integer("cursor_user_id"))
                .col(string("status"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("royalty_rounds", "status", &["status"], false))
            .await?;
        m.create_table(
            Table::create()
                .table("royalty_allocations")
                .col(big_integer("round_id"))
                .col(big_integer("user_id"))
                .col(big_integer("amount"))
                .primary_key(Index::create().col("round_id").col("user_id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "royalty_allocations",
            "royalty_rounds",
            "dataset_uses",
            "dataset_contributors",
            "dataset_records",
            "datasets",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
