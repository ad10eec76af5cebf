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
/// Workers found hung (holding work, no progress past `supervision.hang_timeout_s`), by model.
pub const PROVIDER_HUNG_TOTAL: &str = "golek_provider_hung_total";

/// Plugin calls that failed or were skipped (breaker open), by plugin, hook and outcome.
pub const PLUGIN_CALLS_TOTAL: &str = "golek_plugin_calls_total";
/// Requests a plugin refused, by plugin.
pub const PLUGIN_REJECTED_TOTAL: &str = "golek_plugin_rejected_total";
/// Times a plugin's breaker opened, by plugin.
pub const PLUGIN_BREAKER_OPEN_TOTAL: &str = "golek_plugin_breaker_open_total";
/// Plugins disabled past their restart intensity, by plugin.
pub const PLUGIN_DISABLED_TOTAL: &str = "golek_plugin_disabled_total";
/// 1 while a plugin is started, by plugin.
pub const PLUGIN_STARTED: &str = "golek_plugin_started";
/// response-cache lookups, by result (hit, miss).
pub const PLUGIN_CACHE_TOTAL: &str = "golek_plugin_cache_total";
/// Bytes the response cache holds.
pub const PLUGIN_CACHE_BYTES: &str = "golek_plugin_cache_bytes";
/// audit-log lines dropped because its queue was full.
pub const PLUGIN_AUDIT_DROPPED_TOTAL: &str = "golek_plugin_audit_dropped_total";

/// 1, labelled with the node's id (the one its certificate names, in a cluster) and version.
pub const NODE_INFO: &str = "golek_node_info";

/// 1 while the node drains (on its way out of a rolling restart), 0 otherwise.
pub const NODE_DRAINING: &str = "golek_node_draining";

/// Cluster members by state (alive, dead).
pub const CLUSTER_MEMBERS: &str = "golek_cluster_members";

/// When the node's certificate expires (Unix seconds); updated when it is reloaded.
pub const CLUSTER_CERT_EXPIRY: &str = "golek_cluster_certificate_expiry_seconds";
/// Gossip bytes and messages, by direction (sent, received); messages dropped on full queues.
pub const GOSSIP_BYTES_TOTAL: &str = "golek_gossip_bytes_total";
pub const GOSSIP_MESSAGES_TOTAL: &str = "golek_gossip_messages_total";
pub const GOSSIP_DROPPED_TOTAL: &str = "golek_gossip_dropped_total";
/// Requests forwarded to peers, by peer and outcome (ok, failed, broken).
pub const CLUSTER_FORWARDED_TOTAL: &str = "golek_cluster_forwarded_total";
/// Time from forwarding to the end of the peer's answer, by peer.
pub const CLUSTER_FORWARD_SECONDS: &str = "golek_cluster_forward_seconds";
/// Forwards retried on another peer before the first byte.
pub const CLUSTER_RETRIES_TOTAL: &str = "golek_cluster_retries_total";
pub const CLUSTER_CONTINUATIONS_TOTAL: &str = "golek_cluster_continuations_total";
pub const ROUTE_FALLBACKS_TOTAL: &str = "golek_route_fallbacks_total";
pub const CLUSTER_SERVED_DEADLINE_SECONDS: &str = "golek_cluster_served_deadline_seconds";
pub const MODEL_BREAKER_OPEN_TOTAL: &str = "golek_model_outcome_breaker_open_total";
pub const TENANT_REQUESTS_TOTAL: &str = "golek_tenant_requests_total";
pub const TENANT_REJECTED_TOTAL: &str = "golek_tenant_rejected_total";
pub const TENANT_TOKENS_TOTAL: &str = "golek_tenant_tokens_total";
/// Times a peer's outcome breaker opened, by peer.
pub const CLUSTER_PEER_BREAKER_OPEN_TOTAL: &str = "golek_cluster_peer_breaker_open_total";
/// Connections or members refused, by reason (tls, no_id, id_mismatch).
pub const CLUSTER_REFUSED_TOTAL: &str = "golek_cluster_refused_total";

/// Model file bytes sent to peers, by peer.
pub const MODEL_BYTES_SENT_TOTAL: &str = "golek_model_bytes_sent_total";
/// Model file bytes fetched, by source (a peer's id).
pub const MODEL_BYTES_FETCHED_TOTAL: &str = "golek_model_bytes_fetched_total";
/// Model file chunks that did not match their manifest, by the peer that sent them.
pub const MODEL_CORRUPT_CHUNKS_TOTAL: &str = "golek_model_corrupt_chunks_total";

