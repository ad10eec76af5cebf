//! The limits a request must hold on every door (HTTP, the QUIC client API, peer frames),
//! written once: counts and sizes here and in [`crate::validate`], and what only the model
//! knows ([`ModelLimits`], from the provider's description) checked by [`ModelLimits::check`].

use crate::inference::{EmbeddingInput, InferenceRequest};
use crate::ErrorInfo;

pub use crate::validate::features::{MAX_CHOICES, MAX_TOOLS};
pub use crate::validate::{MAX_EMBEDDING_INPUTS, MAX_STOP_STRINGS};

/// Tensors one request may carry.
pub const MAX_TENSOR_INPUTS: usize = 64;
/// Elements across every tensor of one request (64 MiB of FP32).
pub const MAX_TENSOR_ELEMENTS: usize = 16 << 20;
/// Messages one chat request may carry.
pub const MAX_MESSAGES: usize = 4096;

/// What a model allows, from its provider's description.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelLimits {
    /// Tokens one sequence holds, prompt and generated (generation models).
    pub context_tokens: Option<usize>,
    /// Token ids must be below this.
    pub vocab_size: Option<usize>,
}

impl ModelLimits {
    /// The checks that need the model: `max_tokens` against its context, token ids against
    /// its vocabulary. The prompt's own length is checked by the provider once tokenised.
    pub fn check(&self, request: &InferenceRequest) -> Result<(), ErrorInfo> {
        match request {
            InferenceRequest::Generate(r) => {
                if let (Some(ctx), Some(k)) = (self.context_tokens, r.max_tokens) {
                    if k as usize >= ctx {
                        return Err(ErrorInfo::invalid(
                            "max_tokens",
                            format!(
                                "max_tokens: {k} is not below the {ctx} tokens a sequence of this model holds (prompt included)"
                            ),
                        ));
                    }
                }
            }
            InferenceRequest::Embeddings(r) => {
                let Some(vocab) = self.vocab_size else {
                    return Ok(());
                };
                for (i, input) in r.inputs.iter().enumerate() {
                    if let EmbeddingInput::Tokens(ids) = input {
                        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                            return Err(ErrorInfo::invalid(
                                format!("input[{i}]"),
                                format!(
                                    "input[{i}]: token id {id} is not below the vocabulary size {vocab}"
                                ),
                            ));
                        }
                    }
                }
            }
            InferenceRequest::Tensors(_) => {}
        }
        Ok(())
    }
}
