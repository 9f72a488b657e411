//! Streaming imports write items as `staged` rows in batches and publish
//! them at the end; this lock keeps one import per project at a time.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("projects")
                .add_column(big_integer_null("importing_since"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("projects")
                .drop_column("importing_since")
                .to_owned(),
        )
        .await
    }
}
