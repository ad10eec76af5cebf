//! Forwarding requests between nodes over `golek-peer/1`, and the QUIC client API
//! (`golek-client/1`) that speaks the same frames.
//!
//! One bidi stream per request: the caller writes one [`ForwardRequest`] frame and finishes its
//! side; the server answers with [`ForwardReply`] frames, one per event, and finishes. A caller
//! that goes away resets the stream, which drops the request's event channel on the serving
//! node and so cancels the work there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::cluster_v1::{self, RequestError};
use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::mpsc;

use super::close::CloseCode;
use super::frames::read_frame;
use super::tls;
use super::transport::{IncomingStream, QuicNode};
use crate::error::ClusterError;
use crate::loops::{loop_fn, LoopFn};
use crate::metrics as m;
use crate::router::{EventRx, RouterHandle};
use crate::tasks::Tasks;
use crate::tree::ActorSnapshot;

/// Where to reach a peer: the id its certificate must name and its QUIC address.
#[derive(Debug, Clone)]
pub struct PeerAddr {
    pub node_id: String,
    pub quic_addr: String,
}

/// The connections to peers, one per node id, made on first use and checked against the id.
pub struct PeerLinks {
    quic: Arc<QuicNode>,
    self_id: String,
    connections: Mutex<HashMap<String, quinn::Connection>>,
    /// Requests peers forwarded here that are still running.
    pub(crate) serving: Arc<AtomicU64>,
    /// Where forwards and served streams run (cancelled with the ClusterManager).
    tasks: Tasks,
}

impl PeerLinks {
    pub fn new(quic: Arc<QuicNode>, self_id: String, tasks: Tasks) -> Self {
        Self {
            quic,
            self_id,
            connections: Mutex::new(HashMap::new()),
            serving: Arc::new(AtomicU64::new(0)),
            tasks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for (_, c) in self.lock().drain() {
            c.close(CloseCode::Shutdown.into(), b"node shutting down");
        }
    }

    /// The links as one entry of the supervision tree, a child per connected peer.
    pub fn snapshot(&self) -> ActorSnapshot {
        let mut me = ActorSnapshot::running("peers", "peer_links")
            .with_detail("serving", self.serving().into())
            .with_detail("tasks", self.tasks.len().into());
        let mut peers: Vec<(String, bool)> = self
            .lock()
            .iter()
            .map(|(id, c)| (id.clone(), c.close_reason().is_none()))
            .collect();
        peers.sort();
        for (id, open) in peers {
            let mut peer = ActorSnapshot::running(id, "peer");
            peer.state = if open { "connected" } else { "closed" }.into();
            // A peer gets its outcome breaker (and `breaker` here) with the reliability layer.
            me.children.push(peer);
        }
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

    fn drop_if_closed(&self, node_id: &str) {
        let mut connections = self.lock();
        if connections
            .get(node_id)
            .is_some_and(|c| c.close_reason().is_some())
        {
            connections.remove(node_id);
        }
    }

    async fn connection(&self, member: &PeerAddr) -> Result<quinn::Connection, ClusterError> {
        if let Some(c) = self.lock().get(&member.node_id) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let addr: SocketAddr = member
            .quic_addr
            .parse()
            .map_err(|_| ClusterError::NoAddress(member.node_id.clone()))?;
        let (connection, id) = self.quic.connect(addr, &self.quic.peer_client).await?;
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

    /// Forwards `request` to the first candidate that takes it. A candidate that fails before
    /// any event reached the caller is skipped for the next (once); after output has started,
    /// a failure ends the stream with an error event.
    pub fn forward(
        self: &Arc<Self>,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        candidates: Vec<PeerAddr>,
    ) -> EventRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let links = self.clone();
        let model = model.to_string();
        self.tasks.spawn(async move {
            let deadline = Instant::now() + timeout;
            let mut last_error = None;
            // Two tries: the next candidate, or the only one again on a fresh connection (its
            // cached one may have gone with a restart).
            let mut tries: Vec<&PeerAddr> = candidates.iter().take(2).collect();
            if tries.len() == 1 {
                tries.push(tries[0]);
            }
            for member in tries {
                let frame = ForwardRequest {
                    version: PEER_PROTOCOL_VERSION,
                    model: model.clone(),
                    request: request.clone(),
                    timeout_ms: deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64,
                    traceparent: None,
                    from_node: links.self_id.clone(),
                };
                let started = Instant::now();
                match links.forward_one(member, &frame, &tx).await {
                    Ok(()) => {
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => member.node_id.clone(), "outcome" => "ok").increment(1);
                        metrics::histogram!(m::CLUSTER_FORWARD_SECONDS, "peer" => member.node_id.clone())
                            .record(started.elapsed().as_secs_f64());
                        return;
                    }
                    Err(Failure::Started(e)) => {
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => member.node_id.clone(), "outcome" => "broken").increment(1);
                        let _ = tx.send(Err(ErrorInfo::new(
                            ErrorCode::Unavailable,
                            format!("node {} failed while answering: {e}", member.node_id),
                        )));
                        return;
                    }
                    Err(Failure::Cancelled) => return,
                    Err(Failure::NotStarted(e)) => {
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => member.node_id.clone(), "outcome" => "failed").increment(1);
                        tracing::warn!(peer = %member.node_id, %model, "forwarding failed: {e}");
                        links.drop_if_closed(&member.node_id);
                        last_error = Some(format!("node {}: {e}", member.node_id));
                    }
                }
            }
            let _ = tx.send(Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!(
                    "model {model:?} could not be reached on any node ({})",
                    last_error.unwrap_or_else(|| "no candidates".into())
                ),
            )));
        });
        rx
    }

    async fn forward_one(
        &self,
        member: &PeerAddr,
        frame: &ForwardRequest,
        tx: &mpsc::UnboundedSender<Result<InferenceEvent, ErrorInfo>>,
    ) -> Result<(), Failure> {
        let connection = self
            .connection(member)
            .await
            .map_err(|e| Failure::NotStarted(e.to_string()))?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| Failure::NotStarted(e.to_string()))?;
        let bytes = encode_frame(frame).map_err(Failure::NotStarted)?;
        send.write_all(&bytes)
            .await
            .map_err(|e| Failure::NotStarted(e.to_string()))?;
        let _ = send.finish();
        let mut delivered = false;
        loop {
            let next = tokio::select! {
                next = read_frame(&mut recv) => next,
                () = tx.closed() => {
                    // The caller went away: reset the stream so the peer drops the work.
                    let _ = recv.stop(CloseCode::Cancelled.into());
                    let _ = send.reset(CloseCode::Cancelled.into());
                    return Err(Failure::Cancelled);
                }
            };
            let fail = |e: String| {
                if delivered {
                    Failure::Started(e)
                } else {
                    Failure::NotStarted(e)
                }
            };
            let Some(body) = next.map_err(|e| fail(e.to_string()))? else {
                return if delivered {
                    Ok(())
                } else {
                    Err(Failure::NotStarted(
                        "the peer closed the stream without answering".into(),
                    ))
                };
            };
            let reply: ForwardReply = decode_frame(&body).map_err(fail)?;
            delivered = true;
            let item = match reply {
                ForwardReply::Event(e) => Ok(e),
                ForwardReply::Error(e) => Err(e),
            };
            if tx.send(item).is_err() {
                let _ = recv.stop(CloseCode::Cancelled.into());
                return Err(Failure::Cancelled);
            }
        }
    }
}

