//! ProviderSupervisor: starts one ProviderActor per deployment and restarts failed ones with
//! backoff. Past the restart-intensity limit the model's breaker opens: requests get 503 until
//! the cooldown ends and one more restart is tried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_config::{ModelConfig, RuntimeConfig};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::hang;
use super::restart::{Decision, RestartPolicy, RestartTracker};
use super::{ProviderActor, ProviderArgs};
use crate::health::Health;
use crate::metrics as m;
use crate::router::{ModelState, RouterMsg};
use crate::tasks::Tasks;
use crate::tree::ActorSnapshot;

pub struct ProviderSupervisor;

pub struct SupervisorArgs {
    /// The deployments, with the time each was first recorded.
    pub models: Vec<(ModelConfig, u64)>,
    pub runtime: RuntimeConfig,
    pub policy: RestartPolicy,
    /// A worker holding work with no progress for this long is hung.
    pub hang_timeout: Duration,
    pub router: ActorRef<RouterMsg>,
    pub health: Arc<Health>,
}

pub enum SupervisorMsg {
    /// Start the next incarnation of `name`, unless it was already restarted.
    Restart {
        name: String,
        after_generation: u64,
    },
    /// The worker of `generation` loaded its model.
    WorkerReady {
        name: String,
        generation: u64,
    },
    /// The worker of `generation` holds work and made no progress for `stalled`.
    Hung {
        name: String,
        generation: u64,
        stalled: Duration,
    },
    /// Stop every child (shutdown); failures after this are not restarted.
    StopAll(RpcReplyPort<()>),
    /// The configuration changed at run time: the models' queue limits and the supervision
    /// policy apply to running workers and to every later restart.
    Reconfigure(Arc<golek_config::NodeConfig>),
    Snapshot(RpcReplyPort<ActorSnapshot>),
    /// Run this model here (a run-time deployment's replica); a changed one is replaced.
    Deploy(Box<ModelConfig>),
    /// Stop running this model here: it drains (takes nothing new, finishes what it holds, up
    /// to `drain`), then stops and leaves the routing table.
    Undeploy {
        name: String,
        drain: Duration,
    },
    /// The worker of `generation` finished draining.
    Drained {
        name: String,
        generation: u64,
    },
}

pub(super) struct Child {
    pub(super) config: ModelConfig,
    pub(super) created_unix_s: u64,
    pub(super) tracker: RestartTracker,
    pub(super) generation: u64,
    pub(super) restarts: u64,
    /// Workers of this model given up on while hung (their threads still run).
    pub(super) hung: u64,
    pub(super) state: ModelState,
    pub(super) last_failure: Option<String>,
    pub(super) actor: Option<ActorRef<super::ProviderMsg>>,
}

pub struct SupervisorState {
    pub(super) runtime: RuntimeConfig,
    pub(super) router: ActorRef<RouterMsg>,
    pub(super) hang_timeout: Duration,
    pub(super) health: Arc<Health>,
    pub(super) children: HashMap<String, Child>,
    pub(super) by_actor: HashMap<ActorId, String>,
    pub(super) stopping: bool,
    /// Pending restarts (cancelled on shutdown rather than left sleeping).
    pub(super) timers: Tasks,
    /// The restart policy new children start with.
    pub(super) policy: RestartPolicy,
}

