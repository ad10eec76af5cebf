//! Health, readiness, metrics and the admin view.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::json;

use super::{ApiError, AppState};

/// Alive: the process answers and has not given up on too many hung workers (then 503, so
/// that its process supervisor restarts it).
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.router.health();
    if health.healthy() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "reason": format!(
                    "{} hung workers were abandoned (supervision.max_hung_workers = {}); restart the node",
                    health.abandoned_workers(),
                    state.config().supervision.max_hung_workers
                ),
            })),
        )
    }
}

/// Ready once every configured model is loaded, the node is healthy and no actor of its
/// supervision tree is failing (restarting, breaker open, hung); 503 with what is not otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let tree = state.inspector.actors().await.map_err(|e| e.to_string());
    let readiness =
        golek_actors::observe::readiness(&state.router.table(), state.router.health(), tree);
    // A draining node is on its way out: a load balancer should send it nothing new.
    let draining = state.router.draining();
    let status = if readiness.ready && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = match (draining, readiness.ready) {
        (true, _) => "draining",
        (false, true) => "ready",
        (false, false) => "not_ready",
    };
    (
        status,
        Json(json!({
            "status": word,
            "models": readiness.models,
            "failing_actors": readiness.failing_actors,
        })),
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

/// The supervision tree: every actor with its kind, state, restarts and last failure.
pub async fn admin_actors(
    State(state): State<AppState>,
) -> Result<Json<golek_actors::ActorSnapshot>, ApiError> {
    let tree = state
        .inspector
        .actors()
        .await
        .map_err(|e| ErrorInfo::from(&e))?;
    Ok(Json(tree))
}

fn faults_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.config().debug.fault_injection {
        Ok(())
    } else {
        Err(ErrorInfo::new(
            ErrorCode::NotFound,
            "fault injection is disabled (set debug.fault_injection = true to enable it)",
        )
        .into())
    }
}

/// How long `POST /admin/debug/hang/{model}` blocks the worker.
#[derive(Debug, serde::Deserialize)]
pub struct HangQuery {
    pub ms: Option<u64>,
}

/// Makes a model's worker block, holding work, when it next takes a job (`?ms=`, default 60 s).
/// Only with `debug.fault_injection`.
pub async fn hang(
    State(state): State<AppState>,
    Path(model): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HangQuery>,
) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    let ms = q.ms.unwrap_or(60_000).clamp(1, 3_600_000);
    state.router.inject_hang(&model, ms)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"model": model, "hang_ms": ms})),
    ))
}

/// What `POST /admin/debug/refuse/{model}` arms.
#[derive(Debug, serde::Deserialize)]
pub struct RefuseQuery {
    pub n: Option<u32>,
    /// `overloaded` (429), `unavailable` (503) or `provider_error` (502).
    pub code: Option<String>,
}

/// Makes a model refuse its next `n` requests (`?n=`, default 1) with `?code=` (default
/// `unavailable`) while its worker stays up. Only with `debug.fault_injection`.
pub async fn refuse(
    State(state): State<AppState>,
    Path(model): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RefuseQuery>,
) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    let code = match q.code.as_deref().unwrap_or("unavailable") {
        "overloaded" => ErrorCode::Overloaded,
        "unavailable" => ErrorCode::Unavailable,
        "provider_error" => ErrorCode::ProviderError,
        other => {
            return Err(ErrorInfo::invalid(
                "code",
                format!("code: must be overloaded, unavailable or provider_error, got {other:?}"),
            )
            .into())
        }
    };
    let n = q.n.unwrap_or(1).clamp(1, 1_000_000);
    state.router.inject_refusals(&model, n, code)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"model": model, "refuse": n, "code": code.as_str()})),
    ))
}

/// Sets a model's lasting faults from a JSON body: `delay_ms` (each event held back),
/// `error_rate` (a share of requests answered with a provider error), `cut_after_events` (the
/// next stream served to a peer is cut); `{}` clears them. Only with `debug.fault_injection`.
pub async fn fault(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    let settings: golek_actors::FaultSettings = serde_json::from_slice(&body)
        .map_err(|e| ErrorInfo::invalid("body", format!("fault settings: {e}")))?;
    state.router.set_faults(&model, settings)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "model": model,
            "delay_ms": settings.delay_ms,
            "error_rate": settings.error_rate,
            "cut_after_events": settings.cut_after_events,
        })),
    ))
}

/// Every target's outcome breaker (models here, peers), the retry budget and the policies.
pub async fn reliability(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.router.reliability().report())
}

/// Makes the cluster's gossip round panic once. Only with `debug.fault_injection`.
pub async fn panic_publisher(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    let Some(cluster) = state.router.cluster() else {
        return Err(ErrorInfo::new(ErrorCode::NotFound, "this node is not in a cluster").into());
    };
    cluster.faults.crash_next_batch();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"actor": "publisher", "panic": "armed"})),
    ))
}

/// Holds back each model file chunk this node sends by `delay_ms` (a slow sender; `0` clears
/// it). Only with `debug.fault_injection`.
pub async fn slow_model_files(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Slow {
        delay_ms: u64,
    }
    let slow: Slow = serde_json::from_slice(&body)
        .map_err(|e| ErrorInfo::invalid("body", format!("expected {{\"delay_ms\": N}}: {e}")))?;
    let Some(cluster) = state.router.cluster() else {
        return Err(ErrorInfo::new(ErrorCode::NotFound, "this node is not in a cluster").into());
    };
    cluster.faults.set_delay_ms(slow.delay_ms.min(60_000));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"model_files": "slow", "delay_ms": slow.delay_ms.min(60_000)})),
    ))
}

/// Makes a model's worker panic when it next takes work. Only with `debug.fault_injection`.
pub async fn crash(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    faults_enabled(&state)?;
    state.router.inject_crash(&model)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"model": model, "crash": "armed"})),
    ))
}

/// `POST /admin/drain`: the node drains and stops, as on SIGTERM (a rolling restart's step).
pub async fn admin_drain(State(state): State<AppState>) -> impl IntoResponse {
    let started = state.router.drain();
    (
        StatusCode::ACCEPTED,
        Json(json!({"draining": true, "started_now": started})),
    )
}

/// `GET /ui`: the dashboard, one page served by the node itself. It refreshes itself from the
/// admin routes (with the admin key given as `?key=` or typed in, when auth is on).
pub async fn ui() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::response::Html(include_str!("ui/index.html")),
    )
}
