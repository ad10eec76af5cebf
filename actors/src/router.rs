//! The Router: owns the routing table (model -> state, queue, capabilities) and publishes it.
//!
//! Provider actors and their supervisor send [`RouterMsg::Update`]s; the table is published
//! through a watch channel that request handlers read through [`RouterHandle`], so a request
//! never waits on an actor mailbox. Each update carries the model's incarnation (`generation`):
//! a late message from a worker that was already replaced is ignored.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::{ErrorCode, ErrorInfo};
use golek_providers::{Faults, Job, JobSender, ProviderInfo, SubmitError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::cluster::ClusterHandle;
use crate::metrics as m;

/// Where a model is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// The worker is loading the model.
    Loading,
    Ready,
    /// The worker failed; a restart is scheduled.
    Restarting,
    /// Too many restarts in the window: refused until the cooldown ends.
    BreakerOpen,
    /// The node is shutting down.
    Stopped,
}

impl ModelState {
    /// The state a peer gossiped (unknown words read as stopped).
    pub fn from_gossip(s: &str) -> Self {
        match s {
            "loading" => ModelState::Loading,
            "ready" => ModelState::Ready,
            "restarting" => ModelState::Restarting,
            "breaker_open" => ModelState::BreakerOpen,
            _ => ModelState::Stopped,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Restarting => "restarting",
            ModelState::BreakerOpen => "breaker_open",
            ModelState::Stopped => "stopped",
        }
    }
}

/// One model in the routing table.
#[derive(Clone)]
pub struct ModelEntry {
    pub name: String,
    pub provider: String,
    pub state: ModelState,
    pub generation: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    /// Present once the worker has loaded the model.
    pub info: Option<ProviderInfo>,
    pub sender: Option<JobSender>,
    pub faults: Option<Arc<Faults>>,
    /// Unix seconds when the deployment was first recorded.
    pub created_unix_s: u64,
}

/// A serializable view of a model, for the admin API and tests.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    pub name: String,
    pub provider: String,
    pub state: ModelState,
    pub generation: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub info: Option<ProviderInfo>,
}

impl ModelEntry {
    pub fn view(&self) -> ModelView {
        ModelView {
            name: self.name.clone(),
            provider: self.provider.clone(),
            state: self.state.clone(),
            generation: self.generation,
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            queue_depth: self.sender.as_ref().map_or(0, |s| s.depth()),
            queue_capacity: self.sender.as_ref().map_or(0, |s| s.capacity()),
            info: self.info.clone(),
        }
    }
}

/// The published table.
#[derive(Clone, Default)]
pub struct RoutingTable {
    pub models: BTreeMap<String, ModelEntry>,
}

impl RoutingTable {
    /// Ready once every configured model is ready.
    pub fn all_ready(&self) -> bool {
        self.models.values().all(|e| e.state == ModelState::Ready)
    }
}

/// A change to one model's entry.
pub enum RouterMsg {
    /// Registers a model (before its worker starts) or replaces its entry.
    Update(Box<ModelEntry>),
    /// Changes the state of the given incarnation; stale generations are ignored.
    SetState {
        name: String,
        generation: u64,
        state: ModelState,
        error: Option<String>,
    },
    /// The worker of `generation` loaded its model.
    Ready {
        name: String,
        generation: u64,
        info: ProviderInfo,
    },
}

pub struct Router;

pub struct RouterState {
    tx: watch::Sender<Arc<RoutingTable>>,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    /// The table's sender, made by the system module so that a restarted Router keeps the table.
    type Arguments = watch::Sender<Arc<RoutingTable>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RouterState { tx })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.tx.send_modify(|table| {
            let table = Arc::make_mut(table);
            apply(table, message);
        });
        Ok(())
    }
}

