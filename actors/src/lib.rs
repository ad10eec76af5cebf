//! Golek's node brain: the supervision tree of ractor actors.
//!
//! ```text
//! SystemModule (root supervisor)
//! ├── ConfigManager       the configuration and its run-time changes, published as a watch
//! ├── ServiceRegistry     sled: node identity and deployments, flushed before acknowledged
//! ├── ProviderSupervisor  restarts with backoff; restart intensity exceeded => breaker open
//! │   └── ProviderActor*  one per deployed model: bounded queue + dedicated worker thread
//! ├── ClusterManager      QUIC endpoint, chitchat, peer links and every task they start
//! │   ├── listener        (loop) the QUIC accept loop
//! │   ├── peer-server     (loop) serves streams from peers and QUIC clients
//! │   ├── publisher       (loop) the gossip round: advert out, view in
//! │   └── resources       (loop) the machine's CPUs, memory and GPUs
//! ├── PluginManager       plugins: discovery, dependency order, hot reload, the chain
//! │   └── PluginActor*    one per plugin instance: lifecycle, failures, restart intensity
//! └── Router              the routing table: model -> state, queue, capabilities
//! ```
//!
//! `GET /admin/actors` shows this tree ([`ActorSnapshot`]): each actor's kind, state,
//! restarts and last failure.
//!
//! Requests do not pass through an actor mailbox: [`RouterHandle`] reads the routing table the
//! Router publishes and submits straight to the model's bounded queue.

pub mod cluster;
mod config_manager;
mod error;
mod health;
mod loops;
pub mod machine;
pub mod metrics;
mod node_handle;
pub mod observe;
pub mod placement;
pub mod plugins;
mod provider;
mod reconfigure;
pub mod registry;
pub mod reliability;
mod router;
mod system;
mod tasks;
pub mod tenants;
pub mod trace;
mod tree;
pub mod watch;

pub use config_manager::{
    ChangeRefused, ChangeReport, ConfigChange, ConfigManager, ConfigMsg, ConfigReport,
};
pub use error::{ActorError, ClusterError, Result};
pub use health::Health;
pub use loops::{loop_fn, LoopActor, LoopArgs, LoopFn};
pub use node_handle::{
    start_node, start_node_at, start_node_loaded, ConfigHandle, Inspector, NodeHandle,
};
pub use provider::restart::{Decision, RestartPolicy, RestartTracker};
pub use registry::{DeploymentRecord, RegistryMsg, ServiceRegistry, Store, STORE_FORMAT_VERSION};
pub use router::{
    EventRx, FaultSettings, ModelEntry, ModelState, ModelView, RouterHandle, Routes, RoutingTable,
};
pub use tasks::Tasks;
pub use tree::ActorSnapshot;
