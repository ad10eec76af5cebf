//! `POST /v1/chat/completions` and `POST /v1/completions`, as JSON or as Server-Sent Events.
//!
//! The first event is awaited before answering, so a request the model refuses (prompt too long
//! for the context, say) gets a plain 400 even when streaming was asked for. A client that
//! disconnects drops the event receiver, and the worker frees the sequence's slot.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use golek_protocol::inference::{FinishReason, InferenceEvent, InferenceRequest};
use golek_protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, Completion, CompletionChoice, CompletionUsage,
    ErrorBody, GenerationRequestBody,
};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::json;

use super::embeddings::read_body;
use super::{ApiError, AppState};
use crate::metrics as m;
use crate::validate;

type EventRx = golek_actors::EventRx;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

pub async fn chat(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(state, headers, body, Kind::Chat).await
}

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, headers, body, Kind::Completion).await
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(state: AppState, headers: HeaderMap, body: Body, kind: Kind) -> Response {
    let started = Instant::now();
    let outcome = run(&state, headers, body, kind).await;
    let (label, result) = match outcome {
        Ok((model, response)) => ((model, "ok"), Ok(response)),
        Err((model, e)) => ((model, e.info.code.as_str()), Err(e)),
    };
    let (model, kind_label) = label;
    let model = if state.router.knows(&model) {
        model
    } else {
        "unknown".into()
    };
    metrics::counter!(m::MODEL_REQUESTS_TOTAL, "model" => model.clone(), "outcome" => kind_label)
        .increment(1);
    match result {
        Ok(response) => {
            metrics::histogram!(m::MODEL_REQUEST_DURATION_SECONDS, "model" => model)
                .record(started.elapsed().as_secs_f64());
            response
        }
        Err(e) => {
            metrics::counter!(m::MODEL_ERRORS_TOTAL, "model" => model, "type" => kind_label)
                .increment(1);
            e.into_response()
        }
    }
}

async fn run(
    state: &AppState,
    headers: HeaderMap,
    body: Body,
    kind: Kind,
) -> Result<(String, Response), (String, ApiError)> {
    let fail = |model: &str, e: ApiError| (model.to_string(), e);
    let bytes = read_body(state, &headers, body)
        .await
        .map_err(|e| fail("", e))?;
    let body: GenerationRequestBody =
        validate::parse_json(&bytes).map_err(|e| fail("", e.into()))?;
    let valid = validate::generation(body, kind == Kind::Chat).map_err(|e| fail("", e.into()))?;
    let model = valid.model.clone();
    let entry = state
        .router
        .entry(&model)
        .map_err(|e| fail(&model, e.into()))?;
    if let (Some(wanted), Some(context)) = (
        valid.request.max_tokens,
        entry.info.as_ref().and_then(|i| i.context_tokens),
    ) {
        if wanted as usize >= context {
            let param = "max_tokens";
            return Err(fail(
                &model,
                ErrorInfo::invalid(param, format!("{param}: must be below the model's context of {context} tokens per sequence, got {wanted}")).into(),
            ));
        }
    }
    let timeout = state.config.http.request_timeout;
    let (mut events, prompt_tokens) =
        match super::dispatch(state, &model, InferenceRequest::Generate(valid.request)).await {
            Ok((events, InferenceEvent::Started { prompt_tokens })) => (events, prompt_tokens),
            Ok((_, other)) => return Err(fail(&model, super::unexpected(&other).into())),
            Err(e) => return Err(fail(&model, e)),
        };
    let id = match kind {
        Kind::Chat => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        Kind::Completion => format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
    };
    let meta = Meta {
        id,
        created: now_unix_s(),
        model: model.clone(),
        kind,
    };
    if valid.stream {
        let stream = SseStream {
            rx: events,
            meta,
            include_usage: valid.include_usage,
            pending: std::collections::VecDeque::new(),
            done: false,
            prompt_tokens,
            sent_role: false,
        };
        let mut response = Body::from_stream(stream).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok((model, response));
    }
    let collected = tokio::time::timeout(timeout, async {
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event? {
                InferenceEvent::Text { text: t, .. } => text.push_str(&t),
                InferenceEvent::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    return Ok((text, reason, prompt_tokens, completion_tokens));
                }
                _ => {}
            }
        }
        Err(ErrorInfo::new(
            ErrorCode::Unavailable,
            format!("model {model:?} stopped before finishing (its worker is restarting)"),
        ))
    })
    .await
    .map_err(|_| fail(&model, super::timeout_error(timeout).into()))?
    .map_err(|e| fail(&model, ApiError::from(e)))?;
    let (text, reason, prompt_tokens, completion_tokens) = collected;
    let usage = CompletionUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let response = match kind {
        Kind::Chat => Json(ChatCompletion {
            id: meta.id,
            object: "chat.completion".into(),
            created: meta.created,
            model: meta.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: text,
                },
                finish_reason: Some(finish_reason(reason).into()),
                logprobs: None,
            }],
            usage,
        })
        .into_response(),
        Kind::Completion => Json(Completion {
            id: meta.id,
            object: "text_completion".into(),
            created: meta.created,
            model: meta.model,
            choices: vec![CompletionChoice {
                index: 0,
                text,
                finish_reason: Some(finish_reason(reason).into()),
                logprobs: None,
            }],
            usage,
        })
        .into_response(),
    };
    Ok((model, response))
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Meta {
    /// One chunk in the OpenAI format for this request's kind.
    fn chunk(
        &self,
        text: Option<&str>,
        role: bool,
        finish: Option<FinishReason>,
    ) -> serde_json::Value {
        let reason = finish.map(finish_reason);
        match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": null}],
                })
            }
            Kind::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": text.unwrap_or(""), "finish_reason": reason, "logprobs": null}],
            }),
        }
    }

    fn usage_chunk(&self, usage: &CompletionUsage) -> serde_json::Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [], "usage": usage})
    }
}

