//! The one value every handler gets: cheap to clone, registered once.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::ledger::receipts::ServerKey;
use crate::queue::QueueBackend;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn QueueBackend>,
    pub config: Arc<Config>,
    /// Signs ledger receipts; its public half is published.
    pub server_key: Arc<ServerKey>,
}
