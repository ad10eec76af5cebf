//! `/admin/config`: the running configuration with the layer of each value and what waits for
//! a restart (`GET`); a change as a partial TOML or JSON document (`PUT`); a run-time value
//! removed (`DELETE /admin/config/{key}`); the file read again (`POST /admin/config/reload`).
//! A change is validated whole and refused whole (400, every bad field named).

use axum::extract::{Path, State};
use axum::Json;
use golek_actors::{ChangeRefused, ChangeReport, ConfigChange};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::Value;

use super::{ApiError, AppState};

pub async fn show(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let report = state.config_handle.report().await?.ok_or_else(|| {
        ErrorInfo::new(
            ErrorCode::Unavailable,
            "this node was started without its configuration layers",
        )
    })?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

pub async fn put(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ErrorInfo::invalid("body", "the change document is not UTF-8"))?;
    let document = golek_config::runtime::parse_document(text)
        .map_err(|e| ErrorInfo::invalid("body", e.to_string()))?;
    if document.is_empty() {
        return Err(ErrorInfo::invalid("body", "the change document sets no key").into());
    }
    answer(
        state
            .config_handle
            .change(ConfigChange::Set(document))
            .await?,
    )
}

pub async fn unset(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(
        state
            .config_handle
            .change(ConfigChange::Unset(vec![key]))
            .await?,
    )
}

pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    answer(state.config_handle.change(ConfigChange::ReloadFile).await?)
}

fn answer(outcome: Result<ChangeReport, ChangeRefused>) -> Result<Json<Value>, ApiError> {
    match outcome {
        Ok(report) => Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null))),
        Err(refused) => {
            let message = format!(
                "the change was refused and nothing of it applied: {}",
                refused.errors.join("; ")
            );
            Err(ErrorInfo::invalid("config", message).into())
        }
    }
}
