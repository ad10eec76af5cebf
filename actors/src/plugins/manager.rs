//! The PluginManager: finds the plugins the configuration and the plugin folder name, loads
//! each new or changed one off the request path, orders them by dependencies and publishes the
//! chain. A swap publishes a chain with the new version: requests in flight keep the chain they
//! started with, so their calls finish on the old version. A version that fails to load leaves
//! the running one in place (and says why); a removed file or table unloads its plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use golek_config::NodeConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::mpsc;

use super::chain::{Chain, Failure, Loaded, Plugins};
use super::instance::{InstanceArgs, PluginActor, PluginMsg, Status};
use super::load::{self, Source, Wanted};
use super::{order, NodeEvent, PluginState};
use crate::reliability::BreakerConfig;
use crate::tasks::Tasks;
use crate::tree::ActorSnapshot;

/// How long an unloaded plugin's calls in flight may take to finish.
const DRAIN: Duration = Duration::from_secs(10);

pub enum PluginManagerMsg {
    /// Reads the configuration's tables and the plugin folder again.
    Rescan,
    /// The configuration changed (its `[plugins.*]` tables may have).
    Reconfigure(Arc<NodeConfig>),
    /// Checks `bytes` as the plugin `name` and, when it loads, writes it into the plugin
    /// folder (so it survives a restart) and starts it.
    Upload {
        name: String,
        bytes: Vec<u8>,
        reply: RpcReplyPort<Result<Status, String>>,
    },
    /// Removes the plugin's file and unloads it.
    Remove {
        name: String,
        reply: RpcReplyPort<Result<(), String>>,
    },
    List(RpcReplyPort<Listing>),
    Failure(Failure),
    Disabled {
        name: String,
        generation: u64,
    },
    Event(NodeEvent),
    Snapshot(RpcReplyPort<ActorSnapshot>),
}

/// `GET /admin/plugins`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub plugin_dir: PathBuf,
    /// The started plugins, in the order their request hooks run.
    pub chain: Vec<String>,
    pub plugins: Vec<Status>,
}

/// What the HTTP layer holds: the chain and the manager.
#[derive(Clone)]
pub struct PluginsHandle {
    pub chain: Plugins,
    pub manager: ActorRef<PluginManagerMsg>,
}

impl PluginsHandle {
    pub async fn list(&self) -> Option<Listing> {
        crate::system::call(&self.manager, "PluginManager", PluginManagerMsg::List)
            .await
            .ok()
    }

    pub async fn upload(&self, name: String, bytes: Vec<u8>) -> Result<Status, String> {
        let call = self
            .manager
            .call(
                |reply| PluginManagerMsg::Upload { name, bytes, reply },
                Some(Duration::from_secs(60)),
            )
            .await;
        match call {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            _ => Err("the PluginManager did not answer".into()),
        }
    }

    pub async fn remove(&self, name: String) -> Result<(), String> {
        let call = self
            .manager
            .call(
                |reply| PluginManagerMsg::Remove { name, reply },
                Some(DRAIN + Duration::from_secs(5)),
            )
            .await;
        match call {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            _ => Err("the PluginManager did not answer".into()),
        }
    }
}

pub struct PluginArgs {
    pub config: Arc<NodeConfig>,
    pub chain: Plugins,
    /// Model state changes become `on_event` calls.
    pub router: crate::router::RouterHandle,
}

pub(super) struct Entry {
    pub(super) actor: ActorRef<PluginMsg>,
    pub(super) source: Source,
    /// The version tried last (started or refused): the same again is not reloaded.
    tried: Option<[u8; 32]>,
    loaded: Option<Arc<Loaded>>,
    order: i64,
}

pub struct ManagerState {
    pub(super) config: Arc<NodeConfig>,
    pub(super) entries: BTreeMap<String, Entry>,
    pub(super) chain: Plugins,
    failures: mpsc::UnboundedSender<Failure>,
    generation: u64,
    _watcher: Option<notify::RecommendedWatcher>,
    tasks: Tasks,
}

pub struct PluginManager;

