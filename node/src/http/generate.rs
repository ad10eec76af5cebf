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
use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::openai::{CompletionUsage, ErrorBody, GenerationRequestBody};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::json;

use super::choices::{self, Choice, Chunks, Kind};
use super::embeddings::read_body;
use super::{ApiError, AppState};
use crate::metrics as m;
use golek_protocol::validate;

type EventRx = golek_actors::EventRx;

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
    let valid = tracing::info_span!("validate").in_scope(|| {
        let body: GenerationRequestBody =
            validate::parse_json(&bytes).map_err(|e| fail("", e.into()))?;
        validate::generation(body, kind == Kind::Chat).map_err(|e| fail("", e.into()))
    })?;
    let model = valid.model.clone();
    // The model's limits (max_tokens against its context) are the router's: every door.
    let timeout =
        super::request_timeout(state, &headers, valid.timeout_ms).map_err(|e| fail(&model, e))?;
    let n = valid.request.n;
    let wants_logprobs = valid.request.logprobs.is_some();
    let (mut events, mut prompt_tokens, mut cached_tokens, mut by) = match super::dispatch(
        state,
        &model,
        InferenceRequest::Generate(valid.request),
        timeout,
        super::auth::tenant_of(&headers),
    )
    .await
    {
        Ok((
            events,
            InferenceEvent::Started {
                prompt_tokens,
                cached_tokens,
            },
            by,
        )) => (events, prompt_tokens, cached_tokens, by),
        Ok((_, other, _)) => return Err(fail(&model, super::unexpected(&other).into())),
        Err(e) => return Err(fail(&model, e)),
    };
    let id = match kind {
        Kind::Chat => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        Kind::Completion => format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
    };
    let chunks = Chunks {
        id,
        created: now_unix_s(),
        model: model.clone(),
        kind,
        wants_logprobs,
        offsets: vec![0; n as usize],
        calls: vec![0; n as usize],
    };
    if valid.stream {
        let stream = SseStream {
            rx: events,
            chunks,
            include_usage: valid.include_usage,
            pending: std::collections::VecDeque::new(),
            done: false,
            prompt_tokens,
            cached_tokens,
            n,
            finished: 0,
            completion_tokens: 0,
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
        return Ok((model, super::served_by(response, by.as_deref())));
    }
    let collected = tokio::time::timeout(timeout, async {
        let mut choices: Vec<Choice> = (0..n).map(|_| Choice::default()).collect();
        let mut finished = 0;
        while let Some(event) = events.recv().await {
            let event = event?;
            match event {
                InferenceEvent::Text {
                    choice,
                    text,
                    logprobs,
                    ..
                } => {
                    if let Some(c) = choices.get_mut(choice as usize) {
                        c.text.push_str(&text);
                        c.logprobs.extend(logprobs);
                    }
                }
                InferenceEvent::ToolCall { choice, call } => {
                    if let Some(c) = choices.get_mut(choice as usize) {
                        c.calls.push(call);
                    }
                }
                InferenceEvent::Finished {
                    choice,
                    reason,
                    completion_tokens,
                    prompt_tokens: p,
                    cached_tokens: c,
                } => {
                    // A remote provider knows the prompt's size only at the end.
                    prompt_tokens = prompt_tokens.max(p);
                    cached_tokens = cached_tokens.max(c);
                    if let Some(c) = choices.get_mut(choice as usize) {
                        c.finish = Some(reason);
                        c.completion_tokens = completion_tokens;
                        finished += 1;
                    }
                    if finished == n {
                        return Ok(choices);
                    }
                }
                // A stream continued elsewhere: the node that finished it answers for it.
                InferenceEvent::Served { node, model } => by = Some(format!("{node}/{model}")),
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
    let completion_tokens = collected
        .iter()
        .fold(0u32, |a, c| a.saturating_add(c.completion_tokens));
    let usage = CompletionUsage::new(prompt_tokens, completion_tokens, cached_tokens);
    let object = match kind {
        Kind::Chat => "chat.completion",
        Kind::Completion => "text_completion",
    };
    let body = json!({
        "id": chunks.id, "object": object, "created": chunks.created, "model": chunks.model,
        "choices": choices::collected(kind, collected, wants_logprobs), "usage": usage,
        "golek": {"served_by": by},
    });
    Ok((
        model,
        super::served_by(Json(body).into_response(), by.as_deref()),
    ))
}

/// The SSE body: maps the request's events to `data:` lines, ending with `data: [DONE]`.
struct SseStream {
    rx: EventRx,
    chunks: Chunks,
    include_usage: bool,
    pending: std::collections::VecDeque<Bytes>,
    done: bool,
    prompt_tokens: u32,
    cached_tokens: u32,
    n: u32,
    finished: u32,
    completion_tokens: u32,
    sent_role: bool,
}

fn data(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

impl SseStream {
    fn on_event(&mut self, event: Option<Result<InferenceEvent, ErrorInfo>>) {
        if !self.sent_role && self.chunks.kind == Kind::Chat {
            self.sent_role = true;
            for choice in 0..self.n {
                self.pending.push_back(data(&self.chunks.role(choice)));
            }
        }
        match event {
            Some(Ok(InferenceEvent::Text {
                choice,
                text,
                logprobs,
                ..
            })) => {
                if !text.is_empty() || !logprobs.is_empty() {
                    let chunk = self.chunks.text(choice, &text, &logprobs);
                    self.pending.push_back(data(&chunk));
                }
                return;
            }
            Some(Ok(InferenceEvent::ToolCall { choice, call })) => {
                let chunk = self.chunks.tool_call(choice, &call);
                self.pending.push_back(data(&chunk));
                return;
            }
            Some(Ok(InferenceEvent::Finished {
                choice,
                reason,
                completion_tokens,
                prompt_tokens,
                cached_tokens,
            })) => {
                self.prompt_tokens = self.prompt_tokens.max(prompt_tokens);
                self.cached_tokens = self.cached_tokens.max(cached_tokens);
                self.pending
                    .push_back(data(&self.chunks.finish(choice, reason)));
                self.finished += 1;
                self.completion_tokens = self.completion_tokens.saturating_add(completion_tokens);
                if self.finished < self.n {
                    return;
                }
                if self.include_usage {
                    let usage = CompletionUsage::new(
                        self.prompt_tokens,
                        self.completion_tokens,
                        self.cached_tokens,
                    );
                    self.pending.push_back(data(&self.chunks.usage(&usage)));
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
                        self.chunks.model, self.prompt_tokens
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
