//! The ONNX Runtime provider: generic tensor models, and a sentence-embedding pipeline for
//! encoders like all-MiniLM-L6-v2.

mod embedding;
mod runtime;
mod tensor;
#[cfg(test)]
mod tests;

use std::time::Instant;

use golek_config::{OnnxParams, OnnxPipeline, RuntimeConfig};
use golek_protocol::inference::{
    Capabilities, EmbeddingsRequest, InferenceEvent, InferenceRequest, TensorRequest,
};
use golek_protocol::ErrorInfo;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::metrics as m;
use crate::queue::{Job, JobQueue};
use crate::{Provider, ProviderError, ProviderInfo, Result, TensorSpec};

pub use embedding::Embedder;
pub use runtime::environment;

pub struct OnnxProvider {
    name: String,
    session: Session,
    embedder: Option<Embedder>,
    info: ProviderInfo,
}

/// Opens a session. Kept in its own function: the builder's errors are not `Send`.
fn open_session(
    env: &ort::environment::Environment,
    params: &OnnxParams,
) -> std::result::Result<Session, String> {
    let run = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::<()>::from)?
            .with_intra_threads(params.intra_threads)
            .map_err(ort::Error::<()>::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::<()>::from)?
            .commit_from_file(&params.model_path)
    };
    run().map_err(|e| e.to_string())
}

impl OnnxProvider {
    /// Loads the model (blocking).
    pub fn load(name: &str, params: &OnnxParams, runtime: &RuntimeConfig) -> Result<Self> {
        let env = environment(&runtime.onnxruntime_path)?;
        if !params.model_path.exists() {
            return Err(ProviderError::Load(format!(
                "model file {} does not exist (run scripts/setup.sh for the default models)",
                params.model_path.display()
            )));
        }
        let session = open_session(env, params).map_err(|e| {
            ProviderError::Load(format!("cannot open {}: {e}", params.model_path.display()))
        })?;
        let inputs: Vec<TensorSpec> = session
            .inputs()
            .iter()
            .map(|i| tensor::spec(i.name(), i.dtype()))
            .collect();
        let outputs: Vec<TensorSpec> = session
            .outputs()
            .iter()
            .map(|o| tensor::spec(o.name(), o.dtype()))
            .collect();
        let embedder = match params.pipeline {
            OnnxPipeline::SentenceEmbedding => {
                let tokenizer = params.tokenizer_path.as_deref().ok_or_else(|| {
                    ProviderError::Load("the sentence-embedding pipeline needs a tokenizer".into())
                })?;
                Some(Embedder::new(
                    tokenizer,
                    params.max_input_tokens,
                    params.normalize,
                    &session,
                )?)
            }
            OnnxPipeline::Tensor => None,
        };
        let embedding_dims = embedder.as_ref().and_then(|_| {
            outputs
                .first()
                .and_then(|o| o.shape.last().copied())
                .filter(|&d| d > 0)
                .map(|d| d as usize)
        });
        let info = ProviderInfo {
            capabilities: Capabilities {
                embeddings: embedder.is_some(),
                tensors: true,
                ..Default::default()
            },
            embedding_dims,
            max_input_tokens: embedder.as_ref().map(|_| params.max_input_tokens),
            vocab_size: embedder.as_ref().map(|e| e.vocab_size()),
            context_tokens: None,
            inputs,
            outputs,
        };
        tracing::info!(model = name, path = %params.model_path.display(), "onnx model loaded");
        Ok(OnnxProvider {
            name: name.to_string(),
            session,
            embedder,
            info,
        })
    }

