//! The providers' metrics, declared in one place.

/// Rows per executed batch, by model.
pub const BATCH_SIZE: &str = "golek_provider_batch_size";
/// Time a job waited in the queue before its batch started, by model.
pub const QUEUE_WAIT_SECONDS: &str = "golek_provider_queue_wait_seconds";
/// Time one batch took to run, by model.
pub const BATCH_DURATION_SECONDS: &str = "golek_provider_batch_duration_seconds";

pub fn describe() {
    describe_generation();
    metrics::describe_counter!(
        REMOTE_REQUESTS_TOTAL,
        "requests to a remote server by outcome"
    );
    metrics::describe_histogram!(
        REMOTE_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "latency of requests to a remote server"
    );
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

/// Time from a generation request's admission to its first token, by model.
pub const GEN_TIME_TO_FIRST_TOKEN_SECONDS: &str = "golek_gen_time_to_first_token_seconds";
/// Time between consecutive tokens of one sequence, by model.
pub const GEN_INTER_TOKEN_SECONDS: &str = "golek_gen_inter_token_seconds";
/// Tokens generated, by model.
pub const GEN_TOKENS_TOTAL: &str = "golek_gen_tokens_total";
/// Prompt tokens processed, by model.
pub const GEN_PROMPT_TOKENS_TOTAL: &str = "golek_gen_prompt_tokens_total";
/// Sequences being decoded now, by model.
/// Prompt tokens run through the model (a prompt shared by `n` choices counts once).
pub const GEN_PROMPT_PREFILLED_TOKENS_TOTAL: &str = "golek_gen_prompt_prefilled_tokens_total";
/// Prompt tokens whose KV came from the prompt cache instead.
pub const GEN_PROMPT_CACHED_TOKENS_TOTAL: &str = "golek_gen_prompt_cached_tokens_total";
pub const GEN_ACTIVE_SEQUENCES: &str = "golek_gen_active_sequences";
/// KV cache cells in use (tokens held for active sequences), by model.
pub const GEN_KV_CACHE_USED_CELLS: &str = "golek_gen_kv_cache_used_cells";
/// KV cache cells in all, by model.
pub const GEN_KV_CACHE_CAPACITY_CELLS: &str = "golek_gen_kv_cache_capacity_cells";
/// Sequences ended because the client went away, by model.
pub const GEN_CANCELLED_TOTAL: &str = "golek_gen_cancelled_total";

pub fn describe_generation() {
    metrics::describe_histogram!(
        GEN_TIME_TO_FIRST_TOKEN_SECONDS,
        metrics::Unit::Seconds,
        "time from admission to the first generated token"
    );
    metrics::describe_histogram!(
        GEN_INTER_TOKEN_SECONDS,
        metrics::Unit::Seconds,
        "time between consecutive tokens of one sequence"
    );
    metrics::describe_counter!(GEN_TOKENS_TOTAL, "tokens generated");
    metrics::describe_counter!(GEN_PROMPT_TOKENS_TOTAL, "prompt tokens processed");
    metrics::describe_counter!(
        GEN_PROMPT_PREFILLED_TOKENS_TOTAL,
        "prompt tokens prefilled (shared prompts count once)"
    );
    metrics::describe_counter!(
        GEN_PROMPT_CACHED_TOKENS_TOTAL,
        "prompt tokens served from the prompt cache"
    );
    metrics::describe_gauge!(GEN_ACTIVE_SEQUENCES, "sequences being decoded");
    metrics::describe_gauge!(
        GEN_KV_CACHE_USED_CELLS,
        "KV cache cells held by active sequences"
    );
    metrics::describe_gauge!(GEN_KV_CACHE_CAPACITY_CELLS, "KV cache cells in all");
    metrics::describe_counter!(GEN_CANCELLED_TOTAL, "sequences cancelled by their client");
}

/// Requests sent to a remote server, by model and outcome (`ok` or an error type).
pub const REMOTE_REQUESTS_TOTAL: &str = "golek_remote_requests_total";
/// Latency of requests to a remote server, by model.
pub const REMOTE_REQUEST_DURATION_SECONDS: &str = "golek_remote_request_duration_seconds";