impl Actor for PluginManager {
    type Msg = PluginManagerMsg;
    type State = ManagerState;
    type Arguments = PluginArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PluginArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let dir = args.config.node.plugin_dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot make the plugin folder");
        }
        let me = myself.clone();
        let watcher = crate::watch::watch_dir(
            &dir,
            |p| p.extension().is_some_and(|x| x == "wasm"),
            move || {
                let _ = me.cast(PluginManagerMsg::Rescan);
            },
        );
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the plugin folder; load plugins with `golek plugin load`");
                None
            }
        };
        let (failures, mut rx) = mpsc::unbounded_channel::<Failure>();
        let tasks = Tasks::new();
        let me = myself.clone();
        tasks.spawn(async move {
            while let Some(f) = rx.recv().await {
                let _ = me.cast(PluginManagerMsg::Failure(f));
            }
        });
        tasks.spawn(super::events::follow_models(
            args.router.watch_table(),
            myself.clone(),
        ));
        if let Some(cluster) = args.router.cluster() {
            tasks.spawn(super::events::follow_members(
                cluster.view.clone(),
                myself.clone(),
            ));
        }
        let _ = myself.cast(PluginManagerMsg::Rescan);
        Ok(ManagerState {
            config: args.config,
            entries: BTreeMap::new(),
            chain: args.chain,
            failures,
            generation: 0,
            _watcher: watcher,
            tasks,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.tasks.shutdown(Duration::from_secs(1)).await;
        Ok(())
    }

    /// A PluginActor that failed (a bug: plugin failures are messages, not panics) loses its
    /// entry; the rescan makes a new actor and loads the plugin again.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: ractor::SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorFailed(cell, err) = event {
            let name = state
                .entries
                .iter()
                .find(|(_, e)| e.actor.get_id() == cell.get_id())
                .map(|(n, _)| n.clone());
            if let Some(name) = name {
                tracing::error!(plugin = %name, error = %err, "a PluginActor failed; starting it again");
                state.entries.remove(&name);
                state.publish();
                let _ = myself.cast(PluginManagerMsg::Rescan);
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PluginManagerMsg::Rescan => {
                // A burst of file events is one rescan.
                tokio::time::sleep(Duration::from_millis(50)).await;
                state.rescan(&myself).await;
            }
            PluginManagerMsg::Reconfigure(config) => {
                let changed = config.plugins != state.config.plugins;
                state.config = config;
                if changed {
                    state.rescan(&myself).await;
                }
            }
            PluginManagerMsg::Upload { name, bytes, reply } => {
                let _ = reply.send(state.upload(&myself, name, bytes).await);
            }
            PluginManagerMsg::Remove { name, reply } => {
                let _ = reply.send(state.remove(&myself, &name).await);
            }
            PluginManagerMsg::List(reply) => {
                let _ = reply.send(state.listing().await);
            }
            PluginManagerMsg::Failure(f) => {
                if let Some(e) = state.entries.get(&f.plugin) {
                    let _ = e.actor.cast(PluginMsg::Failed(f));
                }
            }
            PluginManagerMsg::Disabled { name, generation } => {
                let current = state.entries.get(&name).and_then(|e| e.loaded.as_ref());
                if current.is_some_and(|l| l.generation == generation) {
                    if let Some(e) = state.entries.get_mut(&name) {
                        e.loaded = None;
                    }
                    state.publish();
                }
            }
            PluginManagerMsg::Event(event) => {
                let chain = state.chain.chain();
                if chain.wants(super::Hook::OnEvent) {
                    let _ = tokio::task::spawn_blocking(move || chain.on_event(&event)).await;
                }
            }
            PluginManagerMsg::Snapshot(reply) => {
                let listing = state.listing().await;
                let mut me = ActorSnapshot::running("PluginManager", "plugin_manager")
                    .with_detail("chain", serde_json::json!(listing.chain))
                    .with_detail("plugin_dir", serde_json::json!(listing.plugin_dir));
                for p in listing.plugins {
                    let mut child = ActorSnapshot::running(p.name.clone(), "plugin");
                    child.state = p.state.as_str().to_string();
                    child.restarts = p.restarts;
                    child.last_failure = p.last_failure.clone();
                    child.breaker = p.breaker.clone();
                    if let Ok(serde_json::Value::Object(details)) = serde_json::to_value(&p) {
                        child.details = details;
                    }
                    me.children.push(child);
                }
                let _ = reply.send(me);
            }
        }
        Ok(())
    }
}

impl ManagerState {
    pub(super) fn dir(&self) -> PathBuf {
        self.config.node.plugin_dir.clone()
    }

