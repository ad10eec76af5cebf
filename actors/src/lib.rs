//! Golek's node brain: the supervision tree of ractor actors.
//!
//! ```text
//! SystemModule (root supervisor)
//! ├── ConfigManager       the validated configuration, published as a watch
//! ├── ServiceRegistry     sled: node identity and deployments, flushed before acknowledged
//! ├── ProviderSupervisor  restarts with backoff; restart intensity exceeded => breaker open
//! │   └── ProviderActor*  one per deployed model: bounded queue + dedicated worker thread
//! ├── ClusterManager      gossip over QUIC with mutual TLS: members, their models and load
//! │   └── PeerLinks       one QUIC connection per peer: forwards requests, streams results
//! └── Router              the routing table: model -> state, queue, capabilities
//! ```
//!
//! Requests do not pass through an actor mailbox: [`RouterHandle`] reads the routing table the
//! Router publishes and submits straight to the model's bounded queue.

pub mod cluster;
mod config_manager;
mod error;
pub mod metrics;
mod provider;
mod registry;
mod router;
mod system;

pub use config_manager::{ConfigManager, ConfigMsg};
pub use error::{ActorError, Result};
pub use provider::restart::{Decision, RestartPolicy, RestartTracker};
pub use registry::{DeploymentRecord, RegistryMsg, ServiceRegistry, Store, STORE_FORMAT_VERSION};
pub use router::{EventRx, ModelEntry, ModelState, ModelView, RouterHandle, RoutingTable};
pub use system::{start_node, NodeHandle};
