//! The supervision tree as data: what `GET /admin/actors` and `golek status` show. Every actor
//! reports its kind, state, restarts and last failure; `details` is an open object where a
//! manager puts what is its own (a model's queue, a peer's connection, later breakers and
//! plugins).

use serde::{Deserialize, Serialize};

/// One actor and the actors it supervises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorSnapshot {
    /// Unique among its siblings (`ClusterManager`, `publisher`, a model's name).
    pub name: String,
    /// What sort of actor it is (`system`, `provider`, `loop`, `peer`, ...).
    pub kind: String,
    /// `running`, `loading`, `restarting`, `breaker_open`, `hung`, `stopped`, ...
    pub state: String,
    pub restarts: u64,
    pub last_failure: Option<String>,
    /// For actors with a breaker (providers, peers): `closed`, `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub children: Vec<ActorSnapshot>,
}

impl ActorSnapshot {
    /// A running actor with no restarts, failures or children.
    pub fn running(name: impl Into<String>, kind: impl Into<String>) -> Self {
        ActorSnapshot {
            name: name.into(),
            kind: kind.into(),
            state: "running".into(),
            restarts: 0,
            last_failure: None,
            breaker: None,
            details: Default::default(),
            children: Vec::new(),
        }
    }

    pub fn with_detail(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.to_string(), value);
        self
    }

    /// The actor at `path` (names from this one down), if any.
    pub fn find(&self, path: &[&str]) -> Option<&ActorSnapshot> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self
                .children
                .iter()
                .find(|c| c.name == *first)
                .and_then(|c| c.find(rest)),
        }
    }

    /// Whether this actor and every one below it is in a serving state.
    pub fn healthy(&self) -> bool {
        matches!(self.state.as_str(), "running" | "ready")
            && self.children.iter().all(ActorSnapshot::healthy)
    }
}
