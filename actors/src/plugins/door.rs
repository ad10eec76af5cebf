//! The plugins' hooks on the QUIC client API (`golek-client/1`). Its requests arrive decoded
//! (an [`InferenceRequest`]), not as OpenAI JSON; the hooks see them in the shape of the HTTP
//! API's body (`messages`, `prompt`, `input`, sampling fields, `"stream": true`, since QUIC
//! answers are always streamed events) under the HTTP path of the same kind, so one plugin
//! serves both doors. What a request hook rewrites goes back into the request, which the router
//! then checks like any other. Generated text goes through the chunk hooks as OpenAI chunks
//! (`choices[].delta.content`), and `on_done` is called when the answer ends or the client goes.

use std::sync::Arc;
use std::time::Instant;

use golek_protocol::inference::{
    ChatMessage, Embedding, EmbeddingInput, FinishReason, GenerateRequest, InferenceEvent,
    InferenceRequest, Prompt,
};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Map, Value};

use super::{
    Answer, Chain, ChunkCall, Done, Hook, Refusal, RequestCall, RequestOutcome, ResponseCall,
};

/// What the request hooks decided for a QUIC client's request (made once per request, and
/// moved at once: the generation request stays inline, as in [`InferenceRequest`]).
#[allow(clippy::large_enum_variant)]
pub enum Admission {
    /// On to the router with this model and request; `exchange` follows the answer.
    Go {
        model: String,
        request: InferenceRequest,
        exchange: Option<Exchange>,
    },
    /// Refused (by a plugin, or a rewrite the request cannot take).
    Refused(ErrorInfo),
    /// A plugin answered: these events are the answer.
    Answered(Vec<InferenceEvent>),
}

/// The HTTP path whose body shape the hooks see for this request.
fn path_of(model: &str, request: &InferenceRequest) -> String {
    match request {
        InferenceRequest::Generate(g) => match g.prompt {
            Prompt::Chat(_) => "/v1/chat/completions".into(),
            Prompt::Text(_) => "/v1/completions".into(),
        },
        InferenceRequest::Embeddings(_) => "/v1/embeddings".into(),
        InferenceRequest::Tensors(_) => format!("/v2/models/{model}/infer"),
    }
}

/// The request as the HTTP API's JSON body (tensors: only the model; their data stays out).
pub fn view(model: &str, request: &InferenceRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    match request {
        InferenceRequest::Generate(g) => {
            match &g.prompt {
                Prompt::Chat(messages) => {
                    let messages = messages
                        .iter()
                        .map(|m| json!({"role": m.role, "content": m.content}))
                        .collect();
                    body.insert("messages".into(), Value::Array(messages));
                }
                Prompt::Text(t) => {
                    body.insert("prompt".into(), t.as_str().into());
                }
            }
            if let Some(n) = g.max_tokens {
                body.insert("max_tokens".into(), n.into());
            }
            body.insert("temperature".into(), json!(g.sampling.temperature));
            body.insert("top_p".into(), json!(g.sampling.top_p));
            if let Some(seed) = g.sampling.seed {
                body.insert("seed".into(), seed.into());
            }
            if !g.stop.is_empty() {
                body.insert("stop".into(), json!(g.stop));
            }
            body.insert("n".into(), g.n.into());
            body.insert("stream".into(), true.into());
        }
        InferenceRequest::Embeddings(e) => {
            let inputs = e
                .inputs
                .iter()
                .map(|i| match i {
                    EmbeddingInput::Text(t) => Value::from(t.as_str()),
                    EmbeddingInput::Tokens(ids) => json!(ids),
                })
                .collect();
            body.insert("input".into(), Value::Array(inputs));
        }
        InferenceRequest::Tensors(_) => {}
    }
    Value::Object(body)
}

fn bad(field: &str, what: &str) -> ErrorInfo {
    ErrorInfo::invalid(
        field,
        format!("{field}: a plugin's rewrite is not valid here ({what})"),
    )
}

fn number<T: TryFrom<u64>>(body: &Value, field: &str) -> Result<Option<T>, ErrorInfo> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(field, "expected a whole number in range")),
    }
}

fn float(body: &Value, field: &str) -> Result<Option<f32>, ErrorInfo> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| bad(field, "expected a number")),
    }
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, ErrorInfo> {
    v.as_str().ok_or_else(|| bad(field, "expected a string"))
}

/// Puts what a plugin rewrote in `body` (the shape [`view`] gives) back into `request`.
pub fn apply(body: &Value, request: &mut InferenceRequest) -> Result<(), ErrorInfo> {
    match request {
        InferenceRequest::Generate(g) => apply_generate(body, g),
        InferenceRequest::Embeddings(e) => {
            let Some(inputs) = body.get("input") else {
                return Ok(());
            };
            let one = |v: &Value, field: &str| match v {
                Value::String(s) => Ok(EmbeddingInput::Text(s.clone())),
                Value::Array(ids) => ids
                    .iter()
                    .map(|id| id.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .map(EmbeddingInput::Tokens)
                    .ok_or_else(|| bad(field, "expected token ids")),
                _ => Err(bad(field, "expected a string or token ids")),
            };
            e.inputs = match inputs {
                Value::Array(items) if items.iter().all(Value::is_string) || items.is_empty() => {
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| one(v, &format!("input[{i}]")))
                        .collect::<Result<_, _>>()?
                }
                Value::Array(items) if items.iter().all(Value::is_array) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| one(v, &format!("input[{i}]")))
                    .collect::<Result<_, _>>()?,
                other => vec![one(other, "input")?],
            };
            Ok(())
        }
        InferenceRequest::Tensors(_) => Ok(()),
    }
}

