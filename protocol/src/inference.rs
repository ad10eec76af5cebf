//! The internal request a provider runs, and the events it answers with.
//!
//! Requests reach this form only after validation (see the node's HTTP layer): a provider can
//! trust that inputs are non-empty and within the limits it advertised.

use serde::{Deserialize, Serialize};

use crate::ErrorInfo;

/// What a provider can do; the router checks it before dispatching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub embeddings: bool,
    pub chat: bool,
    pub completions: bool,
    pub tensors: bool,
}

impl Capabilities {
    /// The names of the capabilities that are on, for `/v1/models` and the admin view.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.embeddings {
            names.push("embeddings");
        }
        if self.chat {
            names.push("chat");
        }
        if self.completions {
            names.push("completions");
        }
        if self.tensors {
            names.push("tensors");
        }
        names
    }
}

/// One input of an embeddings request: text to tokenize, or token ids already tokenized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// A validated embeddings request: at least one input, none empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub inputs: Vec<EmbeddingInput>,
}

/// One embedding vector with the number of tokens its input used (after truncation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub vector: Vec<f32>,
    pub tokens: u32,
}

/// Element data of a tensor, by datatype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    /// IEEE 754 half precision, as raw bits (see [`crate::half`]).
    F16(Vec<u16>),
    /// bfloat16, as raw bits (see [`crate::half`]).
    BF16(Vec<u16>),
    /// Byte strings (KServe `BYTES`; ONNX `string` when they are UTF-8).
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The KServe v2 name of the datatype.
    pub fn datatype(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "FP32",
            TensorData::F64(_) => "FP64",
            TensorData::I8(_) => "INT8",
            TensorData::I16(_) => "INT16",
            TensorData::I32(_) => "INT32",
            TensorData::I64(_) => "INT64",
            TensorData::U8(_) => "UINT8",
            TensorData::U16(_) => "UINT16",
            TensorData::U32(_) => "UINT32",
            TensorData::U64(_) => "UINT64",
            TensorData::Bool(_) => "BOOL",
            TensorData::F16(_) => "FP16",
            TensorData::BF16(_) => "BF16",
            TensorData::Bytes(_) => "BYTES",
        }
    }
}

/// A named tensor with its shape; `data.len()` equals the product of `shape`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// A validated request for a generic tensor model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRequest {
    pub inputs: Vec<NamedTensor>,
    /// The outputs wanted; empty means all of them.
    pub outputs: Vec<String>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What to continue: raw text, or a conversation the provider renders with its chat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// Validated sampling settings. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    pub min_p: f32,
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Keep generating past end-of-generation tokens (llama.cpp's `ignore_eos`; benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            ignore_eos: false,
        }
    }
}

/// A validated text-generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    /// At most this many tokens are generated; `None` means up to the context's end.
    pub max_tokens: Option<u32>,
    /// Generation stops before any of these strings; they are not returned.
    pub stop: Vec<String>,
    pub sampling: SamplingParams,
}

/// A request as a provider sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceRequest {
    Embeddings(EmbeddingsRequest),
    Tensors(TensorRequest),
    Generate(GenerateRequest),
}

