//! Reviews of answers for the reviewed task types (free text, file
//! collection): the bounty's reviews per answer, review leases and the
//! reviews themselves. A contributor reviews an answer at most once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("projects"))
                .add_column(integer("reviews_per_answer").default(1))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("review_leases")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                .col(big_integer("answer_id"))
                .col(big_integer("reviewer_id"))
                // `open`, `submitted` or `released`; an open lease past
                // `expires_at` is expired.
                .col(string("status"))
                .col(big_integer("expires_at"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_review_leases_answer")
                .table(Alias::new("review_leases"))
                .col(Alias::new("answer_id"))
                .col(Alias::new("status"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("reviews")
                .col(big_pk_auto("id"))
                .col(big_integer("lease_id"))
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                .col(big_integer("answer_id"))
                .col(big_integer("reviewer_id"))
                // `accept` or `reject`.
                .col(string("verdict"))
                .col(text_null("reason"))
                .col(string("idempotency_key"))
                .col(string("request_hash"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ux_reviews_lease", &["lease_id"][..]),
            (
                "ux_reviews_answer_reviewer",
                &["answer_id", "reviewer_id"][..],
            ),
            (
                "ux_reviews_reviewer_key",
                &["reviewer_id", "idempotency_key"][..],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Alias::new("reviews")).unique();
            for c in cols {
                idx.col(Alias::new(*c));
            }
            m.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("reviews")).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Alias::new("review_leases")).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("projects"))
                .drop_column(Alias::new("reviews_per_answer"))
                .to_owned(),
        )
        .await
    }
}
