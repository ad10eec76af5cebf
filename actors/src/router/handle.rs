//! What request handlers use: reads the published table, checks a request (the one authority
//! every door goes through), submits to a model's queue or forwards to a peer.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::{ErrorCode, ErrorInfo};
use golek_providers::{Job, OutcomeHook, SubmitError};
use tokio::sync::{mpsc, watch};

use super::chain::Routes;
use super::{ModelEntry, ModelState, RoutingTable};
use crate::cluster::ClusterHandle;
use crate::health::Health;
use crate::metrics as m;
use crate::reliability::{Outcome, Reliability, Target};
use crate::tenants::Tenants;

/// The receiving end of one request: its events, ending when the worker is done with it.
pub type EventRx = mpsc::UnboundedReceiver<Result<InferenceEvent, ErrorInfo>>;

/// What request handlers use: reads the published table, submits to a model's queue.
#[derive(Clone)]
pub struct RouterHandle {
    pub(super) table: watch::Receiver<Arc<RoutingTable>>,
    /// `http.retry_after_s` and `http.request_timeout_ms`, which change at run time.
    limits: Arc<Limits>,
    health: Arc<Health>,
    /// Set once when the node joins a cluster; shared by every clone.
    pub(super) cluster: Arc<OnceLock<ClusterHandle>>,
    /// The node's id, for the `Served` event of what runs here (set at start).
    pub(super) node_id: Arc<OnceLock<String>>,
    /// Fallback chains, from the configuration.
    pub(super) routes: Arc<RwLock<Arc<Routes>>>,
    /// Outcome breakers of every target and the retry budget (the ReliabilityManager's).
    reliability: Arc<Reliability>,
    /// Keys and tenants' usage on this node.
    tenants: Arc<Tenants>,
    /// The plugins' chain (route hooks run here).
    pub(super) plugins: crate::plugins::Plugins,
    /// Whether the node drains (see `drain.rs`).
    pub(super) drain: Arc<watch::Sender<bool>>,
}

/// The tenant a request is for, when it came with a key.
pub type Tenant = Option<Arc<str>>;

/// The request path's limits from `[http]`, shared by every clone of the handle.
#[derive(Debug)]
struct Limits {
    retry_after_s: AtomicU32,
    /// The node's longest deadline: client and peer deadlines are clamped to it.
    max_timeout_ms: AtomicU64,
}