fn apply_generate(body: &Value, g: &mut GenerateRequest) -> Result<(), ErrorInfo> {
    match (&mut g.prompt, body.get("messages"), body.get("prompt")) {
        (Prompt::Chat(old), Some(messages), _) => {
            let messages = messages
                .as_array()
                .ok_or_else(|| bad("messages", "expected an array"))?;
            let mut new = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                let role = text(&m["role"], &format!("messages[{i}].role"))?;
                let content = match &m["content"] {
                    Value::Null => "",
                    c => text(c, &format!("messages[{i}].content"))?,
                };
                // A message left in its place keeps what the view does not show (tool calls).
                let mut message = match old.get(i) {
                    Some(o) if o.role == role => o.clone(),
                    _ => ChatMessage::new(role, ""),
                };
                message.content = content.to_string();
                new.push(message);
            }
            *old = new;
        }
        (Prompt::Text(old), _, Some(prompt)) => *old = text(prompt, "prompt")?.to_string(),
        _ => {}
    }
    if let Some(n) = number::<u32>(body, "max_tokens")? {
        g.max_tokens = Some(n);
    }
    if let Some(t) = float(body, "temperature")? {
        g.sampling.temperature = t;
    }
    if let Some(p) = float(body, "top_p")? {
        g.sampling.top_p = p;
    }
    if let Some(seed) = number::<u64>(body, "seed")? {
        g.sampling.seed = Some(seed);
    }
    if let Some(n) = number::<u32>(body, "n")? {
        g.n = n;
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => g.stop = vec![s.clone()],
        Some(Value::Array(items)) => {
            g.stop = items
                .iter()
                .enumerate()
                .map(|(i, s)| text(s, &format!("stop[{i}]")).map(str::to_string))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("stop", "expected a string or a list of strings")),
    }
    Ok(())
}

/// A plugin's refusal as the error a QUIC client gets (the status picks the code).
pub fn refusal_error(r: &Refusal) -> ErrorInfo {
    let code = match r.status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    ErrorInfo::new(
        code,
        format!("refused by plugin {:?}: {}", r.plugin, r.message),
    )
}

