//! `POST /v1/embeddings`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use golek_protocol::inference::InferenceEvent;
use golek_protocol::openai::{
    EmbeddingData, EmbeddingObject, EmbeddingsRequestBody, EmbeddingsResponse, EncodingFormat,
    Usage,
};
use golek_protocol::{ErrorCode, ErrorInfo};

use super::{ApiError, AppState};
use crate::metrics as m;
use golek_protocol::validate;

/// Reads the body up to the configured limit; a larger body is a 413.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.config().http.max_body_bytes;
    let too_large = || {
        ApiError::from(ErrorInfo::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit} bytes (http.max_body_bytes)"),
        ))
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(err) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = e.source();
            }
            Err(ApiError::from(ErrorInfo::invalid(
                "body",
                format!("cannot read the request body: {err}"),
            )))
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let bytes = read_body(&state, &headers, body).await?;
    let valid = tracing::info_span!("validate").in_scope(|| {
        let body: EmbeddingsRequestBody = validate::parse_json(&bytes)?;
        Ok::<_, ApiError>(validate::embeddings(body)?)
    })?;
    let timeout = super::request_timeout(&state, &headers, valid.timeout_ms)?;
    let model = valid.model.clone();
    let started = Instant::now();
    let outcome = run(&state, valid, timeout, super::auth::tenant_of(&headers)).await;
    // Label by model only when it exists: clients cannot grow the label set.
    let label = if state.router.knows(&model) {
        model
    } else {
        "unknown".to_string()
    };
    let kind = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.info.code.as_str(),
    };
    metrics::counter!(m::MODEL_REQUESTS_TOTAL, "model" => label.clone(), "outcome" => kind)
        .increment(1);
    if let Err(e) = &outcome {
        metrics::counter!(m::MODEL_ERRORS_TOTAL, "model" => label.clone(), "type" => e.info.code.as_str())
            .increment(1);
    } else {
        metrics::histogram!(m::MODEL_REQUEST_DURATION_SECONDS, "model" => label)
            .record(started.elapsed().as_secs_f64());
    }
    outcome.map(|(body, by)| super::served_by(Json(body).into_response(), by.as_deref()))
}

async fn run(
    state: &AppState,
    valid: validate::ValidEmbeddings,
    timeout: std::time::Duration,
    tenant: Option<std::sync::Arc<str>>,
) -> Result<(EmbeddingsResponse, Option<String>), ApiError> {
    let entry = state.router.entry(&valid.model)?;
    if let (Some(wanted), Some(dims)) = (
        valid.dimensions,
        entry.info.as_ref().and_then(|i| i.embedding_dims),
    ) {
        if wanted as usize != dims {
            return Err(ErrorInfo::invalid(
                "dimensions",
                format!("dimensions: model {:?} returns {dims} dimensions and cannot shorten them, got {wanted}", valid.model),
            )
            .into());
        }
    }
    let (vectors, by) =
        match super::dispatch(state, &valid.model, valid.request, timeout, tenant).await? {
            (_, InferenceEvent::Embeddings(v), by) => (v, by),
            (_, other, _) => return Err(super::unexpected(&other).into()),
        };
    let prompt_tokens: u32 = vectors.iter().map(|v| v.tokens).sum();
    metrics::counter!(m::MODEL_INPUTS_TOTAL, "model" => valid.model.clone())
        .increment(vectors.len() as u64);
    metrics::counter!(m::MODEL_PROMPT_TOKENS_TOTAL, "model" => valid.model.clone())
        .increment(prompt_tokens as u64);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, e)| EmbeddingObject {
            object: "embedding".into(),
            index,
            embedding: encode(e.vector, valid.encoding_format),
        })
        .collect();
    let response = EmbeddingsResponse {
        object: "list".into(),
        data,
        model: valid.model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    Ok((response, by))
}

fn encode(vector: Vec<f32>, format: EncodingFormat) -> EmbeddingData {
    match format {
        EncodingFormat::Float => EmbeddingData::Float(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            EmbeddingData::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}
