//! Fallback chains (`[routes.NAME]`): a served name whose requests go to the first of its
//! targets that takes them. A target that is missing, down, open, overloaded or failing before
//! its first output passes the request on to the next; once output has started, the answer is
//! that target's. Every answer says which node and model served it (its `Served` event).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::mpsc;

use super::{EventRx, RouterHandle};
use crate::metrics as m;
use crate::reliability::Outcome;

/// Served names and their targets, in order.
pub type Routes = BTreeMap<String, Arc<[String]>>;

/// What the first items of one target's answer said.
enum First {
    /// An answer has started: these items (a `Served`, then the first event) go to the client.
    Answer(Vec<Result<InferenceEvent, ErrorInfo>>),
    /// The target failed before answering, in a way the next target may make good.
    PassOn(ErrorInfo),
    /// It failed in a way no other target changes (the request's own fault): the client's
    /// answer.
    Final(ErrorInfo),
}

impl RouterHandle {
    /// The targets of a route, when `name` is one.
    pub fn route(&self, name: &str) -> Option<Arc<[String]>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Replaces the routes (from the configuration).
    pub fn set_routes(&self, routes: Routes) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }

    /// Runs a checked request down `route`'s targets.
    pub(super) fn submit_chain(
        &self,
        route: &str,
        targets: Arc<[String]>,
        request: InferenceRequest,
        timeout: Duration,
        tenant: super::handle::Tenant,
    ) -> EventRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let router = self.clone();
        let route = route.to_string();
        let deadline = Instant::now() + timeout;
        tokio::spawn(async move {
            let mut last: Option<ErrorInfo> = None;
            for (i, target) in targets.iter().enumerate() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                if i > 0 {
                    metrics::counter!(m::ROUTE_FALLBACKS_TOTAL, "route" => route.clone())
                        .increment(1);
                }
                let first = match router.dispatch_checked(
                    target,
                    request.clone(),
                    remaining,
                    tenant.clone(),
                ) {
                    Ok(events) => router.first(target, events, remaining).await,
                    Err(e) => Err(e),
                };
                let mut events = match first {
                    Ok((events, First::Answer(held))) => {
                        for item in held {
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                        events
                    }
                    Ok((_, First::Final(e))) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    Ok((_, First::PassOn(e))) | Err(e) if Outcome::falls_back(e.code) => {
                        tracing::debug!(%route, %target, code = e.code.as_str(), "route target failed; trying the next");
                        last = Some(e);
                        continue;
                    }
                    Ok((_, First::PassOn(e))) | Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let next = tokio::select! {
                        next = events.recv() => next,
                        () = tx.closed() => return,
                    };
                    match next {
                        Some(item) => {
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            }
            let message = match last {
                Some(e) => format!(
                    "route {route:?}: none of its targets ({}) could take the request; the last said: {}",
                    targets.join(", "),
                    e.message
                ),
                None => format!("route {route:?}: its deadline passed before a target took the request"),
            };
            let code = if Instant::now() >= deadline {
                ErrorCode::Timeout
            } else {
                ErrorCode::Unavailable
            };
            let _ = tx.send(Err(ErrorInfo::new(code, message)));
        });
        rx
    }

    /// Reads a target's answer up to its first event (a `Served` before it is held too).
    async fn first(
        &self,
        target: &str,
        mut events: EventRx,
        timeout: Duration,
    ) -> Result<(EventRx, First), ErrorInfo> {
        let mut held = Vec::new();
        let first = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(timeout, events.recv()) => next,
                () = self.worker_lost(target) => Ok(None),
            };
            match next {
                Err(_) => {
                    return Err(ErrorInfo::new(
                        ErrorCode::Timeout,
                        format!("model {target:?} did not answer in time"),
                    ))
                }
                Ok(None) => {
                    break First::PassOn(ErrorInfo::new(
                        ErrorCode::Unavailable,
                        format!("model {target:?} stopped before answering"),
                    ))
                }
                Ok(Some(Ok(served @ InferenceEvent::Served { .. }))) => held.push(Ok(served)),
                Ok(Some(Ok(event))) => {
                    held.push(Ok(event));
                    break First::Answer(held);
                }
                Ok(Some(Err(e))) if Outcome::falls_back(e.code) => break First::PassOn(e),
                Ok(Some(Err(e))) => break First::Final(e),
            }
        };
        Ok((events, first))
    }
}
