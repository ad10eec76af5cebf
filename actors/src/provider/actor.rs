//! ProviderActor: one per deployed model. Owns the model's bounded queue (its bulkhead) and the
//! dedicated worker thread that loads the model and serves the queue.
//!
//! The worker reports back by message: `Loaded` when the model is up, `Exited` when its thread
//! ends (cleanly, with an error, or by panic). Any exit the actor did not ask for fails the
//! actor, and the supervisor restarts it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use golek_config::{ModelConfig, RuntimeConfig};
use golek_providers::{build_provider, job_queue, Faults, JobSender, ProviderInfo};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::SupervisorMsg;
use crate::loops::panic_text;
use crate::router::{ModelEntry, ModelState, RouterMsg};

pub struct ProviderActor;

pub struct ProviderArgs {
    pub model: ModelConfig,
    pub runtime: RuntimeConfig,
    pub generation: u64,
    pub restarts: u64,
    pub created_unix_s: u64,
    pub router: ActorRef<RouterMsg>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub hang_timeout: std::time::Duration,
}

/// How a worker thread ended.
#[derive(Debug)]
pub enum WorkerExit {
    /// The queue closed (the node is stopping).
    Finished,
    LoadFailed(String),
    Failed(String),
    Panicked(String),
}

pub enum ProviderMsg {
    Loaded(ProviderInfo),
    Exited(WorkerExit),
    /// Look at the worker's heartbeat (sent on a timer).
    CheckProgress,
    /// `supervision.hang_timeout_s` changed at run time.
    SetHangTimeout(std::time::Duration),
    /// The warm-up request ended (the model is ready, or it failed).
    Warmed(ProviderInfo, Result<(), String>),
    /// Take nothing new; tell the supervisor once idle, or at the deadline.
    Drain(std::time::Instant),
}

pub struct ProviderState {
    name: String,
    generation: u64,
    router: ActorRef<RouterMsg>,
    supervisor: ActorRef<SupervisorMsg>,
    hang_timeout: std::time::Duration,
    /// Reported hung once; the supervisor takes it from there.
    hung: bool,
    /// Kept so the queue stays open while the actor lives; dropped with the state.
    sender: JobSender,
    kind: golek_config::ProviderKind,
    /// Draining until this instant (undeployed or moved).
    draining: Option<std::time::Instant>,
}

impl ProviderActor {
    fn ready(state: &mut ProviderState, info: ProviderInfo) -> Result<(), ActorProcessingErr> {
        if state.draining.is_some() {
            return Ok(());
        }
        tracing::info!(model = %state.name, generation = state.generation, "model ready");
        state.router.cast(RouterMsg::Ready {
            name: state.name.clone(),
            generation: state.generation,
            info,
        })?;
        let _ = state.supervisor.cast(SupervisorMsg::WorkerReady {
            name: state.name.clone(),
            generation: state.generation,
        });
        Ok(())
    }

    /// A draining worker with nothing queued or in hand (or past its deadline) is done.
    fn check_drained(state: &mut ProviderState) {
        let Some(until) = state.draining else {
            return;
        };
        if state.sender.is_idle() || std::time::Instant::now() >= until {
            state.draining = None;
            let _ = state.supervisor.cast(SupervisorMsg::Drained {
                name: state.name.clone(),
                generation: state.generation,
            });
        }
    }
}

impl Actor for ProviderActor {
    type Msg = ProviderMsg;
    type State = ProviderState;
    type Arguments = ProviderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ProviderArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let model = args.model;
        let faults = Arc::new(Faults::default());
        let (sender, queue) = job_queue(
            &model.name,
            model.queue_capacity,
            model.max_batch_size,
            model.max_queue_delay,
            faults.clone(),
        );
        args.router.cast(RouterMsg::Update(Box::new(ModelEntry {
            name: model.name.clone(),
            provider: model.kind().as_str().to_string(),
            state: ModelState::Loading,
            generation: args.generation,
            restarts: args.restarts,
            last_error: None,
            info: None,
            sender: Some(sender.clone()),
            faults: Some(faults),
            created_unix_s: args.created_unix_s,
        })))?;

