//! Artifacts: files in object storage, keyed by the SHA-256 of their
//! bytes. One row per distinct content; who uploaded it, which items and
//! answers reference it, and per-bounty upload limits.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(table: &str, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(format!("ix_{table}_{name}"))
        .table(Alias::new(table));
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

fn cascade(from: &str, col: &str, to: &str, to_col: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from}_{col}"))
        .from(Alias::new(from), Alias::new(col))
        .to(Alias::new(to), Alias::new(to_col))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("artifacts")
                .col(string_len("sha256", 64).primary_key())
                .col(big_integer("size"))
                .col(string("media_type"))
                // The first uploader; every uploader is in artifact_uploaders.
                .col(big_integer("uploader"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("artifact_uploaders")
                .col(string_len("sha256", 64))
                .col(big_integer("user_id"))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("sha256").col("user_id"))
                .foreign_key(&mut cascade(
                    "artifact_uploaders",
                    "sha256",
                    "artifacts",
                    "sha256",
                ))
                .foreign_key(&mut cascade("artifact_uploaders", "user_id", "users", "id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("item_artifacts")
                .col(big_integer("item_id"))
                .col(string_len("sha256", 64))
                .primary_key(Index::create().col("item_id").col("sha256"))
                .foreign_key(&mut cascade("item_artifacts", "item_id", "items", "id"))
                .foreign_key(&mut cascade(
                    "item_artifacts",
                    "sha256",
                    "artifacts",
                    "sha256",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("item_artifacts", "sha256", &["sha256"]))
            .await?;
        m.create_table(
            Table::create()
                .table("answer_artifacts")
                .col(big_integer("answer_id"))
                .col(string_len("sha256", 64))
                .primary_key(Index::create().col("answer_id").col("sha256"))
                .foreign_key(&mut cascade(
                    "answer_artifacts",
                    "answer_id",
                    "answers",
                    "id",
                ))
                .foreign_key(&mut cascade(
                    "answer_artifacts",
                    "sha256",
                    "artifacts",
                    "sha256",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("answer_artifacts", "sha256", &["sha256"]))
            .await?;
        m.create_table(
            Table::create()
                .table("project_artifact_limits")
                .col(big_integer("project_id").primary_key())
                .col(big_integer_null("max_bytes"))
                // JSON array of media types (`image/png`, `audio/*`); null: any.
                .col(text_null("accept"))
                .foreign_key(&mut cascade(
                    "project_artifact_limits",
                    "project_id",
                    "projects",
                    "id",
                ))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "project_artifact_limits",
            "answer_artifacts",
            "item_artifacts",
            "artifact_uploaders",
            "artifacts",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
