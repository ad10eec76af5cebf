//! The `openai` provider: models behind a remote OpenAI-compatible API (OpenAI, llama.cpp's
//! server, vLLM, another Golek node). Requests go upstream streamed, so text passes through
//! chunk by chunk whether or not the client streams; upstream usage is passed back when the
//! upstream reports it. The API key is read once at load and never logged.

use std::time::Instant;

use golek_config::OpenaiParams;
use golek_protocol::inference::{
    Capabilities, FinishReason, GenerateRequest, InferenceEvent, InferenceRequest, Prompt,
};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use crate::metrics as m;
use crate::queue::{Job, JobQueue};
use crate::remote;
use crate::{Provider, ProviderError, ProviderInfo, Result};

pub struct OpenaiProvider {
    name: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base_url: String,
    remote_model: String,
    api_key: Option<String>,
    max_in_flight: usize,
    info: ProviderInfo,
}

fn read_key(params: &OpenaiParams) -> Result<Option<String>> {
    if let Some(var) = &params.api_key_env {
        let key = std::env::var(var)
            .map_err(|_| ProviderError::Load(format!("the API key variable {var} is not set")))?;
        return Ok(Some(key.trim().to_string()));
    }
    if let Some(path) = &params.api_key_file {
        let key = std::fs::read_to_string(path).map_err(|e| {
            ProviderError::Load(format!(
                "cannot read the API key file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(key.trim().to_string()));
    }
    Ok(None)
}

impl OpenaiProvider {
    pub fn load(name: &str, params: &OpenaiParams) -> Result<Self> {
        let runtime = remote::runtime(name)?;
        let client = remote::client(&params.connection)?;
        let api_key = read_key(params)?;
        // Reachability: GET /models answers on every OpenAI-compatible server.
        let url = format!("{}/models", params.base_url);
        runtime.block_on(async {
            let mut request = client.get(&url);
            if let Some(key) = &api_key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.map_err(|e| {
                ProviderError::Load(format!("upstream {url} unreachable: {}", remote::why(&e)))
            })?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(ProviderError::Load(format!(
                    "upstream {url} answered HTTP {}",
                    response.status().as_u16()
                )))
            }
        })?;
        tracing::info!(model = name, upstream = %params.base_url, "upstream reachable");
        Ok(OpenaiProvider {
            name: name.to_string(),
            runtime,
            client,
            base_url: params.base_url.clone(),
            remote_model: params
                .remote_model
                .clone()
                .unwrap_or_else(|| name.to_string()),
            api_key,
            max_in_flight: params.connection.max_in_flight as usize,
            info: ProviderInfo {
                capabilities: Capabilities {
                    chat: true,
                    completions: true,
                    ..Default::default()
                },
                embedding_dims: None,
                max_input_tokens: None,
                vocab_size: None,
                context_tokens: None,
                inputs: vec![],
                outputs: vec![],
            },
        })
    }
}

/// The upstream request body for a validated request (always streamed upstream).
pub fn upstream_body(model: &str, request: &GenerateRequest) -> (String, Value) {
    let s = &request.sampling;
    let (path, mut body) = match &request.prompt {
        Prompt::Chat(messages) => (
            "/chat/completions",
            json!({"model": model, "messages": messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>()}),
        ),
        Prompt::Text(text) => ("/completions", json!({"model": model, "prompt": text})),
    };
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body["temperature"] = json!(s.temperature);
    body["top_p"] = json!(s.top_p);
    if let Some(k) = request.max_tokens {
        body["max_tokens"] = json!(k);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed as i64);
    }
    if s.presence_penalty != 0.0 {
        body["presence_penalty"] = json!(s.presence_penalty);
    }
    if s.frequency_penalty != 0.0 {
        body["frequency_penalty"] = json!(s.frequency_penalty);
    }
    // Not OpenAI: only sent when asked for (llama.cpp and vLLM take them, OpenAI refuses).
    if s.top_k > 0 {
        body["top_k"] = json!(s.top_k);
    }
    if s.min_p > 0.0 {
        body["min_p"] = json!(s.min_p);
    }
    if s.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    (path.to_string(), body)
}

fn upstream_error(status: u16, text: &str) -> ErrorInfo {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_else(|| text.chars().take(500).collect());
    let code = match status {
        400 | 404 | 413 | 422 => ErrorCode::InvalidRequest,
        429 => ErrorCode::Overloaded,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::ProviderError,
    };
    ErrorInfo::new(code, format!("upstream answered HTTP {status}: {message}"))
}

fn transport_error(e: &reqwest::Error) -> ErrorInfo {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::ProviderError
    };
    ErrorInfo::new(code, format!("upstream request failed: {}", remote::why(e)))
}

/// What one upstream SSE event says.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Text(String),
    Finish(FinishReason),
    Usage { prompt: u32, completion: u32 },
    Done,
    Other,
}

