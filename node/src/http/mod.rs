//! The HTTP API: OpenAI-compatible `/v1`, health, metrics and admin.

mod auth;
mod choices;
mod config;
mod deployments;
mod embeddings;
mod error;
mod generate;
mod keys;
mod kserve;
mod models;
mod ops;
mod plugin_admin;
mod plugins;
pub mod trace;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use golek_actors::RouterHandle;
use golek_config::NodeConfig;
use golek_protocol::{ErrorCode, ErrorInfo};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub node_id: String,
    /// The configuration as it is now (hot keys change while the node runs).
    pub config: tokio::sync::watch::Receiver<Arc<NodeConfig>>,
    /// Changes and shows the configuration (`/admin/config`).
    pub config_handle: golek_actors::ConfigHandle,
    pub router: RouterHandle,
    /// Reads the supervision tree (`/admin/actors`).
    pub inspector: golek_actors::Inspector,
    /// API keys (`/admin/keys`).
    pub keys: golek_actors::tenants::KeyStore,
    /// Run-time deployments (`/admin/deployments`).
    pub placement: golek_actors::placement::PlacementHandle,
    /// The plugins' chain (request and response hooks) and their manager (`/admin/plugins`).
    pub plugins: golek_actors::plugins::PluginsHandle,
    pub prometheus: PrometheusHandle,
}

impl AppState {
    /// The configuration now: a cheap copy of a pointer, taken once per use.
    pub fn config(&self) -> Arc<NodeConfig> {
        self.config.borrow().clone()
    }
}

/// Routes a validated request to `model` and waits (up to the request timeout) for its first
/// event. Every failure on the way becomes its answer: 404/400/429/503 from the router, 504 on
/// timeout, 503 when the worker died before answering, the provider's own error otherwise.
pub async fn dispatch(
    state: &AppState,
    model: &str,
    request: golek_protocol::inference::InferenceRequest,
    timeout: std::time::Duration,
    tenant: Option<std::sync::Arc<str>>,
) -> Result<
    (
        golek_actors::EventRx,
        golek_protocol::inference::InferenceEvent,
        Option<String>,
    ),
    ApiError,
> {
    use golek_protocol::inference::InferenceEvent::Served;
    let retry_after = state.router.retry_after_s();
    let mut events = state
        .router
        .submit_as(model, request, timeout, tenant)
        .map_err(|e| ApiError::from(e).retry_after(retry_after))?;
    // Who serves it comes first (again if a retry moved it); then the answer's first event.
    let mut by = None;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(timeout, events.recv()) => next,
            () = state.router.worker_lost(model) => {
                return Err(ApiError::from(ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!("model {model:?} stopped before answering (its worker hung and is being replaced)"),
                ))
                .retry_after(retry_after));
            }
        };
        match next {
            Err(_) => return Err(timeout_error(timeout).into()),
            Ok(None) => {
                return Err(ApiError::from(ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!("model {model:?} stopped before answering (its worker is restarting)"),
                ))
                .retry_after(retry_after))
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(Served {
                node,
                model: served,
            }))) => by = Some(format!("{node}/{served}")),
            Ok(Some(Ok(event))) => return Ok((events, event, by)),
        }
    }
}

/// The header naming the node and model that served an answer (`node/model`).
pub const SERVED_BY_HEADER: &str = "x-golek-served-by";

/// Adds `x-golek-served-by` to a response, when known.
pub fn served_by(
    mut response: axum::response::Response,
    by: Option<&str>,
) -> axum::response::Response {
    if let Some(value) = by.and_then(|b| axum::http::HeaderValue::from_str(b).ok()) {
        response.headers_mut().insert(SERVED_BY_HEADER, value);
    }
    response
}

/// The header a client sets to give its request a shorter deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-golek-timeout-ms";

/// The request's deadline: `x-golek-timeout-ms` when the client sends it, clamped to
/// `http.request_timeout_ms` (the node's maximum), which is also the default.
pub fn request_timeout(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    body_ms: Option<u64>,
) -> Result<std::time::Duration, ApiError> {
    let Some(raw) = headers.get(TIMEOUT_HEADER) else {
        return Ok(body_ms.map_or(state.router.max_timeout(), |ms| {
            state.router.clamp_timeout(ms)
        }));
    };
    let ms = raw
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            ErrorInfo::invalid(
                TIMEOUT_HEADER,
                format!(
                    "{TIMEOUT_HEADER}: must be a whole number of milliseconds above 0, got {raw:?}"
                ),
            )
        })?;
    Ok(state.router.clamp_timeout(ms))
}

/// The 504 answer for a request past `http.request_timeout_ms`.
pub fn timeout_error(timeout: std::time::Duration) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::Timeout,
        format!(
            "the request did not finish within {} ms (http.request_timeout_ms)",
            timeout.as_millis()
        ),
    )
}

/// The answer for a provider event that does not fit the request (a bug, not a client error).
pub fn unexpected(event: &golek_protocol::inference::InferenceEvent) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::Internal,
        format!("unexpected event from the provider: {event:?}"),
    )
}

/// The HTTP API as an axum router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/completions", post(generate::completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get_one))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{name}", get(kserve::model_metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready))
        .route("/v2/models/{name}/infer", post(kserve::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(kserve::model_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(kserve::model_version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(kserve::infer_version),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/ui", get(ops::ui))
        .route("/metrics", get(ops::metrics))
        .route("/admin/models", get(ops::admin_models))
        .route("/admin/cluster", get(ops::admin_cluster))
        .route("/admin/drain", post(ops::admin_drain))
        .route("/admin/actors", get(ops::admin_actors))
        .route("/admin/reliability", get(ops::reliability))
        .route("/admin/config", get(config::show).put(config::put))
        .route("/admin/config/reload", post(config::reload))
        .route("/admin/config/{*key}", axum::routing::delete(config::unset))
        .route("/admin/keys", get(keys::list).post(keys::create))
        .route(
            "/admin/deployments",
            get(deployments::list).post(deployments::deploy),
        )
        .route("/admin/models/pull", post(deployments::pull))
        .route("/admin/models/pulls", get(deployments::pulls))
        .route("/admin/models/gc", post(deployments::gc))
        .route(
            "/admin/deployments/{name}",
            get(deployments::show).delete(deployments::undeploy),
        )
        .route("/admin/keys/{id}", axum::routing::delete(keys::revoke))
        .route(
            "/admin/plugins",
            get(plugin_admin::list).post(plugin_admin::upload).layer(
                axum::extract::DefaultBodyLimit::max(golek_actors::plugins::wasm::MAX_MODULE_BYTES),
            ),
        )
        .route(
            "/admin/plugins/{name}",
            get(plugin_admin::show).delete(plugin_admin::unload),
        )
        .route("/admin/debug/crash/{model}", post(ops::crash))
        .route("/admin/debug/hang/{model}", post(ops::hang))
        .route("/admin/debug/refuse/{model}", post(ops::refuse))
        .route("/admin/debug/fault/{model}", post(ops::fault))
        .route("/admin/debug/panic/publisher", post(ops::panic_publisher))
        .route("/admin/debug/slow/model-files", post(ops::slow_model_files))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Plugins see a request once it is authenticated (its tenant known).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            plugins::hooks,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn(trace::traced))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::from(ErrorInfo::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::from(ErrorInfo::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    ))
}
