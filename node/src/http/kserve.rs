//! The KServe v2 (Triton-compatible) HTTP API: health, server and model metadata, readiness and
//! inference with JSON tensors or the binary tensor data extension. Errors use the KServe body `{"error": "..."}` and name the
//! tensor at fault.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use golek_actors::{ModelEntry, ModelState};
use golek_protocol::inference::{InferenceEvent, InferenceRequest, TensorRequest};
use golek_protocol::kserve::{self, InferBody, InferResponse};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use super::embeddings::read_body;
use super::{ApiError, AppState};
use golek_protocol::validate;

/// A KServe error answer.
pub struct KserveError(ApiError);

impl From<ApiError> for KserveError {
    fn from(e: ApiError) -> Self {
        KserveError(e)
    }
}

impl From<ErrorInfo> for KserveError {
    fn from(e: ErrorInfo) -> Self {
        KserveError(ApiError::from(e))
    }
}

impl IntoResponse for KserveError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.info.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({"error": self.0.info.message}))).into_response()
    }
}

type KResult<T> = Result<T, KserveError>;

pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.router.table().all_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready})))
}

pub async fn server_metadata() -> Json<Value> {
    Json(
        json!({"name": "golek", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

/// The model, if it exists and can take tensors. KServe versions are accepted as "1" only.
fn tensor_model(state: &AppState, name: &str, version: Option<&str>) -> KResult<ModelEntry> {
    let entry = state.router.entry(name)?;
    if let Some(v) = version {
        if v != "1" {
            return Err(ErrorInfo::new(
                ErrorCode::NotFound,
                format!("model {name:?} has no version {v:?} (only \"1\")"),
            )
            .into());
        }
    }
    if entry.info.as_ref().is_some_and(|i| !i.capabilities.tensors) {
        return Err(ErrorInfo::new(
            ErrorCode::NotFound,
            format!(
                "model {name:?} ({}) is not a tensor model; use the OpenAI API (/v1)",
                entry.provider
            ),
        )
        .into());
    }
    Ok(entry)
}

fn metadata(entry: &ModelEntry) -> Value {
    let specs = |list: &[golek_providers::TensorSpec]| {
        list.iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect::<Vec<_>>()
    };
    let (inputs, outputs) = entry
        .info
        .as_ref()
        .map(|i| (specs(&i.inputs), specs(&i.outputs)))
        .unwrap_or_default();
    json!({
        "name": entry.name,
        "versions": ["1"],
        "platform": if entry.provider == "onnx" { "onnxruntime_onnx" } else { entry.provider.as_str() },
        "inputs": inputs,
        "outputs": outputs,
    })
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> KResult<Json<Value>> {
    Ok(Json(metadata(&tensor_model(&state, &name, None)?)))
}

pub async fn model_version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> KResult<Json<Value>> {
    Ok(Json(metadata(&tensor_model(
        &state,
        &name,
        Some(&version),
    )?)))
}

fn readiness(entry: &ModelEntry) -> (StatusCode, Json<Value>) {
    let ready = entry.state == ModelState::Ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"name": entry.name, "ready": ready})))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> KResult<(StatusCode, Json<Value>)> {
    Ok(readiness(&tensor_model(&state, &name, None)?))
}

pub async fn model_version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> KResult<(StatusCode, Json<Value>)> {
    Ok(readiness(&tensor_model(&state, &name, Some(&version))?))
}

async fn infer_model(
    state: AppState,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Response> {
    let entry = tensor_model(&state, &name, version.as_deref())?;
    let bytes = read_body(&state, &headers, body).await?;
    let header_length = headers
        .get(kserve::HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let (json_part, mut binary) = kserve::split_body(&bytes, header_length)?;
    let mut body: InferBody = validate::parse_json(json_part)?;
    if body.inputs.is_empty() {
        return Err(
            ErrorInfo::invalid("inputs", "inputs: at least one input tensor is required").into(),
        );
    }
    // The inputs are consumed; the rest of the body says how the outputs are wanted.
    let inputs = std::mem::take(&mut body.inputs)
        .into_iter()
        .map(|t| kserve::decode_input(t, &mut binary))
        .collect::<Result<Vec<_>, _>>()?;
    if !binary.is_empty() {
        return Err(ErrorInfo::invalid(
            "inputs",
            format!(
                "{} bytes of binary data follow the inputs that no input's binary_data_size covers",
                binary.len()
            ),
        )
        .into());
    }
    let outputs = body
        .outputs
        .iter()
        .flatten()
        .map(|o| o.name.clone())
        .collect();
    let request = InferenceRequest::Tensors(TensorRequest { inputs, outputs });
    let timeout = super::request_timeout(&state, &headers, None)?;
    let (tensors, by) = match super::dispatch(
        &state,
        &entry.name,
        request,
        timeout,
        super::auth::tenant_of(&headers),
    )
    .await?
    {
        (_, InferenceEvent::Tensors(t), by) => (t, by),
        (_, other, _) => return Err(super::unexpected(&other).into()),
    };
    let mut trailer = Vec::new();
    let outputs = tensors
        .iter()
        .map(|t| {
            if body.wants_binary(&t.name) {
                let (described, data) = kserve::to_binary(t);
                trailer.extend(data);
                described
            } else {
                kserve::to_json(t)
            }
        })
        .collect();
    let response = InferResponse {
        model_name: entry.name,
        model_version: Some("1".into()),
        id: body.id,
        outputs,
    };
    if trailer.is_empty() {
        return Ok(super::served_by(
            Json(response).into_response(),
            by.as_deref(),
        ));
    }
    // The binary tensor data extension: the JSON header, then the outputs' bytes.
    let mut out = serde_json::to_vec(&response)
        .map_err(|e| ErrorInfo::new(ErrorCode::Internal, format!("encoding the response: {e}")))?;
    let header_len = out.len();
    out.extend(trailer);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                HeaderName::from_static(kserve::HEADER_LENGTH),
                header_len.to_string(),
            ),
        ],
        out,
    )
        .into_response())
    .map(|r| super::served_by(r, by.as_deref()))
}

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Response> {
    infer_model(state, name, None, headers, body).await
}

pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Response> {
    infer_model(state, name, Some(version), headers, body).await
}
