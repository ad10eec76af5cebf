//! The plugins' hooks on the HTTP API's inference requests (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v2/models/*/infer`): request hooks before the
//! handler, chunk hooks on a streamed answer, response hooks on the answer, and `on_done` when
//! its last byte is out. With no plugin started a request passes untouched.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use golek_actors::plugins::{
    Answer, Chain, ChunkCall, Done, Hook, Refusal, RequestCall, RequestOutcome, ResponseCall,
};
use serde_json::{json, Value};

use super::{auth, AppState, SERVED_BY_HEADER};

/// The largest whole answer the response hooks read (answers are the node's own).
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Headers a plugin may not set: they frame the answer, or say who served it.
const KEPT_HEADERS: [&str; 6] = [
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    SERVED_BY_HEADER,
    "traceparent",
];

fn inference_path(path: &str) -> bool {
    matches!(
        path,
        "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings"
    ) || (path.starts_with("/v2/models/") && path.ends_with("/infer"))
}

/// The model a request is for: its `model` field, or the KServe path's name.
fn model_of(path: &str, body: &Value) -> String {
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        return m.to_string();
    }
    path.strip_prefix("/v2/models/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_string()
}

pub async fn hooks(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let chain = state.plugins.chain.chain();
    if chain.is_empty() || request.method() != Method::POST || !inference_path(request.uri().path())
    {
        return next.run(request).await;
    }
    let began = Instant::now();
    let path = request.uri().path().to_string();
    let (mut parts, body) = request.into_parts();
    let bytes = match super::embeddings::read_body(&state, &parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // Not JSON: the handler says what is wrong with it; plugins see only JSON requests.
    let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let mut call = RequestCall {
        model: model_of(&path, &json),
        tenant: auth::tenant_of(&parts.headers).map(|t| t.to_string()),
        path,
        body: json,
    };
    let outcome = chain.on_request(&mut call);
    let (seen, response, answered) = match outcome {
        RequestOutcome::Continue { seen, rewritten } => {
            let body = match rewritten {
                true => Body::from(serde_json::to_vec(&call.body).unwrap_or_default()),
                false => Body::from(bytes),
            };
            parts.headers.remove(header::CONTENT_LENGTH);
            let response = next.run(Request::from_parts(parts, body)).await;
            (seen, response, false)
        }
        RequestOutcome::Refused { seen, refusal } => (seen, refused(&refusal), false),
        RequestOutcome::Answered { seen, answer } => (seen, answered_with(answer), true),
    };
    finish(chain, seen, call, response, began, answered).await
}

/// A plugin's refusal as an OpenAI-style error.
fn refused(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({"error": {
        "message": r.message,
        "type": "refused_by_plugin",
        "param": null,
        "code": r.plugin,
    }});
    (status, axum::Json(body)).into_response()
}

fn answered_with(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut response = (status, a.body).into_response();
    if let Ok(v) = HeaderValue::from_str(&a.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    add_headers(&mut response, a.headers);
    response
}

fn add_headers(response: &mut Response, headers: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if KEPT_HEADERS.contains(&lower.as_str()) {
            tracing::debug!(header = %name, "a plugin may not set this header");
            continue;
        }
        match (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                response.headers_mut().insert(n, v);
            }
            _ => tracing::debug!(header = %name, "a plugin's header is not valid HTTP"),
        }
    }
}

fn usage(v: &Value) -> (Option<u64>, Option<u64>) {
    let u = &v["usage"];
    (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64())
}

