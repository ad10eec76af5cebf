//! The PlacementManager actor: every gossip interval (and whenever the desired state changes)
//! it computes the cluster's assignment from its view, the same on every node, and starts or
//! drains this node's own replicas to match. Nothing else decides: no node coordinates.
//!
//! Liveness with hysteresis: a dead node keeps its replicas (nobody else starts them) until it
//! has been dead for `placement.move_after_s`; a node back from the dead takes replicas again
//! only once it has been alive for `placement.return_after_s`, so a flapping node does not
//! move them back and forth.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_config::{PlacementConfig, ProviderKind};
use golek_protocol::deploy::{DesiredRecord, Version};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::assign::{assign, Candidate, Demand};
use super::Desired;
use crate::cluster::ClusterView;
use crate::provider::SupervisorMsg;
use crate::router::RouterHandle;
use crate::tree::ActorSnapshot;

pub struct PlacementManager;

pub struct PlacementArgs {
    pub desired: Arc<Desired>,
    /// The model store: replicas of deployments that name a sha256 run from it.
    pub store: Arc<super::ModelStore>,
    pub providers: ActorRef<SupervisorMsg>,
    pub router: RouterHandle,
    pub node_id: String,
    pub config: PlacementConfig,
    pub assets_dir: PathBuf,
    /// Names this node's config deploys or routes: a run-time deployment never replaces them.
    pub reserved: BTreeSet<String>,
    pub interval: Duration,
}

pub enum PlacementMsg {
    Tick,
    /// A model file fetch ended.
    Fetched {
        sha: String,
        outcome: Result<(), String>,
    },
    /// The assignment as last computed, with this node's local failures.
    Assignment(RpcReplyPort<Assignment>),
    Snapshot(RpcReplyPort<ActorSnapshot>),
}

/// Where each deployment's replicas go, as this node computed it.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    pub nodes: BTreeMap<String, Vec<String>>,
    /// Deployments this node was given but cannot run, with why.
    pub failed: BTreeMap<String, String>,
    /// Deployments whose model file this node is fetching: (bytes done, total).
    pub downloading: BTreeMap<String, (u64, u64)>,
}

#[derive(Default)]
struct Liveness {
    alive_since: Option<Instant>,
    dead_since: Option<Instant>,
    /// Dead long enough that its replicas moved: its return waits out the hysteresis.
    moved_away: bool,
}

impl Liveness {
    /// Whether placement counts the node now.
    fn counted(&mut self, alive: bool, now: Instant, cfg: &PlacementConfig) -> bool {
        if alive {
            if self.dead_since.take().is_some() || self.alive_since.is_none() {
                self.alive_since = Some(now);
            }
            if self.moved_away {
                let back = self
                    .alive_since
                    .is_some_and(|t| now.duration_since(t) >= cfg.return_after);
                if !back {
                    return false;
                }
                self.moved_away = false;
            }
            true
        } else {
            let since = *self.dead_since.get_or_insert(now);
            self.alive_since = None;
            if now.duration_since(since) >= cfg.move_after {
                self.moved_away = true;
            }
            !self.moved_away
        }
    }
}

pub struct PlacementState {
    args: PlacementArgs,
    live: HashMap<String, Liveness>,
    /// Each node as last seen in the view.
    known: HashMap<String, Candidate>,
    /// Replicas this node started, with the version they run.
    running: BTreeMap<String, Version>,
    last: Assignment,
    moves: u64,
    downloads: super::fetching::Downloads,
    me: ActorRef<PlacementMsg>,
    /// When tombstones past their time were last forgotten.
    expired_at: Instant,
    /// The view outside any cluster: this node alone (its memory read once).
    alone: Arc<ClusterView>,
}

/// A GPU is asked for by a GGUF deployment that offloads layers.
fn wants_gpu(record: &DesiredRecord) -> bool {
    record.spec.as_ref().is_some_and(|s| {
        s.provider == ProviderKind::Gguf.as_str()
            && s.params
                .get("n_gpu_layers")
                .and_then(|v| v.as_i64())
                .is_some_and(|n| n != 0)
    })
}

impl PlacementState {
    /// The nodes placement counts now, after liveness and hysteresis.
    fn candidates(&mut self, view: &ClusterView, now: Instant) -> Vec<Candidate> {
        let cfg = &self.args.config;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for m in &view.members {
            seen.insert(m.node_id.clone());
            let l = self.live.entry(m.node_id.clone()).or_default();
            // This node always counts itself: it is alive, whatever others think.
            let counted = l.counted(m.alive, now, cfg) || m.is_self;
            let candidate = Candidate {
                id: m.node_id.clone(),
                labels: m.labels.clone(),
                providers: None,
                memory_bytes: m.resources.memory_total_bytes,
                gpu_bytes: m
                    .resources
                    .gpus
                    .iter()
                    .map(|g| g.memory_total_bytes)
                    .fold(0u64, u64::saturating_add),
            };
            self.known.insert(m.node_id.clone(), candidate.clone());
            if counted {
                out.push(candidate);
            }
        }
        // A member gone from the view altogether is dead from when it went.
        // Until then it keeps its replicas, as it was last seen.
        for (id, l) in &mut self.live {
            if !seen.contains(id) && l.counted(false, now, cfg) {
                if let Some(c) = self.known.get(id) {
                    out.push(c.clone());
                }
            }
        }
        out
    }

