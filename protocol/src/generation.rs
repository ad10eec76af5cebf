//! The generation features a request may ask for beyond plain text: structured output, tools,
//! log probabilities, several choices; and what a provider reports about them.
//!
//! JSON documents (schemas, tool parameters, tool-call arguments) travel as JSON text, not as
//! `serde_json::Value`: peer frames are bincode, which cannot carry self-describing values.

use serde::{Deserialize, Serialize};

/// The most alternatives `top_logprobs` may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// How the answer must be shaped (`response_format`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against `schema` (JSON Schema, as JSON text).
    JsonSchema {
        name: String,
        schema: String,
        strict: bool,
    },
}

/// A function the model may call (`tools[i].function`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments, as JSON text (`{"type":"object"}` when not given).
    pub parameters: String,
}

/// Whether and which tool the model must call (`tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ToolChoice {
    /// Never call a tool: the tools are not shown to the model.
    None,
    /// The model decides; a call in its output is parsed out of the text.
    #[default]
    Auto,
    /// The model must call one of the tools (enforced while sampling).
    Required,
    /// The model must call this tool (enforced while sampling).
    Function(String),
}

/// A call the model made: OpenAI's `tool_calls[i]` with `arguments` as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A token with its log probability, as bytes (a token may be part of a UTF-8 character).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The sampled token and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    pub token: TokenProb,
    /// Most likely first; as many as the request's `top_logprobs`.
    pub top: Vec<TokenProb>,
}

impl TokenProb {
    /// The token's text; bytes that are not UTF-8 on their own are replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}
