//! SystemModule: the root supervisor. Starts the managers in dependency order and escalates a
//! manager failure by stopping the node (the process supervisor restarts it whole): managers
//! hold the node's invariants, and a half-restarted node is worse than a restarted one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golek_config::{LoadedConfig, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::cluster::{ClusterArgs, ClusterManager, ClusterMsg, SelfInfo};
use crate::config_manager::{ConfigArgs, ConfigManager, ConfigMsg};
use crate::observe::{ObservabilityArgs, ObservabilityManager, ObservabilityMsg};
use crate::provider::{ProviderSupervisor, SupervisorArgs, SupervisorMsg};
use crate::registry::{DeploymentRecord, RegistryMsg, ServiceRegistry};
use crate::reliability::{ReliabilityManager, ReliabilityMsg};
use crate::router::{Router, RouterHandle, RoutingTable};
use crate::tasks::Tasks;
use crate::tenants::KeyStore;
use crate::tree::ActorSnapshot;
use crate::{ActorError, Result};

pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SystemModule;

pub struct SystemArgs {
    pub(crate) config: Arc<NodeConfig>,
    /// The layers `config` came from (run-time changes need them).
    pub(crate) loaded: Option<LoadedConfig>,
    pub(crate) table: watch::Sender<Arc<RoutingTable>>,
    pub(crate) router: RouterHandle,
    /// Where the HTTP API listens (what the node advertises to peers).
    pub(crate) http_addr: SocketAddr,
}

#[derive(Clone)]
pub struct Managers {
    pub config: ActorRef<ConfigMsg>,
    pub registry: ActorRef<RegistryMsg>,
    pub reliability: ActorRef<ReliabilityMsg>,
    pub observability: ActorRef<ObservabilityMsg>,
    /// API keys: stored in the registry, read by requests.
    pub keys: KeyStore,
    pub providers: ActorRef<SupervisorMsg>,
    pub cluster: Option<ActorRef<ClusterMsg>>,
    pub router: ActorRef<crate::router::RouterMsg>,
    /// Run-time deployments: the desired state and the PlacementManager.
    pub placement: crate::placement::PlacementHandle,
    /// The plugins' chain and their manager.
    pub plugins: crate::plugins::PluginsHandle,
    pub node_id: String,
}

pub enum SystemMsg {
    Managers(RpcReplyPort<Managers>),
    Snapshot(RpcReplyPort<ActorSnapshot>),
}

