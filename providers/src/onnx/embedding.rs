//! The sentence-embedding pipeline: tokenize, pad to the longest row of the batch, run the
//! encoder, mean-pool over the attention mask, L2-normalise.

use std::path::Path;

use golek_protocol::inference::{Embedding, EmbeddingInput};
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

use crate::{ProviderError, Result};

/// The tokenizer side of the pipeline, and how to feed and read the encoder.
pub struct Embedder {
    tokenizer: Tokenizer,
    max_tokens: usize,
    normalize: bool,
    pad_id: u32,
    vocab_size: usize,
    /// The encoder's input names, in session order.
    input_names: Vec<String>,
    output_name: String,
}

/// One tokenized input, ready to batch.
pub struct Row {
    pub ids: Vec<u32>,
}

impl Embedder {
    pub fn new(
        tokenizer_path: &Path,
        max_tokens: usize,
        normalize: bool,
        session: &Session,
    ) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(tokenizer_path).map_err(|e| {
            ProviderError::Load(format!(
                "cannot read tokenizer {}: {e}",
                tokenizer_path.display()
            ))
        })?;
        // Padding is ours (to the longest row of each batch); the packaged tokenizer may pad to a
        // fixed length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| ProviderError::Load(format!("bad truncation settings: {e}")))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let vocab_size = tokenizer.get_vocab_size(true);
        let input_names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        for name in &input_names {
            if !matches!(
                name.as_str(),
                "input_ids" | "attention_mask" | "token_type_ids"
            ) {
                return Err(ProviderError::Load(format!(
                    "the sentence-embedding pipeline feeds input_ids, attention_mask and token_type_ids; the model also wants {name:?}"
                )));
            }
        }
        if !input_names.iter().any(|n| n == "input_ids") {
            return Err(ProviderError::Load(
                "the model has no input_ids input".into(),
            ));
        }
        let output_name = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| ProviderError::Load("the model has no outputs".into()))?;
        Ok(Embedder {
            tokenizer,
            max_tokens,
            normalize,
            pad_id,
            vocab_size,
            input_names,
            output_name,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Tokenizes (or checks) one request's inputs. Errors name the input at fault.
    pub fn rows(&self, inputs: &[EmbeddingInput]) -> Result<Vec<Row>> {
        let mut rows = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let ids = match input {
                EmbeddingInput::Text(text) => self
                    .tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| ProviderError::BadInput {
                        param: format!("input[{i}]"),
                        message: format!("cannot tokenize input {i}: {e}"),
                    })?
                    .get_ids()
                    .to_vec(),
                EmbeddingInput::Tokens(tokens) => {
                    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
                        return Err(ProviderError::BadInput {
                            param: format!("input[{i}]"),
                            message: format!(
                                "token id {bad} is outside the model's vocabulary (0..{})",
                                self.vocab_size
                            ),
                        });
                    }
                    tokens.iter().copied().take(self.max_tokens).collect()
                }
            };
            if ids.is_empty() {
                return Err(ProviderError::BadInput {
                    param: format!("input[{i}]"),
                    message: format!("input {i} has no tokens"),
                });
            }
            rows.push(Row { ids });
        }
        Ok(rows)
    }

    /// Runs one batch of rows through the encoder; one embedding per row, in order.
    pub fn embed(&self, session: &mut Session, rows: &[&Row]) -> Result<Vec<Embedding>> {
        let batch = rows.len();
        let width = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id as i64; batch * width];
        let mut mask = vec![0i64; batch * width];
        for (r, row) in rows.iter().enumerate() {
            for (t, &id) in row.ids.iter().enumerate() {
                ids[r * width + t] = id as i64;
                mask[r * width + t] = 1;
            }
        }
        let shape = vec![batch as i64, width as i64];
        let ort_err = |e: ort::Error| ProviderError::Inference(e.to_string());
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(3);
        for name in &self.input_names {
            let data = match name.as_str() {
                "input_ids" => ids.clone(),
                "attention_mask" => mask.clone(),
                _ => vec![0i64; batch * width],
            };
            let tensor = Tensor::from_array((shape.clone(), data)).map_err(ort_err)?;
            inputs.push((name.clone(), tensor.into()));
        }
        let outputs = session.run(inputs).map_err(ort_err)?;
        let output = outputs
            .get(&self.output_name)
            .ok_or_else(|| ProviderError::Inference("the model returned no output".into()))?;
        let (out_shape, data) = output.try_extract_tensor::<f32>().map_err(ort_err)?;
        let dims: Vec<usize> = out_shape.iter().map(|&d| d.max(0) as usize).collect();

        let mut result = Vec::with_capacity(batch);
        match dims.as_slice() {
            // Token states [batch, seq, hidden]: mean over the real tokens.
            [b, s, h] if *b == batch && *s == width => {
                for (r, row) in rows.iter().enumerate() {
                    let mut v = vec![0f32; *h];
                    for t in 0..row.ids.len() {
                        let at = (r * width + t) * h;
                        for (acc, x) in v.iter_mut().zip(&data[at..at + h]) {
                            *acc += x;
                        }
                    }
                    let n = row.ids.len() as f32;
                    v.iter_mut().for_each(|x| *x /= n);
                    result.push(self.finish(v, row));
                }
            }
            // Already pooled [batch, hidden].
            [b, h] if *b == batch => {
                for (r, row) in rows.iter().enumerate() {
                    result.push(self.finish(data[r * h..(r + 1) * h].to_vec(), row));
                }
            }
            other => {
                return Err(ProviderError::Inference(format!(
                "unexpected output shape {other:?} for a batch of {batch} rows of {width} tokens"
            )))
            }
        }
        Ok(result)
    }

    fn finish(&self, mut vector: Vec<f32>, row: &Row) -> Embedding {
        if self.normalize {
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Embedding {
            vector,
            tokens: row.ids.len() as u32,
        }
    }
}
