//! The ReliabilityManager: the supervised owner of the reliability state (breakers per
//! target, the retry budget, the policies from `[reliability]`). The request path holds the
//! same [`Reliability`] and reads it directly; the actor answers for it in the supervision tree.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::state::Reliability;
use crate::tree::ActorSnapshot;

pub struct ReliabilityManager;

pub enum ReliabilityMsg {
    Snapshot(RpcReplyPort<ActorSnapshot>),
}

impl Actor for ReliabilityManager {
    type Msg = ReliabilityMsg;
    type State = Arc<Reliability>;
    type Arguments = Arc<Reliability>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: Arc<Reliability>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ReliabilityMsg::Snapshot(reply) => {
                let report = state.report();
                let mut me = ActorSnapshot::running("ReliabilityManager", "reliability_manager");
                if let serde_json::Value::Object(fields) = report {
                    me.details.extend(fields);
                }
                let _ = reply.send(me);
            }
        }
        Ok(())
    }
}
