//! The OpenAI-compatible schemas, as clients send and receive them.
//!
//! Request types keep loosely typed fields (`input` as JSON) where the node validates them
//! itself, so that a bad value gets an error naming the field rather than a generic parse error.

use serde::{Deserialize, Serialize};

/// `POST /v1/embeddings` as sent by a client. Unknown fields are ignored, as OpenAI's own
/// clients may add new optional ones.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingsRequestBody {
    pub model: String,
    /// The request's deadline in seconds (as `x-golek-timeout-ms`, which wins when both are
    /// sent); clamped to the node's `http.request_timeout_ms`.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// A string, an array of strings, an array of token ids, or an array of token-id arrays.
    pub input: serde_json::Value,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Only the model's own dimension is accepted (the models served do not shorten vectors).
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
}

/// How embedding vectors are encoded in the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

/// One vector in an embeddings response; `embedding` is an array of floats or a base64 string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingObject {
    pub object: String,
    pub index: usize,
    pub embedding: EmbeddingData,
}

/// An embedding vector as floats, or as base64 of its little-endian f32 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub object: String,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: Usage,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// Golek's addition: what the model can do and its state on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golek: Option<ModelDetails>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelDetails {
    pub provider: String,
    pub capabilities: Vec<String>,
    pub state: String,
    /// The nodes that serve it (in a cluster), this one first when it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

/// The OpenAI error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl From<&crate::ErrorInfo> for ErrorBody {
    fn from(info: &crate::ErrorInfo) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: info.message.clone(),
                kind: info.code.as_str().to_string(),
                param: info.param.clone(),
                code: Some(info.code.as_str().to_string()),
            },
        }
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions` and `POST /v1/completions` as sent by a client (one struct for
/// both: `messages` for chat, `prompt` for completions). Numbers are checked by the node, so
/// that an out-of-range value gets an error naming its field.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GenerationRequestBody {
    pub model: String,
    /// The request's deadline in seconds (see [`EmbeddingsRequestBody::timeout`]).
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub messages: Option<serde_json::Value>,
    #[serde(default)]
    pub prompt: Option<serde_json::Value>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub min_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub stop: Option<serde_json::Value>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub user: Option<String>,
    /// Not OpenAI: keep generating past end-of-generation tokens (as llama.cpp's server).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// Chat: a boolean; completions: the number of alternatives (0..=5 in OpenAI's API).
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// Chat: alternatives per token (0..=20), with `logprobs: true`.
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
    #[serde(default)]
    pub tool_choice: Option<serde_json::Value>,
    /// Accepted; a choice may hold several calls either way.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
}

/// Token counts of a generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// OpenAI's `prompt_tokens_details`: `cached_tokens` came from the prompt cache.
    #[serde(default)]
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

impl CompletionUsage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        CompletionUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// A tool call in OpenAI's shape (`{"id", "type": "function", "function": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

impl From<&crate::generation::ToolCall> for ToolCallObject {
    fn from(call: &crate::generation::ToolCall) -> Self {
        ToolCallObject {
            id: call.id.clone(),
            kind: "function".into(),
            function: FunctionCall {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    /// `null` when the answer is only tool calls.
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: Option<String>,
    pub logprobs: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub finish_reason: Option<String>,
    pub logprobs: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: CompletionUsage,
}
