//! ConfigManager: holds the configuration, applies changes made while the node runs and
//! publishes each valid one as a watch; every subscriber applies its part (see
//! [`crate::reconfigure`]).
//!
//! A change (`golek config set`, `PUT /admin/config`, a file edit, SIGHUP) is validated whole
//! against the new full configuration: an invalid one is refused with the start-up messages and
//! nothing of it applies. A valid one is stored first (the run-time layer, flushed to sled, so it
//! survives a restart), then published. Restart-only keys are accepted and reported as pending.

use std::sync::Arc;

use golek_config::runtime::{Entry, Pending};
use golek_config::{ConfigError, LoadedConfig, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::watch;

use crate::registry::RegistryMsg;

pub struct ConfigManager;

/// What a run-time change asks for.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// Merge a partial document into the run-time layer.
    Set(toml::Table),
    /// Drop these keys' run-time values.
    Unset(Vec<String>),
    /// Read the configuration file again (a file edit, SIGHUP).
    ReloadFile,
}

impl ConfigChange {
    fn via(&self) -> &'static str {
        match self {
            ConfigChange::Set(_) => "set",
            ConfigChange::Unset(_) => "unset",
            ConfigChange::ReloadFile => "file",
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    /// Keys whose value changed.
    pub changed: Vec<String>,
    /// Of those, the ones applied now.
    pub applied: Vec<String>,
    /// Every restart-only key that now differs from what the node runs with.
    pub pending: Vec<Pending>,
}

/// The configuration as `golek config show` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub entries: Vec<Entry>,
    pub pending: Vec<Pending>,
    /// The run-time layer as stored (TOML).
    pub runtime_layer: String,
    pub file: Option<String>,
}

pub enum ConfigMsg {
    /// The current configuration.
    Get(RpcReplyPort<Arc<NodeConfig>>),
    /// A receiver that sees every future configuration.
    Subscribe(RpcReplyPort<watch::Receiver<Arc<NodeConfig>>>),
    Change(
        ConfigChange,
        RpcReplyPort<Result<ChangeReport, ChangeRefused>>,
    ),
    Show(RpcReplyPort<Option<ConfigReport>>),
}

/// Why a change was refused: the start-up messages, one per field.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRefused {
    pub errors: Vec<String>,
}

impl From<ConfigError> for ChangeRefused {
    fn from(err: ConfigError) -> Self {
        let errors = match err.field_errors() {
            [] => vec![err.to_string()],
            fields => fields.iter().map(ToString::to_string).collect(),
        };
        ChangeRefused { errors }
    }
}

pub struct ConfigArgs {
    pub config: Arc<NodeConfig>,
    /// The layers it was built from; without them (an embedder that built a `NodeConfig`
    /// itself) run-time changes are refused.
    pub loaded: Option<LoadedConfig>,
    pub registry: ActorRef<RegistryMsg>,
}

pub struct ConfigState {
    tx: watch::Sender<Arc<NodeConfig>>,
    /// What the node started with (restart-only keys keep these values until the next start).
    started: Option<LoadedConfig>,
    current: Option<LoadedConfig>,
    registry: ActorRef<RegistryMsg>,
}

impl Actor for ConfigManager {
    type Msg = ConfigMsg;
    type State = ConfigState;
    type Arguments = ConfigArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ConfigArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (tx, _) = watch::channel(args.config);
        Ok(ConfigState {
            tx,
            started: args.loaded.clone(),
            current: args.loaded,
            registry: args.registry,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConfigMsg::Get(reply) => {
                let _ = reply.send(state.tx.borrow().clone());
            }
            ConfigMsg::Subscribe(reply) => {
                let _ = reply.send(state.tx.subscribe());
            }
            ConfigMsg::Change(change, reply) => {
                let _ = reply.send(apply(state, change).await);
            }
            ConfigMsg::Show(reply) => {
                let report = state.current.as_ref().map(|current| ConfigReport {
                    entries: current.entries(),
                    pending: state
                        .started
                        .as_ref()
                        .map(|s| current.pending(s))
                        .unwrap_or_default(),
                    runtime_layer: toml::to_string(current.runtime_layer()).unwrap_or_default(),
                    file: current.file().map(|p| p.display().to_string()),
                });
                let _ = reply.send(report);
            }
        }
        Ok(())
    }
}

async fn apply(
    state: &mut ConfigState,
    change: ConfigChange,
) -> Result<ChangeReport, ChangeRefused> {
    let (Some(current), Some(started)) = (&state.current, &state.started) else {
        return Err(ChangeRefused {
            errors: vec![
                "this node was started from a typed configuration without its layers; run-time changes need `golek serve`".into(),
            ],
        });
    };
    let via = change.via();
    let next = match &change {
        ConfigChange::Set(document) => current.with_change(document),
        ConfigChange::Unset(keys) => current.without(keys),
        ConfigChange::ReloadFile => match current.file() {
            Some(_) => current.reload_file(),
            None => {
                return Err(ChangeRefused {
                    errors: vec![
                        "the node was started without a configuration file (--config)".into(),
                    ],
                })
            }
        },
    };
    let next = match next {
        Ok(next) => next,
        Err(err) => {
            let refused = ChangeRefused::from(err);
            tracing::warn!(via, errors = ?refused.errors, "configuration change refused; nothing of it applied");
            metrics::counter!(crate::metrics::CONFIG_CHANGES_TOTAL, "outcome" => "refused")
                .increment(1);
            return Err(refused);
        }
    };
    let changed = next.changed_keys(current);
    if changed.is_empty() && next.runtime_layer() == current.runtime_layer() {
        tracing::debug!(via, "configuration unchanged");
        return Ok(ChangeReport {
            changed,
            applied: Vec::new(),
            pending: next.pending(started),
        });
    }
    if next.runtime_layer() != current.runtime_layer() {
        let text = toml::to_string(next.runtime_layer()).map_err(|e| ChangeRefused {
            errors: vec![format!("cannot encode the run-time layer: {e}")],
        })?;
        let stored = state
            .registry
            .call(
                |r| RegistryMsg::PutRuntimeConfig(text, r),
                Some(std::time::Duration::from_secs(10)),
            )
            .await;
        match stored {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {}
            Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                return Err(ChangeRefused {
                    errors: vec![format!("cannot store the change: {e}")],
                })
            }
            _ => {
                return Err(ChangeRefused {
                    errors: vec!["cannot store the change: the registry does not answer".into()],
                })
            }
        }
    }
    let applied: Vec<String> = changed
        .iter()
        .filter(|k| golek_config::hot::is_hot(k))
        .cloned()
        .collect();
    let pending = next.pending(started);
    tracing::info!(via, changed = ?changed, applied = ?applied, pending = pending.len(), "configuration changed");
    metrics::counter!(crate::metrics::CONFIG_CHANGES_TOTAL, "outcome" => "applied").increment(1);
    if !applied.is_empty() {
        let running = golek_config::hot::running(&started.config, &next.config);
        state.tx.send_replace(Arc::new(running));
    }
    state.current = Some(next);
    Ok(ChangeReport {
        changed,
        applied,
        pending,
    })
}
