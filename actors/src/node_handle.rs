//! The handles a program holds on a running node ([`NodeHandle`], [`Inspector`],
//! [`ConfigHandle`]) and the functions that start one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use golek_config::{LoadedConfig, NodeConfig};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use crate::cluster::ClusterMsg;
use crate::config_manager::*;
use crate::health::Health;
use crate::provider::SupervisorMsg;
use crate::registry::{DeploymentRecord, RegistryMsg};
use crate::reliability::Reliability;
use crate::router::{RouterHandle, RoutingTable};
use crate::system::*;
use crate::tenants::KeyStore;
use crate::tree::ActorSnapshot;
use crate::{ActorError, Result};

/// Reads the supervision tree of a running node.
#[derive(Clone)]
pub struct Inspector {
    system: ActorRef<SystemMsg>,
}

impl Inspector {
    pub async fn actors(&self) -> Result<ActorSnapshot> {
        call(&self.system, "SystemModule", SystemMsg::Snapshot).await
    }
}

/// Changes and shows a running node's configuration.
#[derive(Clone)]
pub struct ConfigHandle {
    manager: ActorRef<ConfigMsg>,
}

impl ConfigHandle {
    pub async fn change(
        &self,
        change: ConfigChange,
    ) -> Result<std::result::Result<ChangeReport, ChangeRefused>> {
        call(&self.manager, "ConfigManager", |r| {
            ConfigMsg::Change(change, r)
        })
        .await
    }

    /// The effective configuration, its layers and what is pending (`None` without layers).
    pub async fn report(&self) -> Result<Option<ConfigReport>> {
        call(&self.manager, "ConfigManager", ConfigMsg::Show).await
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
    let http_addr = config.http.addr;
    start_node_at(config, http_addr).await
}

/// [`start_node`] for a node whose HTTP API listens on `http_addr` (a port the listener was
/// given, for example): that is the address the cluster learns.
pub async fn start_node_at(config: Arc<NodeConfig>, http_addr: SocketAddr) -> Result<NodeHandle> {
    start(config, None, http_addr).await
}

/// [`start_node_at`] for a configuration loaded from its layers: it can then change while the
/// node runs (`golek config set`, the file, SIGHUP).
pub async fn start_node_loaded(loaded: LoadedConfig, http_addr: SocketAddr) -> Result<NodeHandle> {
    start(Arc::new(loaded.config.clone()), Some(loaded), http_addr).await
}

async fn start(
    config: Arc<NodeConfig>,
    loaded: Option<LoadedConfig>,
    http_addr: SocketAddr,
) -> Result<NodeHandle> {
    crate::metrics::describe();
    golek_providers::describe_metrics();
    let (table_tx, table_rx) = watch::channel(Arc::new(RoutingTable::default()));
    let router = RouterHandle::new(
        table_rx,
        config.http.retry_after_s,
        config.http.request_timeout,
        Arc::new(Health::new(config.supervision.max_hung_workers)),
        Arc::new(Reliability::new(&config.reliability)),
    );
    router.set_routes(crate::reconfigure::routes_of(&config));
    let (system, join) = Actor::spawn(
        None,
        SystemModule,
        SystemArgs {
            config: config.clone(),
            loaded,
            table: table_tx,
            router: router.clone(),
            http_addr,
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
    }

    /// The supervision tree as it is now.
    pub async fn actors(&self) -> Result<ActorSnapshot> {
        self.inspector().actors().await
    }

    /// A cheap handle that reads the supervision tree (for the admin API).
    /// The node's API keys (create, revoke, list).
    pub fn keys(&self) -> KeyStore {
        self.managers.keys.clone()
    }

    /// Run-time deployments (the admin API's `/admin/deployments`).
    pub fn placement(&self) -> crate::placement::PlacementHandle {
        self.managers.placement.clone()
    }

    /// The plugins' chain and their manager (`/admin/plugins`, the request hooks).
    pub fn plugins(&self) -> crate::plugins::PluginsHandle {
        self.managers.plugins.clone()
    }

    pub fn inspector(&self) -> Inspector {
        Inspector {
            system: self.system.clone(),
        }
    }

    /// A receiver that sees the configuration and every later change to it.
    pub async fn config_updates(&self) -> Result<watch::Receiver<Arc<NodeConfig>>> {
        call(&self.managers.config, "ConfigManager", ConfigMsg::Subscribe).await
    }

    /// A cheap handle for changing and showing the configuration (for the admin API).
    pub fn config_handle(&self) -> ConfigHandle {
        ConfigHandle {
            manager: self.managers.config.clone(),
        }
    }

    /// Resolves when the actor system has stopped on its own (a manager failed).
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Stops the models' workers, flushes the registry, stops the tree. Call after the request
    /// handlers have drained.
    pub async fn shutdown(self) -> Result<()> {
        // The cluster first: no more peer streams, gossip says goodbye, its tasks end.
        if let Some(cluster) = &self.managers.cluster {
            let grace = self.config.http.shutdown_grace.max(Duration::from_secs(1));
            let ended = cluster
                .call(
                    |r| ClusterMsg::Shutdown(grace, r),
                    Some(grace + CALL_TIMEOUT),
                )
                .await;
            if !matches!(ended, Ok(ractor::rpc::CallResult::Success(true))) {
                tracing::warn!("some cluster tasks did not end within the grace period");
            }
        }
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
        flushed?
    }
}
