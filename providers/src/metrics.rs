//! The providers' metrics, declared in one place.

/// Rows per executed batch, by model.
pub const BATCH_SIZE: &str = "golek_provider_batch_size";
/// Time a job waited in the queue before its batch started, by model.
pub const QUEUE_WAIT_SECONDS: &str = "golek_provider_queue_wait_seconds";
/// Time one batch took to run, by model.
pub const BATCH_DURATION_SECONDS: &str = "golek_provider_batch_duration_seconds";

pub fn describe() {
    metrics::describe_histogram!(BATCH_SIZE, "rows per executed batch");
    metrics::describe_histogram!(
        QUEUE_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "time a job waited before its batch started"
    );
    metrics::describe_histogram!(
        BATCH_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "time one batch took to run"
    );
}
