//! The llama.cpp provider: GGUF models with continuous batching, streaming generation, chat
//! templates, and embeddings from embedding models.
//!
//! The model and its context live on the worker thread. One context holds `slots` sequences;
//! between decode steps the scheduler admits queued requests into free slots, prefills their
//! prompts in chunks alongside the running sequences, and streams each sequence's text as it
//! is sampled. A finished sequence's KV stays in its slot as the prompt cache.

mod cache;
mod embed;
mod grammar;
mod output;
mod sampling;
mod scheduler;
mod share;
mod template;
pub mod testmodel;
mod text;
mod tools;

use std::num::NonZeroU32;
use std::sync::OnceLock;

use golek_config::GgufParams;
use golek_protocol::generation::ToolChoice;
use golek_protocol::inference::{Capabilities, ChatMessage, GenerateRequest};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use crate::queue::JobQueue;
use crate::{Provider, ProviderError, ProviderInfo, Result};

pub use testmodel::{write_test_gguf, TestModelSpec};

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

/// The process's one llama.cpp backend; its logs go to `tracing`.
pub fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(|e| ProviderError::Load(e.clone()))
}

pub struct GgufProvider {
    name: String,
    params: GgufParams,
    model: LlamaModel,
    template: template::ChatTemplate,
    info: ProviderInfo,
}

impl GgufProvider {
    pub fn load(name: &str, params: &GgufParams) -> Result<Self> {
        let backend = backend()?;
        if !params.model_path.exists() {
            return Err(ProviderError::Load(format!(
                "model file {} does not exist (make run generates golek-tiny; point model_path at your GGUF)",
                params.model_path.display()
            )));
        }
        let model_params = LlamaModelParams::default().with_n_gpu_layers(params.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend, &params.model_path, &model_params)
            .map_err(|e| {
                ProviderError::Load(format!("cannot load {}: {e}", params.model_path.display()))
            })?;
        let template = template::ChatTemplate::pick(&model, params.chat_template.as_deref())?;
        let generation = !params.embeddings;
        let info = ProviderInfo {
            capabilities: Capabilities {
                embeddings: params.embeddings,
                chat: generation,
                completions: generation,
                tensors: false,
            },
            embedding_dims: params.embeddings.then(|| model.n_embd() as usize),
            max_input_tokens: Some(slot_context(params) as usize),
            vocab_size: Some(model.n_vocab() as usize),
            context_tokens: Some(slot_context(params) as usize),
            inputs: vec![],
            outputs: vec![],
        };
        tracing::info!(
            model = name,
            path = %params.model_path.display(),
            params = model.n_params(),
            layers = model.n_layer(),
            slots = params.slots,
            "gguf model loaded"
        );
        Ok(GgufProvider {
            name: name.to_string(),
            params: params.clone(),
            model,
            template,
            info,
        })
    }

    /// Renders a conversation with the chat template, ending with the assistant's turn; the
    /// request's tools are shown to the model unless `tool_choice` is `none`.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        request: &GenerateRequest,
    ) -> Result<String> {
        let tools = if request.tool_choice == ToolChoice::None {
            &[][..]
        } else {
            &request.tools[..]
        };
        match (&self.params.system_prompt, messages.first()) {
            (Some(system), Some(first)) if first.role != "system" => {
                let mut with_system = Vec::with_capacity(messages.len() + 1);
                with_system.push(ChatMessage::new("system", system));
                with_system.extend_from_slice(messages);
                self.template.render(&self.model, &with_system, tools)
            }
            _ => self.template.render(&self.model, messages, tools),
        }
    }
}

/// Tokens each slot may hold.
pub fn slot_context(params: &GgufParams) -> u32 {
    params.n_ctx / params.slots
}

fn threads(params: &GgufParams) -> i32 {
    if params.threads > 0 {
        params.threads as i32
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
    }
}

impl Provider for GgufProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn serve(&mut self, queue: &JobQueue) -> Result<()> {
        let backend = backend()?;
        let threads = threads(&self.params);
        let mut ctx_params = llama_cpp_2::context::params::LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.params.n_ctx))
            .with_n_batch(self.params.batch_size)
            .with_n_ubatch(self.params.batch_size)
            .with_n_seq_max(self.params.slots)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(false)
            .with_no_perf(true);
        if self.params.embeddings {
            ctx_params = ctx_params
                .with_embeddings(true)
                .with_pooling_type(llama_cpp_2::context::params::LlamaPoolingType::Mean);
        }
        let ctx = self
            .model
            .new_context(backend, ctx_params)
            .map_err(|e| ProviderError::Load(format!("cannot create a llama.cpp context: {e}")))?;
        let mut scheduler = scheduler::Scheduler::new(self, ctx);
        scheduler.run(queue)
    }
}

#[cfg(test)]
mod feature_tests;
#[cfg(test)]
mod tests;
