//! ObservabilityManager: owns the trace export pipeline (its thread, rebuilt on a restart or a
//! change of `[telemetry]`'s sampling) and reports it in the actor tree. The tracing subscriber
//! and the trace pipeline are installed once per process by the node's start-up
//! ([`install_pipeline`]); a restart of this actor never touches them.
//!
//! Health aggregation (what `/readyz` reports) is [`readiness`]: the routing table, the node's
//! own health and the supervision tree, in one place.

mod encode;
mod export;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use golek_config::{NodeConfig, TelemetryConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

pub use encode::{Any, Attributes};
pub use export::{Exporting, Pipeline};

use crate::router::RoutingTable;
use crate::tree::ActorSnapshot;
use crate::Health;

static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();

/// Records the process's pipeline (the node's start-up, when traces are exported); the
/// ObservabilityManager of every node started in this process uses it.
pub fn install_pipeline(pipeline: Arc<Pipeline>) {
    let _ = PIPELINE.set(pipeline);
}

pub fn pipeline() -> Option<Arc<Pipeline>> {
    PIPELINE.get().cloned()
}

pub struct ObservabilityManager;

pub struct ObservabilityArgs {
    pub telemetry: TelemetryConfig,
    pub node_id: String,
}

pub enum ObservabilityMsg {
    /// The configuration changed at run time (the sampling ratio).
    Reconfigure(Arc<NodeConfig>),
    Snapshot(RpcReplyPort<ActorSnapshot>),
}

pub struct ObservabilityState {
    pipeline: Option<Arc<Pipeline>>,
    exporting: Option<Exporting>,
    endpoint: Option<String>,
}

impl Actor for ObservabilityManager {
    type Msg = ObservabilityMsg;
    type State = ObservabilityState;
    type Arguments = ObservabilityArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ObservabilityArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pipeline = pipeline();
        let exporting = match &pipeline {
            Some(p) => {
                p.set_sampling_ratio(args.telemetry.sampling_ratio);
                Some(Exporting::start(p.clone(), &args.telemetry, &args.node_id)?)
            }
            None => None,
        };
        Ok(ObservabilityState {
            pipeline,
            exporting,
            endpoint: args.telemetry.otlp_endpoint,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ObservabilityMsg::Reconfigure(config) => {
                if let Some(p) = &state.pipeline {
                    p.set_sampling_ratio(config.telemetry.sampling_ratio);
                }
            }
            ObservabilityMsg::Snapshot(reply) => {
                let mut snapshot = ActorSnapshot::running("ObservabilityManager", "observability")
                    .with_detail("otlp_endpoint", state.endpoint.clone().into());
                if let Some(p) = &state.pipeline {
                    use std::sync::atomic::Ordering::Relaxed;
                    let exporting = state.exporting.as_ref().is_some_and(Exporting::running);
                    snapshot = snapshot
                        .with_detail("exporting", exporting.into())
                        .with_detail("spans_exported", p.exported.load(Relaxed).into())
                        .with_detail("spans_dropped", p.dropped.load(Relaxed).into())
                        .with_detail("spans_failed", p.failed.load(Relaxed).into());
                }
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
        // What is queued is sent before the node goes (bounded by the exporter's timeout).
        if let Some(mut exporting) = state.exporting.take() {
            let _ =
                tokio::task::spawn_blocking(move || exporting.stop(Duration::from_secs(12))).await;
        }
        Ok(())
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Each model's state.
    pub models: std::collections::BTreeMap<String, String>,
    pub failing_actors: Vec<String>,
}

/// Ready once every configured model is loaded, the node is healthy and no actor of the tree
/// is failing (restarting, breaker open, hung, not answering).
pub fn readiness(
    table: &RoutingTable,
    health: &Health,
    tree: Result<ActorSnapshot, String>,
) -> Readiness {
    let models = table
        .models
        .values()
        .map(|e| (e.name.clone(), e.state.as_str().to_string()))
        .collect();
    let failing_actors = match tree {
        Ok(tree) => tree.failing(),
        Err(e) => vec![e],
    };
    Readiness {
        ready: table.all_ready() && health.healthy() && failing_actors.is_empty(),
        models,
        failing_actors,
    }
}
