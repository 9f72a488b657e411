//! The quality engine's tables: per-bounty settings, gold items, each
//! contributor's standing on a bounty, answers that stopped counting, and
//! the state of the background estimation. Floats (confidences,
//! accuracies) are DOUBLE; JSON is TEXT; instants are BIGINT unix ms.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(from: &str, col: &str, to: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from}_{col}"))
        .from(Alias::new(from), Alias::new(col))
        .to(Alias::new(to), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

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
        // A bounty with a row here is run by the quality engine (EM,
        // gold, suspension, dynamic overlap); without one it keeps the
        // spine's plurality vote.
        m.create_table(
            Table::create()
                .table("quality_settings")
                .col(big_integer("project_id").primary_key())
                .col(integer("gold_every"))
                .col(double("target_confidence"))
                .col(integer("min_answers"))
                .col(double("accuracy_threshold"))
                .col(integer("min_gold"))
                .col(integer("exam_size"))
                .col(double("exam_pass_mark"))
                .col(big_integer("speed_floor_ms"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("quality_settings", "project_id", "projects"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("gold_items")
                .col(big_integer("item_id").primary_key())
                .col(big_integer("project_id"))
                .col(text("answer"))
                .col(string("source"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("gold_items", "item_id", "items"))
                .foreign_key(&mut fk("gold_items", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("gold_items", "project", &["project_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("contributor_quality")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("user_id"))
                .col(integer("tasks_served"))
                .col(integer("gold_correct"))
                .col(integer("gold_total"))
                .col(double("peer_agreement"))
                .col(integer("peer_answers"))
                .col(double("accuracy_mean"))
                .col(double("accuracy_lower"))
                .col(double_null("em_accuracy"))
                .col(text_null("confusion"))
                .col(integer("answers_timed"))
                .col(integer("answers_fast"))
                .col(string("exam"))
                .col(integer("exam_correct"))
                .col(integer("exam_total"))
                .col(text("signals"))
                .col(big_integer_null("suspended_at"))
                .col(text_null("suspension_reason"))
                .col(big_integer("updated_at"))
                .foreign_key(&mut fk("contributor_quality", "project_id", "projects"))
                .foreign_key(&mut fk("contributor_quality", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "contributor_quality",
            "project_user",
            &["project_id", "user_id"],
            true,
        ))
        .await?;

        // Answers of a suspended contributor on items still open: marked
        // `rejected` in `answers`, listed here so aggregation leaves them
        // out and the buyer sees why.
        m.create_table(
            Table::create()
                .table("quality_discards")
                .col(big_integer("answer_id").primary_key())
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                .col(big_integer("user_id"))
                .col(text("reason"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("quality_discards", "answer_id", "answers"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("quality_discards", "project", &["project_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("quality_state")
                .col(big_integer("project_id").primary_key())
                .col(text("priors"))
                .col(double_null("alpha"))
                .col(integer("estimations"))
                .col(big_integer("last_answer_id"))
                .col(integer("revised_items"))
                .col(text("pairs"))
                .col(big_integer("leased_until"))
                .col(big_integer_null("estimated_at"))
                .foreign_key(&mut fk("quality_state", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "quality_state",
            "quality_discards",
            "contributor_quality",
            "gold_items",
            "quality_settings",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
