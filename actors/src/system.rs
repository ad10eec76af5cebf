//! SystemModule: the root supervisor. Starts the managers in dependency order and escalates a
//! manager failure by stopping the node (the process supervisor restarts it whole): managers
//! hold the node's invariants, and a half-restarted node is worse than a restarted one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golek_config::NodeConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::config_manager::{ConfigManager, ConfigMsg};
use crate::provider::{ProviderSupervisor, SupervisorArgs, SupervisorMsg};
use crate::registry::{DeploymentRecord, RegistryMsg, ServiceRegistry};
use crate::router::{Router, RouterHandle, RoutingTable};
use crate::{ActorError, Result};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SystemModule;

pub struct SystemArgs {
    config: Arc<NodeConfig>,
    table: watch::Sender<Arc<RoutingTable>>,
}

#[derive(Clone)]
pub struct Managers {
    pub config: ActorRef<ConfigMsg>,
    pub registry: ActorRef<RegistryMsg>,
    pub providers: ActorRef<SupervisorMsg>,
    pub node_id: String,
}

pub enum SystemMsg {
    Managers(RpcReplyPort<Managers>),
}

pub struct SystemState {
    managers: Managers,
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn call<M, T>(
    actor: &ActorRef<M>,
    name: &str,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(msg, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        _ => Err(ActorError::Unavailable(name.to_string())),
    }
}

impl Actor for SystemModule {
    type Msg = SystemMsg;
    type State = SystemState;
    type Arguments = SystemArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SystemArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cell = myself.get_cell();
        let config = args.config;
        let spawn_err = |name: &str, e: ractor::SpawnErr| ActorError::Spawn {
            name: name.into(),
            message: e.to_string(),
        };
        let (config_ref, _) =
            Actor::spawn_linked(None, ConfigManager, config.clone(), cell.clone())
                .await
                .map_err(|e| spawn_err("ConfigManager", e))?;
        let (registry, _) = Actor::spawn_linked(
            None,
            ServiceRegistry,
            config.node.data_dir.clone(),
            cell.clone(),
        )
        .await
        .map_err(|e| spawn_err("ServiceRegistry", e))?;
        let node_id = call(&registry, "ServiceRegistry", RegistryMsg::NodeId).await?;

        // Record the deployments (flushed) before serving them.
        let mut models = Vec::new();
        for model in config.models.values() {
            let params = serde_json::to_value(&model.params).unwrap_or(serde_json::Value::Null);
            let record = DeploymentRecord {
                name: model.name.clone(),
                provider: model.kind().as_str().to_string(),
                source: "config".into(),
                params,
                created_unix_s: now_unix_s(),
            };
            let stored = call(&registry, "ServiceRegistry", |r| {
                RegistryMsg::PutDeployment(record, r)
            })
            .await?
            .map_err(ActorError::Corrupt)?;
            models.push((model.clone(), stored.created_unix_s));
        }
        let names = config.models.keys().cloned().collect();
        call(&registry, "ServiceRegistry", |r| {
            RegistryMsg::Retain(names, r)
        })
        .await?
        .map_err(ActorError::Corrupt)?;

        let (router, _) = Actor::spawn_linked(None, Router, args.table, cell.clone())
            .await
            .map_err(|e| spawn_err("Router", e))?;
        let (providers, _) = Actor::spawn_linked(
            None,
            ProviderSupervisor,
            SupervisorArgs {
                models,
                runtime: config.runtime.clone(),
                policy: (&config.supervision).into(),
                router: router.clone(),
            },
            cell,
        )
        .await
        .map_err(|e| spawn_err("ProviderSupervisor", e))?;

        Ok(SystemState {
            managers: Managers {
                config: config_ref,
                registry,
                providers,
                node_id,
            },
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SystemMsg::Managers(reply) => {
                let _ = reply.send(state.managers.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = %cell.get_id(), error = %err, "a node manager failed; stopping the node");
                myself.stop(Some(format!("manager failed: {err}")));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::debug!(actor = %cell.get_id(), ?reason, "manager stopped");
            }
            _ => {}
        }
        Ok(())
    }
}

/// A running node's actor system.
pub struct NodeHandle {
    pub node_id: String,
    pub config: Arc<NodeConfig>,
    pub router: RouterHandle,
    managers: Managers,
    system: ActorRef<SystemMsg>,
    /// Turns true once the root supervisor has exited.
    stopped: watch::Receiver<bool>,
}

/// Starts the supervision tree for `config`. Models load in the background: watch
/// `router.table()` (or `/readyz`) for readiness.
pub async fn start_node(config: Arc<NodeConfig>) -> Result<NodeHandle> {
    crate::metrics::describe();
    golek_providers::describe_metrics();
    let (table_tx, table_rx) = watch::channel(Arc::new(RoutingTable::default()));
    let (system, join) = Actor::spawn(
        None,
        SystemModule,
        SystemArgs {
            config: config.clone(),
            table: table_tx,
        },
    )
    .await
    .map_err(|e| ActorError::Spawn {
        name: "SystemModule".into(),
        message: e.to_string(),
    })?;
    let (stopped_tx, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = join.await;
        let _ = stopped_tx.send(true);
    });
    let managers = call(&system, "SystemModule", SystemMsg::Managers).await?;
    let router = RouterHandle::new(table_rx, config.http.retry_after_s);
    // Every configured model is in the table (loading) before the node is handed out, so
    // readiness never sees an empty table as "all ready".
    let expected: Vec<String> = config.models.keys().cloned().collect();
    let registered = router
        .wait_for(CALL_TIMEOUT, |t| {
            expected.iter().all(|m| t.models.contains_key(m))
        })
        .await;
    if !registered {
        return Err(ActorError::Unavailable(
            "Router (models not registered)".into(),
        ));
    }
    Ok(NodeHandle {
        node_id: managers.node_id.clone(),
        router,
        config,
        managers,
        system,
        stopped,
    })
}

impl NodeHandle {
    /// The deployments recorded in the registry.
    pub async fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        call(
            &self.managers.registry,
            "ServiceRegistry",
            RegistryMsg::ListDeployments,
        )
        .await?
        .map_err(ActorError::Corrupt)
    }

    /// A receiver that sees the configuration and every later change to it.
    pub async fn config_updates(&self) -> Result<watch::Receiver<Arc<NodeConfig>>> {
        call(&self.managers.config, "ConfigManager", ConfigMsg::Subscribe).await
    }

    /// Resolves when the actor system has stopped on its own (a manager failed).
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Stops the models' workers, flushes the registry, stops the tree. Call after the request
    /// handlers have drained.
    pub async fn shutdown(self) -> Result<()> {
        let _ = call(
            &self.managers.providers,
            "ProviderSupervisor",
            SupervisorMsg::StopAll,
        )
        .await;
        let flushed = call(
            &self.managers.registry,
            "ServiceRegistry",
            RegistryMsg::Flush,
        )
        .await;
        // Children first and waited for: the registry's store (and its file lock) is closed
        // when this returns, so the same data dir can be opened again at once.
        self.system
            .stop_children_and_wait(Some("node shutdown".into()), Some(CALL_TIMEOUT))
            .await;
        self.system.stop(Some("node shutdown".into()));
        let mut stopped = self.stopped;
        let _ = tokio::time::timeout(CALL_TIMEOUT, stopped.wait_for(|s| *s)).await;
        flushed?.map_err(ActorError::Corrupt)
    }
}
