//! The `triton` provider: models that live on a remote KServe v2 server (NVIDIA Triton,
//! MLServer, another Golek node), called over HTTP with a keep-alive pool.
//!
//! Loading reads the remote model's metadata and checks its readiness. Serving runs requests
//! concurrently (up to `max_in_flight`) on the node's runtime (`remote::Rt`); the bounded
//! queue in front stays the bulkhead. A request that fails before any answer (a pooled
//! connection the server had closed) is sent once more on a fresh connection.

use std::time::Instant;

use golek_config::TritonParams;
use golek_protocol::inference::{
    Capabilities, InferenceEvent, InferenceRequest, NamedTensor, TensorRequest,
};
use golek_protocol::kserve::{self, InferBody, InferResponse, RequestedOutput};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde::Deserialize;

use crate::metrics as m;
use crate::queue::{Job, JobQueue};
use crate::remote;
use crate::{Provider, ProviderError, ProviderInfo, Result, TensorSpec};

#[derive(Deserialize)]
struct RemoteTensor {
    name: String,
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct RemoteMetadata {
    #[serde(default)]
    inputs: Vec<RemoteTensor>,
    #[serde(default)]
    outputs: Vec<RemoteTensor>,
}

#[derive(Deserialize)]
struct RemoteError {
    error: String,
}

pub struct TritonProvider {
    name: String,
    runtime: remote::Rt,
    client: reqwest::Client,
    /// `{url}/v2/models/{model}[/versions/{v}]`
    model_url: String,
    max_in_flight: usize,
    info: ProviderInfo,
}

fn specs(list: Vec<RemoteTensor>) -> Vec<TensorSpec> {
    list.into_iter()
        .map(|t| TensorSpec {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        })
        .collect()
}

impl TritonProvider {
    pub fn load(name: &str, params: &TritonParams) -> Result<Self> {
        let runtime = remote::runtime(name)?;
        let client = remote::client(&params.connection)?;
        let remote = params.remote_model.as_deref().unwrap_or(name);
        let mut model_url = format!("{}/v2/models/{remote}", params.url);
        if let Some(v) = &params.remote_version {
            model_url.push_str(&format!("/versions/{v}"));
        }
        let metadata: RemoteMetadata = runtime.block_on(async {
            let ready = client
                .get(format!("{model_url}/ready"))
                .send()
                .await
                .map_err(|e| {
                    ProviderError::Load(format!(
                        "remote {model_url} unreachable: {}",
                        remote::why(&e)
                    ))
                })?;
            if !ready.status().is_success() {
                return Err(ProviderError::Load(format!(
                    "remote model {model_url} is not ready (HTTP {})",
                    ready.status().as_u16()
                )));
            }
            let response = client.get(&model_url).send().await.map_err(|e| {
                ProviderError::Load(format!(
                    "remote {model_url} unreachable: {}",
                    remote::why(&e)
                ))
            })?;
            if !response.status().is_success() {
                return Err(ProviderError::Load(format!(
                    "remote metadata {model_url}: HTTP {}",
                    response.status().as_u16()
                )));
            }
            response.json::<RemoteMetadata>().await.map_err(|e| {
                ProviderError::Load(format!(
                    "remote metadata {model_url} is not KServe v2 JSON: {e}"
                ))
            })
        })?;
        let info = ProviderInfo {
            capabilities: Capabilities {
                tensors: true,
                ..Default::default()
            },
            embedding_dims: None,
            max_input_tokens: None,
            vocab_size: None,
            context_tokens: None,
            inputs: specs(metadata.inputs),
            outputs: specs(metadata.outputs),
        };
        tracing::info!(model = name, remote = %model_url, "remote model ready");
        Ok(TritonProvider {
            name: name.to_string(),
            runtime,
            client,
            model_url,
            max_in_flight: params.connection.max_in_flight as usize,
            info,
        })
    }
}

/// One inference on the remote; remote answers become our error codes.
async fn infer(
    client: &reqwest::Client,
    url: &str,
    request: &TensorRequest,
    job: &Job,
) -> std::result::Result<Vec<NamedTensor>, ErrorInfo> {
    let body = InferBody {
        id: None,
        parameters: Default::default(),
        inputs: request.inputs.iter().map(kserve::to_json).collect(),
        outputs: (!request.outputs.is_empty()).then(|| {
            request
                .outputs
                .iter()
                .map(|n| RequestedOutput {
                    name: n.clone(),
                    parameters: Default::default(),
                })
                .collect()
        }),
    };
    let send = || remote::within_deadline(client.post(url).json(&body), job).send();
    let response = match send().await {
        Ok(r) => r,
        // No answer at all (a pooled connection the server had closed): once more, fresh.
        Err(e) if !e.is_timeout() => send().await.map_err(|e| remote_error(&e))?,
        Err(e) => return Err(remote_error(&e)),
    };
    let status = response.status();
    let text = response.text().await.map_err(|e| remote_error(&e))?;
    if !status.is_success() {
        let message = serde_json::from_str::<RemoteError>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        let code = match status.as_u16() {
            400..=499 => ErrorCode::InvalidRequest,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::ProviderError,
        };
        return Err(ErrorInfo::new(
            code,
            format!("remote answered HTTP {}: {message}", status.as_u16()),
        ));
    }
    let answer: InferResponse = serde_json::from_str(&text).map_err(|e| {
        ErrorInfo::new(
            ErrorCode::ProviderError,
            format!("remote answer is not KServe v2 JSON: {e}"),
        )
    })?;
    answer
        .outputs
        .into_iter()
        .map(|t| {
            kserve::from_json(t).map_err(|e| {
                ErrorInfo::new(
                    ErrorCode::ProviderError,
                    format!("remote output: {}", e.message),
                )
            })
        })
        .collect()
}

fn remote_error(e: &reqwest::Error) -> ErrorInfo {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::ProviderError
    };
    ErrorInfo::new(code, format!("remote request failed: {}", remote::why(e)))
}

/// Runs one job on the remote and answers it.
async fn run(client: reqwest::Client, url: String, job: Job, name: String) {
    let InferenceRequest::Tensors(request) = &job.request else {
        job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported(
            "anything but tensors",
        ))));
        return;
    };
    let started = Instant::now();
    let outcome = infer(&client, &format!("{url}/infer"), request, &job).await;
    let label = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!(m::REMOTE_REQUESTS_TOTAL, "model" => name.clone(), "outcome" => label)
        .increment(1);
    metrics::histogram!(m::REMOTE_REQUEST_DURATION_SECONDS, "model" => name)
        .record(started.elapsed().as_secs_f64());
    job.emit(outcome.map(InferenceEvent::Tensors));
}

impl Provider for TritonProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn serve(&mut self, queue: &JobQueue) -> Result<()> {
        let (client, url, name) = (
            self.client.clone(),
            self.model_url.clone(),
            self.name.clone(),
        );
        let probe = remote::Probe {
            client: client.clone(),
            url: format!("{url}/ready"),
            auth: None,
        };
        remote::serve_concurrently(&self.runtime, self.max_in_flight, queue, probe, |job| {
            run(client.clone(), url.clone(), job, name.clone())
        })
    }
}