    /// Brings the running plugins in line with the configuration and the folder.
    pub(super) async fn rescan(&mut self, myself: &ActorRef<PluginManagerMsg>) {
        let wanted = load::wanted(&self.config.plugins, &self.dir());
        let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
        // Gone from the configuration and the folder: unloaded.
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(e) = self.entries.remove(&name) {
                tracing::info!(plugin = %name, "plugin unloaded");
                self.stop_later(e);
            }
        }
        let mut fresh: BTreeMap<String, load::Candidate> = BTreeMap::new();
        let data_dir = self.config.node.data_dir.clone();
        for w in wanted {
            let print = {
                let w = w.clone();
                tokio::task::spawn_blocking(move || load::fingerprint(&w))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            };
            let entry = self.entry(myself, &w).await;
            let Some(entry) = entry else { continue };
            let print = match print {
                Ok(p) => p,
                // Its file is gone or unreadable (a table naming a file that is not there):
                // out of the chain, failed with the reason.
                Err(e) => {
                    entry.loaded = None;
                    entry.tried = None;
                    let _ = advance(&entry.actor, PluginState::Failed).await;
                    let _ = entry.actor.cast(PluginMsg::Refused(e));
                    continue;
                }
            };
            if entry.tried == Some(print) {
                continue;
            }
            entry.tried = Some(print);
            entry.order = w.config.order;
            entry.source = w.source.clone();
            let _ = advance(&entry.actor, PluginState::Discovered).await;
            let loaded = {
                let (w, data_dir) = (w.clone(), data_dir.clone());
                tokio::task::spawn_blocking(move || load::load(&w, &data_dir))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            };
            match loaded {
                Ok(candidate) => {
                    let _ = advance(&entry.actor, PluginState::Loaded).await;
                    fresh.insert(w.name.clone(), candidate);
                }
                Err(reason) => {
                    tracing::warn!(plugin = %w.name, %reason, "plugin refused");
                    let reason = match entry.loaded {
                        Some(_) => {
                            format!("the new version was refused (the running one stays): {reason}")
                        }
                        None => reason,
                    };
                    let _ = entry.actor.cast(PluginMsg::Refused(reason));
                }
            }
        }
        // Dependencies over what would run: the new versions and the running ones.
        let mut set = BTreeMap::new();
        for (name, e) in &self.entries {
            let manifest = match (fresh.get(name), &e.loaded) {
                (Some(c), _) => c.manifest.clone(),
                (None, Some(l)) => l.manifest.clone(),
                (None, None) => continue,
            };
            set.insert(name.clone(), (manifest, e.order));
        }
        let ordered = order::order(&set);
        for (name, reason) in &ordered.refused {
            fresh.remove(name);
            if let Some(e) = self.entries.get_mut(name) {
                tracing::warn!(plugin = %name, %reason, "plugin refused");
                if let Some(old) = e.loaded.take() {
                    drop(old);
                }
                let _ = advance(&e.actor, PluginState::Failed).await;
                let _ = e.actor.cast(PluginMsg::Refused(reason.clone()));
                e.tried = None;
            }
        }
        let breaker = BreakerConfig::from(&self.config.reliability);
        for (name, candidate) in fresh {
            let Some(e) = self.entries.get_mut(&name) else {
                continue;
            };
            self.generation += 1;
            let loaded = Arc::new(Loaded::new(
                name.clone(),
                candidate.manifest,
                candidate.policy,
                candidate.plugin,
                self.generation,
                e.source.kind(),
                breaker.clone(),
                self.failures.clone(),
            ));
            if e.loaded.is_none() {
                let _ = advance(&e.actor, PluginState::Initialized).await;
            }
            e.loaded = Some(loaded.clone());
            let _ = e.actor.cast(PluginMsg::Started(loaded));
        }
        self.publish_in(&ordered.order);
    }

    /// The plugin's entry (made, with its actor, the first time the name is seen).
    async fn entry(
        &mut self,
        myself: &ActorRef<PluginManagerMsg>,
        w: &Wanted,
    ) -> Option<&mut Entry> {
        if !self.entries.contains_key(&w.name) {
            let status = Status {
                name: w.name.clone(),
                kind: w.source.kind().to_string(),
                source: w.source.describe(),
                state: PluginState::Discovered,
                version: None,
                hooks: Vec::new(),
                failure_policy: Default::default(),
                generation: 0,
                restarts: 0,
                last_failure: None,
                breaker: None,
                calls: 0,
                failures: 0,
                history: vec![PluginState::Discovered],
                stats: serde_json::Value::Null,
            };
            let args = InstanceArgs {
                status,
                manager: myself.clone(),
                max_restarts: self.config.supervision.max_restarts,
                window: self.config.supervision.restart_window,
            };
            let spawned = Actor::spawn_linked(None, PluginActor, args, myself.get_cell()).await;
            match spawned {
                Ok((actor, _)) => {
                    self.entries.insert(
                        w.name.clone(),
                        Entry {
                            actor,
                            source: w.source.clone(),
                            tried: None,
                            loaded: None,
                            order: w.config.order,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(plugin = %w.name, error = %e, "cannot start a PluginActor");
                    return None;
                }
            }
        }
        self.entries.get_mut(&w.name)
    }

    fn publish(&self) {
        let mut set = BTreeMap::new();
        for (name, e) in &self.entries {
            if let Some(l) = &e.loaded {
                set.insert(name.clone(), (l.manifest.clone(), e.order));
            }
        }
        let ordered = order::order(&set);
        self.publish_in(&ordered.order);
    }

    fn publish_in(&self, order: &[String]) {
        let plugins = order
            .iter()
            .filter_map(|n| self.entries.get(n)?.loaded.clone())
            .collect();
        self.chain.publish(Chain { plugins });
    }

    /// Takes an entry out of service: its actor drains and stops.
    fn stop_later(&self, mut e: Entry) {
        let had = e.loaded.take();
        self.publish();
        // The actor waits on the chain's references, not on this one.
        drop(had);
        let _ = e.actor.cast(PluginMsg::Stop(DRAIN));
    }
}

/// Moves a plugin's actor to `state`.
pub(super) async fn advance(actor: &ActorRef<PluginMsg>, state: PluginState) -> Result<(), String> {
    match crate::system::call(actor, "PluginActor", |r| PluginMsg::Become(state, None, r)).await {
        Ok(r) => r,
        Err(e) => Err(e.to_string()),
    }
}
