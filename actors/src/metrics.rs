//! The actors' metrics, declared in one place.

/// Requests refused or failed before reaching a worker, by model and error type.
pub const ROUTER_REJECTED_TOTAL: &str = "golek_router_rejected_total";
/// Requests currently waiting in a model's queue.
pub const MODEL_QUEUE_DEPTH: &str = "golek_model_queue_depth";
/// A model's queue capacity (its bulkhead).
pub const MODEL_QUEUE_CAPACITY: &str = "golek_model_queue_capacity";
/// 1 when the model is ready to serve, else 0.
pub const MODEL_READY: &str = "golek_model_ready";
/// Worker restarts, by model.
pub const PROVIDER_RESTARTS_TOTAL: &str = "golek_provider_restarts_total";
/// Times a model's breaker opened, by model.
pub const PROVIDER_BREAKER_OPEN_TOTAL: &str = "golek_provider_breaker_open_total";

pub fn describe() {
    metrics::describe_counter!(
        ROUTER_REJECTED_TOTAL,
        "requests refused before reaching a worker"
    );
    metrics::describe_gauge!(MODEL_QUEUE_DEPTH, "requests waiting in the model's queue");
    metrics::describe_gauge!(MODEL_QUEUE_CAPACITY, "the model's queue capacity");
    metrics::describe_gauge!(MODEL_READY, "1 when the model is ready to serve");
    metrics::describe_counter!(PROVIDER_RESTARTS_TOTAL, "model worker restarts");
    metrics::describe_counter!(
        PROVIDER_BREAKER_OPEN_TOTAL,
        "times a model's breaker opened"
    );
}