pub const TRACE_SPANS_DROPPED_TOTAL: &str = "golek_trace_spans_dropped_total";
pub const TRACE_SPANS_EXPORTED_TOTAL: &str = "golek_trace_spans_exported_total";
pub const TRACE_EXPORT_FAILED_SPANS_TOTAL: &str = "golek_trace_export_failed_spans_total";
pub const CONFIG_CHANGES_TOTAL: &str = "golek_config_changes_total";

pub fn describe() {
    metrics::describe_counter!(MODEL_BYTES_SENT_TOTAL, "model file bytes sent to peers");
    metrics::describe_counter!(
        MODEL_BYTES_FETCHED_TOTAL,
        "model file bytes fetched, by source"
    );
    metrics::describe_counter!(
        MODEL_CORRUPT_CHUNKS_TOTAL,
        "model file chunks that did not match their manifest, by sender"
    );
    metrics::describe_counter!(
        TRACE_SPANS_DROPPED_TOTAL,
        "finished spans dropped because the export queue was full (or no exporter ran)"
    );
    metrics::describe_counter!(TRACE_SPANS_EXPORTED_TOTAL, "spans sent over OTLP");
    metrics::describe_counter!(
        TRACE_EXPORT_FAILED_SPANS_TOTAL,
        "spans the OTLP endpoint did not take"
    );
    metrics::describe_counter!(
        CONFIG_CHANGES_TOTAL,
        "run-time configuration changes by outcome (applied, refused)"
    );
    metrics::describe_gauge!(NODE_INFO, "the node's id and version (always 1)");
    metrics::describe_gauge!(NODE_DRAINING, "1 while the node drains");
    metrics::describe_gauge!(CLUSTER_MEMBERS, "cluster members by state");
    metrics::describe_gauge!(
        CLUSTER_CERT_EXPIRY,
        "when the node's certificate expires (Unix seconds)"
    );
    metrics::describe_counter!(GOSSIP_BYTES_TOTAL, "gossip bytes by direction");
    metrics::describe_counter!(GOSSIP_MESSAGES_TOTAL, "gossip messages by direction");
    metrics::describe_counter!(GOSSIP_DROPPED_TOTAL, "gossip messages dropped (queue full)");
    metrics::describe_counter!(CLUSTER_FORWARDED_TOTAL, "requests forwarded to peers");
    metrics::describe_histogram!(CLUSTER_FORWARD_SECONDS, "duration of forwarded requests");
    metrics::describe_counter!(CLUSTER_REFUSED_TOTAL, "peers refused, by reason");
    metrics::describe_counter!(CLUSTER_RETRIES_TOTAL, "forwards retried on another peer");
    metrics::describe_counter!(
        TENANT_REQUESTS_TOTAL,
        "requests admitted for a tenant on this node"
    );
    metrics::describe_counter!(
        TENANT_REJECTED_TOTAL,
        "requests refused for a tenant over a limit (rpm, tpm, concurrency)"
    );
    metrics::describe_counter!(
        TENANT_TOKENS_TOTAL,
        "tokens (prompt and generated) used by a tenant's requests on this node"
    );
    metrics::describe_counter!(
        MODEL_BREAKER_OPEN_TOTAL,
        "times a model's outcome breaker opened (its requests kept failing)"
    );
    metrics::describe_histogram!(
        CLUSTER_SERVED_DEADLINE_SECONDS,
        "the deadline left to requests peers forwarded here, as they arrived"
    );
    metrics::describe_counter!(
        ROUTE_FALLBACKS_TOTAL,
        "requests a fallback chain passed on to its next target"
    );
    metrics::describe_counter!(
        CLUSTER_CONTINUATIONS_TOTAL,
        "streams continued on another replica after their node failed mid-stream"
    );
    metrics::describe_counter!(
        CLUSTER_PEER_BREAKER_OPEN_TOTAL,
        "times a peer's outcome breaker opened"
    );
    metrics::describe_counter!(
        ROUTER_REJECTED_TOTAL,
        "requests refused before reaching a worker"
    );
    metrics::describe_gauge!(MODEL_QUEUE_DEPTH, "requests waiting in the model's queue");
    metrics::describe_gauge!(MODEL_QUEUE_CAPACITY, "the model's queue capacity");
    metrics::describe_gauge!(MODEL_READY, "1 when the model is ready to serve");
    metrics::describe_counter!(PROVIDER_RESTARTS_TOTAL, "model worker restarts");
    metrics::describe_counter!(PROVIDER_HUNG_TOTAL, "model workers found hung");
    metrics::describe_counter!(
        PROVIDER_BREAKER_OPEN_TOTAL,
        "times a model's breaker opened"
    );
}
