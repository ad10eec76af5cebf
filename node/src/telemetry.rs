//! The process's tracer, when `telemetry.otlp_endpoint` is set: an OpenTelemetry tracer
//! provider whose spans go through the pipeline the ObservabilityManager exports, and the
//! `tracing` layer that makes our spans OpenTelemetry spans. Installed once, at start.

use golek_config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::Layer;

use crate::logging::OtelLayer;

/// Golek's own spans only (at info and above): a dependency's spans never become traces.
fn targets() -> Targets {
    Targets::new()
        .with_target("golek_node", tracing::Level::INFO)
        .with_target("golek_actors", tracing::Level::INFO)
        .with_target("golek_providers", tracing::Level::INFO)
}

/// The layer to install, or `None` when traces are not exported.
pub fn layer(telemetry: &TelemetryConfig) -> Option<OtelLayer> {
    telemetry.otlp_endpoint.as_ref()?;
    let pipeline = golek_actors::observe::Pipeline::new(telemetry.sampling_ratio);
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(pipeline.processor())
        .with_sampler(pipeline.sampler())
        .build();
    let tracer = provider.tracer("golek");
    // The provider lives as long as the process (its tracer holds it).
    std::mem::forget(provider);
    golek_actors::observe::install_pipeline(pipeline);
    golek_actors::trace::set_otel_installed();
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(targets()),
    )
}