/// Reads one `data:` payload of an upstream stream (chat or completion chunks).
pub fn parse_chunk(payload: &str) -> std::result::Result<Vec<Chunk>, ErrorInfo> {
    if payload == "[DONE]" {
        return Ok(vec![Chunk::Done]);
    }
    let v: Value = serde_json::from_str(payload).map_err(|e| {
        ErrorInfo::new(
            ErrorCode::ProviderError,
            format!("upstream sent a chunk that is not JSON: {e}"),
        )
    })?;
    if v.get("error").is_some() {
        return Err(upstream_error(502, payload));
    }
    let mut out = Vec::new();
    if let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) {
        let text = choice["delta"]["content"]
            .as_str()
            .or_else(|| choice["text"].as_str());
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(Chunk::Text(t.to_string()));
        }
        match choice["finish_reason"].as_str() {
            Some("length") => out.push(Chunk::Finish(FinishReason::Length)),
            Some(_) => out.push(Chunk::Finish(FinishReason::Stop)),
            None => {}
        }
    }
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        out.push(Chunk::Usage {
            prompt: usage["prompt_tokens"].as_u64().unwrap_or(0) as u32,
            completion: usage["completion_tokens"].as_u64().unwrap_or(0) as u32,
        });
    }
    if out.is_empty() {
        out.push(Chunk::Other);
    }
    Ok(out)
}

async fn generate(
    client: &reqwest::Client,
    base_url: &str,
    model: &str,
    api_key: Option<&str>,
    request: &GenerateRequest,
    job: &Job,
) -> std::result::Result<(), ErrorInfo> {
    let (path, body) = upstream_body(model, request);
    let mut upstream = client.post(format!("{base_url}{path}")).json(&body);
    if let Some(key) = api_key {
        upstream = upstream.bearer_auth(key);
    }
    let mut response = upstream.send().await.map_err(|e| transport_error(&e))?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(upstream_error(status, &text));
    }
    // The prompt's size is known only from the upstream's usage, at the end.
    job.emit(Ok(InferenceEvent::Started {
        prompt_tokens: 0,
        cached_tokens: 0,
    }));
    let (mut reason, mut prompt, mut completion, mut counted) = (None, 0, None, 0u32);
    let mut buffer = String::new();
    loop {
        if job.events.is_closed() {
            // The client left: dropping the response closes the upstream request.
            return Ok(());
        }
        let Some(bytes) = response.chunk().await.map_err(|e| transport_error(&e))? else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(payload) = line.strip_prefix("data:") else {
                    continue;
                };
                for chunk in parse_chunk(payload.trim())? {
                    match chunk {
                        Chunk::Text(text) => {
                            counted += 1;
                            job.emit(Ok(InferenceEvent::Text {
                                choice: 0,
                                text,
                                token_ids: vec![],
                                logprobs: vec![],
                            }));
                        }
                        Chunk::Finish(r) => reason = Some(r),
                        Chunk::Usage {
                            prompt: p,
                            completion: c,
                        } => {
                            prompt = p;
                            completion = Some(c);
                        }
                        Chunk::Done | Chunk::Other => {}
                    }
                }
            }
        }
    }
    job.emit(Ok(InferenceEvent::Finished {
        choice: 0,
        cached_tokens: 0,
        reason: reason.unwrap_or(FinishReason::Stop),
        prompt_tokens: prompt,
        // Without upstream usage, the count of text chunks stands in for tokens.
        completion_tokens: completion.unwrap_or(counted),
    }));
    Ok(())
}

