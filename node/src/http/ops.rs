//! Health, readiness, metrics and the admin view.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::json;

use super::{ApiError, AppState};

/// Alive: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready once every configured model is loaded; 503 with each model's state otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let table = state.router.table();
    let models: BTreeMap<&str, &str> = table
        .models
        .values()
        .map(|e| (e.name.as_str(), e.state.as_str()))
        .collect();
    let ready = table.all_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ready { "ready" } else { "not_ready" }, "models": models})),
    )
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.router.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
}

/// Every model's state, restarts, queue and metadata.
pub async fn admin_models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let table = state.router.table();
    let models: Vec<_> = table.models.values().map(|e| e.view()).collect();
    Json(json!({"node_id": state.node_id, "models": models}))
}

/// The cluster as this node sees it: members with liveness, models and load.
pub async fn admin_cluster(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(cluster) = state.router.cluster() else {
        return Err(ErrorInfo::new(
            ErrorCode::NotFound,
            "this node is not in a cluster (start it with --tls-dir and --node-id)",
        )
        .into());
    };
    let view = cluster.view();
    Ok(Json(serde_json::to_value(&*view).unwrap_or_default()))
}

/// Makes a model's worker panic when it next takes work. Only with `debug.fault_injection`.
pub async fn crash(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.config.debug.fault_injection {
        return Err(ErrorInfo::new(
            ErrorCode::NotFound,
            "fault injection is disabled (set debug.fault_injection = true to enable it)",
        )
        .into());
    }
    state.router.inject_crash(&model)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"model": model, "crash": "armed"})),
    ))
}