enum Failure {
    /// Nothing reached the caller: another node may try.
    NotStarted(String),
    /// Output had started: the stream ends with an error.
    Started(String),
    /// The caller went away.
    Cancelled,
}

/// Sends one reply in the version the request came in (what that version cannot say is left
/// out).
async fn reply(send: &mut quinn::SendStream, r: ForwardReply, version: u16) -> Result<(), String> {
    match cluster_v1::encode_reply(&r, version)? {
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
    let (request, version) = match cluster_v1::decode_request(&body) {
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
    let submitted = if alpn == tls::ALPN_PEER {
        router.submit_local(&request.model, request.request, timeout)
    } else {
        router.submit(&request.model, request.request, timeout)
    };
    tracing::debug!(from = %peer_id, model = %request.model, node = self_id, "serving a forwarded request");
    let mut events = match submitted {
        Ok(rx) => rx,
        Err(info) => {
            reply(&mut send, ForwardReply::Error(info), version).await?;
            let _ = send.finish();
            return Ok(());
        }
    };
    // Until the first event, a worker found hung will not answer what was queued to it.
    let mut answered = false;
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
        answered = true;
        let item = match next {
            Err(_) => Err(ErrorInfo::new(
                ErrorCode::Timeout,
                format!("model {:?} did not answer in time", request.model),
            )),
            Ok(None) => break,
            Ok(Some(item)) => item,
        };
        let last = item.is_err();
        let frame = match item {
            Ok(e) => ForwardReply::Event(e),
            Err(e) => ForwardReply::Error(e),
        };
        if reply(&mut send, frame, version).await.is_err() {
            return Ok(());
        }
        if last {
            break;
        }
    }
    let _ = send.finish();
    Ok(())
}
