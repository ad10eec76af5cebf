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
    /// `golek model pull`s running now (`/admin/models/pulls`).
    pub pulls: Arc<Pulls>,
}

/// A pull into the store, while it runs.
pub struct PullEntry {
    /// What was asked for: a path, a URL or a sha256.
    pub source: String,
    pub progress: Arc<transfer::Progress>,
}

/// The pulls running on this node; an entry goes when its guard drops.
#[derive(Default)]
pub struct Pulls {
    next: std::sync::atomic::AtomicU64,
    running: std::sync::Mutex<std::collections::BTreeMap<u64, PullEntry>>,
}

/// Removes its pull from [`Pulls`] when dropped (the pull ended, or its request went away).
pub struct PullGuard {
    pulls: Arc<Pulls>,
    id: u64,
    pub progress: Arc<transfer::Progress>,
}

impl Drop for PullGuard {
    fn drop(&mut self) {
        self.pulls.lock().remove(&self.id);
    }
}

impl Pulls {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, PullEntry>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a pull of `source` until the guard drops.
    pub fn start(self: &Arc<Self>, source: &str) -> PullGuard {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let progress = Arc::new(transfer::Progress::default());
        self.lock().insert(
            id,
            PullEntry {
                source: source.to_string(),
                progress: progress.clone(),
            },
        );
        PullGuard {
            pulls: self.clone(),
            id,
            progress,
        }
    }

    /// Each running pull: its source, bytes done and total (0 while not known).
    pub fn list(&self) -> Vec<(String, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.lock()
            .values()
            .map(|e| {
                let p = &e.progress;
                (
                    e.source.clone(),
                    p.done.load(Relaxed),
                    p.total.load(Relaxed),
                )
            })
            .collect()
    }
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
        pulls: Arc::new(Pulls::default()),
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
            draining: false,
            resources: golek_protocol::cluster::ResourcesAdvert {
                memory_total_bytes: total,
                ..Default::default()
            },
        }],
        ..Default::default()
    }
}
