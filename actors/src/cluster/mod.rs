//! The ClusterManager: this node's membership in a cluster.
//!
//! One QUIC endpoint ([`transport::QuicNode`]) carries gossip (chitchat over uni streams), peer
//! forwarding and the QUIC client API, all over mutual TLS with the cluster CA. Every
//! `gossip_interval` the manager publishes this node's advert (addresses, models, load,
//! resources) as typed gossip keys and rebuilds the [`ClusterView`] that the router reads.

pub mod client;
pub mod join;
pub mod peer;
pub mod tls;
pub mod transport;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use golek_config::ClusterConfig;
use golek_protocol::cluster::{
    decode_member, encode_member, GpuAdvert, LoadAdvert, MemberAdvert, ModelAdvert, NodeAdvert,
    ResourcesAdvert,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::metrics as m;
use crate::router::{ModelState, RouterHandle};

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
    pub models: Vec<ModelAdvert>,
    pub load: LoadAdvert,
    pub resources: ResourcesAdvert,
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
    fn ready_peers<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members
            .iter()
            .filter(|m| !m.is_self && m.alive && m.quic_addr.is_some())
            .filter(move |m| {
                m.models
                    .iter()
                    .any(|a| a.name == model && a.state == ModelState::Ready.as_str())
            })
    }

    /// Whether some live peer has `model` ready (no allocation: asked on every request).
    pub fn serves(&self, model: &str) -> bool {
        self.ready_peers(model).next().is_some()
    }

    /// Live peers (not this node) whose `model` is ready, least loaded first.
    pub fn candidates(&self, model: &str) -> Vec<peer::PeerAddr> {
        let mut out: Vec<(u64, peer::PeerAddr)> = self
            .ready_peers(model)
            .map(|m| {
                let load = &m.load;
                // Queued work relative to capacity, in thousandths.
                let ratio = (load.queued + load.in_flight) * 1000 / load.capacity.max(1);
                let addr = peer::PeerAddr {
                    node_id: m.node_id.clone(),
                    quic_addr: m.quic_addr.clone().unwrap_or_default(),
                };
                (ratio, addr)
            })
            .collect();
        // Least loaded first; ties by id.
        out.sort_by(|a, b| (a.0, &a.1.node_id).cmp(&(b.0, &b.1.node_id)));
        out.into_iter().map(|(_, addr)| addr).collect()
    }

    /// Some peer's advert of `model`, whatever its state (for descriptions and errors).
    pub fn advert(&self, model: &str) -> Option<(&Member, &ModelAdvert)> {
        let mut found = None;
        for member in self.members.iter().filter(|m| !m.is_self) {
            if let Some(ad) = member.models.iter().find(|a| a.name == model) {
                let better = member.alive && ad.state == ModelState::Ready.as_str();
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
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub links: Arc<peer::PeerLinks>,
}

impl ClusterHandle {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }
}

/// A running cluster membership; dropping it does not stop it (call [`Cluster::shutdown`]).
pub struct Cluster {
    pub handle: ClusterHandle,
    chitchat: ChitchatHandle,
    pub quic: Arc<transport::QuicNode>,
}

impl Cluster {
    /// Leaves gossip and closes the endpoint.
    pub async fn shutdown(self) {
        let _ = self.chitchat.shutdown().await;
        self.quic.endpoint.close(0u32.into(), b"node shutting down");
    }
}

/// What the node tells the cluster about itself besides its models.
pub struct SelfInfo {
    pub node_id: String,
    /// The node's data dir (where a join authority records used tokens).
    pub data_dir: std::path::PathBuf,
    pub http_addr: SocketAddr,
    pub version: String,
}

/// Joins (or starts) the cluster: binds QUIC, checks the certificate against the node id,
/// starts gossip and the peer server, and publishes the view.
pub async fn start(
    config: &ClusterConfig,
    me: SelfInfo,
    router: RouterHandle,
) -> Result<Cluster, String> {
    let tls_dir = config
        .tls_dir
        .as_ref()
        .ok_or("cluster.tls_dir is not set")?;
    if let Some(token) = &config.join_token {
        if !tls_dir.join(tls::NODE_CERT).exists() {
            join_through_seeds(config, token, &me.node_id, tls_dir).await?;
        }
    }
    let identity = tls::NodeIdentity::load(tls_dir).map_err(|e| e.to_string())?;
    if identity.node_id != me.node_id && std::env::var_os("UNSAFE_GOLEK_SKIP_ID_CHECK").is_none() {
        return Err(format!(
            "the node id is {:?} but the certificate in {} is for {:?}: use --node-id {} or issue a certificate for this id",
            me.node_id,
            tls_dir.display(),
            identity.node_id,
            identity.node_id
        ));
    }
    let (streams_tx, streams_rx) = mpsc::channel(256);
    let authority = match &config.ca_dir {
        Some(dir) => Some(join::JoinAuthority::new(
            dir.clone(),
            me.data_dir.join("join-tokens-used"),
        )?),
        None => None,
    };
    let quic = transport::QuicNode::bind(config.quic_addr, identity, streams_tx, authority)?;
    let bound = quic.local_addr();
    let advertise = config.advertise_addr.unwrap_or(bound);
    let links = Arc::new(peer::PeerLinks::new(quic.clone(), me.node_id.clone()));
    tokio::spawn(peer::serve(
        streams_rx,
        router.clone(),
        me.node_id.clone(),
        links.serving.clone(),
    ));

    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let chitchat_config = ChitchatConfig {
        chitchat_id: ChitchatId::new(me.node_id.clone(), generation, advertise),
        cluster_id: config.cluster_id.clone(),
        gossip_interval: config.gossip_interval,
        listen_addr: bound,
        seed_nodes: config.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: config.phi_threshold,
            sampling_window_size: 1000,
            max_interval: Duration::from_secs(10),
            initial_interval: config.gossip_interval,
            dead_node_grace_period: config.dead_grace,
        },
        marked_for_deletion_grace_period: config.dead_grace * 2,
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let node_advert = NodeAdvert {
        http_addr: me.http_addr.to_string(),
        quic_addr: advertise.to_string(),
        version: me.version.clone(),
        labels: Default::default(),
    };
    let machine = spawn_resource_reader();
    let first = advert(&node_advert, &router, &links, &machine);
    let chitchat = spawn_chitchat(
        chitchat_config,
        encode_member(&first),
        &transport::GossipTransport(quic.clone()),
    )
    .await
    .map_err(|e| format!("cannot start gossip: {e}"))?;
    let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView {
        node_id: me.node_id.clone(),
        cluster_id: config.cluster_id.clone(),
        ..Default::default()
    }));
    tokio::spawn(publish_loop(
        chitchat.chitchat(),
        router,
        quic.clone(),
        links.clone(),
        machine,
        node_advert,
        config.cluster_id.clone(),
        view_tx,
        config.gossip_interval,
    ));
    tracing::info!(node_id = %me.node_id, quic = %bound, %advertise, seeds = ?config.seeds, "cluster: joined gossip");
    Ok(Cluster {
        handle: ClusterHandle {
            view: view_rx,
            links,
        },
        chitchat,
        quic,
    })
}

