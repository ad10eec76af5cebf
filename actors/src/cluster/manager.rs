//! The ClusterManager actor, a child of the SystemModule. It owns the QUIC endpoint, the
//! chitchat handle, the peer links and every task they start (one [`Tasks`] set), and it
//! supervises the cluster's long-lived loops as child actors:
//!
//! - `listener`: the QUIC accept loop (gossip, peer and client connections);
//! - `peer-server`: serves the bidi streams peers and QUIC clients open;
//! - `publisher`: the gossip round (advert out, view in);
//! - `resources`: reads the machine's resources every 10 s.
//!
//! A loop that panics or ends is restarted with the same backoff and restart-intensity rules
//! as providers; past the limit it waits out the breaker cooldown and is tried again. Peer
//! links are one shared object (the request path reads it without a mailbox hop) that this
//! actor owns and closes. Shutdown cancels and awaits every task.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use golek_config::ClusterConfig;
use golek_protocol::cluster::{encode_member, NodeAdvert};
use golek_providers::Faults;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::{mpsc, watch};

use super::advert::{advert, resource_loop, shared_resources};
use super::close::CloseCode;
use super::publisher::{publish_loop, Publisher};
use super::{join, peer, tls, transport, ClusterHandle, ClusterView, SelfInfo};
use crate::error::ClusterError;
use crate::loops::{LoopActor, LoopArgs, LoopFn};
use crate::provider::restart::{Decision, RestartPolicy, RestartTracker};
use crate::router::RouterHandle;
use crate::tasks::Tasks;
use crate::tree::ActorSnapshot;

pub struct ClusterManager;

pub struct ClusterArgs {
    pub config: ClusterConfig,
    pub me: SelfInfo,
    pub router: RouterHandle,
    pub policy: RestartPolicy,
    pub reliability: Arc<crate::reliability::Reliability>,
    /// API keys: published to peers and merged from theirs.
    pub keys: crate::tenants::KeyStore,
    /// Run-time deployments: published to peers and merged from theirs.
    pub desired: Arc<crate::placement::Desired>,
    /// The model store: its files are served to peers and advertised.
    pub store: Arc<crate::placement::ModelStore>,
}

pub enum ClusterMsg {
    /// The handle the router and the HTTP layer use.
    Handle(RpcReplyPort<ClusterHandle>),
    Snapshot(RpcReplyPort<ActorSnapshot>),
    /// Start the next run of a loop (after its backoff), unless it was restarted already.
    Restart {
        name: String,
        generation: u64,
    },
    /// Leave gossip, stop the loops, close the endpoint and wait (up to the duration) for
    /// every task to end; answers whether they all did.
    Shutdown(Duration, RpcReplyPort<bool>),
}

struct Child {
    run: LoopFn,
    tracker: RestartTracker,
    generation: u64,
    restarts: u64,
    last_failure: Option<String>,
    state: &'static str,
    actor: Option<ActorCell>,
}

pub struct ClusterState {
    handle: ClusterHandle,
    chitchat: Option<ChitchatHandle>,
    quic: Arc<transport::QuicNode>,
    tasks: Tasks,
    children: BTreeMap<String, Child>,
    by_actor: HashMap<ActorId, String>,
    stopping: bool,
}