impl RouterHandle {
    pub fn new(
        table: watch::Receiver<Arc<RoutingTable>>,
        retry_after_s: u32,
        max_timeout: Duration,
        health: Arc<Health>,
        reliability: Arc<Reliability>,
    ) -> Self {
        Self {
            table,
            limits: Arc::new(Limits {
                retry_after_s: AtomicU32::new(retry_after_s),
                max_timeout_ms: AtomicU64::new(max_timeout.as_millis().min(u64::MAX as u128) as u64),
            }),
            health,
            cluster: Arc::new(OnceLock::new()),
            node_id: Arc::new(OnceLock::new()),
            routes: Arc::new(RwLock::new(Arc::new(Routes::new()))),
            reliability,
            tenants: Arc::new(Tenants::default()),
            plugins: Default::default(),
            drain: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The plugins' chain, as the PluginManager publishes it.
    pub fn plugins(&self) -> &crate::plugins::Plugins {
        &self.plugins
    }

    /// The routing table as it changes.
    pub fn watch_table(&self) -> watch::Receiver<Arc<RoutingTable>> {
        self.table.clone()
    }

    /// The keys this node knows and its tenants' usage.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// The reliability state the request path reads and feeds.
    pub fn reliability(&self) -> &Arc<Reliability> {
        &self.reliability
    }

    /// The id this node answers as (in `Served` events); set once.
    pub fn set_node_id(&self, node_id: String) {
        let _ = self.node_id.set(node_id);
    }

    /// A deadline a client or peer asked for, in milliseconds, clamped to the node's maximum
    /// (and to at least one millisecond).
    pub fn clamp_timeout(&self, timeout_ms: u64) -> Duration {
        Duration::from_millis(timeout_ms.max(1)).min(self.max_timeout())
    }

    /// Applies changed `http.retry_after_s` and `http.request_timeout_ms` (run time).
    pub fn set_limits(&self, retry_after_s: u32, max_timeout: Duration) {
        self.limits
            .retry_after_s
            .store(retry_after_s, Ordering::Relaxed);
        self.limits.max_timeout_ms.store(
            max_timeout.as_millis().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// The node's own health (hung workers abandoned).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The node's longest deadline.
    pub fn max_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.max_timeout_ms.load(Ordering::Relaxed))
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
        self.limits.retry_after_s.load(Ordering::Relaxed)
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

    /// Resolves once the worker now serving `model` here is found hung or replaced: what was
    /// queued to it will not be answered. Never resolves for a model not served here.
    pub async fn worker_lost(&self, model: &str) {
        let mut rx = self.table.clone();
        let generation = rx
            .borrow_and_update()
            .models
            .get(model)
            .map(|e| e.generation);
        let Some(generation) = generation else {
            return std::future::pending().await;
        };
        loop {
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            let table = rx.borrow_and_update();
            match table.models.get(model) {
                Some(e) if e.generation == generation && e.state != ModelState::Hung => {}
                _ => return,
            }
        }
    }

    /// Whether `model` is served here or by a peer (cheap: for metric labels).
    pub fn knows(&self, model: &str) -> bool {
        self.table.borrow().models.contains_key(model)
            || self.route(model).is_some()
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
                        ad.state.clone()
                    } else {
                        ModelState::Stopped
                    },
                    generation: 0,
                    restarts: 0,
                    last_error: None,
                    info: ad.info.clone(),
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
        self.submit_as(model, request, timeout, None)
    }

    /// [`RouterHandle::submit`] for a tenant: its limits hold on the node that serves it.
    pub fn submit_as(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        tenant: Tenant,
    ) -> Result<EventRx, ErrorInfo> {
        // Resolution and selection (a chain, here or a peer); attempts are its children.
        let _route = tracing::info_span!("route", model).entered();
        self.checked(model, &request)?;
        let timeout = timeout.min(self.max_timeout());
        match self.route(model) {
            Some(targets) => Ok(self.submit_chain(model, targets, request, timeout, tenant)),
            None => self.dispatch_checked(model, request, timeout, tenant),
        }
    }

    /// Routes a checked request for a deployed model: here or to a peer.
    pub(super) fn dispatch_checked(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        tenant: Tenant,
    ) -> Result<EventRx, ErrorInfo> {
        let Some(cluster) = self.cluster.get() else {
            if !self.routed_here(model, &tenant, vec![]).0 {
                return Err(super::route_hooks::excluded(model));
            }
            return self.local(model, request, timeout, tenant);
        };
        let view = cluster.view();
        if !view.serves(model) {
            return self.local(model, request, timeout, tenant);
        }
        let local = self
            .table
            .borrow()
            .models
            .get(model)
            .map(|e| e.state.clone());
        let open = self.reliability.is_open(&Target::Local(model.to_string()));
        let peers = view.candidates_for(model, &cluster.links);
        // A draining node serves here only what no peer can.
        let leaving = self.draining() && !peers.is_empty();
        let (here, peers) = if local == Some(ModelState::Ready) && !open && !leaving {
            self.routed_here(model, &tenant, peers)
        } else {
            let (_, peers) = self.routed(model, &tenant, false, peers);
            (false, peers)
        };
        if here {
            match self.local(model, request.clone(), timeout, tenant.clone()) {
                Err(e) if matches!(e.code, ErrorCode::Overloaded | ErrorCode::Unavailable) => {}
                other => return other,
            }
        }
        if peers.is_empty() && self.plugins.chain().wants(crate::plugins::Hook::OnRoute) {
            return Err(super::route_hooks::excluded(model));
        }
        Ok(cluster
            .links
            .forward(model, request, timeout, peers, tenant, cluster.view.clone()))
    }

    /// Routes a request to this node's worker queue only.
    pub fn submit_local(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
    ) -> Result<EventRx, ErrorInfo> {
        self.submit_local_as(model, request, timeout, None)
    }

    /// [`RouterHandle::submit_local`] for a tenant (a peer's request says whose it is).
    pub fn submit_local_as(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        tenant: Tenant,
    ) -> Result<EventRx, ErrorInfo> {
        self.checked(model, &request)?;
        self.local(model, request, timeout.min(self.max_timeout()), tenant)
    }

    /// The checks every door's request passes (once, whichever way it is routed).
    fn checked(&self, model: &str, request: &InferenceRequest) -> Result<(), ErrorInfo> {
        request.check().inspect_err(|err| self.rejected(model, err))
    }

    fn rejected(&self, model: &str, err: &ErrorInfo) {
        metrics::counter!(m::ROUTER_REJECTED_TOTAL, "model" => model_label(&self.table, model), "type" => err.code.as_str())
            .increment(1);
    }

    /// A checked request to the local queue, unless the model's outcome breaker is open.
    fn local(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        tenant: Tenant,
    ) -> Result<EventRx, ErrorInfo> {
        // Breakers only for models served here: clients cannot grow the set.
        let target = self
            .table
            .borrow()
            .models
            .contains_key(model)
            .then(|| Target::Local(model.to_string()));
        if let Some(target) = &target {
            if !self.reliability.allow(target) {
                let err = ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!("model {model:?}: its outcome breaker is open (its recent requests failed); retry later"),
                );
                self.rejected(model, &err);
                return Err(err);
            }
        }
        self.try_submit(model, request, timeout, tenant)
            .inspect_err(|err| {
                if let Some(target) = &target {
                    self.reliability.record(target, Outcome::of_error(err.code));
                }
                self.rejected(model, err)
            })
    }

    fn try_submit(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        tenant: Tenant,
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
        if let Some(code) = entry.faults.as_ref().and_then(|f| f.take_refusal()) {
            return Err(ErrorInfo::new(
                code,
                format!("model {model:?}: fault injection refused the request"),
            ));
        }
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
            info.limits().check(&request)?;
        }
        let (events, rx) = mpsc::unbounded_channel();
        // The answer's first event says who serves it (queued ahead of the worker's events).
        let _ = events.send(Ok(InferenceEvent::Served {
            node: self.node_id.get().cloned().unwrap_or_default(),
            model: entry.name.clone(),
        }));
        let now = Instant::now();
        // The tenant's limits on this node: the permit is held until the job ends.
        let permit = match &tenant {
            Some(t) => Some(self.tenants.admit(t)?),
            None => None,
        };
        let reliability = self.reliability.clone();
        let tenants = self.tenants.clone();
        let target = Target::Local(entry.name.clone());
        let charged = tenant.clone();
        let job = Job {
            request,
            events,
            enqueued_at: now,
            deadline: now + timeout,
            // How it ends feeds the model's outcome breaker and the tenant's token budget.
            outcome: OutcomeHook::new(move |last| {
                let _permit = permit;
                let outcome = match last {
                    Ok(_) => Outcome::Success,
                    Err(e) => Outcome::of_error(e.code),
                };
                reliability.record(&target, outcome);
                if let (
                    Some(t),
                    Ok(InferenceEvent::Finished {
                        prompt_tokens,
                        completion_tokens,
                        ..
                    }),
                ) = (&charged, last)
                {
                    tenants.charge(t, u64::from(*prompt_tokens) + u64::from(*completion_tokens));
                }
            }),
            tenant,
            // The request's span (HTTP, a peer's, a QUIC client's) and its wait in the queue.
            queued: Some(tracing::info_span!(
                "queue_wait",
                model = entry.name.as_str()
            )),
            span: tracing::Span::current(),
        };
        match sender.try_submit(job) {
            Ok(()) => {
                metrics::gauge!(m::MODEL_QUEUE_DEPTH, "model" => entry.name.clone())
                    .set(sender.depth() as f64);
                match entry.faults.as_ref().map(|f| f.delay()) {
                    Some(delay) if !delay.is_zero() => Ok(super::faults::delayed(rx, delay)),
                    _ => Ok(rx),
                }
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
