//! The routing table: each model's state, queue, capabilities and incarnation.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use golek_protocol::model::ModelState;
use golek_providers::{Faults, JobSender, ProviderInfo};
use serde::Serialize;

/// One model in the routing table.
#[derive(Clone)]
pub struct ModelEntry {
    pub name: String,
    pub provider: String,
    pub state: ModelState,
    pub generation: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    /// Present once the worker has loaded the model.
    pub info: Option<ProviderInfo>,
    pub sender: Option<JobSender>,
    pub faults: Option<Arc<Faults>>,
    /// Unix seconds when the deployment was first recorded.
    pub created_unix_s: u64,
}

/// A serializable view of a model, for the admin API and tests.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    pub name: String,
    pub provider: String,
    pub state: ModelState,
    pub generation: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub info: Option<ProviderInfo>,
}

impl ModelEntry {
    pub fn view(&self) -> ModelView {
        ModelView {
            name: self.name.clone(),
            provider: self.provider.clone(),
            state: self.state.clone(),
            generation: self.generation,
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            queue_depth: self.sender.as_ref().map_or(0, |s| s.depth()),
            queue_capacity: self.sender.as_ref().map_or(0, |s| s.capacity()),
            info: self.info.clone(),
        }
    }
}

/// The published table.
#[derive(Clone, Default)]
pub struct RoutingTable {
    pub models: BTreeMap<String, ModelEntry>,
}

impl RoutingTable {
    /// Ready once every model is ready (one being drained away does not count).
    pub fn all_ready(&self) -> bool {
        self.models
            .values()
            .all(|e| matches!(e.state, ModelState::Ready | ModelState::Draining))
    }
}
