//! The chain the request path reads: the started plugins in order, each with its breaker and
//! failure policy. The PluginManager publishes a new chain for each change; a request keeps the
//! chain it started with, so a swap never changes the plugins of a request in flight.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    Answer, ChunkCall, Done, FailurePolicy, Hook, Manifest, NodeEvent, Plugin, RequestCall,
    ResponseCall, ResponseEdit, RouteAdvice, RouteCall, Verdict,
};
use crate::metrics as m;
use crate::reliability::{Breaker, BreakerConfig};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A failed call, as its PluginActor hears of it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub plugin: String,
    pub generation: u64,
    pub hook: Hook,
    pub reason: String,
}

/// One started plugin.
pub struct Loaded {
    pub name: String,
    pub manifest: Manifest,
    pub policy: FailurePolicy,
    pub plugin: Arc<dyn Plugin>,
    /// Which load of the plugin this is (a swap makes a new one).
    pub generation: u64,
    /// `wasm` or `native`.
    pub kind: &'static str,
    breaker: Mutex<Breaker>,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    failed: mpsc::UnboundedSender<Failure>,
}

impl Loaded {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        manifest: Manifest,
        policy: FailurePolicy,
        plugin: Arc<dyn Plugin>,
        generation: u64,
        kind: &'static str,
        breaker: BreakerConfig,
        failed: mpsc::UnboundedSender<Failure>,
    ) -> Self {
        Loaded {
            name,
            manifest,
            policy,
            plugin,
            generation,
            kind,
            breaker: Mutex::new(Breaker::new(breaker)),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failed,
        }
    }

    pub fn breaker_state(&self) -> &'static str {
        lock(&self.breaker).state(Instant::now()).as_str()
    }

    /// Calls `f` on the plugin: `Ok(Some)` with its result, `Ok(None)` when the call failed
    /// (or was skipped) and the plugin fails open, `Err` with the refusal when it fails closed.
    fn guarded<T>(
        &self,
        hook: Hook,
        f: impl FnOnce(&dyn Plugin) -> Result<T, String>,
    ) -> Result<Option<T>, Refusal> {
        if !lock(&self.breaker).allow(Instant::now()) {
            metrics::counter!(m::PLUGIN_CALLS_TOTAL, "plugin" => self.name.clone(), "hook" => hook.name(), "outcome" => "skipped").increment(1);
            return self.refuse(format!(
                "plugin {:?} is failing (its breaker is open)",
                self.name
            ));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(self.plugin.as_ref())))
            .unwrap_or_else(|_| Err("the plugin panicked".to_string()));
        match outcome {
            Ok(v) => {
                lock(&self.breaker).on_success(Instant::now());
                Ok(Some(v))
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::PLUGIN_CALLS_TOTAL, "plugin" => self.name.clone(), "hook" => hook.name(), "outcome" => "failed").increment(1);
                if lock(&self.breaker).on_failure(Instant::now()) {
                    metrics::counter!(m::PLUGIN_BREAKER_OPEN_TOTAL, "plugin" => self.name.clone())
                        .increment(1);
                }
                tracing::warn!(plugin = %self.name, hook = hook.name(), %reason, "a plugin call failed");
                let _ = self.failed.send(Failure {
                    plugin: self.name.clone(),
                    generation: self.generation,
                    hook,
                    reason: reason.clone(),
                });
                self.refuse(format!("plugin {:?} failed: {reason}", self.name))
            }
        }
    }

    fn refuse<T>(&self, message: String) -> Result<Option<T>, Refusal> {
        match self.policy {
            FailurePolicy::Open => Ok(None),
            FailurePolicy::Closed => Err(Refusal {
                status: 503,
                message,
                plugin: self.name.clone(),
            }),
        }
    }
}

/// A request a plugin refused (or that a failing fail-closed plugin stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub plugin: String,
}

/// How the request hooks ended. `seen` counts the plugins the answer goes back through: all of
/// them when the request went on, those before the plugin that refused or answered it else.
#[derive(Debug)]
pub enum RequestOutcome {
    /// On to the model, with the body in the call (`rewritten` when a plugin changed it).
    Continue {
        seen: usize,
        rewritten: bool,
    },
    Refused {
        seen: usize,
        refusal: Refusal,
    },
    Answered {
        seen: usize,
        answer: Answer,
    },
}

/// The started plugins, in chain order.
#[derive(Default)]
pub struct Chain {
    pub plugins: Vec<Arc<Loaded>>,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Whether any plugin implements `hook`.
    pub fn wants(&self, hook: Hook) -> bool {
        self.plugins.iter().any(|p| p.manifest.has(hook))
    }