    /// Runs the embedding jobs of one batch, `max_rows` rows per session run.
    fn run_embeddings(&mut self, jobs: Vec<(Job, EmbeddingsRequest)>, max_rows: usize) {
        let Some(embedder) = &self.embedder else {
            for (job, _) in jobs {
                job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported(
                    "embeddings",
                ))));
            }
            return;
        };
        // Each job's share of the batch is a span in its own trace (open while the batch runs).
        let _work: Vec<tracing::Span> = jobs.iter().map(|(j, _)| j.work_span("batch")).collect();
        // Tokenize per job, so a bad input fails only its own request.
        let mut ready = Vec::with_capacity(jobs.len());
        for (job, request) in jobs {
            match embedder.rows(&request.inputs) {
                Ok(rows) => ready.push((job, rows)),
                Err(err) => job.emit(Err(ErrorInfo::from(&err))),
            }
        }
        let all_rows: Vec<(usize, &embedding::Row)> = ready
            .iter()
            .enumerate()
            .flat_map(|(j, (_, rows))| rows.iter().map(move |r| (j, r)))
            .collect();
        let mut results: Vec<Vec<golek_protocol::inference::Embedding>> = ready
            .iter()
            .map(|(_, rows)| Vec::with_capacity(rows.len()))
            .collect();
        let mut failed: Vec<Option<ErrorInfo>> = vec![None; ready.len()];
        for chunk in all_rows.chunks(max_rows.max(1)) {
            let rows: Vec<&embedding::Row> = chunk.iter().map(|(_, r)| *r).collect();
            let started = Instant::now();
            match embedder.embed(&mut self.session, &rows) {
                Ok(vectors) => {
                    for ((j, _), v) in chunk.iter().zip(vectors) {
                        results[*j].push(v);
                    }
                }
                Err(err) => {
                    tracing::warn!(model = %self.name, error = %err, "embedding batch failed");
                    for (j, _) in chunk {
                        failed[*j] = Some(ErrorInfo::from(&err));
                    }
                }
            }
            metrics::histogram!(m::BATCH_DURATION_SECONDS, "model" => self.name.clone())
                .record(started.elapsed().as_secs_f64());
        }
        for (((job, _), vectors), error) in ready.into_iter().zip(results).zip(failed) {
            match error {
                Some(err) => job.emit(Err(err)),
                None => job.emit(Ok(InferenceEvent::Embeddings(vectors))),
            }
        }
    }

    fn run_tensors(
        &mut self,
        request: &TensorRequest,
    ) -> Result<Vec<golek_protocol::inference::NamedTensor>> {
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for spec in &self.info.inputs {
            let given = request
                .inputs
                .iter()
                .find(|t| t.name == spec.name)
                .ok_or_else(|| ProviderError::BadInput {
                    param: format!("inputs.{}", spec.name),
                    message: format!("the model needs input tensor {:?}", spec.name),
                })?;
            tensor::check_input(given, spec)?;
            inputs.push((spec.name.clone(), tensor::to_value(given)?));
        }
        if let Some(extra) = request
            .inputs
            .iter()
            .find(|t| !self.info.inputs.iter().any(|s| s.name == t.name))
        {
            return Err(ProviderError::BadInput {
                param: format!("inputs.{}", extra.name),
                message: format!("the model has no input named {:?}", extra.name),
            });
        }
        for wanted in &request.outputs {
            if !self.info.outputs.iter().any(|o| &o.name == wanted) {
                return Err(ProviderError::BadInput {
                    param: format!("outputs.{wanted}"),
                    message: format!("the model has no output named {wanted:?}"),
                });
            }
        }
        let started = Instant::now();
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| ProviderError::Inference(e.to_string()))?;
        let mut result = Vec::new();
        for spec in &self.info.outputs {
            if !request.outputs.is_empty() && !request.outputs.contains(&spec.name) {
                continue;
            }
            if let Some(value) = outputs.get(&spec.name) {
                result.push(tensor::from_value(&spec.name, value)?);
            }
        }
        metrics::histogram!(m::BATCH_DURATION_SECONDS, "model" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        Ok(result)
    }
}

impl Provider for OnnxProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn serve(&mut self, queue: &JobQueue) -> Result<()> {
        while let Some(batch) = queue.next_batch() {
            let mut embeddings = Vec::new();
            for job in batch {
                match &job.request {
                    InferenceRequest::Embeddings(r) => {
                        let r = r.clone();
                        embeddings.push((job, r));
                    }
                    InferenceRequest::Tensors(r) => {
                        let _work = job.work_span("batch");
                        let outcome = self.run_tensors(r);
                        job.emit(
                            outcome
                                .map(InferenceEvent::Tensors)
                                .map_err(|e| ErrorInfo::from(&e)),
                        );
                    }
                    InferenceRequest::Generate(_) => {
                        let err = ProviderError::Unsupported("text generation");
                        job.emit(Err(ErrorInfo::from(&err)));
                    }
                }
            }
            if !embeddings.is_empty() {
                self.run_embeddings(embeddings, queue.max_batch_rows());
            }
        }
        Ok(())
    }
}
