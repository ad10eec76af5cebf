//! The process's trace recording, when `telemetry.otlp_endpoint` is set: the export pipeline
//! the ObservabilityManager runs, and the `tracing` layer that records the spans of traced
//! requests into it. Installed once, at start.

use crate::logging::OtelLayer;
use golek_config::TelemetryConfig;

/// The layer to install, or `None` when traces are not exported.
pub fn layer(telemetry: &TelemetryConfig) -> Option<OtelLayer> {
    telemetry.otlp_endpoint.as_ref()?;
    let pipeline = golek_actors::observe::Pipeline::new(telemetry.sampling_ratio);
    golek_actors::observe::install_pipeline(pipeline.clone());
    golek_actors::trace::set_otel_installed();
    // Golek's own spans of traced requests only (`Sampled`), each with its name, kind,
    // times and fields.
    Some(golek_actors::trace::recording_layer(pipeline))
}

/// The layer installed when traces are not exported: the same layer, inert. Its filter wants
/// no callsite while no exporter is installed (so nothing is recorded or even looked at), and
/// the subscriber keeps one type either way.
pub fn inert_layer() -> OtelLayer {
    let pipeline = golek_actors::observe::Pipeline::new(0.0);
    golek_actors::trace::recording_layer(pipeline)
}
