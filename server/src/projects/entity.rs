//! Tables owned by `projects`.

pub mod project {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub buyer_id: i64,
        pub title: String,
        pub instructions: String,
        pub task_type: String,
        /// JSON of the label schema, validated when the project was created.
        pub schema: String,
        pub overlap: i32,
        pub max_answers: i32,
        pub reward: i64,
        pub budget: i64,
        pub status: String,
        pub priority: i32,
        pub item_count: i64,
        pub created_at: i64,
        pub funded_at: Option<i64>,
        /// Set while an import streams into this project (the import lock).
        pub importing_since: Option<i64>,
        /// Reviews each answer gets (reviewed task types only).
        pub reviews_per_answer: i32,
        /// Paid per review (reviewed task types only).
        pub review_reward: i64,
        /// One review in this many is gold, when the bounty has gold
        /// reviews (0: none).
        pub gold_review_every: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "items")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        /// Import order within the project, from 1.
        pub seq: i64,
        pub data: String,
        /// `open`, `resolved` or `no_consensus`.
        pub status: String,
        /// Answers this item needs now: the overlap, plus one per tie.
        pub needed: i32,
        pub answers_count: i32,
        pub result: Option<String>,
        pub created_at: i64,
        pub resolved_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
