//! Forwarding a request to a peer, with the reliability rules before the first byte: peers
//! whose breaker is open are skipped; a peer that cannot be reached, resets, or answers
//! overloaded or unavailable on its first frame hands the request to the next candidate (after
//! a jittered backoff, within the deadline and the retry budget); each outcome feeds that
//! peer's breaker. Once output has reached the caller, a generation stream continues on another
//! candidate from the token ids already delivered ([`super::resume`]); what cannot continue
//! ends with an error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::{mpsc, watch};

use super::close::CloseCode;
use super::frames::read_frame;
use super::peer::{PeerAddr, PeerLinks};
use super::resume::{Next, Resume};
use super::ClusterView;
use crate::metrics as m;
use crate::reliability::{backoff, Outcome};
use crate::router::EventRx;

/// The first retry waits up to this long; each next one up to twice as long.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

pub(super) enum Failure {
    /// Nothing reached the caller: another node may try.
    NotStarted(String),
    /// The peer's first frame refused the request (overloaded, unavailable): another node may
    /// try, and if none can, the caller gets this answer.
    Refused(ErrorInfo),
    /// Output had started: the stream ends with an error.
    Started(String),
    /// The caller went away.
    Cancelled,
}

impl PeerLinks {
    /// Forwards `request` to the first candidate that takes it. With one candidate it is tried
    /// twice (its cached connection may have gone with a restart). A generation stream whose
    /// node fails after output reached the caller continues on another candidate.
    pub fn forward(
        self: &Arc<Self>,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
        candidates: Vec<PeerAddr>,
        tenant: Option<Arc<str>>,
        view: watch::Receiver<Arc<ClusterView>>,
    ) -> EventRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let links = self.clone();
        let model = model.to_string();
        // The forwarding task is part of the request's trace.
        let request_span = tracing::Span::current();
        let forwarding = async move {
            let deadline = Instant::now() + timeout;
            links.on_request();
            let mut queue: VecDeque<PeerAddr> = candidates.iter().cloned().collect();
            if queue.len() == 1 {
                queue.push_back(candidates[0].clone());
            }
            let mut resume = Resume::new(&request, links.reliability.max_continuations());
            let mut attempt_request = request.clone();
            // Nodes that failed mid-stream: a continuation never goes back to them.
            let mut broken: Vec<String> = Vec::new();
            // Peers retried on a fresh connection after their cached one failed.
            let mut fresh: Vec<String> = Vec::new();
            let mut last: Option<ErrorInfo> = None;
            let mut attempts = 0u32;
            while let Some(member) = queue.pop_front() {
                if broken.contains(&member.node_id) {
                    continue;
                }
                if links.is_open(&member.node_id) {
                    last.get_or_insert_with(|| {
                        ErrorInfo::new(
                            ErrorCode::Unavailable,
                            format!("node {}: its breaker is open", member.node_id),
                        )
                    });
                    continue;
                }
                if attempts > 0 {
                    if !links.try_retry() {
                        tracing::warn!(%model, "retry budget spent; not retrying");
                        break;
                    }
                    let wait = backoff(attempts, BACKOFF_BASE, BACKOFF_MAX);
                    if Instant::now() + wait >= deadline {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    metrics::counter!(m::CLUSTER_RETRIES_TOTAL).increment(1);
                }
                // Taken last, right before the attempt: a half-open breaker's one probe.
                if !links.allow(&member.node_id) {
                    last.get_or_insert_with(|| {
                        ErrorInfo::new(
                            ErrorCode::Unavailable,
                            format!(
                                "node {}: its breaker is half-open, its probe is out",
                                member.node_id
                            ),
                        )
                    });
                    continue;
                }
                attempts += 1;
                // One span a hop: the peer's server span is its child.
                let hop = tracing::info_span!(
                    "peer_hop",
                    otel.name = %format!("forward {model}"),
                    otel.kind = "client",
                    peer = %member.node_id,
                    attempt = attempts,
                );
                let frame = ForwardRequest {
                    version: PEER_PROTOCOL_VERSION,
                    model: model.clone(),
                    request: attempt_request.clone(),
                    timeout_ms: deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64,
                    traceparent: crate::trace::outgoing(&hop).map(|t| t.header()),
                    from_node: links.self_id.clone(),
                    tenant: tenant.as_deref().map(str::to_string),
                };
                let started = Instant::now();
                let peer = member.node_id.clone();
                let outcome = tracing::Instrument::instrument(
                    links.forward_one(&member, &frame, &tx, &mut resume),
                    hop,
                )
                .await;
                match outcome {
                    Ok(()) => {
                        links.record(&peer, Outcome::Success);
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => peer.clone(), "outcome" => "ok").increment(1);
                        metrics::histogram!(m::CLUSTER_FORWARD_SECONDS, "peer" => peer)
                            .record(started.elapsed().as_secs_f64());
                        return;
                    }
                    Err(Failure::Started(e)) => {
                        links.record(&peer, Outcome::Failure);
                        links.drop_if_closed(&peer);
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => peer.clone(), "outcome" => "broken").increment(1);
                        let error = ErrorInfo::new(
                            ErrorCode::Unavailable,
                            format!("node {peer} failed while answering: {e}"),
                        );
                        match resume.on_broken(&request) {
                            Some(Next::Resubmit(next)) => {
                                tracing::warn!(%peer, %model, "node failed mid-stream: {e}; continuing on another replica");
                                metrics::counter!(m::CLUSTER_CONTINUATIONS_TOTAL, "peer" => peer.clone()).increment(1);
                                broken.push(peer);
                                attempt_request = next;
                                // Every other replica may take the rest, at once: those the view
                                // shows now (one that was down when the request came may be
                                // back), then the first ones.
                                let now = view.borrow().clone().candidates_for(&model, &links);
                                let mut seen = std::collections::HashSet::new();
                                queue = now
                                    .into_iter()
                                    .chain(candidates.iter().cloned())
                                    .filter(|p| seen.insert(p.node_id.clone()))
                                    .collect();
                                attempts = 0;
                                last = Some(error);
                            }
                            Some(Next::Finish(event)) => {
                                let _ = tx.send(Ok(event));
                                return;
                            }
                            None => {
                                let _ = tx.send(Err(error));
                                return;
                            }
                        }
                    }
                    Err(Failure::Cancelled) => {
                        links.record(&peer, Outcome::Neutral);
                        return;
                    }
                    Err(Failure::Refused(info)) => {
                        links.record(&peer, Outcome::of_error(info.code));
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => peer.clone(), "outcome" => "refused").increment(1);
                        tracing::debug!(%peer, %model, code = info.code.as_str(), "peer refused; trying the next");
                        last = Some(info);
                    }
                    Err(Failure::NotStarted(e)) => {
                        links.record(&peer, Outcome::Failure);
                        metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "peer" => peer.clone(), "outcome" => "failed").increment(1);
                        tracing::warn!(%peer, %model, "forwarding failed: {e}");
                        // A cached connection that turned out dead (the peer restarted): one
                        // more try on a fresh one, at once.
                        if links.drop_if_closed(&peer) && !fresh.contains(&peer) {
                            fresh.push(peer.clone());
                            queue.push_front(member.clone());
                        }
                        last = Some(ErrorInfo::new(
                            ErrorCode::Unavailable,
                            format!("node {peer}: {e}"),
                        ));
                    }
                }
            }
            // Every candidate refused or failed: the last answer stands (a peer's own 429 stays
            // a 429), said for the model. A stream already under way ends with it.
            let info = match last {
                Some(info) if info.code == ErrorCode::Overloaded => info,
                Some(info) => ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!(
                        "model {model:?} could not be reached on any node ({})",
                        info.message
                    ),
                ),
                None => ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!("model {model:?} could not be reached on any node (no candidates)"),
                ),
            };
            let _ = tx.send(Err(info));
        };
        self.tasks
            .spawn(tracing::Instrument::instrument(forwarding, request_span));
        rx
    }

    async fn forward_one(
        &self,
        member: &PeerAddr,
        frame: &ForwardRequest,
        tx: &mpsc::UnboundedSender<Result<InferenceEvent, ErrorInfo>>,
        resume: &mut Resume,
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
        // The last item was one that ends an answer (its result, its last choice, an error).
        let mut complete = false;
        let choices = match &frame.request {
            InferenceRequest::Generate(g) => g.n,
            _ => 1,
        };
        let mut finished = 0u32;
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
                return match (delivered, complete) {
                    (_, true) => Ok(()),
                    (true, false) => Err(Failure::Started(
                        "the peer's stream ended before its answer was complete".into(),
                    )),
                    (false, false) => Err(Failure::NotStarted(
                        "the peer closed the stream without answering".into(),
                    )),
                };
            };
            let reply: ForwardReply = decode_frame(&body).map_err(fail)?;
            let item = match reply {
                ForwardReply::Error(e) if !delivered && Outcome::retryable(e.code) => {
                    return Err(Failure::Refused(e));
                }
                // A continuation that the next replica cannot take (its provider refuses)
                // moves on like a refusal; the stream then ends with the first failure.
                ForwardReply::Error(e) if !delivered && resume.resumed() => {
                    return Err(Failure::Refused(e));
                }
                ForwardReply::Event(e) => match resume.pass(e) {
                    Some(e) => Ok(e),
                    None => {
                        delivered = true;
                        continue;
                    }
                },
                ForwardReply::Error(e) => Err(e),
            };
            // Who serves it is not output: a failure after it may still go elsewhere.
            delivered |= !matches!(item, Ok(InferenceEvent::Served { .. }));
            complete = match &item {
                Ok(InferenceEvent::Finished { .. }) => {
                    finished += 1;
                    finished >= choices
                }
                Ok(InferenceEvent::Embeddings(_) | InferenceEvent::Tensors(_)) | Err(_) => true,
                Ok(_) => false,
            };
            if tx.send(item).is_err() {
                let _ = recv.stop(CloseCode::Cancelled.into());
                return Err(Failure::Cancelled);
            }
        }
    }
}
