//! ProviderSupervisor: starts one ProviderActor per deployment and restarts failed ones with
//! backoff. Past the restart-intensity limit the model's breaker opens: requests get 503 until
//! the cooldown ends and one more restart is tried.

use std::collections::HashMap;
use std::time::Instant;

use golek_config::{ModelConfig, RuntimeConfig};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::restart::{Decision, RestartPolicy, RestartTracker};
use super::{ProviderActor, ProviderArgs};
use crate::metrics as m;
use crate::router::{ModelState, RouterMsg};

pub struct ProviderSupervisor;

pub struct SupervisorArgs {
    /// The deployments, with the time each was first recorded.
    pub models: Vec<(ModelConfig, u64)>,
    pub runtime: RuntimeConfig,
    pub policy: RestartPolicy,
    pub router: ActorRef<RouterMsg>,
}

pub enum SupervisorMsg {
    /// Start the next incarnation of `name`, unless it was already restarted.
    Restart { name: String, after_generation: u64 },
    /// The worker of `generation` loaded its model.
    WorkerReady { name: String, generation: u64 },
    /// Stop every child (shutdown); failures after this are not restarted.
    StopAll(ractor::RpcReplyPort<()>),
}

struct Child {
    config: ModelConfig,
    created_unix_s: u64,
    tracker: RestartTracker,
    generation: u64,
    restarts: u64,
    actor: Option<ActorRef<super::ProviderMsg>>,
}

pub struct SupervisorState {
    runtime: RuntimeConfig,
    router: ActorRef<RouterMsg>,
    children: HashMap<String, Child>,
    by_actor: HashMap<ActorId, String>,
    stopping: bool,
}

impl ProviderSupervisor {
    async fn spawn_child(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
    ) {
        let Some(child) = state.children.get_mut(name) else {
            return;
        };
        child.generation += 1;
        let args = ProviderArgs {
            model: child.config.clone(),
            runtime: state.runtime.clone(),
            generation: child.generation,
            restarts: child.restarts,
            created_unix_s: child.created_unix_s,
            router: state.router.clone(),
            supervisor: myself.clone(),
        };
        match Actor::spawn_linked(None, ProviderActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                state.by_actor.insert(actor.get_id(), name.to_string());
                child.actor = Some(actor);
            }
            Err(err) => {
                let reason = format!("cannot start provider actor: {err}");
                Self::on_child_failure(myself, state, name.to_string(), reason);
            }
        }
    }

    fn on_child_failure(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: String,
        reason: String,
    ) {
        let Some(child) = state.children.get_mut(&name) else {
            return;
        };
        child.actor = None;
        if state.stopping {
            return;
        }
        let decision = child.tracker.on_failure(Instant::now());
        let generation = child.generation;
        let (model_state, delay) = match decision {
            Decision::Restart { after } => {
                tracing::warn!(model = %name, %reason, backoff_ms = after.as_millis() as u64, "model worker failed; restarting");
                (ModelState::Restarting, after)
            }
            Decision::OpenBreaker { retry_after } => {
                tracing::error!(model = %name, %reason, cooldown_s = retry_after.as_secs(), "model worker failing repeatedly; breaker open");
                metrics::counter!(m::PROVIDER_BREAKER_OPEN_TOTAL, "model" => name.clone())
                    .increment(1);
                (ModelState::BreakerOpen, retry_after)
            }
        };
        let _ = state.router.cast(RouterMsg::SetState {
            name: name.clone(),
            generation,
            state: model_state,
            error: Some(reason),
        });
        myself.send_after(delay, move || SupervisorMsg::Restart {
            name,
            after_generation: generation,
        });
    }
}

impl Actor for ProviderSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            runtime: args.runtime,
            router: args.router,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: false,
        };
        let names: Vec<String> = args.models.iter().map(|(m, _)| m.name.clone()).collect();
        for (config, created_unix_s) in args.models {
            state.children.insert(
                config.name.clone(),
                Child {
                    config,
                    created_unix_s,
                    tracker: RestartTracker::new(args.policy.clone()),
                    generation: 0,
                    restarts: 0,
                    actor: None,
                },
            );
        }
        for name in names {
            Self::spawn_child(&myself, &mut state, &name).await;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Restart {
                name,
                after_generation,
            } => {
                let due = state
                    .children
                    .get(&name)
                    .is_some_and(|c| c.generation == after_generation && c.actor.is_none());
                if due && !state.stopping {
                    if let Some(child) = state.children.get_mut(&name) {
                        child.restarts += 1;
                    }
                    metrics::counter!(m::PROVIDER_RESTARTS_TOTAL, "model" => name.clone())
                        .increment(1);
                    Self::spawn_child(&myself, state, &name).await;
                }
            }
            SupervisorMsg::WorkerReady { name, generation } => {
                if let Some(child) = state.children.get_mut(&name) {
                    if child.generation == generation {
                        child.tracker.on_ready();
                    }
                }
            }
            SupervisorMsg::StopAll(reply) => {
                state.stopping = true;
                for (name, child) in &state.children {
                    let _ = state.router.cast(RouterMsg::SetState {
                        name: name.clone(),
                        generation: child.generation,
                        state: ModelState::Stopped,
                        error: None,
                    });
                }
                myself
                    .stop_children_and_wait(
                        Some("node stopping".into()),
                        Some(std::time::Duration::from_secs(10)),
                    )
                    .await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                reason.unwrap_or_else(|| "provider actor stopped".into()),
            ),
            _ => return Ok(()),
        };
        if let Some(name) = state.by_actor.remove(&cell.get_id()) {
            Self::on_child_failure(&myself, state, name, reason);
        }
        Ok(())
    }
}