    pub fn on_request(&self, call: &mut RequestCall) -> RequestOutcome {
        let mut rewritten = false;
        for (i, p) in self.plugins.iter().enumerate() {
            if !p.manifest.has(Hook::OnRequest) {
                continue;
            }
            // An answer or a refusal from this plugin goes back through the ones before it.
            let seen = i;
            match p.guarded(Hook::OnRequest, |plugin| plugin.on_request(call)) {
                Err(refusal) => return RequestOutcome::Refused { seen, refusal },
                Ok(None) | Ok(Some(Verdict::Continue)) => {}
                Ok(Some(Verdict::Rewrite(body))) => {
                    if let Some(model) = body.get("model").and_then(Value::as_str) {
                        call.model = model.to_string();
                    }
                    call.body = body;
                    rewritten = true;
                }
                Ok(Some(Verdict::Reject { status, message })) => {
                    metrics::counter!(m::PLUGIN_REJECTED_TOTAL, "plugin" => p.name.clone())
                        .increment(1);
                    let status = if (400..=599).contains(&status) {
                        status
                    } else {
                        400
                    };
                    return RequestOutcome::Refused {
                        seen,
                        refusal: Refusal {
                            status,
                            message,
                            plugin: p.name.clone(),
                        },
                    };
                }
                Ok(Some(Verdict::Respond(answer))) => {
                    return RequestOutcome::Answered { seen, answer }
                }
            }
        }
        RequestOutcome::Continue {
            seen: self.plugins.len(),
            rewritten,
        }
    }

    /// Orders `candidates` by the plugins' advice: excluded ones go, preferred ones come first.
    /// A fail-closed plugin that fails leaves them as they are (routing has no refusal).
    pub fn on_route(&self, call: &RouteCall) -> Vec<String> {
        let mut out = call.candidates.clone();
        for p in &self.plugins {
            if !p.manifest.has(Hook::OnRoute) {
                continue;
            }
            let step = RouteCall {
                candidates: out.clone(),
                ..call.clone()
            };
            if let Ok(Some(advice)) = p.guarded(Hook::OnRoute, |plugin| plugin.on_route(&step)) {
                out = apply_advice(out, &advice);
            }
        }
        out
    }

    /// The response hooks of the first `seen` plugins, last first. Headers add up (a later
    /// value for the same name wins); a body rewrite replaces the body the next hook sees.
    pub fn on_response(&self, seen: usize, call: &mut ResponseCall) -> Result<Settled, Refusal> {
        let mut settled = Settled::default();
        for p in self.plugins[..seen.min(self.plugins.len())].iter().rev() {
            if !p.manifest.has(Hook::OnResponse) {
                continue;
            }
            if let Some(edit) = p.guarded(Hook::OnResponse, |plugin| plugin.on_response(call))? {
                let ResponseEdit { headers, body } = edit;
                settled.headers.extend(headers);
                if let (Some(body), false) = (body, call.stream) {
                    call.body = Some(body);
                    settled.rewritten = true;
                }
            }
        }
        Ok(settled)
    }

    /// One chunk of a stream through the chunk hooks of the first `seen` plugins, last first.
    pub fn on_chunk(&self, seen: usize, call: &mut ChunkCall) -> Result<bool, Refusal> {
        let mut changed = false;
        for p in self.plugins[..seen.min(self.plugins.len())].iter().rev() {
            if !p.manifest.has(Hook::OnChunk) {
                continue;
            }
            if let Some(Some(chunk)) = p.guarded(Hook::OnChunk, |plugin| plugin.on_chunk(call))? {
                call.chunk = chunk;
                changed = true;
            }
        }
        Ok(changed)
    }

    pub fn on_done(&self, seen: usize, done: &Done) {
        for p in self.plugins[..seen.min(self.plugins.len())].iter().rev() {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| p.plugin.on_done(done)));
        }
    }

    /// A node event to every plugin that listens (called off the request path).
    pub fn on_event(&self, event: &NodeEvent) {
        for p in &self.plugins {
            if p.manifest.has(Hook::OnEvent) {
                let _ = p.guarded(Hook::OnEvent, |plugin| plugin.on_event(event));
            }
        }
    }
}

/// What the response hooks settled on.
#[derive(Debug, Default)]
pub struct Settled {
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body in the call was replaced.
    pub rewritten: bool,
}

fn apply_advice(candidates: Vec<String>, advice: &RouteAdvice) -> Vec<String> {
    let kept: Vec<String> = candidates
        .into_iter()
        .filter(|c| !advice.exclude.contains(c))
        .collect();
    let mut out: Vec<String> = advice
        .prefer
        .iter()
        .filter(|p| kept.contains(p))
        .cloned()
        .collect();
    out.dedup();
    for c in kept {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The chain as the request path reads it: one cheap copy of a pointer per request.
#[derive(Clone, Default)]
pub struct Plugins {
    current: Arc<RwLock<Arc<Chain>>>,
}

impl Plugins {
    pub fn chain(&self) -> Arc<Chain> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn publish(&self, chain: Chain) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_excludes_then_prefers() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let advice = RouteAdvice {
            prefer: c(&["c", "x", "b"]),
            exclude: c(&["a"]),
        };
        assert_eq!(
            apply_advice(c(&["a", "b", "c", "d"]), &advice),
            c(&["c", "b", "d"])
        );
        assert_eq!(
            apply_advice(c(&["a", "b"]), &RouteAdvice::default()),
            c(&["a", "b"])
        );
    }
}
