//! Tables owned by the quality engine.

pub mod settings {
    use sea_orm::entity::prelude::*;

    /// A bounty run by the quality engine; see `api::QualitySettings`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "quality_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: i64,
        pub gold_every: i32,
        pub target_confidence: f64,
        pub min_answers: i32,
        pub accuracy_threshold: f64,
        pub min_gold: i32,
        pub exam_size: i32,
        pub exam_pass_mark: f64,
        pub speed_floor_ms: i64,
        pub created_at: i64,
        /// Show the known answer right after a gold item is answered.
        pub gold_feedback: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod gold_item {
    use sea_orm::entity::prelude::*;

    /// An item with a known answer. Imported gold items have status `gold`
    /// in `items` (never queued, never counted); resolved items marked gold
    /// keep `resolved`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gold_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: i64,
        pub project_id: i64,
        /// The known answer, normalized by the schema (JSON).
        pub answer: String,
        /// `import` or `resolved`.
        pub source: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contributor {
    use sea_orm::entity::prelude::*;

    /// One contributor's standing on one bounty.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contributor_quality")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub user_id: i64,
        pub tasks_served: i32,
        pub gold_correct: i32,
        pub gold_total: i32,
        /// Soft count of answers that agree with what the others settled.
        pub peer_agreement: f64,
        pub peer_answers: i32,
        pub accuracy_mean: f64,
        pub accuracy_lower: f64,
        pub em_accuracy: Option<f64>,
        /// JSON `[f64; classes * classes]`, row-major `[true][given]`,
        /// from the last estimation.
        pub confusion: Option<String>,
        pub answers_timed: i32,
        pub answers_fast: i32,
        /// `none`, `passed` or `failed`.
        pub exam: String,
        pub exam_correct: i32,
        pub exam_total: i32,
        /// JSON array of signal descriptions.
        pub signals: String,
        pub suspended_at: Option<i64>,
        pub suspension_reason: Option<String>,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod discard {
    use sea_orm::entity::prelude::*;

    /// An answer that stopped counting (its author was suspended while
    /// its item was open).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "quality_discards")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub answer_id: i64,
        pub project_id: i64,
        pub item_id: i64,
        pub user_id: i64,
        pub reason: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod state {
    use sea_orm::entity::prelude::*;

    /// The background estimation's state for one bounty.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "quality_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: i64,
        /// JSON class priors from the last estimation.
        pub priors: String,
        pub alpha: Option<f64>,
        pub estimations: i32,
        pub last_answer_id: i64,
        pub revised_items: i32,
        /// JSON `[[user, user], ...]` of flagged pairs.
        pub pairs: String,
        /// A runner holds the bounty until then.
        pub leased_until: i64,
        pub estimated_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