/// A plugin's whole answer (OpenAI JSON) as the events a QUIC client reads.
fn answer_events(answer: &Answer, generate: bool) -> Result<Vec<InferenceEvent>, ErrorInfo> {
    let unusable = |why: &str| {
        ErrorInfo::new(
            ErrorCode::Internal,
            format!("a plugin answered in a form the QUIC client API cannot carry: {why}"),
        )
    };
    if answer.status != 200 {
        return Err(unusable(&format!("status {}", answer.status)));
    }
    let body: Value = serde_json::from_slice(&answer.body).map_err(|_| unusable("not JSON"))?;
    let served = InferenceEvent::Served {
        node: "plugin".into(),
        model: body["model"].as_str().unwrap_or_default().to_string(),
    };
    let usage = |k: &str| {
        body["usage"][k]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    let mut events = vec![served];
    if !generate {
        let data = body["data"].as_array().ok_or_else(|| unusable("no data"))?;
        let mut out = Vec::with_capacity(data.len());
        for d in data {
            let vector = d["embedding"]
                .as_array()
                .and_then(|v| v.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
                .ok_or_else(|| unusable("an embedding is not a list of numbers"))?;
            out.push(Embedding { vector, tokens: 0 });
        }
        events.push(InferenceEvent::Embeddings(out));
        return Ok(events);
    }
    let choices = body["choices"]
        .as_array()
        .ok_or_else(|| unusable("no choices"))?;
    events.push(InferenceEvent::Started {
        prompt_tokens: usage("prompt_tokens"),
        cached_tokens: 0,
    });
    for (i, c) in choices.iter().enumerate() {
        let choice = u32::try_from(i).map_err(|_| unusable("too many choices"))?;
        let text = c["message"]["content"]
            .as_str()
            .or(c["text"].as_str())
            .unwrap_or_default();
        events.push(InferenceEvent::Text {
            choice,
            text: text.to_string(),
            token_ids: vec![],
            logprobs: vec![],
        });
        let reason = match c["finish_reason"].as_str() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        events.push(InferenceEvent::Finished {
            choice,
            reason,
            prompt_tokens: usage("prompt_tokens"),
            completion_tokens: usage("completion_tokens"),
            cached_tokens: 0,
        });
    }
    Ok(events)
}

/// The request hooks on a QUIC client's request.
pub fn admit(chain: Arc<Chain>, model: String, mut request: InferenceRequest) -> Admission {
    if chain.is_empty() {
        return Admission::Go {
            model,
            request,
            exchange: None,
        };
    }
    let began = Instant::now();
    let mut call = RequestCall {
        path: path_of(&model, &request),
        body: view(&model, &request),
        model,
        tenant: None,
    };
    let seen = match chain.on_request(&mut call) {
        RequestOutcome::Continue { seen, rewritten } => {
            if rewritten {
                if let Err(e) = apply(&call.body, &mut request) {
                    return Admission::Refused(e);
                }
            }
            seen
        }
        RequestOutcome::Refused { refusal, seen } => {
            // The plugins before the one that refused it hear how it ended (the audit log).
            let mut exchange = Exchange::new(chain, seen, call, began);
            exchange.done.status = refusal.status;
            return Admission::Refused(refusal_error(&refusal));
        }
        RequestOutcome::Answered { answer, seen } => {
            let generate = matches!(request, InferenceRequest::Generate(_));
            let events = answer_events(&answer, generate);
            let mut exchange = Exchange::new(chain, seen, call, began);
            exchange.done.answered_by_plugin = true;
            return match events {
                Ok(events) => {
                    exchange.done.status = 200;
                    Admission::Answered(events)
                }
                Err(e) => {
                    exchange.done.status = e.code.http_status();
                    Admission::Refused(e)
                }
            };
        }
    };
    let model = call.model.clone();
    let mut exchange = Exchange::new(chain, seen, call, began);
    // QUIC answers are streams: the response hooks run once, before the first event.
    let mut rc = exchange.response_call();
    if let Err(refusal) = exchange.chain.on_response(seen, &mut rc) {
        exchange.done.status = refusal.status;
        return Admission::Refused(refusal_error(&refusal));
    }
    Admission::Go {
        model,
        request,
        exchange: Some(exchange),
    }
}

/// One QUIC client exchange after its request hooks: the chunk hooks on its generated text,
/// and `on_done` once (when dropped).
pub struct Exchange {
    chain: Arc<Chain>,
    seen: usize,
    chunks: bool,
    done: Done,
    began: Instant,
}

impl Exchange {
    fn new(chain: Arc<Chain>, seen: usize, call: RequestCall, began: Instant) -> Self {
        let RequestCall {
            path,
            model,
            tenant,
            body,
        } = call;
        Exchange {
            chunks: chain.wants(Hook::OnChunk),
            chain,
            seen,
            began,
            done: Done {
                path,
                model,
                tenant,
                served_by: None,
                status: 200,
                stream: true,
                latency_ms: 0,
                prompt_tokens: None,
                completion_tokens: None,
                answered_by_plugin: false,
                request: Some(body),
                response: None,
            },
        }
    }

    fn response_call(&self) -> ResponseCall {
        ResponseCall {
            path: self.done.path.clone(),
            model: self.done.model.clone(),
            tenant: self.done.tenant.clone(),
            status: 200,
            served_by: None,
            stream: true,
            body: None,
            request: self.done.request.clone(),
        }
    }

    /// One event on its way to the client: generated text through the chunk hooks; usage and
    /// who served it noted for `on_done`. An error is what a fail-closed chunk hook left.
    pub fn on_event(&mut self, event: &mut InferenceEvent) -> Result<(), ErrorInfo> {
        match event {
            InferenceEvent::Served { node, model } => {
                self.done.served_by = Some(format!("{node}/{model}"));
            }
            InferenceEvent::Finished {
                prompt_tokens,
                completion_tokens,
                ..
            } => {
                self.done.prompt_tokens = Some(u64::from(*prompt_tokens));
                let before = self.done.completion_tokens.unwrap_or(0);
                // Each choice reports its own count; the exchange's is their sum.
                self.done.completion_tokens = Some(before + u64::from(*completion_tokens));
            }
            InferenceEvent::Text { choice, text, .. } if self.chunks => {
                let mut call = ChunkCall {
                    model: self.done.model.clone(),
                    tenant: self.done.tenant.clone(),
                    chunk: json!({
                        "object": "chat.completion.chunk",
                        "model": self.done.model,
                        "choices": [{"index": *choice, "delta": {"content": text.as_str()}}],
                    }),
                };
                match self.chain.on_chunk(self.seen, &mut call) {
                    Ok(false) => {}
                    Ok(true) => {
                        if let Some(t) = call.chunk["choices"][0]["delta"]["content"].as_str() {
                            *text = t.to_string();
                        }
                    }
                    Err(refusal) => {
                        self.done.status = refusal.status;
                        return Err(refusal_error(&refusal));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The answer ended with this error.
    pub fn on_error(&mut self, error: &ErrorInfo) {
        self.done.status = error.code.http_status();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.done.latency_ms = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.chain.on_done(self.seen, &self.done);
    }
}

#[cfg(test)]
#[path = "door_tests.rs"]
mod tests;