fn apply(table: &mut RoutingTable, message: RouterMsg) {
    match message {
        RouterMsg::Update(mut entry) => {
            if let Some(old) = table.models.get(&entry.name) {
                // A new incarnation keeps the reason its predecessor died.
                if entry.last_error.is_none() {
                    entry.last_error = old.last_error.clone();
                }
            }
            set_gauges(&entry);
            table.models.insert(entry.name.clone(), *entry);
        }
        RouterMsg::SetState {
            name,
            generation,
            state,
            error,
        } => {
            if let Some(entry) = table.models.get_mut(&name) {
                if entry.generation != generation {
                    return;
                }
                if state != ModelState::Ready && state != ModelState::Loading {
                    // The worker is gone: nothing may be queued to it any more.
                    entry.sender = None;
                }
                entry.state = state;
                if error.is_some() {
                    entry.last_error = error;
                }
                set_gauges(entry);
            }
        }
        RouterMsg::Ready {
            name,
            generation,
            info,
        } => {
            if let Some(entry) = table.models.get_mut(&name) {
                if entry.generation == generation {
                    entry.state = ModelState::Ready;
                    entry.info = Some(info);
                    set_gauges(entry);
                }
            }
        }
    }
}

fn set_gauges(entry: &ModelEntry) {
    let ready = if entry.state == ModelState::Ready {
        1.0
    } else {
        0.0
    };
    metrics::gauge!(m::MODEL_READY, "model" => entry.name.clone()).set(ready);
    if let Some(sender) = &entry.sender {
        metrics::gauge!(m::MODEL_QUEUE_CAPACITY, "model" => entry.name.clone())
            .set(sender.capacity() as f64);
    }
}

/// The receiving end of one request: its events, ending when the worker is done with it.
pub type EventRx = mpsc::UnboundedReceiver<Result<InferenceEvent, ErrorInfo>>;

/// What request handlers use: reads the published table, submits to a model's queue.
#[derive(Clone)]
pub struct RouterHandle {
    table: watch::Receiver<Arc<RoutingTable>>,
    retry_after_s: u32,
    /// Set once when the node joins a cluster; shared by every clone.
    cluster: Arc<OnceLock<ClusterHandle>>,
}

impl RouterHandle {
    pub fn new(table: watch::Receiver<Arc<RoutingTable>>, retry_after_s: u32) -> Self {
        Self {
            table,
            retry_after_s,
            cluster: Arc::new(OnceLock::new()),
        }
    }

    /// Lets requests reach the cluster's other nodes.
    pub fn set_cluster(&self, cluster: ClusterHandle) {
        let _ = self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&ClusterHandle> {
        self.cluster.get()
    }

    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.borrow().clone()
    }

    /// Seconds a client should wait after an "overloaded" answer.
    pub fn retry_after_s(&self) -> u32 {
        self.retry_after_s
    }

