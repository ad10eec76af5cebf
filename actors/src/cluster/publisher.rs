//! The publisher: one gossip round every `gossip_interval`. It sets this node's advert on its
//! own gossip state, reads every member's (decoded once, typed; a bad value is logged with the
//! member and ignored), refuses members whose certificate names another id, and publishes the
//! [`ClusterView`]. It runs as a supervised loop: a panic in a round restarts it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitchat::ChitchatId;
use golek_protocol::cluster::{
    decode_member, encode_member, LoadAdvert, NodeAdvert, KEY_API_KEYS, KEY_DESIRED,
};
use golek_providers::Faults;
use tokio::sync::watch;

use super::advert::{advert, SharedResources};
use super::peer::PeerLinks;
use super::transport::QuicNode;
use super::{ClusterView, Member};
use crate::loops::{loop_fn, LoopFn};
use crate::metrics as m;
use crate::router::RouterHandle;
use crate::tenants::{KeyRecord, KeyStore};

/// What every run of the publisher loop works with.
pub struct Publisher {
    pub chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    pub router: RouterHandle,
    pub quic: Arc<QuicNode>,
    pub links: Arc<PeerLinks>,
    pub machine: SharedResources,
    pub node: NodeAdvert,
    pub cluster_id: String,
    pub view_tx: Arc<watch::Sender<Arc<ClusterView>>>,
    pub interval: Duration,
    pub faults: Arc<Faults>,
    /// Refusals already logged (kept across restarts: a restart does not log them again).
    pub refused_logged: Mutex<HashSet<String>>,
    /// API keys: this node's are published, its peers' merged in.
    pub keys: KeyStore,
    /// The key list each peer published last (merged only when it changes).
    pub keys_seen: Seen,
    /// Each peer's newest incarnation (chitchat generation) seen.
    pub generations: Mutex<HashMap<String, u64>>,
    /// The key list as last published, with the key version it was made at.
    pub keys_published: Mutex<(u64, String)>,
    /// Run-time deployments: every record this node knows is published, its peers' merged in.
    pub desired: Arc<crate::placement::Desired>,
    /// The desired-state list each peer published last (merged only when it changes).
    pub desired_seen: Seen,
    /// The model store: its files are advertised for peers to fetch.
    pub store: Arc<crate::placement::ModelStore>,
}

/// The value each peer published last under one key (so a value is merged only when it
/// changes).
#[derive(Default)]
pub struct Seen(Mutex<HashMap<String, String>>);

impl Seen {
    fn is_new(&self, node: &str, value: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .is_none_or(|seen| seen != value)
    }

    fn remember(&self, node: String, value: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, value);
    }
}

/// The publisher as a supervised loop.
pub fn publish_loop(publisher: Arc<Publisher>) -> LoopFn {
    loop_fn(move |_token| {
        let p = publisher.clone();
        async move {
            let mut ticker = tokio::time::interval(p.interval);
            let mut was_alive: BTreeSet<String> = BTreeSet::new();
            loop {
                ticker.tick().await;
                // Test switch (`debug.fault_injection`): a round that panics.
                p.faults.trip("cluster publisher");
                let view = p.round().await;
                let alive: BTreeSet<String> = view
                    .members
                    .iter()
                    .filter(|m| m.alive)
                    .map(|m| m.node_id.clone())
                    .collect();
                for gone in was_alive.difference(&alive) {
                    tracing::warn!(node = %gone, "cluster: member is dead");
                    p.links.forget(gone);
                }
                for new in alive.difference(&was_alive) {
                    tracing::info!(node = %new, "cluster: member is alive");
                    // Back from the dead: what its breaker counted died with it.
                    p.links
                        .reliability
                        .reset(&crate::reliability::Target::Peer(new.clone()));
                }
                was_alive = alive;
                let live = view.members.iter().filter(|m| m.alive).count();
                metrics::gauge!(m::CLUSTER_MEMBERS, "state" => "alive").set(live as f64);
                metrics::gauge!(m::CLUSTER_MEMBERS, "state" => "dead")
                    .set(view.members.len().saturating_sub(live) as f64);
                p.view_tx.send_replace(Arc::new(view));
            }
        }
    })
}

