//! Tables owned by `datasets`.

pub mod dataset {
    use sea_orm::entity::prelude::*;

    /// A published version of a finished bounty, with its licence prices.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "datasets")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        /// The buyer who paid for the bounty: keeps a share of every use.
        pub buyer_id: i64,
        /// 1, 2, ... per project.
        pub version: i32,
        pub title: String,
        /// Micro-units per record read; `None`: records are not licensed.
        pub price_per_record: Option<i64>,
        /// Micro-units per full export; `None`: exports are not licensed.
        pub price_per_export: Option<i64>,
        pub record_count: i64,
        pub contributors: i64,
        /// Sum of the contributors' weights (rewards of accepted work).
        pub total_weight: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod record {
    use sea_orm::entity::prelude::*;

    /// One resolved item, frozen at publication.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dataset_records")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub dataset_id: i64,
        /// 1-based position in the dataset.
        pub seq: i64,
        pub item_id: i64,
        pub data: String,
        pub result: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contributor {
    use sea_orm::entity::prelude::*;

    /// A contributor's (or reviewer's) weight in a dataset's royalty split.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dataset_contributors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub dataset_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub weight: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod usage {
    use sea_orm::entity::prelude::*;

    /// One licensed use: a page of records read or a full export, and how
    /// its charge was divided.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dataset_uses")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub dataset_id: i64,
        pub licensee_id: i64,
        /// `records` or `export`.
        pub kind: String,
        pub page: Option<i64>,
        pub records: i64,
        /// What the licensee paid: `fee + buyer_share + pool_amount`.
        pub amount: i64,
        pub fee: i64,
        pub buyer_share: i64,
        /// Credited to the dataset's royalty pool, to be split.
        pub pool_amount: i64,
        pub transaction_id: i64,
        /// The royalty round that split it; `None` while waiting.
        pub round_id: Option<i64>,
        pub idempotency_key: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
