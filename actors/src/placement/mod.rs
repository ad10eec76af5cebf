//! Run-time deployments placed across the cluster with no coordinator.
//!
//! - `desired.rs`: the desired state (versioned records, last writer wins, tombstones), stored
//!   in sled and gossiped whole by every node;
//! - `assign.rs`: the pure placement function (weighted rendezvous hashing, labels, memory);
//! - `manager.rs`: the PlacementManager actor, which runs this node's share of the assignment.

pub mod assign;
mod desired;
mod fetching;
pub mod http_fetch;
mod manager;
pub mod store;
pub mod transfer;

use std::sync::Arc;

use ractor::ActorRef;

pub use desired::Desired;
pub use fetching::pull_from_peers;
pub use manager::{Assignment, PlacementArgs, PlacementManager, PlacementMsg};
pub use store::ModelStore;
pub use transfer::FileServer;

use crate::cluster::{ClusterView, Member};

/// What the admin API uses: the desired state and the manager that places it.
#[derive(Clone)]
pub struct PlacementHandle {
    pub desired: Arc<Desired>,
    pub store: Arc<ModelStore>,
    pub manager: ActorRef<PlacementMsg>,
}

impl PlacementHandle {
    /// The assignment as the manager last computed it (empty if it does not answer).
    pub async fn assignment(&self) -> Assignment {
        ractor::call!(self.manager, PlacementMsg::Assignment).unwrap_or_default()
    }
}

/// Starts the PlacementManager under `supervisor`.
pub(crate) async fn spawn(
    supervisor: &ractor::ActorCell,
    args: PlacementArgs,
) -> Result<PlacementHandle, ractor::SpawnErr> {
    let (desired, store) = (args.desired.clone(), args.store.clone());
    let (manager, _) =
        ractor::Actor::spawn_linked(None, PlacementManager, args, supervisor.clone()).await?;
    Ok(PlacementHandle {
        desired,
        store,
        manager,
    })
}

/// A node outside any cluster places on itself alone.
pub(crate) fn single_node_view(node_id: &str) -> ClusterView {
    let meminfo = crate::machine::MemInfo::read();
    let total = meminfo
        .as_ref()
        .and_then(|m| m.bytes("MemTotal"))
        .unwrap_or(0);
    ClusterView {
        node_id: node_id.to_string(),
        members: vec![Member {
            node_id: node_id.to_string(),
            alive: true,
            is_self: true,
            gossip_addr: String::new(),
            http_addr: None,
            quic_addr: None,
            version: None,
            labels: Default::default(),
            models: Vec::new(),
            load: Default::default(),
            files: Vec::new(),
            fetching: Vec::new(),
            resources: golek_protocol::cluster::ResourcesAdvert {
                memory_total_bytes: total,
                ..Default::default()
            },
        }],
        ..Default::default()
    }
}