impl Publisher {
    /// Sets this node's advert and reads the view.
    async fn round(&self) -> ClusterView {
        let me = advert(
            &self.node,
            &self.router,
            &self.links,
            &self.machine,
            self.store.shas(),
            self.quic
                .files
                .get()
                .map(|f| f.fetching())
                .unwrap_or_default(),
        );
        let verified = self
            .quic
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let refused_logged = &self.refused_logged;
        let cluster_id = &self.cluster_id;
        let chitchat = &self.chitchat;
        let my_keys = self.published_keys();
        let mut peer_keys: Vec<(String, String)> = Vec::new();
        let mut peer_desired: Vec<(String, String)> = Vec::new();
        let my_desired = self.desired.published();
        let view = {
            let mut c = chitchat.lock().await;
            for (k, v) in encode_member(&me) {
                c.self_node_state().set(k, v);
            }
            c.self_node_state().set(KEY_API_KEYS, my_keys);
            c.self_node_state().set(KEY_DESIRED, my_desired);
            let self_id = c.self_chitchat_id().clone();
            let live: HashSet<ChitchatId> = c.live_nodes().cloned().collect();
            let mut members = Vec::new();
            let mut refused = Vec::new();
            for (id, state) in c.node_states() {
                let is_self = *id == self_id;
                // A member whose gossip address presented a certificate for another id is an
                // impostor: refused, never routed to.
                if let Some(cert_id) = verified.get(&id.gossip_advertise_addr) {
                    if !is_self && **cert_id != *id.node_id {
                        let line = format!(
                            "{} at {} (its certificate is for {:?})",
                            id.node_id, id.gossip_advertise_addr, cert_id
                        );
                        if refused_logged
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(line.clone())
                        {
                            tracing::warn!("cluster: refused member {line}");
                            metrics::counter!(m::CLUSTER_REFUSED_TOTAL, "reason" => "id_mismatch")
                                .increment(1);
                        }
                        refused.push(line);
                        continue;
                    }
                }
                if !is_self {
                    if let Some(list) = state.get(KEY_API_KEYS) {
                        peer_keys.push((id.node_id.to_string(), list.to_string()));
                    }
                    if let Some(list) = state.get(KEY_DESIRED) {
                        peer_desired.push((id.node_id.to_string(), list.to_string()));
                    }
                }
                let advert = match decode_member(|k| state.get(k)) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(node = %id.node_id, "cluster: ignoring a bad gossip value: {e}");
                        None
                    }
                };
                // An older incarnation of a restarted node stays in the state until it is
                // garbage-collected: keep only the newest generation per id.
                if let Some(prev) = members
                    .iter()
                    .position(|m: &(u64, Member)| m.1.node_id == *id.node_id)
                {
                    if members[prev].0 > id.generation_id {
                        continue;
                    }
                    members.remove(prev);
                }
                let draining = advert.as_ref().is_some_and(|a| a.draining);
                let (node, models, load, resources, files, fetching) = match advert {
                    Some(a) => (
                        Some(a.node),
                        a.models,
                        a.load,
                        a.resources,
                        a.files,
                        a.fetching,
                    ),
                    None => (
                        None,
                        Vec::new(),
                        LoadAdvert::default(),
                        Default::default(),
                        Vec::new(),
                        Vec::new(),
                    ),
                };
                members.push((
                    id.generation_id,
                    Member {
                        node_id: id.node_id.to_string(),
                        alive: is_self || live.contains(id),
                        is_self,
                        gossip_addr: id.gossip_advertise_addr.to_string(),
                        http_addr: node.as_ref().map(|n| n.http_addr.clone()),
                        quic_addr: node.as_ref().map(|n| n.quic_addr.clone()),
                        version: node.as_ref().map(|n| n.version.clone()),
                        labels: node.as_ref().map(|n| n.labels.clone()).unwrap_or_default(),
                        models,
                        load,
                        resources,
                        files,
                        fetching,
                        draining,
                    },
                ));
            }
            // A peer restarted (a new incarnation): the connection to the old one is dead even
            // if nothing has said so yet, and its breaker counted the old one's failures.
            {
                let mut seen = self.generations.lock().unwrap_or_else(|p| p.into_inner());
                for (generation, m) in &members {
                    if m.is_self {
                        continue;
                    }
                    let before = seen.insert(m.node_id.clone(), *generation);
                    if before.is_some_and(|g| g != *generation) {
                        tracing::info!(node = %m.node_id, "cluster: member restarted");
                        self.links.forget(&m.node_id);
                        self.links
                            .reliability
                            .reset(&crate::reliability::Target::Peer(m.node_id.clone()));
                    }
                }
            }
            let mut members: Vec<Member> = members.into_iter().map(|(_, m)| m).collect();
            members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            ClusterView {
                node_id: self_id.node_id.to_string(),
                cluster_id: cluster_id.clone(),
                members,
                refused,
            }
        };
        self.merge_keys(peer_keys).await;
        self.merge_desired(peer_desired).await;
        view
    }

    /// This node's key list for gossip, remade only when a key changed since the last round.
    fn published_keys(&self) -> String {
        let version = self.keys.tenants.version();
        let mut published = self
            .keys_published
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if published.0 != version || published.1.is_empty() {
            *published = (
                version,
                serde_json::to_string(&self.keys.tenants.list()).unwrap_or_default(),
            );
        }
        published.1.clone()
    }

    /// Merges the desired-state lists peers published that changed since the last round
    /// (records newer than this node's are stored, flushed, then take effect).
    async fn merge_desired(&self, lists: Vec<(String, String)>) {
        for (node, list) in lists {
            if !self.desired_seen.is_new(&node, &list) {
                continue;
            }
            let records = match golek_protocol::deploy::DesiredList::decode(&list) {
                Ok(l) => l.records,
                Err(e) => {
                    tracing::warn!(%node, "cluster: ignoring its deployments: {e}");
                    continue;
                }
            };
            match self.desired.merge(records).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(%node, records = n, "cluster: deployments learned from a peer");
                    }
                    self.desired_seen.remember(node, list);
                }
                Err(e) => {
                    tracing::warn!(%node, "cluster: cannot store its deployments: {}", e.message)
                }
            }
        }
    }

    /// Merges the key lists peers published that changed since the last round (stored here,
    /// flushed, before they take effect). A bad list is logged with its node and skipped.
    async fn merge_keys(&self, lists: Vec<(String, String)>) {
        for (node, list) in lists {
            if !self.keys_seen.is_new(&node, &list) {
                continue;
            }
            let records: Vec<KeyRecord> = match serde_json::from_str(&list) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%node, "cluster: ignoring its API key list: {e}");
                    continue;
                }
            };
            match self.keys.merge_from_peer(&records).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(%node, keys = n, "cluster: API keys learned from a peer");
                    }
                    self.keys_seen.remember(node, list);
                }
                Err(e) => {
                    tracing::warn!(%node, "cluster: cannot store its API keys: {}", e.message)
                }
            }
        }
    }
}
