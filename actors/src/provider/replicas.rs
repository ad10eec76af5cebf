//! Models that come and go while the node runs (run-time deployments' replicas): started by
//! [`SupervisorMsg::Deploy`], drained and stopped by [`SupervisorMsg::Undeploy`].

use std::time::{Duration, Instant};

use golek_config::ModelConfig;
use ractor::ActorRef;

use super::restart::RestartTracker;
use super::supervisor::{Child, SupervisorState};
use super::{ProviderMsg, ProviderSupervisor, SupervisorMsg};
use crate::router::{ModelState, RouterMsg};

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProviderSupervisor {
    /// Starts `model` (or replaces a running one whose configuration changed).
    pub(super) async fn deploy(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        model: ModelConfig,
    ) {
        if state.stopping {
            return;
        }
        let name = model.name.clone();
        if let Some(child) = state.children.get_mut(&name) {
            let draining = child.state == ModelState::Draining;
            if child.config == model && !draining {
                return;
            }
            // A new version (or one deployed again while it drained): the old worker stops
            // without counting as a failure, the new one starts.
            if let Some(actor) = child.actor.take() {
                state.by_actor.remove(&actor.get_id());
                actor.stop(Some("replaced by a new version".into()));
            }
            child.config = model;
            child.state = ModelState::Loading;
            tracing::info!(model = %name, "replica: new version");
        } else {
            tracing::info!(model = %name, "replica: starting");
            state.children.insert(
                name.clone(),
                Child {
                    config: model,
                    created_unix_s: now_unix_s(),
                    tracker: RestartTracker::new(state.policy.clone()),
                    generation: 0,
                    restarts: 0,
                    hung: 0,
                    state: ModelState::Loading,
                    last_failure: None,
                    actor: None,
                },
            );
        }
        Self::spawn_child(myself, state, &name).await;
    }

    /// Drains `name`: the router stops sending it work, the worker finishes what it holds.
    pub(super) fn undeploy(state: &mut SupervisorState, name: &str, drain: Duration) {
        let Some(child) = state.children.get_mut(name) else {
            return;
        };
        if child.state == ModelState::Draining {
            return;
        }
        tracing::info!(model = %name, drain_s = drain.as_secs(), "replica: draining");
        child.state = ModelState::Draining;
        let _ = state.router.cast(RouterMsg::SetState {
            name: name.to_string(),
            generation: child.generation,
            state: ModelState::Draining,
            error: None,
        });
        match &child.actor {
            Some(actor) => {
                let _ = actor.cast(ProviderMsg::Drain(Instant::now() + drain));
            }
            // Not running (restarting, breaker open): nothing to drain.
            None => {
                let generation = child.generation;
                Self::drained(state, name, generation);
            }
        }
    }

    /// The replica drained: it stops and leaves the routing table.
    pub(super) fn drained(state: &mut SupervisorState, name: &str, generation: u64) {
        let done = state
            .children
            .get(name)
            .is_some_and(|c| c.generation == generation && c.state == ModelState::Draining);
        if !done {
            return;
        }
        if let Some(mut child) = state.children.remove(name) {
            if let Some(actor) = child.actor.take() {
                state.by_actor.remove(&actor.get_id());
                actor.stop(Some("undeployed".into()));
            }
        }
        let _ = state.router.cast(RouterMsg::Remove {
            name: name.to_string(),
            generation,
        });
        tracing::info!(model = %name, "replica: stopped");
    }
}