/// The response hooks, then `on_done`: at once for a whole answer, after the last chunk for a
/// stream (or when the client goes away).
async fn finish(
    chain: Arc<Chain>,
    seen: usize,
    call: RequestCall,
    response: Response,
    began: Instant,
    answered: bool,
) -> Response {
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get(SERVED_BY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let RequestCall {
        path,
        model,
        tenant,
        body: request,
    } = call;
    let mut rc = ResponseCall {
        path: path.clone(),
        model: model.clone(),
        tenant: tenant.clone(),
        status,
        served_by: served_by.clone(),
        stream,
        body: None,
        request: Some(request.clone()),
    };
    let mut done = Done {
        path,
        model,
        tenant,
        served_by,
        status,
        stream,
        latency_ms: 0,
        prompt_tokens: None,
        completion_tokens: None,
        answered_by_plugin: answered,
        request: Some(request),
        response: None,
    };
    if stream {
        let settled = match chain.on_response(seen, &mut rc) {
            Ok(s) => s,
            Err(refusal) => return refused(&refusal),
        };
        let (parts, body) = response.into_parts();
        let mut response =
            Response::from_parts(parts, streamed(body, chain, seen, rc, done, began));
        add_headers(&mut response, settled.headers);
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "the answer could not be read for the response hooks");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer could not be read",
            )
                .into_response();
        }
    };
    rc.body = serde_json::from_slice(&bytes).ok();
    let settled = match chain.on_response(seen, &mut rc) {
        Ok(s) => s,
        Err(refusal) => return refused(&refusal),
    };
    let out = match (&rc.body, settled.rewritten) {
        (Some(body), true) => Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        _ => bytes,
    };
    if let Some(body) = &rc.body {
        (done.prompt_tokens, done.completion_tokens) = usage(body);
    }
    done.response = rc.body;
    done.latency_ms = began.elapsed().as_millis() as u64;
    chain.on_done(seen, &done);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::from_parts(parts, Body::from(out));
    add_headers(&mut response, settled.headers);
    response
}

/// Calls `on_done` once, when the stream ends or is dropped.
struct DoneGuard {
    chain: Arc<Chain>,
    seen: usize,
    done: Done,
    began: Instant,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.done.latency_ms = self.began.elapsed().as_millis() as u64;
        self.chain.on_done(self.seen, &self.done);
    }
}

/// A streamed answer through the chunk hooks: SSE events in, each `data:` JSON object through
/// the hooks, out again. Usage in a chunk is noted for `on_done`.
fn streamed(
    body: Body,
    chain: Arc<Chain>,
    seen: usize,
    rc: ResponseCall,
    done: Done,
    began: Instant,
) -> Body {
    use eventsource_stream::Eventsource;
    let chunks = chain.wants(Hook::OnChunk);
    let mut guard = DoneGuard {
        chain,
        seen,
        done,
        began,
    };
    let events = body.into_data_stream().eventsource().map(move |event| {
        let event = match event {
            Ok(e) => e,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        let data = event.data;
        if data == "[DONE]" || !(chunks || data.contains("\"usage\"")) {
            return Ok(Bytes::from(format!("data: {data}\n\n")));
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            return Ok(Bytes::from(format!("data: {data}\n\n")));
        };
        if let (Some(p), Some(c)) = usage(&chunk) {
            guard.done.prompt_tokens = Some(p);
            guard.done.completion_tokens = Some(c);
        }
        if !chunks {
            return Ok(Bytes::from(format!("data: {data}\n\n")));
        }
        let mut call = ChunkCall {
            model: rc.model.clone(),
            tenant: rc.tenant.clone(),
            chunk,
        };
        match guard.chain.on_chunk(guard.seen, &mut call) {
            Ok(true) => Ok(Bytes::from(format!(
                "data: {}\n\n",
                serde_json::to_string(&call.chunk).unwrap_or(data)
            ))),
            Ok(false) => Ok(Bytes::from(format!("data: {data}\n\n"))),
            // A fail-closed chunk hook that fails puts an error event in the chunk's place.
            Err(refusal) => Ok(Bytes::from(format!(
                "data: {}\n\n",
                json!({"error": {"message": refusal.message, "type": "refused_by_plugin", "code": refusal.plugin}})
            ))),
        }
    });
    Body::from_stream(events)
}
