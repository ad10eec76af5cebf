//! The checks every door makes on a decoded request (HTTP after its JSON, the QUIC client
//! API and peer frames as they arrive): one authority, with the limits of [`crate::limits`].

use crate::generation::{ResponseFormat, ToolChoice, MAX_TOP_LOGPROBS};
use crate::inference::{EmbeddingInput, GenerateRequest, InferenceRequest, Prompt};
use crate::limits;
use crate::ErrorInfo;

impl GenerateRequest {
    /// The checks every door makes (HTTP, QUIC clients, peers): non-empty prompt, sampling
    /// values in range, tools and formats consistent.
    pub fn check(&self) -> Result<(), ErrorInfo> {
        let r = self;
        let bad = |param: &str, message: String| Err(ErrorInfo::invalid(param, message));
        let empty = match &r.prompt {
            Prompt::Text(t) => t.is_empty(),
            Prompt::Chat(m) => m.is_empty(),
        };
        if empty {
            return bad("prompt", "prompt: must not be empty".into());
        }
        if let Prompt::Chat(messages) = &r.prompt {
            for (i, m) in messages.iter().enumerate() {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
                    return bad(
                        &format!("messages[{i}].role"),
                        format!(
                            "messages[{i}].role: must be system, user, assistant or tool, got {:?}",
                            m.role
                        ),
                    );
                }
            }
        }
        if let Prompt::Chat(messages) = &r.prompt {
            if messages.len() > limits::MAX_MESSAGES {
                return bad(
                    "messages",
                    format!(
                        "messages: at most {} per request, got {}",
                        limits::MAX_MESSAGES,
                        messages.len()
                    ),
                );
            }
        }
        if r.max_tokens == Some(0) {
            return bad("max_tokens", "max_tokens: must be at least 1".into());
        }
        if r.n == 0 || i64::from(r.n) > limits::MAX_CHOICES {
            return bad(
                "n",
                format!("n: must be 1 to {}, got {}", limits::MAX_CHOICES, r.n),
            );
        }
        if !r.continuation.is_empty() {
            if r.n != 1 || r.constrained() || !r.tools.is_empty() {
                return bad(
                    "continuation",
                    "continuation: only a single unconstrained choice without tools can be continued".into(),
                );
            }
            if r.continuation.len() > limits::MAX_CONTINUATION_TOKENS {
                return bad(
                    "continuation",
                    format!(
                        "continuation: at most {} tokens, got {}",
                        limits::MAX_CONTINUATION_TOKENS,
                        r.continuation.len()
                    ),
                );
            }
        }
        if r.stop.len() > limits::MAX_STOP_STRINGS {
            return bad(
                "stop",
                format!(
                    "stop: at most {} strings, got {}",
                    limits::MAX_STOP_STRINGS,
                    r.stop.len()
                ),
            );
        }
        if r.tools.len() > limits::MAX_TOOLS {
            return bad(
                "tools",
                format!(
                    "tools: at most {} tools, got {}",
                    limits::MAX_TOOLS,
                    r.tools.len()
                ),
            );
        }
        if let Some(k) = r.logprobs {
            if k > MAX_TOP_LOGPROBS {
                return bad(
                    "top_logprobs",
                    format!("top_logprobs: must be 0 to {MAX_TOP_LOGPROBS}, got {k}"),
                );
            }
        }
        check_tools(r)?;
        if let Some(ResponseFormat::JsonSchema { schema, .. }) = &r.response_format {
            if serde_json::from_str::<serde_json::Value>(schema).is_err() {
                return bad(
                    "response_format",
                    "response_format.json_schema.schema: not valid JSON".into(),
                );
            }
        }
        if r.constrained() && r.sampling.ignore_eos {
            return bad(
                "ignore_eos",
                "ignore_eos: cannot be combined with response_format or a forced tool call".into(),
            );
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
        Ok(())
    }
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
                if r.inputs.len() > limits::MAX_EMBEDDING_INPUTS {
                    return bad(
                        "input",
                        format!(
                            "input: at most {} inputs per request, got {}",
                            limits::MAX_EMBEDDING_INPUTS,
                            r.inputs.len()
                        ),
                    );
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
                if r.inputs.len() > limits::MAX_TENSOR_INPUTS {
                    return bad(
                        "inputs",
                        format!(
                            "inputs: at most {} tensors per request, got {}",
                            limits::MAX_TENSOR_INPUTS,
                            r.inputs.len()
                        ),
                    );
                }
                let total = r
                    .inputs
                    .iter()
                    .try_fold(0usize, |sum, t| sum.checked_add(t.data.len()));
                if total.is_none_or(|n| n > limits::MAX_TENSOR_ELEMENTS) {
                    return bad(
                        "inputs",
                        format!(
                            "inputs: at most {} elements across the tensors of a request",
                            limits::MAX_TENSOR_ELEMENTS
                        ),
                    );
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
            InferenceRequest::Generate(r) => r.check()?,
        }
        Ok(())
    }
}

