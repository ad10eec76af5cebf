//! What a node knows about a model: its state and what its provider describes (capabilities,
//! sizes, tensors). Pure data, shared by the routing table, the admin API and gossip.

use serde::{Deserialize, Serialize};

use crate::inference::Capabilities;

/// Where a model is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// The worker is loading the model.
    Loading,
    /// Loaded; one short request runs before it takes traffic.
    Warming,
    Ready,
    /// Being stopped (undeployed or moved): it finishes what it holds and takes nothing new.
    Draining,
    /// The worker failed; a restart is scheduled.
    Restarting,
    /// Too many restarts in the window: refused until the cooldown ends.
    BreakerOpen,
    /// The worker holds work and stopped making progress; a replacement starts when memory
    /// allows.
    Hung,
    /// The node is shutting down. A state this build does not know (from a newer peer) reads
    /// as stopped: never routed to.
    #[serde(other)]
    Stopped,
}

impl ModelState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelState::Loading => "loading",
            ModelState::Warming => "warming",
            ModelState::Ready => "ready",
            ModelState::Draining => "draining",
            ModelState::Restarting => "restarting",
            ModelState::BreakerOpen => "breaker_open",
            ModelState::Hung => "hung",
            ModelState::Stopped => "stopped",
        }
    }
}

/// A model input or output as the model declares it; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// KServe v2 datatype name (`FP32`, `INT64`, ...).
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// What a loaded provider tells the node about its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub capabilities: Capabilities,
    /// Length of the embedding vectors, for embedding models.
    pub embedding_dims: Option<usize>,
    /// Inputs longer than this are truncated.
    pub max_input_tokens: Option<usize>,
    /// Token ids must be below this.
    pub vocab_size: Option<usize>,
    /// Tokens one sequence may hold (prompt plus generated), for generation models.
    pub context_tokens: Option<usize>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ProviderInfo {
    /// What the front door checks against this model (the protocol's one authority).
    pub fn limits(&self) -> crate::limits::ModelLimits {
        crate::limits::ModelLimits {
            context_tokens: self.context_tokens,
            vocab_size: self.vocab_size,
        }
    }
}
