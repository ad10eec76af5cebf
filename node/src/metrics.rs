//! The node's metrics: names declared once, and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests, by route and status.
pub const HTTP_REQUESTS_TOTAL: &str = "golek_http_requests_total";
/// HTTP request latency, by route.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "golek_http_request_duration_seconds";
/// Inference requests, by model and outcome (`ok` or an error type).
pub const MODEL_REQUESTS_TOTAL: &str = "golek_model_requests_total";
/// Inference errors, by model and error type.
pub const MODEL_ERRORS_TOTAL: &str = "golek_model_errors_total";
/// Inference latency as the HTTP layer sees it (queue plus run), by model.
pub const MODEL_REQUEST_DURATION_SECONDS: &str = "golek_model_request_duration_seconds";
/// Inputs embedded, by model.
pub const MODEL_INPUTS_TOTAL: &str = "golek_model_inputs_total";
/// Prompt tokens embedded, by model.
pub const MODEL_PROMPT_TOKENS_TOTAL: &str = "golek_model_prompt_tokens_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let batch = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &batch)?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by route and status");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        MODEL_REQUESTS_TOTAL,
        "inference requests by model and outcome"
    );
    metrics::describe_counter!(
        MODEL_ERRORS_TOTAL,
        "inference errors by model and error type"
    );
    metrics::describe_histogram!(
        MODEL_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "inference latency by model, queue included"
    );
    metrics::describe_counter!(MODEL_INPUTS_TOTAL, "inputs embedded by model");
    metrics::describe_counter!(MODEL_PROMPT_TOKENS_TOTAL, "prompt tokens by model");
}
