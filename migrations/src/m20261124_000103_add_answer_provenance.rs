//! Provenance: each answer's contributor signature (over the item's content
//! hash, the guideline version and the answer) stored on the answer row,
//! and the per-account keys the server holds for contributors who do not
//! sign themselves (browser users).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for col in ["signature", "signer_key", "signed_by"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("answers"))
                    .add_column(string_null(col))
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table("custodial_keys")
                .col(big_integer("user_id").primary_key())
                .col(string("public_key"))
                // The secret XOR a pad derived from the server key and the
                // user id: useless without the server key file.
                .col(string("wrapped_secret"))
                .col(big_integer("created_at"))
                .col(big_integer_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("custodial_keys")).to_owned())
            .await?;
        for col in ["signed_by", "signer_key", "signature"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("answers"))
                    .drop_column(Alias::new(col))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