/// Obtains this node's certificate with a join token from the first seed that answers.
async fn join_through_seeds(
    config: &ClusterConfig,
    token: &str,
    node_id: &str,
    tls_dir: &std::path::Path,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for seed in &config.seeds {
        let addrs = match tokio::net::lookup_host(seed.as_str()).await {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                errors.push(format!("{seed}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match join::join(addr, token, node_id, tls_dir).await {
                Ok(()) => {
                    tracing::info!(%addr, "cluster: joined with a token; certificate written to {}", tls_dir.display());
                    return Ok(());
                }
                Err(e) if e.contains("refused the join") || e.contains("malformed") => {
                    return Err(e)
                }
                Err(e) => errors.push(e),
            }
        }
    }
    Err(format!("no seed admitted the join: {}", errors.join("; ")))
}

/// This node's advert from its routing table.
fn advert(
    node: &NodeAdvert,
    router: &RouterHandle,
    links: &peer::PeerLinks,
    resources: &std::sync::Mutex<ResourcesAdvert>,
) -> MemberAdvert {
    let table = router.table();
    let mut load = LoadAdvert {
        in_flight: links.serving(),
        ..Default::default()
    };
    let models = table
        .models
        .values()
        .map(|e| {
            if let Some(sender) = &e.sender {
                load.queued += sender.depth() as u64;
                load.capacity += sender.capacity() as u64;
            }
            ModelAdvert {
                name: e.name.clone(),
                provider: e.provider.clone(),
                state: e.state.as_str().to_string(),
                info: e.info.as_ref().and_then(|i| serde_json::to_value(i).ok()),
            }
        })
        .collect();
    MemberAdvert {
        node: node.clone(),
        models,
        load,
        resources: resources.lock().expect("resources").clone(),
    }
}

/// The machine's resources, read every 10 s in the background rather than on every gossip
/// round: CPUs and memory from the OS, GPUs from `nvidia-smi` where it exists (once it is
/// missing or fails, GPUs stay empty and it is not run again).
fn spawn_resource_reader() -> Arc<std::sync::Mutex<ResourcesAdvert>> {
    let shared = Arc::new(std::sync::Mutex::new(resources()));
    let writer = shared.clone();
    tokio::spawn(async move {
        let mut query_gpus = true;
        loop {
            let read = tokio::task::spawn_blocking(move || {
                let mut now = resources();
                if query_gpus {
                    match read_gpus() {
                        Some(gpus) => now.gpus = gpus,
                        None => query_gpus = false,
                    }
                }
                (now, query_gpus)
            })
            .await;
            if let Ok((now, still)) = read {
                query_gpus = still;
                *writer.lock().expect("resources") = now;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    shared
}

fn read_gpus() -> Option<Vec<GpuAdvert>> {
    std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,memory.free",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
}

/// `name, total MiB, free MiB` lines.
fn parse_nvidia_smi(text: &str) -> Vec<GpuAdvert> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(',').map(str::trim);
            let name = parts.next()?.to_string();
            let total: u64 = parts.next()?.parse().ok()?;
            let free: u64 = parts.next()?.parse().ok()?;
            Some(GpuAdvert {
                name,
                memory_total_bytes: total << 20,
                memory_free_bytes: free << 20,
            })
        })
        .collect()
}

/// CPU count and memory from the OS (no GPUs).
fn resources() -> ResourcesAdvert {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    ResourcesAdvert {
        cpus,
        memory_total_bytes: kib("MemTotal:"),
        memory_available_bytes: kib("MemAvailable:"),
        gpus: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_loop(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    router: RouterHandle,
    quic: Arc<transport::QuicNode>,
    links: Arc<peer::PeerLinks>,
    machine: Arc<std::sync::Mutex<ResourcesAdvert>>,
    node: NodeAdvert,
    cluster_id: String,
    view_tx: watch::Sender<Arc<ClusterView>>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    let mut refused_logged: HashSet<String> = HashSet::new();
    let mut was_alive: BTreeSet<String> = BTreeSet::new();
    loop {
        ticker.tick().await;
        let me = advert(&node, &router, &links, &machine);
        let verified = quic.verified.lock().expect("verified map").clone();
        let view = {
            let mut c = chitchat.lock().await;
            for (k, v) in encode_member(&me) {
                c.self_node_state().set(k, v);
            }
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
                        if refused_logged.insert(line.clone()) {
                            tracing::warn!("cluster: refused member {line}");
                            metrics::counter!(m::CLUSTER_REFUSED_TOTAL, "reason" => "id_mismatch")
                                .increment(1);
                        }
                        refused.push(line);
                        continue;
                    }
                }
                let advert = match decode_member(|k| state.get(k)) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(node = %id.node_id, "cluster: bad gossip: {e}");
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
                let (node, models, load, resources) = match advert {
                    Some(a) => (Some(a.node), a.models, a.load, a.resources),
                    None => (None, Vec::new(), LoadAdvert::default(), Default::default()),
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
                        models,
                        load,
                        resources,
                    },
                ));
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
        let alive: BTreeSet<String> = view
            .members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.node_id.clone())
            .collect();
        for gone in was_alive.difference(&alive) {
            tracing::warn!(node = %gone, "cluster: member is dead");
            links.forget(gone);
        }
        for new in alive.difference(&was_alive) {
            tracing::info!(node = %new, "cluster: member is alive");
        }
        was_alive = alive;
        let live = view.members.iter().filter(|m| m.alive).count();
        metrics::gauge!(m::CLUSTER_MEMBERS, "state" => "alive").set(live as f64);
        metrics::gauge!(m::CLUSTER_MEMBERS, "state" => "dead")
            .set((view.members.len() - live) as f64);
        if view_tx.send(Arc::new(view)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_become_gpu_adverts() {
        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 80100\nbroken line\n");
        assert_eq!(
            gpus,
            vec![GpuAdvert {
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total_bytes: 81559 << 20,
                memory_free_bytes: 80100 << 20,
            }]
        );
    }
}