impl ProviderSupervisor {
    pub(super) async fn spawn_child(
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
            hang_timeout: state.hang_timeout,
        };
        match Actor::spawn_linked(None, ProviderActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                state.by_actor.insert(actor.get_id(), name.to_string());
                child.actor = Some(actor);
                child.state = ModelState::Loading;
            }
            Err(err) => {
                let reason = format!("cannot start provider actor: {err}");
                Self::on_child_failure(myself, state, name.to_string(), reason);
            }
        }
    }

    fn reconfigure(state: &mut SupervisorState, config: &golek_config::NodeConfig) {
        let policy = RestartPolicy::from(&config.supervision);
        state.policy = policy.clone();
        state.hang_timeout = config.supervision.hang_timeout;
        for (name, child) in &mut state.children {
            if let Some(model) = config.models.get(name) {
                child.config.queue_capacity = model.queue_capacity;
                child.config.max_queue_delay = model.max_queue_delay;
            }
            child.tracker.set_policy(policy.clone());
            if let Some(actor) = &child.actor {
                let _ = actor.cast(super::ProviderMsg::SetHangTimeout(state.hang_timeout));
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
            child.state = ModelState::Stopped;
            return;
        }
        child.last_failure = Some(reason.clone());
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
        child.state = model_state.clone();
        let _ = state.router.cast(RouterMsg::SetState {
            name: name.clone(),
            generation,
            state: model_state,
            error: Some(reason),
        });
        Self::restart_after(myself, state, name, generation, delay);
    }

    fn restart_after(
        myself: &ActorRef<SupervisorMsg>,
        state: &SupervisorState,
        name: String,
        generation: u64,
        delay: Duration,
    ) {
        let restart = SupervisorMsg::Restart {
            name,
            after_generation: generation,
        };
        state.timers.send_after(myself, delay, restart);
    }

    /// A hung worker: its model answers 503 now, the event counts toward its breaker, the
    /// worker is abandoned (its thread cannot be killed), and a replacement starts if the node
    /// has the memory for a second copy.
    fn on_hung(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: String,
        generation: u64,
        stalled: Duration,
    ) {
        let Some(child) = state.children.get_mut(&name) else {
            return;
        };
        if child.generation != generation || child.actor.is_none() || state.stopping {
            return;
        }
        if let Some(actor) = child.actor.take() {
            // Its termination is not a second failure.
            state.by_actor.remove(&actor.get_id());
            actor.stop(Some("worker hung".into()));
        }
        child.hung += 1;
        let abandoned = state.health.abandon_worker();
        metrics::counter!(m::PROVIDER_HUNG_TOTAL, "model" => name.clone()).increment(1);
        let reason = format!(
            "worker hung: no progress for {} ms while holding work (abandoned; {abandoned} on this node)",
            stalled.as_millis()
        );
        tracing::error!(model = %name, stalled_ms = stalled.as_millis() as u64, abandoned, "model worker hung");
        child.last_failure = Some(reason.clone());
        let decision = child.tracker.on_failure(Instant::now());
        let room = hang::room_for_another(&child.config);
        child.state = ModelState::Hung;
        let _ = state.router.cast(RouterMsg::SetState {
            name: name.clone(),
            generation,
            state: ModelState::Hung,
            error: Some(reason),
        });
        match (room, decision) {
            (Err(why), _) => {
                tracing::error!(model = %name, "no replacement for the hung worker: {why}");
            }
            (Ok(()), Decision::Restart { after }) => {
                Self::restart_after(myself, state, name, generation, after)
            }
            (Ok(()), Decision::OpenBreaker { retry_after }) => {
                metrics::counter!(m::PROVIDER_BREAKER_OPEN_TOTAL, "model" => name.clone())
                    .increment(1);
                Self::restart_after(myself, state, name, generation, retry_after)
            }
        }
    }

    fn snapshot(state: &SupervisorState) -> ActorSnapshot {
        let mut me = ActorSnapshot::running("ProviderSupervisor", "provider_supervisor")
            .with_detail("abandoned_workers", state.health.abandoned_workers().into());
        if state.stopping {
            me.state = "stopping".into();
        }
        let mut names: Vec<&String> = state.children.keys().collect();
        names.sort();
        for name in names {
            let child = &state.children[name];
            let mut s = ActorSnapshot::running(name.clone(), "provider");
            s.state = child.state.as_str().into();
            s.restarts = child.restarts;
            s.last_failure = child.last_failure.clone();
            s.breaker = Some(
                if child.state == ModelState::BreakerOpen {
                    "open"
                } else {
                    "closed"
                }
                .into(),
            );
            s.details
                .insert("provider".into(), child.config.kind().as_str().into());
            s.details
                .insert("generation".into(), child.generation.into());
            s.details.insert("hung_workers".into(), child.hung.into());
            me.children.push(s);
        }
        me
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
            hang_timeout: args.hang_timeout,
            health: args.health,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: false,
            timers: Tasks::new(),
            policy: args.policy.clone(),
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
                    hung: 0,
                    state: ModelState::Loading,
                    last_failure: None,
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
                        child.state = ModelState::Ready;
                    }
                }
            }
            SupervisorMsg::Hung {
                name,
                generation,
                stalled,
            } => Self::on_hung(&myself, state, name, generation, stalled),
            SupervisorMsg::Snapshot(reply) => {
                let _ = reply.send(Self::snapshot(state));
            }
            SupervisorMsg::Reconfigure(config) => Self::reconfigure(state, &config),
            SupervisorMsg::Deploy(model) => Self::deploy(&myself, state, *model).await,
            SupervisorMsg::Undeploy { name, drain } => Self::undeploy(state, &name, drain),
            SupervisorMsg::Drained { name, generation } => Self::drained(state, &name, generation),
            SupervisorMsg::StopAll(reply) => {
                state.stopping = true;
                state.timers.shutdown(Duration::from_secs(1)).await;
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
                        Some(Duration::from_secs(10)),
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
