//! `/admin/keys`: make a key for a tenant (its secret is in this answer only), list keys
//! (never a secret), revoke one. Each change is stored before it is answered and reaches the
//! other nodes by gossip.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use golek_actors::tenants::{KeyRecord, TenantLimits};
use golek_protocol::ErrorInfo;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    tenant: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    tpm: Option<u32>,
    #[serde(default)]
    max_concurrency: Option<u32>,
}

fn shown(r: &KeyRecord) -> Value {
    json!({
        "id": r.id, "tenant": r.tenant, "admin": r.admin,
        "rpm": r.limits.rpm, "tpm": r.limits.tpm, "max_concurrency": r.limits.max_concurrency,
        "created_unix_ms": r.created_unix_ms, "revoked": r.revoked_unix_ms.is_some(),
        "revoked_unix_ms": r.revoked_unix_ms,
    })
}

pub async fn create(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: CreateKey = serde_json::from_slice(&body)
        .map_err(|e| ErrorInfo::invalid("body", format!("key request: {e}")))?;
    let limits = TenantLimits {
        rpm: body.rpm,
        tpm: body.tpm,
        max_concurrency: body.max_concurrency,
    };
    let (secret, record) = state.keys.create(&body.tenant, body.admin, limits).await?;
    let mut answer = shown(&record);
    answer["key"] = secret.into();
    Ok((StatusCode::CREATED, Json(answer)))
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let keys: Vec<Value> = state.keys.tenants.list().iter().map(shown).collect();
    Json(json!({ "keys": keys }))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.keys.revoke(&id).await?;
    Ok(Json(shown(&record)))
}
