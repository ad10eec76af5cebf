//! `/admin/plugins`: what runs (`GET`), a WebAssembly plugin uploaded into the plugin folder
//! (`POST /admin/plugins?name=NAME`, the `.wasm` file as the body; it survives a restart, and
//! plugins are per node), and one unloaded (`DELETE /admin/plugins/{name}`, which removes its
//! file).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use golek_protocol::{ErrorCode, ErrorInfo};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};

pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let listing = state.plugins.list().await.ok_or_else(unavailable)?;
    Ok(Json(listing).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let listing = state.plugins.list().await.ok_or_else(unavailable)?;
    let found = listing.plugins.into_iter().find(|p| p.name == name);
    match found {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::from(ErrorInfo::new(
            ErrorCode::NotFound,
            format!("there is no plugin {name:?}"),
        ))),
    }
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

pub async fn upload(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = query.name.ok_or_else(|| {
        ApiError::from(ErrorInfo::invalid(
            "name",
            "name: the plugin's name is missing (POST /admin/plugins?name=NAME with the .wasm file as the body)",
        ))
    })?;
    if body.is_empty() {
        return Err(ApiError::from(ErrorInfo::invalid(
            "body",
            "the body is empty: send the plugin's .wasm file",
        )));
    }
    match state.plugins.upload(name.clone(), body.to_vec()).await {
        Ok(status) => Ok((StatusCode::CREATED, Json(status)).into_response()),
        Err(e) => Err(ApiError::from(ErrorInfo::new(
            ErrorCode::InvalidRequest,
            format!("plugin {name:?} was not loaded: {e}"),
        ))),
    }
}

pub async fn unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match state.plugins.remove(name.clone()).await {
        Ok(()) => Ok(Json(json!({"unloaded": name})).into_response()),
        Err(e) if e.starts_with("there is no plugin") => {
            Err(ApiError::from(ErrorInfo::new(ErrorCode::NotFound, e)))
        }
        Err(e) => Err(ApiError::from(ErrorInfo::new(ErrorCode::InvalidRequest, e))),
    }
}

fn unavailable() -> ApiError {
    ApiError::from(ErrorInfo::new(
        ErrorCode::Unavailable,
        "the PluginManager did not answer",
    ))
}
