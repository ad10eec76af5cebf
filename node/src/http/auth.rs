//! Who is asking: API keys (`Authorization: Bearer <key>`), the tenant a request is for, and the
//! admin rules. Probes (`/healthz`, `/readyz`, `/metrics`, `/v2/health/*`) are always open;
//! admin routes answer only loopback clients unless auth is on or
//! `http.admin_from_anywhere = true`; with `auth.required` every other request needs a key.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use golek_actors::tenants::Principal;
use golek_protocol::{ErrorCode, ErrorInfo};

use super::{ApiError, AppState};

/// The tenant of an authenticated request, as the auth layer hands it to the handlers. Any
/// value a client sends under this name is removed first: only the node sets it.
pub const TENANT_HEADER: &str = "x-golek-tenant";

/// The tenant the auth layer found for a request.
pub fn tenant_of(headers: &HeaderMap) -> Option<Arc<str>> {
    headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(Arc::from)
}

fn deny(code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = ApiError::from(ErrorInfo::new(code, message)).into_response();
    if code == ErrorCode::Unauthorized {
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}

fn is_probe(path: &str) -> bool {
    // `/ui` is a static page: what it shows comes from the admin routes, with the key it is given.
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/ui") || path.starts_with("/v2/health")
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    request.headers_mut().remove(TENANT_HEADER);
    let path = request.uri().path().to_string();
    if is_probe(&path) {
        return next.run(request).await;
    }
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    let tenants = state.router.tenants();
    let principal: Option<Principal> = match request.headers().get("authorization") {
        None => None,
        Some(value) => {
            let secret = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match secret.and_then(|s| tenants.authenticate(s)) {
                Some(p) => Some(p),
                // With auth off an unknown key is no key: clients such as OpenAI's always
                // send one ("unused", "sk-..."), and the node serves anyone anyway.
                None if !state.config().auth.required => None,
                None => {
                    return deny(
                        ErrorCode::Unauthorized,
                        "the API key is not valid (unknown or revoked); send Authorization: Bearer <key>",
                    )
                }
            }
        }
    };
    let auth_on = state.config().auth.required;
    if path.starts_with("/admin") {
        match &principal {
            Some(p) if p.admin => {}
            Some(p) => {
                return deny(
                    ErrorCode::Forbidden,
                    format!(
                        "tenant {:?}'s key cannot use admin routes; use an admin key (golek key create --admin)",
                        p.tenant
                    ),
                )
            }
            // The first admin key is made from the node itself.
            None if auth_on && loopback && !tenants.has_admin_key() => {}
            None if auth_on => {
                return deny(
                    ErrorCode::Unauthorized,
                    "admin routes need an admin key: Authorization: Bearer <key>",
                )
            }
            None => {}
        }
        if !auth_on && !loopback && !state.config().http.admin_from_anywhere {
            return deny(
                ErrorCode::Forbidden,
                "admin routes answer only loopback clients (turn on [auth] or set http.admin_from_anywhere = true)",
            );
        }
    } else if auth_on && principal.is_none() {
        return deny(
            ErrorCode::Unauthorized,
            "this node requires an API key: send Authorization: Bearer <key>",
        );
    }
    if let Some(p) = &principal {
        if let Ok(v) = HeaderValue::from_str(&p.tenant) {
            request.headers_mut().insert(TENANT_HEADER, v);
        }
    }
    next.run(request).await
}
