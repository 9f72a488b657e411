//! Tables owned by `ledger`.

pub mod account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_accounts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// `user`, `escrow`, `fee`, `deposits`, ...
        pub kind: String,
        /// The user or project id; 0 for singleton accounts.
        pub owner_id: i64,
        /// The sum of this account's postings, maintained in the same
        /// transaction as every posting and audited against it.
        pub balance: i64,
        pub allow_negative: bool,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod transaction {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_transactions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub kind: String,
        pub memo: String,
        pub idempotency_key: Option<String>,
        pub created_at: i64,
        /// Its receipt is in the chain. Written false with the
        /// transaction, true by [`crate::ledger::receipts::chain_pending`]
        /// in the transaction that appends the receipt.
        pub chained: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod posting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_postings")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub transaction_id: i64,
        pub account_id: i64,
        pub amount: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod receipt {
    use sea_orm::entity::prelude::*;

    /// One link of the hash chain: a transaction's receipt.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_receipts")]
    pub struct Model {
        /// Position in the chain, from 1, without gaps.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub transaction_id: i64,
        /// Hex SHA-256 of the previous receipt (zeros before the first).
        pub prev_hash: String,
        pub hash: String,
        /// Hex ed25519 signature of the hash by the server key, written
        /// with the receipt by [`crate::ledger::receipts::chain_pending`]
        /// (or later by [`crate::ledger::receipts::sign_pending`] when the
        /// chainer had no key).
        pub signature: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chain_head {
    use sea_orm::entity::prelude::*;

    /// The single row (id 1) naming the chain's last receipt; appending
    /// locks it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_chain_head")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub seq: i64,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod settings {
    use sea_orm::entity::prelude::*;

    /// The single row (id 1) of platform money settings, written from the
    /// configuration at start-up so every payment in every replica reads
    /// the same rate inside its own transaction.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub fee_bps: i32,
        pub royalty_buyer_share_bps: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod review_payment {
    use sea_orm::entity::prelude::*;

    /// A review paid from escrow; weighs in royalty splits.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "review_payments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub item_id: Option<i64>,
        pub reviewer_id: i64,
        /// Gross amount (before the fee), the royalty weight.
        pub amount: i64,
        pub transaction_id: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod payout_address {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payout_addresses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// Lowercase `0x` + 40 hex digits, validated (EIP-55, non-zero).
        pub address: String,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod withdrawal {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "withdrawals")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub amount: i64,
        /// `pending` (locked) or `settled` (in an epoch's tree).
        pub status: String,
        pub idempotency_key: String,
        /// The ledger transaction that locked the amount.
        pub transaction_id: i64,
        pub epoch_id: Option<i64>,
        /// The payout address it was settled to.
        pub address: Option<String>,
        pub created_at: i64,
        pub settled_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod epoch {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settlement_epochs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// `0x` hex Merkle root.
        pub root: String,
        /// Decimal uint256, the sum of every leaf.
        pub total: String,
        pub decimals: i32,
        pub leaves: i64,
        pub settled_micros: i64,
        pub cumulative_micros: i64,
        pub idempotency_key: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod leaf {
    use sea_orm::entity::prelude::*;

    /// One address's cumulative amount in one epoch.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settlement_leaves")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub epoch_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub address: String,
        pub micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod royalty_round {
    use sea_orm::entity::prelude::*;

    /// One distribution of a dataset's pool: the uses it covers, frozen
    /// when it opens, paid in batches of contributors.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "royalty_rounds")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub dataset_id: i64,
        pub first_use_id: i64,
        pub last_use_id: i64,
        pub uses: i64,
        /// Sum of the covered uses' pool amounts = sum of the allocations.
        pub pool_total: i64,
        pub paid_total: i64,
        /// Allocations to users up to this id are paid.
        pub cursor_user_id: i64,
        /// `paying` or `done`.
        pub status: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod royalty_allocation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "royalty_allocations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub round_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub amount: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
