//! The node's side of a run-time change: each owner applies its part of a published
//! configuration. The request path reads all of these without a mailbox (atomics, locks held
//! for a copy), so a change never waits for a request and a request never waits for a change.

use std::sync::Arc;

use golek_config::NodeConfig;
use ractor::ActorRef;
use tokio::sync::watch;

use crate::observe::ObservabilityMsg;
use crate::provider::SupervisorMsg;
use crate::router::RouterHandle;

/// Applies every change `updates` publishes until it closes.
pub(crate) async fn follow(
    mut updates: watch::Receiver<Arc<NodeConfig>>,
    router: RouterHandle,
    providers: ActorRef<SupervisorMsg>,
    observability: ActorRef<ObservabilityMsg>,
    plugins: ActorRef<crate::plugins::PluginManagerMsg>,
) {
    let mut before = updates.borrow_and_update().clone();
    while updates.changed().await.is_ok() {
        let after = updates.borrow_and_update().clone();
        apply(&before, &after, &router, &providers);
        if before.telemetry != after.telemetry {
            let _ = observability.cast(ObservabilityMsg::Reconfigure(after.clone()));
        }
        // A plugin's table reloads that plugin.
        if before.plugins != after.plugins {
            let _ = plugins.cast(crate::plugins::PluginManagerMsg::Reconfigure(after.clone()));
        }
        before = after;
    }
}

/// Routes the parts of `after` that differ from `before` to their owners.
pub(crate) fn apply(
    before: &NodeConfig,
    after: &NodeConfig,
    router: &RouterHandle,
    providers: &ActorRef<SupervisorMsg>,
) {
    if before.routes != after.routes {
        router.set_routes(routes_of(after));
    }
    if before.reliability != after.reliability {
        router.reliability().reconfigure(&after.reliability);
    }
    if (before.http.retry_after_s, before.http.request_timeout)
        != (after.http.retry_after_s, after.http.request_timeout)
    {
        router.set_limits(after.http.retry_after_s, after.http.request_timeout);
    }
    if before.supervision.max_hung_workers != after.supervision.max_hung_workers {
        router
            .health()
            .set_max_hung_workers(after.supervision.max_hung_workers);
    }
    let queues_changed = after.models.iter().any(|(name, m)| {
        before.models.get(name).is_some_and(|old| {
            (old.queue_capacity, old.max_queue_delay) != (m.queue_capacity, m.max_queue_delay)
        })
    });
    if queues_changed {
        // The running queues at once; the supervisor keeps them for every later restart.
        let table = router.table();
        for (name, model) in &after.models {
            if let Some(sender) = table.models.get(name).and_then(|e| e.sender.as_ref()) {
                sender.set_limits(model.queue_capacity, model.max_queue_delay);
            }
        }
    }
    if queues_changed || before.supervision != after.supervision {
        let _ = providers.cast(SupervisorMsg::Reconfigure(Arc::new(after.clone())));
    }
}

/// The fallback chains of a configuration, as the router holds them.
pub(crate) fn routes_of(config: &NodeConfig) -> crate::router::Routes {
    config
        .routes
        .iter()
        .map(|(name, r)| (name.clone(), r.targets.clone().into()))
        .collect()
}
