//! Tables owned by `queue`: leases and the answers submitted on them.

pub mod lease {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "leases")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub item_id: i64,
        pub user_id: i64,
        /// `open`, `submitted` or `released`. An open lease past
        /// `expires_at` is expired: no sweeper has to mark it.
        pub status: String,
        pub expires_at: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod answer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "answers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub item_id: i64,
        pub user_id: i64,
        pub lease_id: i64,
        /// The answer JSON as validated against the project's schema.
        pub payload: String,
        /// `pending`, `accepted` or `rejected`.
        pub status: String,
        pub idempotency_key: String,
        /// Hex SHA-256 of the canonical request, to tell a retry from a
        /// different request that reuses a key.
        pub request_hash: String,
        pub paid: i64,
        pub created_at: i64,
        pub decided_at: Option<i64>,
        /// Hex ed25519 signature of the provenance message
        /// (`sahel_protocol::provenance`) over the normalized answer.
        pub signature: Option<String>,
        /// Hex public key that made `signature`.
        pub signer_key: Option<String>,
        /// `client` (the contributor's key) or `custodial` (held by the server).
        pub signed_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
