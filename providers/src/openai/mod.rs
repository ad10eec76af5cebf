//! The `openai` provider: models behind a remote OpenAI-compatible API (OpenAI, llama.cpp's
//! server, vLLM, another Golek node). Requests go upstream streamed, so text passes through
//! chunk by chunk whether or not the client streams; upstream usage is passed back when the
//! upstream reports it. Tools, `response_format`, log probabilities and `n` are forwarded, and
//! tool calls and log probabilities come back (see [`wire`]). The API key is read once at load and never logged.
//!
//! Without feature `openai`, feature `sse` builds only the stream reader ([`sse`], [`wire`]).

#[cfg(feature = "openai")]
use std::time::Instant;

#[cfg(feature = "openai")]
use golek_config::OpenaiParams;
#[cfg(feature = "openai")]
use golek_protocol::inference::{Capabilities, GenerateRequest, InferenceEvent, InferenceRequest};
#[cfg(feature = "openai")]
use golek_protocol::{ErrorCode, ErrorInfo};

pub mod sse;
mod wire;

#[cfg(feature = "openai")]
use wire::upstream_error;
pub use wire::{upstream_body, StreamState};

#[cfg(feature = "openai")]
use crate::metrics as m;
#[cfg(feature = "openai")]
use crate::queue::{Job, JobQueue};
#[cfg(feature = "openai")]
use crate::remote;
#[cfg(feature = "openai")]
use crate::{Provider, ProviderError, ProviderInfo, Result};

#[cfg(feature = "openai")]
pub struct OpenaiProvider {
    name: String,
    runtime: remote::Rt,
    client: reqwest::Client,
    base_url: String,
    remote_model: String,
    api_key: Option<String>,
    max_in_flight: usize,
    info: ProviderInfo,
}

#[cfg(feature = "openai")]
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

#[cfg(feature = "openai")]
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

#[cfg(feature = "openai")]
fn transport_error(e: &reqwest::Error) -> ErrorInfo {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::ProviderError
    };
    ErrorInfo::new(code, format!("upstream request failed: {}", remote::why(e)))
}

#[cfg(feature = "openai")]
async fn generate(
    client: &reqwest::Client,
    base_url: &str,
    model: &str,
    api_key: Option<&str>,
    request: &GenerateRequest,
    job: &Job,
) -> std::result::Result<(), ErrorInfo> {
    let (path, body) = upstream_body(model, request);
    let mut upstream =
        remote::within_deadline(client.post(format!("{base_url}{path}")).json(&body), job);
    if let Some(key) = api_key {
        upstream = upstream.bearer_auth(key);
    }
    let response = upstream.send().await.map_err(|e| transport_error(&e))?;
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
    // An SSE parser reads the body (see `sse`); dropping the response when the client left
    // closes the upstream request.
    sse::read_events(
        response.bytes_stream(),
        request.n,
        || job.events.is_closed(),
        |out| job.emit(Ok(out)),
        |e: reqwest::Error| transport_error(&e),
    )
    .await
}

#[cfg(feature = "openai")]
impl Provider for OpenaiProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn serve(&mut self, queue: &JobQueue) -> Result<()> {
        let upstream = std::sync::Arc::new(Upstream {
            client: self.client.clone(),
            base: self.base_url.clone(),
            model: self.remote_model.clone(),
            key: self.api_key.clone(),
            ok: metrics::counter!(m::REMOTE_REQUESTS_TOTAL, "model" => self.name.clone(), "outcome" => "ok"),
            duration: metrics::histogram!(m::REMOTE_REQUEST_DURATION_SECONDS, "model" => self.name.clone()),
            name: self.name.clone(),
        });
        let probe = remote::Probe {
            client: self.client.clone(),
            url: format!("{}/models", self.base_url),
            auth: self.api_key.clone(),
        };
        remote::serve_concurrently(&self.runtime, self.max_in_flight, queue, probe, |job| {
            let upstream = upstream.clone();
            async move { upstream.serve(job).await }
        })
    }
}

/// What every request of one deployment shares (one `Arc` clone a request, metric handles
/// resolved once).
#[cfg(feature = "openai")]
struct Upstream {
    client: reqwest::Client,
    base: String,
    model: String,
    key: Option<String>,
    name: String,
    ok: metrics::Counter,
    duration: metrics::Histogram,
}

#[cfg(feature = "openai")]
impl Upstream {
    async fn serve(&self, job: Job) {
        let InferenceRequest::Generate(request) = &job.request else {
            job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported(
                "anything but chat and completions",
            ))));
            return;
        };
        if !request.continuation.is_empty() {
            // The upstream API takes text, not token ids: a stream cannot resume here.
            job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported(
                "continuing another replica's stream (the remote API takes no token ids)",
            ))));
            return;
        }
        let started = Instant::now();
        let outcome = generate(
            &self.client,
            &self.base,
            &self.model,
            self.key.as_deref(),
            request,
            &job,
        )
        .await;
        match &outcome {
            Ok(()) => self.ok.increment(1),
            Err(e) => metrics::counter!(m::REMOTE_REQUESTS_TOTAL,
                "model" => self.name.clone(), "outcome" => e.code.as_str())
            .increment(1),
        }
        self.duration.record(started.elapsed().as_secs_f64());
        if let Err(e) = outcome {
            job.emit(Err(e));
        }
    }
}
