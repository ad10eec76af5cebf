//! ConfigManager: holds the validated configuration and publishes it as a watch, so that
//! run-time changes (a later issue) reach every reader.

use std::sync::Arc;

use golek_config::NodeConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

pub struct ConfigManager;

pub enum ConfigMsg {
    /// The current configuration.
    Get(RpcReplyPort<Arc<NodeConfig>>),
    /// A receiver that sees every future configuration.
    Subscribe(RpcReplyPort<watch::Receiver<Arc<NodeConfig>>>),
}

pub struct ConfigState {
    tx: watch::Sender<Arc<NodeConfig>>,
}

impl Actor for ConfigManager {
    type Msg = ConfigMsg;
    type State = ConfigState;
    type Arguments = Arc<NodeConfig>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        config: Arc<NodeConfig>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (tx, _) = watch::channel(config);
        Ok(ConfigState { tx })
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
        }
        Ok(())
    }
}
