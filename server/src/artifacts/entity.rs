//! Tables owned by `artifacts`.

pub mod artifact {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "artifacts")]
    pub struct Model {
        /// Lowercase hex SHA-256 of the bytes: the object's key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
        pub size: i64,
        /// Sniffed from the bytes at upload, never taken from the client.
        pub media_type: String,
        /// The first uploader.
        pub uploader: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod uploader {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "artifact_uploaders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod item_link {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item_artifacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod answer_link {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "answer_artifacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub answer_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod limits {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_artifact_limits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: i64,
        pub max_bytes: Option<i64>,
        /// JSON array of accepted media types.
        pub accept: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
