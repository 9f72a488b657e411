//! A bounty may show a contributor the known answer of a gold item right
//! after they answer it (off by default: it tells them it was gold).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("quality_settings")
                .add_column(boolean("gold_feedback").default(false))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("quality_settings")
                .drop_column("gold_feedback")
                .to_owned(),
        )
        .await
    }
}
