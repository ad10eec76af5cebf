//! The supervision tree as data: what `GET /admin/actors` and `golek status` show. Every actor
//! reports its kind, state, restarts and last failure; `details` is an open object where a
//! manager puts what is its own (a model's queue, a peer's connection, later breakers and
//! plugins).

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterMsg;
use crate::provider::SupervisorMsg;
use crate::reliability::ReliabilityMsg;
use crate::system::{call, Managers};

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

    /// The paths (`ClusterManager/publisher`) of actors that failed and are not back yet:
    /// restarting, breaker open, hung, or not answering. Peers are left out (a peer's link is
    /// not this node's readiness).
    pub fn failing(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_failing("", &mut out);
        out
    }

    fn collect_failing(&self, prefix: &str, out: &mut Vec<String>) {
        let path = if prefix.is_empty() {
            self.name.clone()
        } else {
            format!("{prefix}/{}", self.name)
        };
        let failing = matches!(
            self.state.as_str(),
            "restarting" | "breaker_open" | "hung" | "not_answering"
        );
        if failing && self.kind != "peer" {
            out.push(path.clone());
        }
        for child in &self.children {
            child.collect_failing(&path, out);
        }
    }
}

/// Asks each manager for its part of the tree; one that does not answer shows as such.
pub(crate) async fn snapshot(managers: &Managers) -> ActorSnapshot {
    let answered = |mut s: ActorSnapshot, ok: bool| {
        if !ok {
            s.state = "not_answering".into();
        }
        s
    };
    let mut root = ActorSnapshot::running("SystemModule", "system")
        .with_detail("node_id", managers.node_id.clone().into());
    let alive = |cell: &ractor::ActorCell| {
        matches!(
            cell.get_status(),
            ractor::ActorStatus::Running | ractor::ActorStatus::Upgrading
        )
    };
    root.children.push(answered(
        ActorSnapshot::running("ConfigManager", "config_manager"),
        alive(&managers.config.get_cell()),
    ));
    root.children.push(answered(
        ActorSnapshot::running("ServiceRegistry", "registry")
            .with_detail("node_id", managers.node_id.clone().into()),
        alive(&managers.registry.get_cell()),
    ));
    let providers = call(
        &managers.providers,
        "ProviderSupervisor",
        SupervisorMsg::Snapshot,
    )
    .await
    .unwrap_or_else(|_| {
        answered(
            ActorSnapshot::running("ProviderSupervisor", "provider_supervisor"),
            false,
        )
    });
    root.children.push(providers);
    root.children.push(
        call(
            &managers.reliability,
            "ReliabilityManager",
            ReliabilityMsg::Snapshot,
        )
        .await
        .unwrap_or_else(|_| {
            answered(
                ActorSnapshot::running("ReliabilityManager", "reliability_manager"),
                false,
            )
        }),
    );
    if let Some(cluster) = &managers.cluster {
        let snapshot = call(cluster, "ClusterManager", ClusterMsg::Snapshot)
            .await
            .unwrap_or_else(|_| {
                answered(
                    ActorSnapshot::running("ClusterManager", "cluster_manager"),
                    false,
                )
            });
        root.children.push(snapshot);
    }
    root.children.push(
        call(
            &managers.observability,
            "ObservabilityManager",
            crate::observe::ObservabilityMsg::Snapshot,
        )
        .await
        .unwrap_or_else(|_| {
            answered(
                ActorSnapshot::running("ObservabilityManager", "observability"),
                false,
            )
        }),
    );
    root.children.push(
        call(
            &managers.placement.manager,
            "PlacementManager",
            crate::placement::PlacementMsg::Snapshot,
        )
        .await
        .unwrap_or_else(|_| {
            answered(
                ActorSnapshot::running("PlacementManager", "placement"),
                false,
            )
        }),
    );
    root.children.push(
        call(
            &managers.plugins.manager,
            "PluginManager",
            crate::plugins::PluginManagerMsg::Snapshot,
        )
        .await
        .unwrap_or_else(|_| {
            answered(
                ActorSnapshot::running("PluginManager", "plugin_manager"),
                false,
            )
        }),
    );
    root.children.push(answered(
        ActorSnapshot::running("Router", "router"),
        alive(&managers.router.get_cell()),
    ));
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_actors_are_named_by_path_and_peers_do_not_count() {
        let mut root = ActorSnapshot::running("SystemModule", "system");
        let mut cluster = ActorSnapshot::running("ClusterManager", "cluster_manager");
        let mut publisher = ActorSnapshot::running("publisher", "loop");
        publisher.state = "restarting".into();
        let mut peer = ActorSnapshot::running("b", "peer");
        peer.state = "not_answering".into();
        cluster.children = vec![publisher, peer];
        root.children.push(cluster);
        assert_eq!(root.failing(), ["SystemModule/ClusterManager/publisher"]);
        assert!(root.find(&["ClusterManager", "b"]).is_some());
        assert!(root.find(&["nope"]).is_none());
    }
}