impl InferenceRequest {
    /// The checks the HTTP layer makes, for requests that arrive already decoded (from a peer
    /// or a QUIC client): non-empty inputs, consistent tensors, sampling values in range.
    pub fn check(&self) -> Result<(), ErrorInfo> {
        let bad = |param: &str, message: String| Err(ErrorInfo::invalid(param, message));
        match self {
            InferenceRequest::Embeddings(r) => {
                if r.inputs.is_empty() {
                    return bad("input", "input: at least one input is required".into());
                }
                for (i, input) in r.inputs.iter().enumerate() {
                    let empty = match input {
                        EmbeddingInput::Text(t) => t.is_empty(),
                        EmbeddingInput::Tokens(t) => t.is_empty(),
                    };
                    if empty {
                        return bad(&format!("input[{i}]"), format!("input[{i}] is empty"));
                    }
                }
            }
            InferenceRequest::Tensors(r) => {
                if r.inputs.is_empty() {
                    return bad("inputs", "inputs: at least one tensor is required".into());
                }
                for t in &r.inputs {
                    let elements = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                    if elements != Some(t.data.len()) {
                        return bad(
                            &format!("inputs.{}", t.name),
                            format!(
                                "tensor {:?} has {} elements, its shape {:?} needs another count",
                                t.name,
                                t.data.len(),
                                t.shape
                            ),
                        );
                    }
                }
            }
            InferenceRequest::Generate(r) => {
                let empty = match &r.prompt {
                    Prompt::Text(t) => t.is_empty(),
                    Prompt::Chat(m) => m.is_empty(),
                };
                if empty {
                    return bad("prompt", "prompt: must not be empty".into());
                }
                if r.max_tokens == Some(0) {
                    return bad("max_tokens", "max_tokens: must be at least 1".into());
                }
                let s = &r.sampling;
                if !(s.temperature.is_finite() && (0.0..=2.0).contains(&s.temperature)) {
                    return bad(
                        "temperature",
                        format!(
                            "temperature: must be between 0 and 2, got {}",
                            s.temperature
                        ),
                    );
                }
                if !(s.top_p.is_finite() && s.top_p > 0.0 && s.top_p <= 1.0) {
                    return bad(
                        "top_p",
                        format!("top_p: must be in (0, 1], got {}", s.top_p),
                    );
                }
                if !(s.min_p.is_finite() && (0.0..=1.0).contains(&s.min_p)) {
                    return bad(
                        "min_p",
                        format!("min_p: must be in [0, 1], got {}", s.min_p),
                    );
                }
                for (name, v) in [
                    ("presence_penalty", s.presence_penalty),
                    ("frequency_penalty", s.frequency_penalty),
                ] {
                    if !(v.is_finite() && (-2.0..=2.0).contains(&v)) {
                        return bad(name, format!("{name}: must be between -2 and 2, got {v}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// How many batch rows the request occupies (its share of `max_batch_size`).
    pub fn batch_rows(&self) -> usize {
        match self {
            InferenceRequest::Embeddings(r) => r.inputs.len(),
            InferenceRequest::Tensors(_) | InferenceRequest::Generate(_) => 1,
        }
    }

    /// The short name of the request kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            InferenceRequest::Embeddings(_) => "embeddings",
            InferenceRequest::Tensors(_) => "tensors",
            InferenceRequest::Generate(r) => match r.prompt {
                Prompt::Text(_) => "completions",
                Prompt::Chat(_) => "chat",
            },
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
}

/// What a provider emits for one request. A request's stream ends after `Embeddings`,
/// `Tensors`, `Finished` or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceEvent {
    /// The embeddings, in input order.
    Embeddings(Vec<Embedding>),
    /// The requested output tensors.
    Tensors(Vec<NamedTensor>),
    /// Generation started: the prompt's size in tokens (after the chat template).
    Started { prompt_tokens: u32 },
    /// New generated text (valid UTF-8, stop strings held back), and how many tokens it spans.
    Text { text: String, tokens: u32 },
    /// Generation ended.
    Finished {
        reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(edit: impl Fn(&mut GenerateRequest)) -> InferenceRequest {
        let mut r = GenerateRequest {
            prompt: Prompt::Text("hi".into()),
            max_tokens: Some(4),
            stop: vec![],
            sampling: SamplingParams::default(),
        };
        edit(&mut r);
        InferenceRequest::Generate(r)
    }

    #[test]
    fn decoded_requests_are_checked_like_http_ones() {
        assert!(generate(|_| {}).check().is_ok());
        for (request, param) in [
            (
                generate(|r| r.prompt = Prompt::Text(String::new())),
                "prompt",
            ),
            (generate(|r| r.max_tokens = Some(0)), "max_tokens"),
            (
                generate(|r| r.sampling.temperature = f32::NAN),
                "temperature",
            ),
            (generate(|r| r.sampling.top_p = 0.0), "top_p"),
            (
                generate(|r| r.sampling.frequency_penalty = 9.0),
                "frequency_penalty",
            ),
            (
                InferenceRequest::Embeddings(EmbeddingsRequest { inputs: vec![] }),
                "input",
            ),
            (
                InferenceRequest::Embeddings(EmbeddingsRequest {
                    inputs: vec![EmbeddingInput::Tokens(vec![])],
                }),
                "input[0]",
            ),
            (
                InferenceRequest::Tensors(TensorRequest {
                    inputs: vec![NamedTensor {
                        name: "x".into(),
                        shape: vec![2, 2],
                        data: TensorData::F32(vec![1.0]),
                    }],
                    outputs: vec![],
                }),
                "inputs.x",
            ),
        ] {
            assert_eq!(request.check().unwrap_err().param.as_deref(), Some(param));
        }
    }
}