    fn demands(&self, records: &[DesiredRecord]) -> Vec<Demand> {
        records
            .iter()
            .filter_map(|r| {
                let spec = r.spec.as_ref()?;
                let need =
                    (r.model_bytes as f64 * self.args.config.memory_factor).min(u64::MAX as f64);
                Some(Demand {
                    name: r.name.clone(),
                    replicas: spec.replicas,
                    labels: spec.labels.clone(),
                    provider: spec.provider.clone(),
                    need_bytes: need as u64,
                    gpu: wants_gpu(r),
                })
            })
            .collect()
    }

    /// One round: assign, then start and drain this node's replicas to match.
    fn round(&mut self) {
        let now = Instant::now();
        let view = match self.args.router.cluster() {
            Some(c) => c.view(),
            None => self.alone.clone(),
        };
        let records = self.args.desired.live();
        let candidates = self.candidates(&view, now);
        let nodes = assign(&candidates, &self.demands(&records));
        let me = &self.args.node_id;
        let mut failed = BTreeMap::new();
        let mut downloading = BTreeMap::new();
        let mine: BTreeMap<&str, &DesiredRecord> = records
            .iter()
            .filter(|r| nodes.get(&r.name).is_some_and(|n| n.contains(me)))
            .map(|r| (r.name.as_str(), r))
            .collect();
        for (name, record) in &mine {
            if self.args.reserved.contains(*name) {
                failed.insert(
                    name.to_string(),
                    format!("this node's config already deploys or routes {name:?}"),
                );
                continue;
            }
            if self.running.get(*name) == Some(&record.version) {
                continue;
            }
            let Some(spec) = &record.spec else { continue };
            // A deployment that names its file by hash runs from the store (fetched first).
            let mut spec = spec.clone();
            if let Some(sha) = spec.model_sha256.clone() {
                use super::fetching::Fetch;
                match self.downloads.ensure(
                    &sha,
                    &self.args.store,
                    &self.args.router,
                    &view,
                    &self.me,
                    spec.model_url.as_deref(),
                ) {
                    Fetch::Ready(path) => {
                        spec.params.insert(
                            "model_path".into(),
                            path.to_string_lossy().to_string().into(),
                        );
                    }
                    Fetch::Downloading(done, total) => {
                        downloading.insert(name.to_string(), (done, total));
                        continue;
                    }
                    Fetch::Failed(why) => {
                        failed.insert(name.to_string(), why);
                        continue;
                    }
                }
            }
            match golek_config::validate_deployment(&spec, &self.args.assets_dir) {
                Ok(model) => {
                    tracing::info!(deployment = %name, version = ?record.version.hlc, "placement: running a replica here");
                    let _ = self
                        .args
                        .providers
                        .cast(SupervisorMsg::Deploy(Box::new(model)));
                    self.running
                        .insert(name.to_string(), record.version.clone());
                    self.moves += 1;
                }
                Err(errors) => {
                    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    failed.insert(name.to_string(), text.join("; "));
                }
            }
        }
        let stop: Vec<String> = self
            .running
            .keys()
            .filter(|n| !mine.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in stop {
            tracing::info!(deployment = %name, "placement: draining the replica here");
            let _ = self.args.providers.cast(SupervisorMsg::Undeploy {
                name: name.clone(),
                drain: self.args.config.drain_timeout,
            });
            self.running.remove(&name);
            self.moves += 1;
        }
        self.last = Assignment {
            nodes,
            failed,
            downloading,
        };
    }
}

impl Actor for PlacementManager {
    type Msg = PlacementMsg;
    type State = PlacementState;
    type Arguments = PlacementArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PlacementArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.interval, || PlacementMsg::Tick);
        // A change to the desired state is acted on at once, not at the next tick.
        let mut changes = args.desired.subscribe();
        let me = myself.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if me.cast(PlacementMsg::Tick).is_err() {
                    break;
                }
            }
        });
        let node_id = args.node_id.clone();
        Ok(PlacementState {
            args,
            live: HashMap::new(),
            known: HashMap::new(),
            running: BTreeMap::new(),
            last: Assignment::default(),
            moves: 0,
            downloads: Default::default(),
            me: myself,
            expired_at: Instant::now(),
            alone: Arc::new(super::single_node_view(&node_id)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PlacementMsg::Tick => {
                state.round();
                // Once a minute, tombstones older than `placement.tombstone_ttl_s` go.
                if state.expired_at.elapsed() >= Duration::from_secs(60) {
                    state.expired_at = Instant::now();
                    let ttl = state.args.config.tombstone_ttl;
                    if let Err(e) = state.args.desired.expire(ttl).await {
                        tracing::warn!("placement: cannot forget old undeploys: {}", e.message);
                    }
                }
            }
            PlacementMsg::Fetched { sha, outcome } => {
                state.downloads.finished(&sha, outcome);
                state.round();
            }
            PlacementMsg::Assignment(reply) => {
                let _ = reply.send(state.last.clone());
            }
            PlacementMsg::Snapshot(reply) => {
                let here: Vec<serde_json::Value> =
                    state.running.keys().map(|n| n.as_str().into()).collect();
                let snap = ActorSnapshot::running("PlacementManager", "placement")
                    .with_detail("deployments", state.args.desired.live().len().into())
                    .with_detail("replicas_here", here.into())
                    .with_detail("replica_changes", state.moves.into())
                    .with_detail(
                        "failed",
                        serde_json::to_value(&state.last.failed).unwrap_or_default(),
                    );
                let _ = reply.send(snap);
            }
        }
        Ok(())
    }
}