/// The SSE body: maps the request's events to `data:` lines, ending with `data: [DONE]`.
struct SseStream {
    rx: EventRx,
    meta: Meta,
    include_usage: bool,
    pending: std::collections::VecDeque<Bytes>,
    done: bool,
    prompt_tokens: u32,
    sent_role: bool,
}

fn data(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

impl SseStream {
    fn on_event(&mut self, event: Option<Result<InferenceEvent, ErrorInfo>>) {
        if !self.sent_role && self.meta.kind == Kind::Chat {
            self.sent_role = true;
            self.pending
                .push_back(data(&self.meta.chunk(Some(""), true, None)));
        }
        match event {
            Some(Ok(InferenceEvent::Text { text, .. })) => {
                self.pending
                    .push_back(data(&self.meta.chunk(Some(&text), false, None)));
                return;
            }
            Some(Ok(InferenceEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
            })) => {
                let text = (self.meta.kind == Kind::Completion).then_some("");
                self.pending
                    .push_back(data(&self.meta.chunk(text, false, Some(reason))));
                if self.include_usage {
                    let usage = CompletionUsage {
                        prompt_tokens,
                        completion_tokens,
                        total_tokens: prompt_tokens + completion_tokens,
                    };
                    self.pending.push_back(data(&self.meta.usage_chunk(&usage)));
                }
            }
            Some(Ok(_)) => return,
            Some(Err(e)) => self.pending.push_back(data(
                &serde_json::to_value(ErrorBody::from(&e)).unwrap_or_default(),
            )),
            None => {
                let e = ErrorInfo::new(
                    ErrorCode::Unavailable,
                    format!(
                        "model {:?} stopped before finishing (prompt had {} tokens)",
                        self.meta.model, self.prompt_tokens
                    ),
                );
                self.pending.push_back(data(
                    &serde_json::to_value(ErrorBody::from(&e)).unwrap_or_default(),
                ));
            }
        }
        self.pending
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }
}

impl futures_core::Stream for SseStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Everything already produced goes out in one write: under load a step's tokens for
        // one stream are coalesced instead of costing a write each.
        while !self.done {
            match self.rx.poll_recv(cx) {
                Poll::Pending => break,
                Poll::Ready(event) => self.on_event(event),
            }
        }
        if self.pending.is_empty() {
            return if self.done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.pending.pop_front() {
            out.extend_from_slice(&chunk);
        }
        Poll::Ready(Some(Ok(out.freeze())))
    }
}
