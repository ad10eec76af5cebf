//! The PluginActor: one per plugin instance. It holds the plugin's lifecycle state (each
//! transition checked), its failures and restart intensity, and the loaded version while it
//! is started. Past `max_restarts` failures within `window` it disables the plugin and tells
//! the manager, which takes it out of the chain.
//!
//! A "restart" of a plugin is a fresh instance: a WebAssembly instance that failed is dropped
//! and the next call makes a new one; a native plugin is called again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use super::chain::{Failure, Loaded};
use super::manager::PluginManagerMsg;
use super::{Hook, PluginState};

/// What `/admin/plugins` shows of one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    /// `native` or `wasm`.
    pub kind: String,
    /// The built-in kind, or the `.wasm` file.
    pub source: String,
    pub state: PluginState,
    pub version: Option<String>,
    pub hooks: Vec<Hook>,
    pub failure_policy: super::FailurePolicy,
    /// Which load this is (a swap makes a new one).
    pub generation: u64,
    pub restarts: u64,
    pub last_failure: Option<String>,
    pub breaker: Option<String>,
    pub calls: u64,
    pub failures: u64,
    /// States this plugin went through, oldest first (the last 16).
    pub history: Vec<PluginState>,
    pub stats: serde_json::Value,
}

pub enum PluginMsg {
    /// Moves to `state` (refused when the lifecycle does not allow it); `reason` for failed.
    Become(
        PluginState,
        Option<String>,
        RpcReplyPort<Result<(), String>>,
    ),
    /// The version now in the chain.
    Started(Arc<Loaded>),
    /// A new version could not be loaded (the running one, if any, stays).
    Refused(String),
    Failed(Failure),
    /// Takes the plugin out of service: `stopping` until calls in flight finish, then
    /// `stopped`, and the actor ends.
    Stop(Duration),
    Status(RpcReplyPort<Status>),
}

pub struct PluginActor;

pub struct InstanceArgs {
    pub status: Status,
    pub manager: ActorRef<PluginManagerMsg>,
    pub max_restarts: u32,
    pub window: Duration,
}

pub struct PluginActorState {
    status: Status,
    manager: ActorRef<PluginManagerMsg>,
    loaded: Option<Arc<Loaded>>,
    recent: VecDeque<Instant>,
    max_restarts: u32,
    window: Duration,
}

impl PluginActorState {
    fn become_(&mut self, next: PluginState, reason: Option<String>) -> Result<(), String> {
        let now = self.status.state;
        if now == next {
            if reason.is_some() {
                self.status.last_failure = reason;
            }
            return Ok(());
        }
        if !now.may_become(next) {
            return Err(format!(
                "plugin {:?} cannot go from {} to {}",
                self.status.name,
                now.as_str(),
                next.as_str()
            ));
        }
        self.status.state = next;
        if self.status.history.len() == 16 {
            self.status.history.remove(0);
        }
        self.status.history.push(next);
        if let Some(r) = reason {
            self.status.last_failure = Some(r);
        }
        metrics::gauge!(crate::metrics::PLUGIN_STARTED, "plugin" => self.status.name.clone()).set(
            if next == PluginState::Started {
                1.0
            } else {
                0.0
            },
        );
        tracing::info!(plugin = %self.status.name, from = now.as_str(), to = next.as_str(), "plugin state");
        Ok(())
    }

    fn status(&self) -> Status {
        let mut s = self.status.clone();
        if let Some(l) = &self.loaded {
            s.breaker = Some(l.breaker_state().to_string());
            s.calls = l.calls.load(std::sync::atomic::Ordering::Relaxed);
            s.failures = l.failures.load(std::sync::atomic::Ordering::Relaxed);
            s.stats = l.plugin.stats();
        }
        s
    }
}

impl Actor for PluginActor {
    type Msg = PluginMsg;
    type State = PluginActorState;
    type Arguments = InstanceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: InstanceArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(PluginActorState {
            status: args.status,
            manager: args.manager,
            loaded: None,
            recent: VecDeque::new(),
            max_restarts: args.max_restarts,
            window: args.window,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PluginMsg::Become(next, reason, reply) => {
                let done = state.become_(next, reason);
                if done.is_ok() && next == PluginState::Failed {
                    state.loaded = None;
                }
                let _ = reply.send(done);
            }
            PluginMsg::Started(loaded) => {
                let swapped = state.loaded.is_some();
                state.status.generation = loaded.generation;
                state.status.version = Some(loaded.manifest.version.clone());
                state.status.hooks = loaded.manifest.hooks.clone();
                state.status.failure_policy = loaded.policy;
                state.loaded = Some(loaded);
                state.recent.clear();
                if swapped {
                    tracing::info!(plugin = %state.status.name, generation = state.status.generation, "plugin swapped");
                }
                let _ = state.become_(PluginState::Started, None);
            }
            PluginMsg::Refused(reason) => {
                state.status.last_failure = Some(reason);
                if state.loaded.is_none() {
                    let _ = state.become_(PluginState::Failed, None);
                }
            }
            PluginMsg::Failed(f) => {
                if state.loaded.as_ref().map(|l| l.generation) != Some(f.generation)
                    || state.status.state != PluginState::Started
                {
                    return Ok(());
                }
                let now = Instant::now();
                state.recent.push_back(now);
                while state
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > state.window)
                {
                    state.recent.pop_front();
                }
                state.status.restarts += 1;
                state.status.last_failure = Some(format!("{}: {}", f.hook.name(), f.reason));
                if state.recent.len() as u64 > u64::from(state.max_restarts) {
                    let reason = format!(
                        "disabled: {} failures within {} s (restart intensity; last: {}: {})",
                        state.recent.len(),
                        state.window.as_secs(),
                        f.hook.name(),
                        f.reason
                    );
                    tracing::error!(plugin = %state.status.name, %reason, "plugin disabled");
                    metrics::counter!(crate::metrics::PLUGIN_DISABLED_TOTAL, "plugin" => state.status.name.clone()).increment(1);
                    let _ = state.become_(PluginState::Failed, Some(reason.clone()));
                    state.loaded = None;
                    let _ = state.manager.cast(PluginManagerMsg::Disabled {
                        name: state.status.name.clone(),
                        generation: f.generation,
                    });
                }
            }
            PluginMsg::Stop(drain) => {
                if state.become_(PluginState::Stopping, None).is_ok() {
                    // Out of the chain already: wait for the requests that hold it.
                    if let Some(loaded) = state.loaded.take() {
                        let deadline = Instant::now() + drain;
                        while Arc::strong_count(&loaded) > 1 && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    let _ = state.become_(PluginState::Stopped, None);
                }
                myself.stop(None);
            }
            PluginMsg::Status(reply) => {
                let _ = reply.send(state.status());
            }
        }
        Ok(())
    }
}
