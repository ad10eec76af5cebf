//! The peer links (connections checked against node ids, each peer's outcome breaker, the
//! retry budget) and the server for `golek-peer/1` and the QUIC client API (`golek-client/1`),
//! which speak the same frames; the forwarding side is in `forward.rs`.
//!
//! One bidi stream per request: the caller writes one `ForwardRequest` frame and finishes its
//! side; the server answers with [`ForwardReply`] frames, one per event, and finishes. A caller
//! that goes away resets the stream, which drops the request's event channel on the serving
//! node and so cancels the work there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use golek_protocol::cluster::{ForwardReply, PEER_PROTOCOL_VERSION};
use golek_protocol::cluster_v2::{self, RequestError};
use golek_protocol::inference::InferenceEvent;
use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::mpsc;

use super::close::CloseCode;
use super::frames::read_frame;
use super::tls;
use super::transport::{IncomingStream, QuicNode};
use crate::error::ClusterError;
use crate::loops::{loop_fn, LoopFn};
use crate::plugins::door;
use crate::reliability::{Outcome, Reliability, Target};
use crate::router::RouterHandle;
use crate::tasks::Tasks;
use crate::tree::ActorSnapshot;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where to reach a peer: the id its certificate must name and its QUIC address.
#[derive(Debug, Clone)]
pub struct PeerAddr {
    pub node_id: String,
    pub quic_addr: String,
}

/// The connections to peers, one per node id, made on first use and checked against the id.
pub struct PeerLinks {
    pub(crate) quic: Arc<QuicNode>,
    pub(super) self_id: String,
    connections: Mutex<HashMap<String, quinn::Connection>>,
    /// Requests peers forwarded here that are still running.
    pub(crate) serving: Arc<AtomicU64>,
    /// Where forwards and served streams run (cancelled with the ClusterManager).
    pub(super) tasks: Tasks,
    /// Each peer's outcome breaker and the retry budget (shared with the router, owned by the
    /// ReliabilityManager).
    pub(crate) reliability: Arc<Reliability>,
}

impl PeerLinks {
    pub fn new(
        quic: Arc<QuicNode>,
        self_id: String,
        tasks: Tasks,
        reliability: Arc<Reliability>,
    ) -> Self {
        Self {
            quic,
            self_id,
            connections: Mutex::new(HashMap::new()),
            serving: Arc::new(AtomicU64::new(0)),
            tasks,
            reliability,
        }
    }

    /// A forward starts (its retries draw on the budget it adds to).
    pub(super) fn on_request(&self) {
        self.reliability.on_request();
    }

    pub(super) fn try_retry(&self) -> bool {
        self.reliability.try_retry()
    }

    /// Whether `peer`'s breaker lets a request through now.
    pub(super) fn allow(&self, peer: &str) -> bool {
        self.reliability.allow(&Target::Peer(peer.to_string()))
    }

    /// Whether `peer`'s breaker is open now (for ordering candidates).
    pub fn is_open(&self, peer: &str) -> bool {
        self.reliability.is_open(&Target::Peer(peer.to_string()))
    }

    /// Feeds a request's outcome to `peer`'s breaker.
    pub(super) fn record(&self, peer: &str, outcome: Outcome) {
        self.reliability
            .record(&Target::Peer(peer.to_string()), outcome);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
        lock(&self.connections)
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for (_, c) in self.lock().drain() {
            c.close(CloseCode::Shutdown.into(), b"node shutting down");
        }
    }

    /// The links as one entry of the supervision tree, a child per connected peer.
    pub fn snapshot(&self) -> ActorSnapshot {
        // (Its tasks are counted with the ClusterManager's: they share one tracker.)
        let mut me = ActorSnapshot::running("peers", "peer_links")
            .with_detail("serving", self.serving().into());
        let open: HashMap<String, bool> = self
            .lock()
            .iter()
            .map(|(id, c)| (id.clone(), c.close_reason().is_none()))
            .collect();
        let peers = self.reliability.peers();
        let mut ids: Vec<&String> = open.keys().chain(peers.iter()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let mut peer = ActorSnapshot::running(id.clone(), "peer");
            peer.state = match open.get(id) {
                Some(true) => "connected",
                Some(false) => "closed",
                None => "not_connected",
            }
            .into();
            let (state, opened) = self.reliability.breaker(&Target::Peer(id.clone()));
            peer.breaker = Some(state.as_str().into());
            peer.details.insert("breaker_opened".into(), opened.into());
            me.children.push(peer);
        }
        me.details.insert(
            "retries_refused".into(),
            self.reliability.retries_refused().into(),
        );
        me
    }