pub struct SystemState {
    managers: Managers,
    /// `[telemetry]` as the node started, to start the ObservabilityManager again.
    telemetry: golek_config::TelemetryConfig,
    /// The subscriber that applies run-time configuration changes.
    tasks: Tasks,
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) async fn call<M, T>(
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
        let (reliability, _) = Actor::spawn_linked(
            None,
            ReliabilityManager,
            args.router.reliability().clone(),
            cell.clone(),
        )
        .await
        .map_err(|e| spawn_err("ReliabilityManager", e))?;
        let (registry, _) = Actor::spawn_linked(
            None,
            ServiceRegistry,
            config.node.data_dir.clone(),
            cell.clone(),
        )
        .await
        .map_err(|e| spawn_err("ServiceRegistry", e))?;
        let (config_ref, _) = Actor::spawn_linked(
            None,
            ConfigManager,
            ConfigArgs {
                config: config.clone(),
                loaded: args.loaded,
                registry: registry.clone(),
            },
            cell.clone(),
        )
        .await
        .map_err(|e| spawn_err("ConfigManager", e))?;
        // The keys stored here, before anything is served.
        let keys = KeyStore::new(args.router.tenants().clone(), registry.clone());
        let loaded = keys
            .load()
            .await
            .map_err(|e| ActorError::Corrupt(e.message))?;
        tracing::info!(keys = loaded, "API keys loaded");
        let mut node_id = call(&registry, "ServiceRegistry", RegistryMsg::NodeId).await?;
        let models_dir = config.node.data_dir.join("models");
        let store = Arc::new(
            crate::placement::ModelStore::open(models_dir.clone()).map_err(|e| {
                ActorError::Corrupt(format!(
                    "cannot open the model store {}: {e}",
                    models_dir.display()
                ))
            })?,
        );
        // The run-time deployments stored here, versioned by the id the node serves under.
        let placed_as = config.cluster.node_id.clone().unwrap_or(node_id.clone());
        let desired = Arc::new(
            crate::placement::Desired::load(placed_as, registry.clone())
                .await
                .map_err(|e| ActorError::Corrupt(e.message))?,
        );
        // In a cluster the node is known by the id its certificate names: the ClusterManager
        // checks it and the registry stores it, so every report agrees.
        let cluster = if config.cluster.enabled() {
            let me = SelfInfo {
                node_id: config.cluster.node_id.clone().unwrap_or(node_id.clone()),
                data_dir: config.node.data_dir.clone(),
                http_addr: args.http_addr,
                version: env!("CARGO_PKG_VERSION").to_string(),
                labels: config.node.labels.clone(),
            };
            let (cluster, _) = Actor::spawn_linked(
                None,
                ClusterManager,
                ClusterArgs {
                    config: config.cluster.clone(),
                    me,
                    router: args.router.clone(),
                    policy: (&config.supervision).into(),
                    reliability: args.router.reliability().clone(),
                    keys: keys.clone(),
                    desired: desired.clone(),
                    store: store.clone(),
                },
                cell.clone(),
            )
            .await
            .map_err(|e| spawn_err("ClusterManager", e))?;
            let handle = call(&cluster, "ClusterManager", ClusterMsg::Handle).await?;
            call(&registry, "ServiceRegistry", |r| {
                RegistryMsg::AdoptNodeId(handle.node_id.clone(), r)
            })
            .await??;
            node_id = handle.node_id.clone();
            args.router.set_cluster(handle);
            Some(cluster)
        } else {
            None
        };
        args.router.set_node_id(node_id.clone());
        let observability = spawn_observability(&cell, &config.telemetry, &node_id).await?;

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
            .await??;
            models.push((model.clone(), stored.created_unix_s));
        }
        let names = config.models.keys().cloned().collect();
        call(&registry, "ServiceRegistry", |r| {
            RegistryMsg::Retain(names, r)
        })
        .await??;

        metrics::gauge!(
            crate::metrics::NODE_INFO,
            "node_id" => node_id.clone(),
            "version" => env!("CARGO_PKG_VERSION")
        )
        .set(1.0);
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
                hang_timeout: config.supervision.hang_timeout,
                router: router.clone(),
                health: args.router.health().clone(),
            },
            cell,
        )
        .await
        .map_err(|e| spawn_err("ProviderSupervisor", e))?;

        let placement = crate::placement::spawn(
            &myself.get_cell(),
            crate::placement::PlacementArgs {
                desired,
                store,
                providers: providers.clone(),
                router: args.router.clone(),
                node_id: node_id.clone(),
                config: config.placement.clone(),
                assets_dir: config.node.assets_dir.clone(),
                reserved: config
                    .models
                    .keys()
                    .chain(config.routes.keys())
                    .cloned()
                    .collect(),
                interval: config.cluster.gossip_interval,
            },
        )
        .await
        .map_err(|e| spawn_err("PlacementManager", e))?;

        let (plugin_manager, _) = Actor::spawn_linked(
            None,
            crate::plugins::PluginManager,
            crate::plugins::PluginArgs {
                config: config.clone(),
                chain: args.router.plugins().clone(),
                router: args.router.clone(),
            },
            myself.get_cell(),
        )
        .await
        .map_err(|e| spawn_err("PluginManager", e))?;
        let plugins = crate::plugins::PluginsHandle {
            chain: args.router.plugins().clone(),
            manager: plugin_manager.clone(),
        };

        // Run-time changes reach their owners from here on.
        let tasks = Tasks::new();
        let updates = call(&config_ref, "ConfigManager", ConfigMsg::Subscribe).await?;
        tasks.spawn(crate::reconfigure::follow(
            updates,
            args.router.clone(),
            providers.clone(),
            observability.clone(),
            plugin_manager,
        ));
        Ok(SystemState {
            tasks,
            telemetry: config.telemetry.clone(),
            managers: Managers {
                config: config_ref,
                registry,
                reliability,
                observability,
                keys,
                providers,
                cluster,
                router,
                placement,
                plugins,
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
            SystemMsg::Snapshot(reply) => {
                let snapshot = crate::tree::snapshot(&state.managers).await;
                let _ = reply.send(snapshot);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.tasks.shutdown(Duration::from_secs(1)).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            // Traces are no invariant of the node: their manager restarts alone (a new export
            // thread; the process's subscriber and provider stay).
            SupervisionEvent::ActorFailed(cell, err)
                if cell.get_id() == state.managers.observability.get_id() =>
            {
                tracing::error!(error = %err, "the ObservabilityManager failed; starting it again");
                let node_id = state.managers.node_id.clone();
                match spawn_observability(&myself.get_cell(), &state.telemetry, &node_id).await {
                    Ok(actor) => state.managers.observability = actor,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the ObservabilityManager again; stopping the node");
                        myself.stop(Some(format!("ObservabilityManager: {e}")));
                    }
                }
            }
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

async fn spawn_observability(
    supervisor: &ractor::ActorCell,
    telemetry: &golek_config::TelemetryConfig,
    node_id: &str,
) -> Result<ActorRef<ObservabilityMsg>> {
    let args = ObservabilityArgs {
        telemetry: telemetry.clone(),
        node_id: node_id.to_string(),
    };
    Actor::spawn_linked(None, ObservabilityManager, args, supervisor.clone())
        .await
        .map(|(actor, _)| actor)
        .map_err(|e| ActorError::Spawn {
            name: "ObservabilityManager".into(),
            message: e.to_string(),
        })
}
