//! Node events for the plugins' `on_event` hooks: model state changes (from the routing table)
//! and members coming up or going down (from the cluster view).

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::watch;

use super::manager::PluginManagerMsg;
use super::NodeEvent;

/// Model state changes, as `on_event` calls.
pub(super) async fn follow_models(
    mut table: watch::Receiver<Arc<crate::router::RoutingTable>>,
    manager: ActorRef<PluginManagerMsg>,
) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let now: BTreeMap<String, String> = table
            .borrow_and_update()
            .models
            .iter()
            .map(|(n, e)| (n.clone(), e.state.as_str().to_string()))
            .collect();
        for (model, state) in &now {
            if seen.get(model) != Some(state) {
                let _ = manager.cast(PluginManagerMsg::Event(NodeEvent::ModelState {
                    model: model.clone(),
                    state: state.clone(),
                }));
            }
        }
        for model in seen.keys().filter(|m| !now.contains_key(*m)) {
            let _ = manager.cast(PluginManagerMsg::Event(NodeEvent::ModelState {
                model: model.clone(),
                state: "removed".into(),
            }));
        }
        seen = now;
        if table.changed().await.is_err() {
            return;
        }
    }
}

/// Members coming up and going down, as `on_event` calls.
pub(super) async fn follow_members(
    mut view: watch::Receiver<Arc<crate::cluster::ClusterView>>,
    manager: ActorRef<PluginManagerMsg>,
) {
    let mut alive: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        let now: BTreeMap<String, bool> = view
            .borrow_and_update()
            .members
            .iter()
            .filter(|m| !m.is_self)
            .map(|m| (m.node_id.clone(), m.alive))
            .collect();
        for (node, up) in &now {
            if alive.get(node) != Some(up) {
                let node = node.clone();
                let event = match up {
                    true => NodeEvent::MemberUp { node },
                    false => NodeEvent::MemberDown { node },
                };
                let _ = manager.cast(PluginManagerMsg::Event(event));
            }
        }
        alive = now;
        if view.changed().await.is_err() {
            return;
        }
    }
}
