//! The process's tracer, when `telemetry.otlp_endpoint` is set: an OpenTelemetry tracer
//! provider whose spans go through the pipeline the ObservabilityManager exports, and the
//! `tracing` layer that makes our spans OpenTelemetry spans. Installed once, at start.

use golek_config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::Layer;

use crate::logging::OtelLayer;

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
    // Golek's own spans of traced requests only ([`golek_actors::trace::Sampled`]); each span
    // carries its name and fields, not where in the code or on which thread it began (what
    // that costs per span is most of what a trace costs), and OpenTelemetry's own context is
    // not switched at every poll (nothing here reads it).
    Some(golek_actors::trace::WhileTraced(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(golek_actors::trace::Sampled),
    ))
}
