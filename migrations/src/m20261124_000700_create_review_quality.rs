//! Paid reviews and reviewers' own gold: a bounty's reward per review and
//! how often a reviewer gets a gold review; gold reviews (answers whose
//! right verdict the buyer knows) and the verdicts reviewers gave them;
//! and each reviewer's record per bounty.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table("projects")
                .add_column(big_integer("review_reward").default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("projects")
                .add_column(integer("gold_review_every").default(10))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("review_leases")
                .add_column(big_integer_null("gold_review_id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("gold_reviews")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                // The answer under review, normalized by the schema (JSON).
                .col(text("answer"))
                // The right verdict: `accept` or `reject`.
                .col(string("verdict"))
                .col(text_null("reason"))
                // The answer's artifact (file collection): reviewers holding
                // a lease on the gold review may download it.
                .col(string_null("artifact"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_gold_reviews_project")
                .table("gold_reviews")
                .col("project_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("gold_review_verdicts")
                .col(big_pk_auto("id"))
                .col(big_integer("lease_id"))
                .col(big_integer("project_id"))
                .col(big_integer("gold_review_id"))
                .col(big_integer("reviewer_id"))
                .col(string("verdict"))
                .col(text_null("reason"))
                .col(boolean("correct"))
                .col(string("idempotency_key"))
                .col(string("request_hash"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ux_gold_review_verdicts_lease", &["lease_id"][..]),
            (
                "ux_gold_review_verdicts_reviewer",
                &["gold_review_id", "reviewer_id"][..],
            ),
            (
                "ux_gold_review_verdicts_key",
                &["reviewer_id", "idempotency_key"][..],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table("gold_review_verdicts").unique();
            for c in cols {
                idx.col(*c);
            }
            m.create_index(idx.to_owned()).await?;
        }
        m.create_table(
            Table::create()
                .table("reviewer_quality")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("user_id"))
                .col(integer("reviews"))
                .col(integer("gold_correct"))
                .col(integer("gold_total"))
                .col(double("accuracy_mean"))
                .col(double("accuracy_lower"))
                .col(big_integer_null("suspended_at"))
                .col(text_null("suspension_reason"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_reviewer_quality")
                .table("reviewer_quality")
                .col("project_id")
                .col("user_id")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["reviewer_quality", "gold_review_verdicts", "gold_reviews"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        m.alter_table(
            Table::alter()
                .table("review_leases")
                .drop_column("gold_review_id")
                .to_owned(),
        )
        .await?;
        for c in ["gold_review_every", "review_reward"] {
            m.alter_table(Table::alter().table("projects").drop_column(c).to_owned())
                .await?;
        }
        Ok(())
    }
}