/// Obtains this node's certificate with a join token from the first seed that answers; a
/// seed that refuses (or answers nonsense) ends the search.
async fn join_through_seeds(
    config: &ClusterConfig,
    token: &str,
    node_id: &str,
    tls_dir: &std::path::Path,
) -> Result<(), ClusterError> {
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
                Err(e @ (join::JoinError::Refused { .. } | join::JoinError::Malformed(_))) => {
                    return Err(ClusterError::Join(e.to_string()))
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    Err(ClusterError::Join(format!(
        "no seed admitted the join: {}",
        errors.join("; ")
    )))
}

fn chitchat_config(
    config: &ClusterConfig,
    node_id: &str,
    bound: std::net::SocketAddr,
    advertise: std::net::SocketAddr,
) -> ChitchatConfig {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ChitchatConfig {
        chitchat_id: ChitchatId::new(node_id.to_string(), generation, advertise),
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
    }
}

impl ClusterManager {
    async fn start(
        args: ClusterArgs,
    ) -> Result<(ClusterState, Vec<(String, LoopFn)>), ClusterError> {
        let config = args.config;
        let me = args.me;
        let tls_dir = config.tls_dir.as_ref().ok_or(ClusterError::NoTlsDir)?;
        if let Some(token) = &config.join_token {
            if !tls_dir.join(tls::NODE_CERT).exists() {
                join_through_seeds(&config, token, &me.node_id, tls_dir).await?;
            }
        }
        let identity = tls::NodeIdentity::load(tls_dir).map_err(ClusterError::Tls)?;
        if identity.node_id != me.node_id
            && std::env::var_os("UNSAFE_GOLEK_SKIP_ID_CHECK").is_none()
        {
            return Err(ClusterError::IdMismatch {
                node_id: me.node_id,
                tls_dir: tls_dir.clone(),
                cert_id: identity.node_id,
            });
        }
        // The id checked against the certificate above (the same one, unless the test-only
        // UNSAFE_GOLEK_SKIP_ID_CHECK lets a node claim another id to test the peers' checks).
        let node_id = me.node_id.clone();
        let authority = match &config.ca_dir {
            Some(dir) => Some(
                join::JoinAuthority::new(dir.clone(), me.data_dir.join("join-tokens-used"))
                    .map_err(ClusterError::Join)?,
            ),
            None => None,
        };
        let tasks = Tasks::new();
        let (streams_tx, streams_rx) = mpsc::channel(256);
        let quic = transport::QuicNode::bind(config.quic_addr, identity, authority, tasks.clone())?;
        let bound = quic.local_addr();
        let advertise = config.advertise_addr.unwrap_or(bound);
        let links = Arc::new(peer::PeerLinks::new(
            quic.clone(),
            node_id.clone(),
            tasks.child(),
            args.reliability.clone(),
        ));
        let node_advert = NodeAdvert {
            http_addr: me.http_addr.to_string(),
            quic_addr: advertise.to_string(),
            version: me.version.clone(),
            labels: me.labels.clone(),
        };
        let machine = shared_resources();
        let first = advert(
            &node_advert,
            &args.router,
            &links,
            &machine,
            args.store.shas(),
            Vec::new(),
        );
        let faults = Arc::new(Faults::default());
        let _ = quic.files.set(Arc::new(crate::placement::FileServer::new(
            args.store.clone(),
            faults.clone(),
        )));
        let chitchat = spawn_chitchat(
            chitchat_config(&config, &node_id, bound, advertise),
            encode_member(&first),
            &transport::GossipTransport(quic.clone()),
        )
        .await
        .map_err(|e| ClusterError::Gossip(e.to_string()))?;
        let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView {
            node_id: node_id.clone(),
            cluster_id: config.cluster_id.clone(),
            ..Default::default()
        }));
        let publisher = Arc::new(Publisher {
            chitchat: chitchat.chitchat(),
            router: args.router.clone(),
            quic: quic.clone(),
            links: links.clone(),
            machine: machine.clone(),
            node: node_advert,
            cluster_id: config.cluster_id.clone(),
            view_tx: Arc::new(view_tx),
            interval: config.gossip_interval,
            faults: faults.clone(),
            refused_logged: Mutex::new(Default::default()),
            keys: args.keys.clone(),
            keys_seen: Default::default(),
            generations: Mutex::new(Default::default()),
            keys_published: Mutex::new(Default::default()),
            desired: args.desired.clone(),
            desired_seen: Default::default(),
            store: args.store.clone(),
        });
        let streams_rx = Arc::new(tokio::sync::Mutex::new(streams_rx));
        let loops = vec![
            (
                "listener".to_string(),
                transport::accept_loop(quic.clone(), streams_tx),
            ),
            (
                "peer-server".to_string(),
                peer::server_loop(
                    streams_rx,
                    args.router.clone(),
                    node_id.clone(),
                    links.clone(),
                ),
            ),
            ("publisher".to_string(), publish_loop(publisher)),
            ("resources".to_string(), resource_loop(machine)),
            (
                "certificates".to_string(),
                super::certs::reload_loop(quic.clone(), tls_dir.clone()),
            ),
        ];
        tracing::info!(node_id = %node_id, quic = %bound, %advertise, seeds = ?config.seeds, "cluster: joined gossip");
        let children = loops
            .iter()
            .map(|(name, run)| {
                (
                    name.clone(),
                    Child {
                        run: run.clone(),
                        tracker: RestartTracker::new(args.policy.clone()),
                        generation: 0,
                        restarts: 0,
                        last_failure: None,
                        state: "starting",
                        actor: None,
                    },
                )
            })
            .collect();
        let state = ClusterState {
            handle: ClusterHandle {
                node_id,
                view: view_rx,
                links,
                faults,
            },
            chitchat: Some(chitchat),
            quic,
            tasks,
            children,
            by_actor: HashMap::new(),
            stopping: false,
        };
        Ok((state, loops))
    }

    async fn spawn_child(myself: &ActorRef<ClusterMsg>, state: &mut ClusterState, name: &str) {
        let Some(child) = state.children.get_mut(name) else {
            return;
        };
        child.generation += 1;
        let args = LoopArgs {
            name: name.to_string(),
            tasks: state.tasks.clone(),
            run: child.run.clone(),
        };
        match Actor::spawn_linked(None, LoopActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.by_actor.insert(actor.get_id(), name.to_string());
                child.actor = Some(actor.get_cell());
                child.state = "running";
            }
            Err(e) => {
                let reason = format!("cannot start: {e}");
                Self::on_failure(myself, state, name, reason);
            }
        }
    }

    fn on_failure(
        myself: &ActorRef<ClusterMsg>,
        state: &mut ClusterState,
        name: &str,
        reason: String,
    ) {
        let Some(child) = state.children.get_mut(name) else {
            return;
        };
        child.actor = None;
        if state.stopping {
            child.state = "stopped";
            return;
        }
        let delay = match child.tracker.on_failure(Instant::now()) {
            Decision::Restart { after } => {
                tracing::warn!(actor = name, %reason, backoff_ms = after.as_millis() as u64, "cluster loop failed; restarting");
                child.state = "restarting";
                after
            }
            Decision::OpenBreaker { retry_after } => {
                tracing::error!(actor = name, %reason, cooldown_s = retry_after.as_secs(), "cluster loop failing repeatedly; waiting out the cooldown");
                child.state = "breaker_open";
                retry_after
            }
        };
        child.last_failure = Some(reason);
        let restart = ClusterMsg::Restart {
            name: name.to_string(),
            generation: child.generation,
        };
        state.tasks.send_after(myself, delay, restart);
    }

    fn snapshot(state: &ClusterState) -> ActorSnapshot {
        let mut me = ActorSnapshot::running("ClusterManager", "cluster_manager")
            .with_detail("node_id", state.handle.node_id.clone().into())
            .with_detail("tasks", state.tasks.len().into());
        if state.stopping {
            me.state = "stopping".into();
        }
        for (name, child) in &state.children {
            let mut s = ActorSnapshot::running(name.clone(), "loop");
            s.state = child.state.into();
            s.restarts = child.restarts;
            s.last_failure = child.last_failure.clone();
            me.children.push(s);
        }
        me.children.push(state.handle.links.snapshot());
        me
    }

    async fn shutdown(state: &mut ClusterState, grace: Duration) -> bool {
        state.stopping = true;
        if let Some(chitchat) = state.chitchat.take() {
            let _ = chitchat.shutdown().await;
        }
        state.handle.links.close_all();
        state
            .quic
            .endpoint
            .close(CloseCode::Shutdown.into(), b"node shutting down");
        let ended = state.tasks.shutdown(grace).await;
        let _ = tokio::time::timeout(grace, state.quic.endpoint.wait_idle()).await;
        ended
    }
}

