//! Embeddings from a GGUF embedding deployment, on the same worker thread and context.

use golek_protocol::inference::{Embedding, EmbeddingInput, EmbeddingsRequest};
use llama_cpp_2::token::LlamaToken;

use super::scheduler::Scheduler;
use crate::{ProviderError, Result};

impl Scheduler<'_> {
    /// Embeddings from an embedding deployment: each input decoded on its own, mean-pooled by
    /// llama.cpp, then L2-normalised.
    pub(super) fn embed(&mut self, request: &EmbeddingsRequest) -> Result<Vec<Embedding>> {
        if !self.provider.info.capabilities.embeddings {
            return Err(ProviderError::Unsupported("embeddings"));
        }
        let vocab = self.provider.model.vocab();
        let n_vocab = self.provider.model.n_vocab() as u32;
        let limit = (self.slot_ctx as usize).min(self.batch_size);
        let mut rows = Vec::with_capacity(request.inputs.len());
        for (i, input) in request.inputs.iter().enumerate() {
            let mut tokens = match input {
                EmbeddingInput::Text(t) => vocab.tokenize(t.as_bytes(), true, false),
                EmbeddingInput::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|&&t| t >= n_vocab) {
                        return Err(ProviderError::BadInput {
                            param: format!("input[{i}]"),
                            message: format!(
                                "token id {bad} is outside the model's vocabulary (0..{n_vocab})"
                            ),
                        });
                    }
                    ids.iter().map(|&t| LlamaToken(t as i32)).collect()
                }
            };
            tokens.truncate(limit);
            if tokens.is_empty() {
                return Err(ProviderError::BadInput {
                    param: format!("input[{i}]"),
                    message: format!("input {i} has no tokens"),
                });
            }
            rows.push(tokens);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut start = 0;
        while start < rows.len() {
            // A group: as many rows as fit the batch and the slots.
            let mut end = start;
            let mut tokens = 0;
            // One input per decode: with several sequences in one batch, llama.cpp's pooled
            // embeddings for this context setup came out different from the same input alone.
            while end < rows.len() && end - start < 1 && tokens + rows[end].len() <= self.batch_size
            {
                tokens += rows[end].len();
                end += 1;
            }
            self.batch.clear();
            for (seq_id, row) in rows[start..end].iter().enumerate() {
                for (pos, &t) in row.iter().enumerate() {
                    self.batch
                        .add(t, pos as i32, &[seq_id as i32], true)
                        .map_err(|e| ProviderError::Inference(e.to_string()))?;
                }
            }
            let decoded = self.ctx.decode(&mut self.batch);
            let mut group = Vec::with_capacity(end - start);
            let mut failure = decoded
                .err()
                .map(|e| ProviderError::Inference(format!("decode failed: {e}")));
            if failure.is_none() {
                for (seq_id, row) in rows[start..end].iter().enumerate() {
                    match self.ctx.embeddings_seq_ith(seq_id as i32) {
                        Ok(v) => {
                            let mut vector = v.to_vec();
                            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                            if norm > 0.0 {
                                vector.iter_mut().for_each(|x| *x /= norm);
                            }
                            group.push(Embedding {
                                vector,
                                tokens: row.len() as u32,
                            });
                        }
                        Err(e) => {
                            failure = Some(ProviderError::Inference(format!("no embedding: {e}")));
                            break;
                        }
                    }
                }
            }
            for seq_id in 0..(end - start) {
                let _ = self.ctx.clear_kv_cache_seq(Some(seq_id as u32), None, None);
            }
            if let Some(err) = failure {
                return Err(err);
            }
            out.extend(group);
            start = end;
        }
        Ok(out)
    }
}