/// The tool checks shared by every door: names present and unique, parameters JSON, a named
/// choice among the tools, tool messages answering a call.
fn check_tools(r: &GenerateRequest) -> Result<(), ErrorInfo> {
    let bad = |param: &str, message: String| Err(ErrorInfo::invalid(param, message));
    if !r.tools.is_empty() && matches!(r.prompt, Prompt::Text(_)) {
        return bad("tools", "tools: only chat requests may offer tools".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, tool) in r.tools.iter().enumerate() {
        if tool.name.is_empty() {
            return bad(
                &format!("tools[{i}].function.name"),
                format!("tools[{i}].function.name: must not be empty"),
            );
        }
        if !names.insert(tool.name.as_str()) {
            return bad(
                &format!("tools[{i}].function.name"),
                format!("tools[{i}].function.name: {:?} is offered twice", tool.name),
            );
        }
        if serde_json::from_str::<serde_json::Value>(&tool.parameters).is_err() {
            return bad(
                &format!("tools[{i}].function.parameters"),
                format!("tools[{i}].function.parameters: not valid JSON"),
            );
        }
    }
    match &r.tool_choice {
        ToolChoice::Required if r.tools.is_empty() => bad(
            "tool_choice",
            "tool_choice: \"required\" needs tools".into(),
        ),
        ToolChoice::Function(name) if !names.contains(name.as_str()) => bad(
            "tool_choice",
            format!("tool_choice: no tool named {name:?} is offered"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::ToolSpec;
    use crate::inference::{
        ChatMessage, EmbeddingsRequest, NamedTensor, SamplingParams, TensorData, TensorRequest,
    };

    fn generate(edit: impl Fn(&mut GenerateRequest)) -> InferenceRequest {
        let mut r = GenerateRequest::new(
            Prompt::Text("hi".into()),
            Some(4),
            SamplingParams::default(),
        );
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
            (generate(|r| r.n = 0), "n"),
            (generate(|r| r.n = 129), "n"),
            (generate(|r| r.stop = vec!["s".into(); 5]), "stop"),
            (
                generate(|r| r.prompt = Prompt::Chat(vec![ChatMessage::new("user", "x"); 4097])),
                "messages",
            ),
            (
                InferenceRequest::Embeddings(EmbeddingsRequest {
                    inputs: vec![EmbeddingInput::Text("x".into()); 5000],
                }),
                "input",
            ),
            (
                InferenceRequest::Tensors(TensorRequest {
                    inputs: (0..65)
                        .map(|i| NamedTensor {
                            name: format!("t{i}"),
                            shape: vec![1],
                            data: TensorData::F32(vec![1.0]),
                        })
                        .collect(),
                    outputs: vec![],
                }),
                "inputs",
            ),
            (
                InferenceRequest::Tensors(TensorRequest {
                    inputs: vec![NamedTensor {
                        name: "big".into(),
                        shape: vec![(16 << 20) + 1],
                        data: TensorData::F32(vec![0.0; (16 << 20) + 1]),
                    }],
                    outputs: vec![],
                }),
                "inputs",
            ),
            (generate(|r| r.logprobs = Some(21)), "top_logprobs"),
            (
                generate(|r| {
                    r.response_format = Some(ResponseFormat::JsonSchema {
                        name: "x".into(),
                        schema: "{".into(),
                        strict: true,
                    })
                }),
                "response_format",
            ),
            (
                generate(|r| {
                    r.prompt = Prompt::Chat(vec![ChatMessage::new("user", "hi")]);
                    r.tools = vec![ToolSpec {
                        name: "f".into(),
                        description: None,
                        parameters: "{}".into(),
                    }];
                    r.tool_choice = ToolChoice::Function("g".into());
                }),
                "tool_choice",
            ),
            (
                generate(|r| {
                    r.response_format = Some(ResponseFormat::JsonObject);
                    r.sampling.ignore_eos = true;
                }),
                "ignore_eos",
            ),
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