    pub fn serving(&self) -> u64 {
        self.serving.load(Ordering::Relaxed)
    }

    /// Closes and drops the connection to a node the failure detector marked dead: requests
    /// waiting on it fail now (and move to another node) instead of at the idle timeout.
    pub fn forget(&self, node_id: &str) {
        if let Some(c) = self.lock().remove(node_id) {
            c.close(CloseCode::PeerDead.into(), b"peer marked dead");
        }
    }

    /// Drops the connection to `node_id` if it is closed; true when one was dropped.
    pub(super) fn drop_if_closed(&self, node_id: &str) -> bool {
        let mut connections = self.lock();
        if connections
            .get(node_id)
            .is_some_and(|c| c.close_reason().is_some())
        {
            connections.remove(node_id);
            return true;
        }
        false
    }

    pub(super) async fn connection(
        &self,
        member: &PeerAddr,
    ) -> Result<quinn::Connection, ClusterError> {
        if let Some(c) = self.lock().get(&member.node_id) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let addr: SocketAddr = member
            .quic_addr
            .parse()
            .map_err(|_| ClusterError::NoAddress(member.node_id.clone()))?;
        let (connection, id) = self.quic.connect(addr, &self.quic.peer_client()).await?;
        if id != member.node_id {
            connection.close(CloseCode::Refused.into(), b"node id mismatch");
            return Err(ClusterError::WrongPeer {
                addr,
                found: id,
                expected: member.node_id.clone(),
            });
        }
        self.lock()
            .insert(member.node_id.clone(), connection.clone());
        Ok(connection)
    }
}