        let worker_ref = myself.clone();
        let runtime = args.runtime;
        let thread_model = model.clone();
        // The worker thread runs inside the node's runtime: remote providers run their
        // requests on it rather than on a runtime of their own.
        let node_runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name(format!("golek-worker-{}", model.name))
            .spawn(move || {
                let _inside = node_runtime.enter();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut provider = match build_provider(&thread_model, &runtime) {
                        Ok(p) => p,
                        Err(e) => return WorkerExit::LoadFailed(e.to_string()),
                    };
                    // Loading (ONNX Runtime's graph optimisation, llama.cpp's model load)
                    // leaves freed temporaries in glibc's arenas: hand them back to the OS, so
                    // an idle node holds its models and not their loading (bench/memory.sh).
                    release_freed_memory();
                    let _ = worker_ref.cast(ProviderMsg::Loaded(provider.info()));
                    match provider.serve(&queue) {
                        Ok(()) => WorkerExit::Finished,
                        Err(e) => WorkerExit::Failed(e.to_string()),
                    }
                }));
                let exit = outcome.unwrap_or_else(|p| WorkerExit::Panicked(panic_text(&*p)));
                let _ = worker_ref.cast(ProviderMsg::Exited(exit));
            })?;

        // Checked a few times per timeout, so a hang is seen within a quarter of it.
        let every = (args.hang_timeout / 4).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(5),
        );
        myself.send_interval(every, || ProviderMsg::CheckProgress);
        let kind = model.kind();
        Ok(ProviderState {
            name: model.name,
            generation: args.generation,
            router: args.router,
            supervisor: args.supervisor,
            hang_timeout: args.hang_timeout,
            hung: false,
            sender,
            kind,
            draining: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProviderMsg::Loaded(info) => {
                let Some(request) = super::warmup::request_for(state.kind, &info) else {
                    return Self::ready(state, info);
                };
                let _ = state.router.cast(RouterMsg::SetState {
                    name: state.name.clone(),
                    generation: state.generation,
                    state: ModelState::Warming,
                    error: None,
                });
                let sender = state.sender.clone();
                let me = myself.clone();
                tokio::spawn(async move {
                    let outcome = super::warmup::run(&sender, request).await;
                    let _ = me.cast(ProviderMsg::Warmed(info, outcome));
                });
                Ok(())
            }
            ProviderMsg::Warmed(info, Ok(())) => {
                // The warm-up's buffers too.
                release_freed_memory();
                Self::ready(state, info)
            }
            ProviderMsg::Warmed(_, Err(e)) => Err(format!("warm-up request failed: {e}").into()),
            ProviderMsg::Drain(until) => {
                state.draining = Some(until);
                Self::check_drained(state);
                Ok(())
            }
            ProviderMsg::SetHangTimeout(timeout) => {
                state.hang_timeout = timeout;
                Ok(())
            }
            ProviderMsg::CheckProgress => {
                Self::check_drained(state);
                if let Some(stalled) = state.sender.stalled_for() {
                    if stalled > state.hang_timeout && !state.hung {
                        state.hung = true;
                        let _ = state.supervisor.cast(SupervisorMsg::Hung {
                            name: state.name.clone(),
                            generation: state.generation,
                            stalled,
                        });
                    }
                }
                Ok(())
            }
            ProviderMsg::Exited(exit) => {
                let reason = match exit {
                    WorkerExit::Finished => {
                        myself.stop(Some("queue closed".into()));
                        return Ok(());
                    }
                    WorkerExit::LoadFailed(e) => format!("model failed to load: {e}"),
                    WorkerExit::Failed(e) => format!("worker failed: {e}"),
                    WorkerExit::Panicked(e) => format!("worker panicked: {e}"),
                };
                Err(reason.into())
            }
        }
    }
}

/// Returns the free pages of the C allocator's arenas to the OS (glibc's `malloc_trim`; the C
/// and C++ libraries the providers use allocate there, not in the Rust allocator).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