    /// Waits until `predicate` holds for the table, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&RoutingTable) -> bool,
    ) -> bool {
        let mut rx = self.table.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if predicate(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Whether `model` is served here or by a peer (cheap: for metric labels).
    pub fn knows(&self, model: &str) -> bool {
        self.table.borrow().models.contains_key(model)
            || self
                .cluster
                .get()
                .is_some_and(|c| c.view().advert(model).is_some())
    }

    /// The model's entry, or a 404-style error. A model served only by peers gets an entry
    /// made from their gossip (no local queue).
    pub fn entry(&self, model: &str) -> Result<ModelEntry, ErrorInfo> {
        if let Some(entry) = self.table.borrow().models.get(model) {
            return Ok(entry.clone());
        }
        if let Some(cluster) = self.cluster.get() {
            let view = cluster.view();
            if let Some((member, ad)) = view.advert(model) {
                return Ok(ModelEntry {
                    name: ad.name.clone(),
                    provider: ad.provider.clone(),
                    state: if member.alive {
                        ModelState::from_gossip(&ad.state)
                    } else {
                        ModelState::Stopped
                    },
                    generation: 0,
                    restarts: 0,
                    last_error: None,
                    info: ad.info.clone().and_then(|v| serde_json::from_value(v).ok()),
                    sender: None,
                    faults: None,
                    created_unix_s: 0,
                });
            }
        }
        Err(ErrorInfo::new(
            ErrorCode::NotFound,
            format!("model {model:?} does not exist"),
        )
        .with_param("model"))
    }

    /// Routes a validated request: to this node's worker when it has the model and room,
    /// otherwise to the least-loaded live peer that serves it. Never blocks: a full local queue
    /// with no peer to take the request is an "overloaded" error at once.
    pub fn submit(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
    ) -> Result<EventRx, ErrorInfo> {
        let Some(cluster) = self.cluster.get() else {
            return self.submit_local(model, request, timeout);
        };
        let view = cluster.view();
        if !view.serves(model) {
            return self.submit_local(model, request, timeout);
        }
        let local = self
            .table
            .borrow()
            .models
            .get(model)
            .map(|e| e.state.clone());
        if local == Some(ModelState::Ready) {
            match self.submit_local(model, request.clone(), timeout) {
                Err(e) if matches!(e.code, ErrorCode::Overloaded | ErrorCode::Unavailable) => {}
                other => return other,
            }
        }
        Ok(cluster
            .links
            .forward(model, request, timeout, view.candidates(model)))
    }

    /// Routes a validated request to this node's worker queue only.
    pub fn submit_local(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
    ) -> Result<EventRx, ErrorInfo> {
        let result = self.try_submit(model, request, timeout);
        if let Err(err) = &result {
            metrics::counter!(m::ROUTER_REJECTED_TOTAL, "model" => model_label(&self.table, model), "type" => err.code.as_str())
                .increment(1);
        }
        result
    }

    fn try_submit(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
    ) -> Result<EventRx, ErrorInfo> {
        let local = self.table.borrow().models.get(model).cloned();
        let Some(entry) = local else {
            // Unknown everywhere is 404; known only from peers that cannot take it now, 503.
            let known = self.entry(model)?;
            return Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!(
                    "model {model:?} is served only by other nodes, and none of them is available ({})",
                    known.state.as_str()
                ),
            ));
        };
        let sender = match (&entry.state, &entry.sender) {
            (ModelState::Ready, Some(sender)) => sender.clone(),
            (state, _) => {
                return Err(ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!("model {model:?} is not available ({})", state.as_str()),
                ))
            }
        };
        if let Some(info) = &entry.info {
            let supported = match &request {
                InferenceRequest::Embeddings(_) => info.capabilities.embeddings,
                InferenceRequest::Tensors(_) => info.capabilities.tensors,
                InferenceRequest::Generate(r) => match r.prompt {
                    golek_protocol::inference::Prompt::Text(_) => info.capabilities.completions,
                    golek_protocol::inference::Prompt::Chat(_) => info.capabilities.chat,
                },
            };
            if !supported {
                return Err(ErrorInfo::new(
                    ErrorCode::InvalidRequest,
                    format!("model {model:?} does not support {}", request.kind()),
                )
                .with_param("model"));
            }
        }
        let (events, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let job = Job {
            request,
            events,
            enqueued_at: now,
            deadline: now + timeout,
        };
        match sender.try_submit(job) {
            Ok(()) => {
                metrics::gauge!(m::MODEL_QUEUE_DEPTH, "model" => entry.name.clone())
                    .set(sender.depth() as f64);
                Ok(rx)
            }
            Err(SubmitError::Full) => Err(ErrorInfo::new(
                ErrorCode::Overloaded,
                format!(
                    "model {model:?} is overloaded ({} requests queued); retry later",
                    sender.capacity()
                ),
            )),
            Err(SubmitError::Closed) => Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} is restarting"),
            )),
        }
    }

    /// Makes the model's worker panic when it next takes work (fault injection for tests).
    pub fn inject_crash(&self, model: &str) -> Result<(), ErrorInfo> {
        let entry = self.entry(model)?;
        match entry.faults {
            Some(faults) if entry.state == ModelState::Ready => {
                faults.crash_next_batch();
                Ok(())
            }
            _ => Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} has no running worker"),
            )),
        }
    }

    /// Updates the queue-depth gauges (called before metrics are rendered).
    pub fn refresh_gauges(&self) {
        for entry in self.table.borrow().models.values() {
            let depth = entry.sender.as_ref().map_or(0, |s| s.depth());
            metrics::gauge!(m::MODEL_QUEUE_DEPTH, "model" => entry.name.clone()).set(depth as f64);
        }
    }
}

/// A metrics label for a model name: known models by name, anything else as `unknown` (keeps
/// the label's cardinality bounded whatever clients send).
fn model_label(table: &watch::Receiver<Arc<RoutingTable>>, model: &str) -> String {
    if table.borrow().models.contains_key(model) {
        model.to_string()
    } else {
        "unknown".to_string()
    }
}