/// Sends one reply in the version the request came in (what that version cannot say is left
/// out).
async fn reply(send: &mut quinn::SendStream, r: ForwardReply, version: u16) -> Result<(), String> {
    match cluster_v2::encode_reply(&r, version)? {
        Some(bytes) => send.write_all(&bytes).await.map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// The peer server as a supervised loop: serves the streams peers and QUIC clients open,
/// each on a tracked task. The receiver outlives a restart (the next run takes it over).
pub fn server_loop(
    streams: Arc<tokio::sync::Mutex<mpsc::Receiver<IncomingStream>>>,
    router: RouterHandle,
    self_id: String,
    links: Arc<PeerLinks>,
) -> LoopFn {
    loop_fn(move |_token| {
        let streams = streams.clone();
        let router = router.clone();
        let self_id = self_id.clone();
        let links = links.clone();
        async move {
            let mut streams = streams.lock().await;
            while let Some(stream) = streams.recv().await {
                let router = router.clone();
                let self_id = self_id.clone();
                let serving = links.serving.clone();
                links.tasks.spawn(async move {
                    let peer = stream.peer_id.clone();
                    serving.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = serve_one(stream, &router, &self_id).await {
                        tracing::warn!(%peer, "peer stream: {e}");
                    }
                    serving.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    })
}

async fn serve_one(
    IncomingStream {
        alpn,
        peer_id,
        mut send,
        mut recv,
    }: IncomingStream,
    router: &RouterHandle,
    self_id: &str,
) -> Result<(), String> {
    let body = match read_frame(&mut recv).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(()),
        Err(e) => {
            let _ = send.reset(CloseCode::Refused.into());
            return Err(e.to_string());
        }
    };
    let (mut request, version) = match cluster_v2::decode_request(&body) {
        Ok(r) => r,
        Err(RequestError::Malformed(e)) => {
            // A malformed frame closes this stream with the reason; the connection lives on.
            let info = ErrorInfo::new(ErrorCode::InvalidRequest, e.clone());
            reply(&mut send, ForwardReply::Error(info), PEER_PROTOCOL_VERSION).await?;
            let _ = send.finish();
            return Err(e);
        }
        Err(RequestError::Version(message)) => {
            let info = ErrorInfo::new(ErrorCode::InvalidRequest, message);
            reply(&mut send, ForwardReply::Error(info), PEER_PROTOCOL_VERSION).await?;
            let _ = send.finish();
            return Ok(());
        }
    };
    // The deadline a peer or client sends is clamped to this node's maximum; the request's
    // checks are the router's (the same for every door).
    let timeout = router.clamp_timeout(request.timeout_ms);
    // A peer's request runs here (never forwarded again); a QUIC client's is routed like HTTP.
    let tenant = request.tenant.as_deref().map(Arc::<str>::from);
    if alpn == tls::ALPN_PEER {
        metrics::histogram!(crate::metrics::CLUSTER_SERVED_DEADLINE_SECONDS)
            .record(timeout.as_secs_f64());
    }
    // This node's part of the caller's trace: a peer's hop span (or a QUIC client's own
    // context) is the parent. It lasts until the answer is sent.
    let incoming = request
        .traceparent
        .as_deref()
        .and_then(golek_protocol::trace::TraceParent::parse);
    let traced = crate::trace::decide(incoming.as_ref());
    let span = crate::trace::ingress(traced, || {
        tracing::info_span!(
            "peer_request",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            from = %peer_id,
            model = request.model.as_str(),
            trace_id = tracing::field::Empty,
        )
    });
    if traced {
        span.record("otel.name", format!("serve {}", request.model).as_str());
    }
    crate::trace::begin(&span, traced, incoming, None);
    // A QUIC client's request passes the plugins' request hooks here (a peer's passed them
    // on the node the client reached).
    let mut exchange = None;
    let submitted = if alpn == tls::ALPN_PEER {
        let model = &request.model;
        span.in_scope(|| router.submit_local_as(model, request.request, timeout, tenant))
    } else {
        let chain = router.plugins().chain();
        match span.in_scope(|| door::admit(chain, request.model.clone(), request.request)) {
            door::Admission::Go {
                model,
                request: admitted,
                exchange: hooks,
            } => {
                exchange = hooks;
                // A rewrite may have named another model: the rest follows that one.
                request.model = model;
                span.in_scope(|| router.submit(&request.model, admitted, timeout))
            }
            door::Admission::Refused(info) => Err(info),
            door::Admission::Answered(events) => {
                for event in events {
                    reply(&mut send, ForwardReply::Event(event), version).await?;
                }
                let _ = send.finish();
                return Ok(());
            }
        }
    };
    tracing::debug!(from = %peer_id, model = %request.model, node = self_id, "serving a forwarded request");
    let mut events = match submitted {
        Ok(rx) => rx,
        Err(info) => {
            if let Some(x) = exchange.as_mut() {
                x.on_error(&info);
            }
            reply(&mut send, ForwardReply::Error(info), version).await?;
            let _ = send.finish();
            return Ok(());
        }
    };
    // Until the first event, a worker found hung will not answer what was queued to it.
    let mut answered = false;
    // The cut-link fault (for a peer's request): the stream is reset after this many events.
    let mut cut = match alpn == tls::ALPN_PEER {
        true => router
            .table()
            .models
            .get(&request.model)
            .and_then(|e| e.faults.as_ref()?.take_cut()),
        false => None,
    };
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(timeout, events.recv()) => next,
            // The caller reset its side: drop the events, which cancels the work.
            _ = send.stopped() => return Ok(()),
            () = router.worker_lost(&request.model), if !answered => Ok(Some(Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {:?} stopped before answering (its worker hung and is being replaced)", request.model),
            )))),
        };
        // Who serves it is not an answer: a hung worker may still lose what was queued.
        answered |= !matches!(next, Ok(Some(Ok(InferenceEvent::Served { .. }))));
        let item = match next {
            Err(_) => Err(ErrorInfo::new(
                ErrorCode::Timeout,
                format!("model {:?} did not answer in time", request.model),
            )),
            Ok(None) => break,
            Ok(Some(item)) => item,
        };
        let item = match (item, exchange.as_mut()) {
            (Ok(mut e), Some(x)) => x.on_event(&mut e).map(|()| e),
            (item, _) => item,
        };
        let last = item.is_err();
        let frame = match item {
            Ok(e) => ForwardReply::Event(e),
            Err(e) => {
                if let Some(x) = exchange.as_mut() {
                    x.on_error(&e);
                }
                ForwardReply::Error(e)
            }
        };
        if reply(&mut send, frame, version).await.is_err() {
            return Ok(());
        }
        if let Some(left) = cut.as_mut() {
            *left -= 1;
            if *left == 0 {
                // The stream stops unfinished, as one whose link dropped (what was sent
                // arrives; a reset would discard it).
                let _ = send.finish();
                return Err("fault injection cut the stream".into());
            }
        }
        if last {
            break;
        }
    }
    let _ = send.finish();
    Ok(())
}
