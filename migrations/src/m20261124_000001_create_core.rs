//! The spine: accounts, bounties and their items, leases, answers, and the
//! double-entry ledger. Every instant is a BIGINT of unix milliseconds and
//! every amount a BIGINT of micro-units, so both databases store them alike.

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
        m.create_table(
            Table::create()
                .table("users")
                .col(big_pk_auto("id"))
                .col(string_uniq("email"))
                .col(string("display_name"))
                .col(string("password_hash"))
                .col(integer("roles"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("api_tokens")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string_uniq("token_hash"))
                .col(string_null("label"))
                .col(big_integer("created_at"))
                .col(big_integer_null("revoked_at"))
                .foreign_key(&mut fk("api_tokens", "user_id", "users"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("user_keys")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string_uniq("public_key"))
                .col(string_null("label"))
                .col(big_integer("created_at"))
                .col(big_integer_null("revoked_at"))
                .foreign_key(&mut fk("user_keys", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("user_keys", "user", &["user_id"], false))
            .await?;

        // Replay protection for signed requests: a (key, nonce) pair is
        // accepted once. Rows older than the clock-skew window are useless
        // (their timestamp would be refused) and get swept.
        m.create_table(
            Table::create()
                .table("request_nonces")
                .col(string("public_key"))
                .col(string("nonce"))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("public_key").col("nonce"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("request_nonces", "created", &["created_at"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("projects")
                .col(big_pk_auto("id"))
                .col(big_integer("buyer_id"))
                .col(string("title"))
                .col(text("instructions"))
                .col(string("task_type"))
                .col(text("schema"))
                .col(integer("overlap"))
                .col(integer("max_answers"))
                .col(big_integer("reward"))
                .col(big_integer("budget"))
                .col(string("status"))
                .col(integer("priority"))
                .col(big_integer("item_count"))
                .col(big_integer("created_at"))
                .col(big_integer_null("funded_at"))
                .foreign_key(&mut fk("projects", "buyer_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("projects", "status", &["status", "priority"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("items")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("seq"))
                .col(text("data"))
                .col(string("status"))
                .col(integer("needed"))
                .col(integer("answers_count"))
                .col(text_null("result"))
                .col(big_integer("created_at"))
                .col(big_integer_null("resolved_at"))
                .foreign_key(&mut fk("items", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("items", "project_seq", &["project_id", "seq"], true))
            .await?;
        m.create_index(index(
            "items",
            "project_status",
            &["project_id", "status"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("leases")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                .col(big_integer("user_id"))
                .col(string("status"))
                .col(big_integer("expires_at"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("leases", "item_id", "items"))
                .foreign_key(&mut fk("leases", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "leases",
            "project_status",
            &["project_id", "status"],
            false,
        ))
        .await?;
        m.create_index(index(
            "leases",
            "user_status",
            &["user_id", "status"],
            false,
        ))
        .await?;
        m.create_index(index("leases", "item", &["item_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("answers")
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("item_id"))
                .col(big_integer("user_id"))
                .col(big_integer("lease_id"))
                .col(text("payload"))
                .col(string("status"))
                .col(string("idempotency_key"))
                .col(string("request_hash"))
                .col(big_integer("paid"))
                .col(big_integer("created_at"))
                .col(big_integer_null("decided_at"))
                .foreign_key(&mut fk("answers", "item_id", "items"))
                .foreign_key(&mut fk("answers", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        // The database itself refuses a second answer by one contributor to
        // one item and a reused idempotency key, whatever the queue did.
        m.create_index(index("answers", "item_user", &["item_id", "user_id"], true))
            .await?;
        m.create_index(index(
            "answers",
            "user_idem",
            &["user_id", "idempotency_key"],
            true,
        ))
        .await?;
        m.create_index(index("answers", "lease", &["lease_id"], true))
            .await?;
        m.create_index(index(
            "answers",
            "project_status",
            &["project_id", "status"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("ledger_accounts")
                .col(big_pk_auto("id"))
                .col(string("kind"))
                .col(big_integer("owner_id"))
                .col(big_integer("balance"))
                .col(boolean("allow_negative"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ledger_accounts",
            "kind_owner",
            &["kind", "owner_id"],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("ledger_transactions")
                .col(big_pk_auto("id"))
                .col(string("kind"))
                .col(text("memo"))
                .col(string_null("idempotency_key"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ledger_transactions",
            "idem",
            &["idempotency_key"],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("ledger_postings")
                .col(big_pk_auto("id"))
                .col(big_integer("transaction_id"))
                .col(big_integer("account_id"))
                .col(big_integer("amount"))
                .foreign_key(&mut fk(
                    "ledger_postings",
                    "transaction_id",
                    "ledger_transactions",
                ))
                .foreign_key(&mut fk("ledger_postings", "account_id", "ledger_accounts"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("ledger_postings", "account", &["account_id"], false))
            .await?;
        m.create_index(index("ledger_postings", "tx", &["transaction_id"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "ledger_postings",
            "ledger_transactions",
            "ledger_accounts",
            "answers",
            "leases",
            "items",
            "projects",
            "request_nonces",
            "user_keys",
            "api_tokens",
            "users",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
