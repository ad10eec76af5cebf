//! This node's membership in a cluster, owned by the [`ClusterManager`] actor.
//!
//! One QUIC endpoint ([`transport::QuicNode`]) carries gossip (chitchat over uni streams), peer
//! forwarding and the QUIC client API, all over mutual TLS with the cluster CA. Every
//! `gossip_interval` the publisher loop sets this node's advert (addresses, models, load,
//! resources) as typed gossip keys and rebuilds the [`ClusterView`] that the router reads.
//!
//! Files: `manager.rs` (the actor: start-up wiring, its supervised loops, shutdown),
//! `publisher.rs` (one gossip round: advert out, view in), `advert.rs` (this node's advert
//! and machine resources), `selection.rs` (the order of candidate peers), `peer.rs`
//! (forwarding and the peer server), `frames.rs` (reading frames off a stream), `transport.rs`
//! (the endpoint and gossip over it), `tls.rs`, `join.rs`, `client.rs`.

mod advert;
pub mod certs;
pub mod client;
pub mod close;
mod forward;
pub mod frames;
pub mod join;
mod manager;
pub mod peer;
mod publisher;
pub mod resume;
pub mod selection;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use golek_protocol::cluster::{LoadAdvert, ModelAdvert, ResourcesAdvert};
use golek_providers::Faults;
use serde::Serialize;
use tokio::sync::watch;

pub use manager::{ClusterArgs, ClusterManager, ClusterMsg};

use crate::router::ModelState;

/// One member as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub node_id: String,
    pub alive: bool,
    /// This node itself.
    pub is_self: bool,
    pub gossip_addr: String,
    pub http_addr: Option<String>,
    pub quic_addr: Option<String>,
    pub version: Option<String>,
    /// Its `[node] labels` (what deployments' selectors match).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub models: Vec<ModelAdvert>,
    pub load: LoadAdvert,
    pub resources: ResourcesAdvert,
    /// Model files it can send (sha256).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Model files it is fetching (sha256): it sends the chunks it has.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fetching: Vec<String>,
    /// It drains (on its way out of a rolling restart): nothing new is sent to it.
    pub draining: bool,
}

/// The cluster as this node sees it; published on every gossip round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    pub node_id: String,
    pub cluster_id: String,
    pub members: Vec<Member>,
    /// Members refused because their certificate names another node id.
    pub refused: Vec<String>,
}

impl ClusterView {
    pub(crate) fn ready_peers<'a>(
        &'a self,
        model: &'a str,
    ) -> impl Iterator<Item = &'a Member> + 'a {
        self.members
            .iter()
            .filter(|m| !m.is_self && m.alive && !m.draining && m.quic_addr.is_some())
            .filter(move |m| {
                m.models
                    .iter()
                    .any(|a| a.name == model && a.state == ModelState::Ready)
            })
    }

    /// Whether some live peer has `model` ready (no allocation: asked on every request).
    pub fn serves(&self, model: &str) -> bool {
        self.ready_peers(model).next().is_some()
    }

    /// Live peers (not this node) whose `model` is ready, least loaded first.
    pub fn candidates(&self, model: &str) -> Vec<peer::PeerAddr> {
        selection::order(self.ready_peers(model))
    }

    /// [`ClusterView::candidates`] with the peers whose breaker is open moved last (tried
    /// only when nothing else is left, and their breakers still decide).
    pub fn candidates_for(&self, model: &str, links: &peer::PeerLinks) -> Vec<peer::PeerAddr> {
        selection::open_last(self.candidates(model), |id| links.is_open(id))
    }

    /// Some peer's advert of `model`, whatever its state (for descriptions and errors).
    pub fn advert(&self, model: &str) -> Option<(&Member, &ModelAdvert)> {
        let mut found = None;
        for member in self.members.iter().filter(|m| !m.is_self) {
            if let Some(ad) = member.models.iter().find(|a| a.name == model) {
                let better = member.alive && ad.state == ModelState::Ready;
                if found.is_none() || better {
                    found = Some((member, ad));
                }
                if better {
                    break;
                }
            }
        }
        found
    }
}

/// What the router and the HTTP layer hold: the view and the way to reach peers.
#[derive(Clone)]
pub struct ClusterHandle {
    pub node_id: String,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub links: Arc<peer::PeerLinks>,
    /// The cluster's fault switches (`debug.fault_injection`): the publisher trips on them.
    pub faults: Arc<Faults>,
}

impl ClusterHandle {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }
}

/// What the node tells the cluster about itself besides its models.
#[derive(Debug, Clone)]
pub struct SelfInfo {
    /// The id the node was started with (`cluster.node_id`, else the registry's); its
    /// certificate must name the same one.
    pub node_id: String,
    /// The node's data dir (where a join authority records used tokens).
    pub data_dir: std::path::PathBuf,
    pub http_addr: SocketAddr,
    pub version: String,
    pub labels: std::collections::BTreeMap<String, String>,
}
