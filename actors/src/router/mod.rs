//! The Router: owns the routing table (model -> state, queue, capabilities) and publishes it.
//!
//! Provider actors and their supervisor send [`RouterMsg::Update`]s; the table is published
//! through a watch channel that request handlers read through [`RouterHandle`], so a request
//! never waits on an actor mailbox. Each update carries the model's incarnation (`generation`):
//! a late message from a worker that was already replaced is ignored.
//!
//! Files: `table.rs` (the table and its entries), `handle.rs` (what request handlers use:
//! checks, local submission, routing to peers), `faults.rs` (the test switches).

mod chain;
mod drain;
mod faults;
mod handle;
mod route_hooks;
mod table;

use std::sync::Arc;

use golek_providers::ProviderInfo;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

pub use chain::Routes;
pub use faults::FaultSettings;
pub use handle::{EventRx, RouterHandle};
pub use table::{ModelEntry, ModelState, ModelView, RoutingTable};

use crate::metrics as m;

/// A change to one model's entry.
pub enum RouterMsg {
    /// Registers a model (before its worker starts) or replaces its entry.
    Update(Box<ModelEntry>),
    /// Changes the state of the given incarnation; stale generations are ignored.
    SetState {
        name: String,
        generation: u64,
        state: ModelState,
        error: Option<String>,
    },
    /// The model of `generation` no longer runs here (undeployed); a newer one stays.
    Remove { name: String, generation: u64 },
    /// The worker of `generation` loaded its model.
    Ready {
        name: String,
        generation: u64,
        info: ProviderInfo,
    },
}

pub struct Router;

pub struct RouterState {
    tx: watch::Sender<Arc<RoutingTable>>,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    /// The table's sender, made by the system module so that a restarted Router keeps the table.
    type Arguments = watch::Sender<Arc<RoutingTable>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RouterState { tx })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.tx.send_modify(|table| {
            let table = Arc::make_mut(table);
            apply(table, message);
        });
        Ok(())
    }
}

fn apply(table: &mut RoutingTable, message: RouterMsg) {
    match message {
        RouterMsg::Update(mut entry) => {
            if let Some(old) = table.models.get(&entry.name) {
                // A new incarnation keeps the reason its predecessor died.
                if entry.last_error.is_none() {
                    entry.last_error = old.last_error.clone();
                }
            }
            set_gauges(&entry);
            table.models.insert(entry.name.clone(), *entry);
        }
        RouterMsg::SetState {
            name,
            generation,
            state,
            error,
        } => {
            if let Some(entry) = table.models.get_mut(&name) {
                if entry.generation != generation {
                    return;
                }
                if !matches!(
                    state,
                    ModelState::Ready | ModelState::Loading | ModelState::Warming
                ) {
                    // The worker is gone: nothing may be queued to it any more.
                    entry.sender = None;
                }
                entry.state = state;
                if error.is_some() {
                    entry.last_error = error;
                }
                set_gauges(entry);
            }
        }
        RouterMsg::Remove { name, generation } => {
            if table
                .models
                .get(&name)
                .is_some_and(|e| e.generation == generation)
            {
                table.models.remove(&name);
                metrics::gauge!(m::MODEL_READY, "model" => name).set(0.0);
            }
        }
        RouterMsg::Ready {
            name,
            generation,
            info,
        } => {
            if let Some(entry) = table.models.get_mut(&name) {
                if entry.generation == generation {
                    entry.state = ModelState::Ready;
                    entry.info = Some(info);
                    set_gauges(entry);
                }
            }
        }
    }
}

fn set_gauges(entry: &ModelEntry) {
    let ready = if entry.state == ModelState::Ready {
        1.0
    } else {
        0.0
    };
    metrics::gauge!(m::MODEL_READY, "model" => entry.name.clone()).set(ready);
    if let Some(sender) = &entry.sender {
        metrics::gauge!(m::MODEL_QUEUE_CAPACITY, "model" => entry.name.clone())
            .set(sender.capacity() as f64);
    }
}
