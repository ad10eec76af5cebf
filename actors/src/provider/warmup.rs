//! Warm-up: one short request a freshly loaded local model runs before it is marked ready, so
//! the first client does not pay for lazy initialisation (and a model that loads but cannot
//! answer never takes traffic). Remote providers are not warmed: their upstream is not ours
//! to spend on.

use std::time::{Duration, Instant};

use golek_config::ProviderKind;
use golek_protocol::inference::{
    EmbeddingInput, EmbeddingsRequest, GenerateRequest, InferenceEvent, InferenceRequest, Prompt,
    SamplingParams,
};
use golek_providers::{Job, JobSender, ProviderInfo};

/// How long a warm-up request may take.
pub const WARMUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The warm-up request for a model, or `None` when it is not warmed.
pub fn request_for(kind: ProviderKind, info: &ProviderInfo) -> Option<InferenceRequest> {
    if matches!(kind, ProviderKind::Openai | ProviderKind::Triton) {
        return None;
    }
    let c = &info.capabilities;
    if c.completions || c.chat {
        let sampling = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        return Some(InferenceRequest::Generate(GenerateRequest::new(
            Prompt::Text("Hello".into()),
            Some(1),
            sampling,
        )));
    }
    if c.embeddings {
        return Some(InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: vec![EmbeddingInput::Text("warm up".into())],
        }));
    }
    None
}

/// Runs `request` on the model's queue and waits for its end.
pub async fn run(sender: &JobSender, request: InferenceRequest) -> Result<(), String> {
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let now = Instant::now();
    sender
        .try_submit(Job {
            request,
            events,
            enqueued_at: now,
            deadline: now + WARMUP_TIMEOUT,
            outcome: Default::default(),
            tenant: None,
            span: tracing::Span::none(),
            queued: None,
        })
        .map_err(|e| e.to_string())?;
    let wait = async {
        let mut finished = false;
        while let Some(event) = rx.recv().await {
            match event {
                Err(e) => return Err(e.message),
                Ok(InferenceEvent::Finished { .. }) | Ok(InferenceEvent::Embeddings(_)) => {
                    finished = true;
                }
                Ok(_) => {}
            }
        }
        if finished {
            Ok(())
        } else {
            Err("the model ended the warm-up request without an answer".to_string())
        }
    };
    tokio::time::timeout(WARMUP_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no answer within {} s", WARMUP_TIMEOUT.as_secs()))?
}
