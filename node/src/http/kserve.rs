//! The KServe v2 (Triton-compatible) HTTP API: health, server and model metadata, readiness and
//! inference with JSON tensors. Errors use the KServe body `{"error": "..."}` and name the
//! tensor at fault.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use golek_actors::{ModelEntry, ModelState};
use golek_protocol::inference::{
    InferenceEvent, InferenceRequest, NamedTensor, TensorData, TensorRequest,
};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use super::embeddings::read_body;
use super::{ApiError, AppState};
use crate::validate;

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
    Json(json!({"name": "golek", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
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

#[derive(Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct InferOutput {
    name: String,
}

#[derive(Deserialize)]
struct InferBody {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<InferOutput>>,
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

fn bad(name: &str, message: String) -> ErrorInfo {
    ErrorInfo::invalid(
        format!("inputs.{name}"),
        format!("input {name:?}: {message}"),
    )
}

/// Converts one JSON tensor, checking its datatype, element values and element count.
fn tensor(input: InferInput) -> Result<NamedTensor, ErrorInfo> {
    let name = input.name;
    let shape = input
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                bad(
                    &name,
                    format!("shape {:?} has a negative dimension", input.shape),
                )
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut flat = Vec::new();
    flatten(&input.data, &mut flat);
    let expected: usize = shape.iter().product();
    if flat.len() != expected {
        return Err(bad(
            &name,
            format!(
                "shape {shape:?} needs {expected} elements, got {}",
                flat.len()
            ),
        ));
    }
    fn ints<T: TryFrom<i64> + TryFrom<u64>>(
        flat: &[&Value],
        name: &str,
        dt: &str,
    ) -> Result<Vec<T>, ErrorInfo> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| {
                let as_i = v.as_i64().and_then(|x| T::try_from(x).ok());
                let as_u = || v.as_u64().and_then(|x| T::try_from(x).ok());
                as_i.or_else(as_u)
                    .ok_or_else(|| bad(name, format!("element {i} ({v}) is not a valid {dt}")))
            })
            .collect()
    }
    fn floats(flat: &[&Value], name: &str, dt: &str) -> Result<Vec<f64>, ErrorInfo> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .ok_or_else(|| bad(name, format!("element {i} ({v}) is not a valid {dt}")))
            })
            .collect()
    }
    let dt = input.datatype.as_str();
    let data = match dt {
        "FP32" => TensorData::F32(floats(&flat, &name, dt)?.into_iter().map(|x| x as f32).collect()),
        "FP64" => TensorData::F64(floats(&flat, &name, dt)?),
        "INT8" => TensorData::I8(ints(&flat, &name, dt)?),
        "INT16" => TensorData::I16(ints(&flat, &name, dt)?),
        "INT32" => TensorData::I32(ints(&flat, &name, dt)?),
        "INT64" => TensorData::I64(ints(&flat, &name, dt)?),
        "UINT8" => TensorData::U8(ints(&flat, &name, dt)?),
        "UINT16" => TensorData::U16(ints(&flat, &name, dt)?),
        "UINT32" => TensorData::U32(ints(&flat, &name, dt)?),
        "UINT64" => TensorData::U64(ints(&flat, &name, dt)?),
        "BOOL" => TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(&name, format!("element {i} ({v}) is not a BOOL"))))
                .collect::<Result<_, _>>()?,
        ),
        "FP16" | "BF16" | "BYTES" => {
            return Err(bad(&name, format!("datatype {dt} is not supported yet (FP32, FP64, INT8..INT64, UINT8..UINT64, BOOL are)")))
        }
        other => return Err(bad(&name, format!("unknown datatype {other:?}"))),
    };
    Ok(NamedTensor { name, shape, data })
}

fn json_data(data: &TensorData) -> Value {
    match data {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::I16(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::U16(v) => json!(v),
        TensorData::U32(v) => json!(v),
        TensorData::U64(v) => json!(v),
        TensorData::Bool(v) => json!(v),
    }
}

async fn infer_model(
    state: AppState,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Json<Value>> {
    let entry = tensor_model(&state, &name, version.as_deref())?;
    let bytes = read_body(&state, &headers, body).await?;
    let body: InferBody = validate::parse_json(&bytes)?;
    if body.inputs.is_empty() {
        return Err(
            ErrorInfo::invalid("inputs", "inputs: at least one input tensor is required").into(),
        );
    }
    let inputs = body
        .inputs
        .into_iter()
        .map(tensor)
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = body
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let request = InferenceRequest::Tensors(TensorRequest { inputs, outputs });
    let tensors = match super::dispatch(&state, &entry.name, request).await? {
        (_, InferenceEvent::Tensors(t)) => t,
        (_, other) => return Err(super::unexpected(&other).into()),
    };
    let outputs: Vec<Value> = tensors
        .iter()
        .map(|t| json!({"name": t.name, "datatype": t.data.datatype(), "shape": t.shape, "data": json_data(&t.data)}))
        .collect();
    let mut answer = json!({"model_name": entry.name, "model_version": "1", "outputs": outputs});
    if let Some(id) = body.id {
        answer["id"] = json!(id);
    }
    Ok(Json(answer))
}

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Json<Value>> {
    infer_model(state, name, None, headers, body).await
}

pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> KResult<Json<Value>> {
    infer_model(state, name, Some(version), headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(datatype: &str, shape: Vec<i64>, data: Value) -> InferInput {
        InferInput {
            name: "x".into(),
            shape,
            datatype: datatype.into(),
            data,
        }
    }

    #[test]
    fn json_tensors_convert_by_datatype_and_shape() {
        let t = tensor(input("INT64", vec![2, 2], json!([[1, 2], [3, 4]]))).unwrap();
        assert_eq!(t.data, TensorData::I64(vec![1, 2, 3, 4]));
        let t = tensor(input("FP32", vec![3], json!([0.5, 1, -2]))).unwrap();
        assert_eq!(t.data, TensorData::F32(vec![0.5, 1.0, -2.0]));
        let t = tensor(input("BOOL", vec![2], json!([true, false]))).unwrap();
        assert_eq!(t.data, TensorData::Bool(vec![true, false]));
        let t = tensor(input("UINT64", vec![1], json!([u64::MAX]))).unwrap();
        assert_eq!(t.data, TensorData::U64(vec![u64::MAX]));
        for (dt, shape, data, needle) in [
            (
                "INT64",
                vec![2, 2],
                json!([1, 2, 3]),
                "needs 4 elements, got 3",
            ),
            ("INT8", vec![1], json!([300]), "not a valid INT8"),
            ("UINT8", vec![1], json!([-1]), "not a valid UINT8"),
            ("FP32", vec![1], json!(["a"]), "not a valid FP32"),
            ("INT32", vec![-1], json!([]), "negative dimension"),
            ("BYTES", vec![1], json!(["a"]), "not supported yet"),
            ("FLOAT", vec![1], json!([1]), "unknown datatype"),
        ] {
            let err = tensor(input(dt, shape, data)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("inputs.x"));
            assert!(
                err.message.contains(needle) && err.message.contains("\"x\""),
                "{}",
                err.message
            );
        }
    }
}
