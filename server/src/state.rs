//! The one value every handler gets: cheap to clone, registered once.

use std::sync::Arc;

use crate::artifacts::ArtifactStore;
use crate::config::Config;
use crate::consensus::quality::gold::GoldDraw;
use crate::db::Db;
use crate::ledger::receipts::ServerKey;
use crate::projects::ProjectCache;
use crate::queue::QueueBackend;
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn QueueBackend>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub projects: Arc<ProjectCache>,
    /// Owners of signing keys (a revocation is enforced at commit).
    pub keys: Arc<crate::accounts::KeyCache>,
    /// Funded bounties' quality settings (fixed once funded).
    pub quality: Arc<crate::consensus::quality::SettingsCache>,
    /// Signs ledger receipts; its public half is published.
    pub server_key: Arc<ServerKey>,
    /// Object storage for artifacts.
    pub artifacts: ArtifactStore,
    /// The randomness that places gold items.
    pub gold_draw: Arc<GoldDraw>,
    /// Leases handed out here and not yet answered, with their items.
    pub held: Arc<crate::queue::held::HeldLeases>,
    /// Write concurrent lease calls and answers together (group commit).
    pub lease_writer: Arc<crate::queue::writer::LeaseWriter>,
    pub answer_writer: Arc<crate::queue::AnswerWriter>,
}