impl Actor for ClusterManager {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ClusterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (mut state, loops) = Self::start(args).await?;
        for (name, _) in loops {
            Self::spawn_child(&myself, &mut state, &name).await;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ClusterMsg::Handle(reply) => {
                let _ = reply.send(state.handle.clone());
            }
            ClusterMsg::Snapshot(reply) => {
                let _ = reply.send(Self::snapshot(state));
            }
            ClusterMsg::Restart { name, generation } => {
                let due = state
                    .children
                    .get(&name)
                    .is_some_and(|c| c.generation == generation && c.actor.is_none());
                if due && !state.stopping {
                    if let Some(child) = state.children.get_mut(&name) {
                        child.restarts += 1;
                    }
                    Self::spawn_child(&myself, state, &name).await;
                }
            }
            ClusterMsg::Shutdown(grace, reply) => {
                state.stopping = true;
                myself
                    .stop_children_and_wait(Some("node shutdown".into()), Some(grace))
                    .await;
                let _ = reply.send(Self::shutdown(state, grace).await);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        if let Some(name) = state.by_actor.remove(&cell.get_id()) {
            Self::on_failure(&myself, state, &name, reason);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.stopping {
            Self::shutdown(state, Duration::from_secs(5)).await;
        }
        Ok(())
    }
}
