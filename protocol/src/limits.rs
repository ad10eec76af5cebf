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
/// Generated token ids a continued stream may carry to its next replica.
pub const MAX_CONTINUATION_TOKENS: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{EmbeddingsRequest, GenerateRequest, Prompt, SamplingParams};

    #[test]
    fn what_only_the_model_knows_is_checked_against_its_limits() {
        let limits = ModelLimits {
            context_tokens: Some(1024),
            vocab_size: Some(100),
        };
        let generate = |max_tokens| {
            InferenceRequest::Generate(GenerateRequest::new(
                Prompt::Text("hi".into()),
                Some(max_tokens),
                SamplingParams::default(),
            ))
        };
        assert!(limits.check(&generate(1023)).is_ok());
        for k in [1024, u32::MAX] {
            let err = limits.check(&generate(k)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("max_tokens"), "{err:?}");
        }
        let tokens = |ids: Vec<u32>| {
            InferenceRequest::Embeddings(EmbeddingsRequest {
                inputs: vec![
                    EmbeddingInput::Text("ok".into()),
                    EmbeddingInput::Tokens(ids),
                ],
            })
        };
        assert!(limits.check(&tokens(vec![0, 99])).is_ok());
        let err = limits.check(&tokens(vec![5, 100])).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[1]"));
        assert!(ModelLimits::default().check(&generate(u32::MAX)).is_ok());
    }
}
