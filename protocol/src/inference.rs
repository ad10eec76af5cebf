//! The internal request a provider runs, and the events it answers with.
//!
//! Requests reach a provider only after the checks every door makes (`check`, in `checks.rs`,
//! and the model's [`crate::limits::ModelLimits`]): a provider can trust that inputs are
//! non-empty and within the limits.

use serde::{Deserialize, Serialize};

use crate::generation::{ResponseFormat, TokenLogprobs, ToolCall, ToolChoice, ToolSpec};

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

/// One chat message. `role` is `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The calls an assistant message made (history sent back by the client).
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }
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
    /// Choices generated from the one prompt (1 to the model's slots).
    pub n: u32,
    /// `None`: no log probabilities; `Some(k)`: the sampled token's and the top `k` (0..=20).
    pub logprobs: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call (chat only).
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// Token ids already generated for this prompt by a replica that failed mid-stream: the
    /// provider prefills them after the rendered prompt and goes on from there (never set by
    /// clients; `max_tokens` then counts only what is still to come).
    #[serde(default)]
    pub continuation: Vec<u32>,
}

impl GenerateRequest {
    /// A plain request: one choice, nothing constrained.
    pub fn new(prompt: Prompt, max_tokens: Option<u32>, sampling: SamplingParams) -> Self {
        GenerateRequest {
            prompt,
            max_tokens,
            stop: vec![],
            sampling,
            n: 1,
            logprobs: None,
            response_format: None,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
            continuation: Vec::new(),
        }
    }

    /// True when sampling is constrained by a grammar (structured output or a forced call).
    pub fn constrained(&self) -> bool {
        self.response_format.is_some()
            || (!self.tools.is_empty()
                && matches!(
                    self.tool_choice,
                    ToolChoice::Required | ToolChoice::Function(_)
                ))
    }
}

/// A request as a provider sees it.
// Moved a handful of times per request; boxing the generation variant would cost an
// allocation on every generation request to save stack bytes on the others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceRequest {
    Embeddings(EmbeddingsRequest),
    Tensors(TensorRequest),
    Generate(GenerateRequest),
}

impl InferenceRequest {
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
    /// The model called one or more tools.
    ToolCalls,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// What a provider emits for one request. A request's stream ends after `Embeddings`,
/// `Tensors`, `Finished` or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceEvent {
    /// The embeddings, in input order.
    Embeddings(Vec<Embedding>),
    /// The requested output tensors.
    Tensors(Vec<NamedTensor>),
    /// Generation started: the prompt's size in tokens (after the chat template), and how
    /// many of them came from the prompt cache instead of being prefilled.
    Started {
        prompt_tokens: u32,
        cached_tokens: u32,
    },
    /// New generated text of choice `choice` (valid UTF-8, stop strings held back), with the
    /// ids of the tokens it decodes from (empty when a remote does not say) and, when asked
    /// for, their log probabilities.
    Text {
        choice: u32,
        text: String,
        token_ids: Vec<u32>,
        logprobs: Vec<TokenLogprobs>,
    },
    /// A tool call of choice `choice`, complete.
    ToolCall { choice: u32, call: ToolCall },
    /// Choice `choice` ended; the stream ends once every choice has.
    Finished {
        choice: u32,
        reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        cached_tokens: u32,
    },
    /// Which node and deployed model took the request: the first event of every answer (a
    /// stream continued on another replica, or passed down a fallback chain, says so again).
    Served { node: String, model: String },
}