impl Provider for OpenaiProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn serve(&mut self, queue: &JobQueue) -> Result<()> {
        let client = self.client.clone();
        let (base, model, key, name) = (
            self.base_url.clone(),
            self.remote_model.clone(),
            self.api_key.clone(),
            self.name.clone(),
        );
        let probe = remote::Probe {
            client: client.clone(),
            url: format!("{base}/models"),
            auth: key.clone(),
        };
        remote::serve_concurrently(&self.runtime, self.max_in_flight, queue, probe, |job| {
            let (client, base, model, key, name) = (
                client.clone(),
                base.clone(),
                model.clone(),
                key.clone(),
                name.clone(),
            );
            async move {
                let InferenceRequest::Generate(request) = &job.request else {
                    job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported(
                        "anything but chat and completions",
                    ))));
                    return;
                };
                let started = Instant::now();
                let outcome = generate(&client, &base, &model, key.as_deref(), request, &job).await;
                let label = match &outcome {
                    Ok(()) => "ok",
                    Err(e) => e.code.as_str(),
                };
                metrics::counter!(m::REMOTE_REQUESTS_TOTAL, "model" => name.clone(), "outcome" => label)
                    .increment(1);
                metrics::histogram!(m::REMOTE_REQUEST_DURATION_SECONDS, "model" => name)
                    .record(started.elapsed().as_secs_f64());
                if let Err(e) = outcome {
                    job.emit(Err(e));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_chunks_of_both_kinds_are_read() {
        let chat = r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(parse_chunk(chat).unwrap(), vec![Chunk::Text("hi".into())]);
        let end = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#;
        assert_eq!(
            parse_chunk(end).unwrap(),
            vec![Chunk::Finish(FinishReason::Length)]
        );
        let text = r#"{"choices":[{"index":0,"text":"yo","finish_reason":"stop"}]}"#;
        assert_eq!(
            parse_chunk(text).unwrap(),
            vec![Chunk::Text("yo".into()), Chunk::Finish(FinishReason::Stop)]
        );
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        assert_eq!(
            parse_chunk(usage).unwrap(),
            vec![Chunk::Usage {
                prompt: 5,
                completion: 7
            }]
        );
        assert_eq!(parse_chunk("[DONE]").unwrap(), vec![Chunk::Done]);
        assert!(parse_chunk("{not json").is_err());
        let err = parse_chunk(r#"{"error":{"message":"boom"}}"#).unwrap_err();
        assert!(err.message.contains("boom"));
    }

    #[test]
    fn the_upstream_body_carries_only_what_was_asked() {
        let mut request = GenerateRequest::new(
            Prompt::Text("once".into()),
            Some(4),
            golek_protocol::inference::SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
        );
        request.stop = vec!["x".into()];
        let (path, body) = upstream_body("m", &request);
        assert_eq!(path, "/completions");
        assert_eq!(body["prompt"], "once");
        assert_eq!(body["max_tokens"], 4);
        assert_eq!(body["stream"], true);
        assert!(body.get("top_k").is_none() && body.get("seed").is_none());
        assert_eq!(
            upstream_error(429, r#"{"error":{"message":"slow down"}}"#).code,
            ErrorCode::Overloaded
        );
        assert_eq!(upstream_error(500, "oops").code, ErrorCode::ProviderError);
    }
}
