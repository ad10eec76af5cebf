//! Client input, checked and turned into the internal `Valid*` forms. Every error names the
//! field at fault; nothing here panics on any input.

use crate::inference::{
    ChatMessage, EmbeddingInput, EmbeddingsRequest, GenerateRequest, InferenceRequest, Prompt,
    SamplingParams,
};
use crate::openai::{EmbeddingsRequestBody, EncodingFormat, GenerationRequestBody};
use crate::ErrorInfo;
use serde::de::DeserializeOwned;

pub(crate) mod features;

/// Most inputs one embeddings request may carry (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Parses a JSON body into `T`; errors say where (`input`, `encoding_format`) and why.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorInfo> {
    if bytes.is_empty() {
        return Err(ErrorInfo::invalid(
            "body",
            "the request body is empty; send a JSON object",
        ));
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() => {
            return Err(ErrorInfo::invalid(
                "body",
                "invalid type: the body must be a JSON object",
            ));
        }
        _ => {}
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            if let Err(e) = de.end() {
                return Err(ErrorInfo::invalid("body", format!("malformed JSON: {e}")));
            }
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ErrorInfo::invalid(
                    "body",
                    format!("malformed JSON: {inner}"),
                ));
            }
            let message = inner.to_string();
            // serde reports a missing field at its parent; name the field itself.
            let param = match message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(field) if path == "." => field.to_string(),
                Some(field) => format!("{path}.{field}"),
                None if path == "." => "body".to_string(),
                None => path,
            };
            Err(ErrorInfo::invalid(
                param.clone(),
                format!("{param}: {message}"),
            ))
        }
    }
}

/// A validated embeddings request.
#[derive(Debug)]
pub struct ValidEmbeddings {
    pub model: String,
    pub request: InferenceRequest,
    pub encoding_format: EncodingFormat,
    pub dimensions: Option<u32>,
    /// The body's `timeout`, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// A body's `timeout` (seconds, above 0, at most a day) in milliseconds.
fn body_timeout(timeout: Option<f64>) -> Result<Option<u64>, ErrorInfo> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => {
            Ok(Some(((t * 1000.0).ceil() as u64).max(1)))
        }
        Some(t) => Err(ErrorInfo::invalid(
            "timeout",
            format!("timeout: seconds above 0 and at most 86400, got {t}"),
        )),
    }
}

fn token_list(values: &[serde_json::Value], param: &str) -> Result<Vec<u32>, ErrorInfo> {
    if values.is_empty() {
        return Err(ErrorInfo::invalid(
            param,
            format!("{param}: a token array must not be empty"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ErrorInfo::invalid(
                        param,
                        format!(
                            "{param}[{i}]: token ids are integers from 0 to {}, got {v}",
                            u32::MAX
                        ),
                    )
                })
        })
        .collect()
}

fn text(value: &str, param: &str) -> Result<EmbeddingInput, ErrorInfo> {
    if value.is_empty() {
        return Err(ErrorInfo::invalid(
            param,
            format!("{param}: must not be an empty string"),
        ));
    }
    Ok(EmbeddingInput::Text(value.to_string()))
}

pub fn embeddings(body: EmbeddingsRequestBody) -> Result<ValidEmbeddings, ErrorInfo> {
    if body.model.trim().is_empty() {
        return Err(ErrorInfo::invalid(
            "model",
            "model: must name a model (see GET /v1/models)",
        ));
    }
    use serde_json::Value;
    let inputs = match &body.input {
        Value::String(s) => vec![text(s, "input")?],
        Value::Array(items) if items.is_empty() => {
            return Err(ErrorInfo::invalid("input", "input: must not be an empty array"));
        }
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![EmbeddingInput::Tokens(token_list(items, "input")?)]
        }
        Value::Array(items) => {
            if items.len() > MAX_EMBEDDING_INPUTS {
                return Err(ErrorInfo::invalid(
                    "input",
                    format!(
                        "input: at most {MAX_EMBEDDING_INPUTS} inputs per request, got {}",
                        items.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let param = format!("input[{i}]");
                out.push(match item {
                    Value::String(s) => text(s, &param)?,
                    Value::Array(tokens) => EmbeddingInput::Tokens(token_list(tokens, &param)?),
                    other => {
                        return Err(ErrorInfo::invalid(
                            param.clone(),
                            format!("{param}: expected a string or an array of token ids, got {}", kind(other)),
                        ))
                    }
                });
            }
            out
        }
        other => {
            return Err(ErrorInfo::invalid(
                "input",
                format!(
                    "input: expected a string, an array of strings, an array of token ids or an array of token-id arrays, got {}",
                    kind(other)
                ),
            ))
        }
    };
    if body.dimensions == Some(0) {
        return Err(ErrorInfo::invalid(
            "dimensions",
            "dimensions: must be at least 1",
        ));
    }
    Ok(ValidEmbeddings {
        timeout_ms: body_timeout(body.timeout)?,
        model: body.model,
        request: InferenceRequest::Embeddings(EmbeddingsRequest { inputs }),
        encoding_format: body.encoding_format.unwrap_or_default(),
        dimensions: body.dimensions,
    })
}

/// A validated chat or completion request.
#[derive(Debug)]
pub struct ValidGeneration {
    pub model: String,
    pub request: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
    /// The body's `timeout`, in milliseconds.
    pub timeout_ms: Option<u64>,
}

fn in_range(
    param: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
    min_open: bool,
) -> Result<Option<f32>, ErrorInfo> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && (if min_open { v > min } else { v >= min }) && v <= max => {
            Ok(Some(v as f32))
        }
        Some(v) => {
            let low = if min_open {
                format!("above {min}")
            } else {
                format!("at least {min}")
            };
            Err(ErrorInfo::invalid(
                param,
                format!("{param}: must be {low} and at most {max}, got {v}"),
            ))
        }
    }
}

/// The most stop strings a request may give (OpenAI's limit).
pub const MAX_STOP_STRINGS: usize = 4;

fn stop_strings(value: Option<&serde_json::Value>) -> Result<Vec<String>, ErrorInfo> {
    use serde_json::Value;
    let list = match value {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ErrorInfo::invalid(
                        "stop",
                        format!("stop[{i}]: expected a string, got {}", kind(v)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(ErrorInfo::invalid(
                "stop",
                format!(
                    "stop: expected a string or an array of strings, got {}",
                    kind(other)
                ),
            ))
        }
    };
    if list.len() > MAX_STOP_STRINGS {
        return Err(ErrorInfo::invalid(
            "stop",
            format!(
                "stop: at most {MAX_STOP_STRINGS} strings, got {}",
                list.len()
            ),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(ErrorInfo::invalid(
            "stop",
            "stop: strings must not be empty",
        ));
    }
    Ok(list)
}

fn message_content(value: &serde_json::Value, param: &str) -> Result<String, ErrorInfo> {
    use serde_json::Value;
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{param}[{j}]");
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ErrorInfo::invalid(
                            p.clone(),
                            format!("{p}: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        other => Err(ErrorInfo::invalid(
            param,
            format!(
                "{param}: expected a string or an array of text parts, got {}",
                kind(other)
            ),
        )),
    }
}

fn chat_messages(value: Option<&serde_json::Value>) -> Result<Vec<ChatMessage>, ErrorInfo> {
    let Some(value) = value else {
        return Err(ErrorInfo::invalid(
            "messages",
            "messages: missing field `messages`",
        ));
    };
    let items = value.as_array().ok_or_else(|| {
        ErrorInfo::invalid(
            "messages",
            format!(
                "messages: expected an array of messages, got {}",
                kind(value)
            ),
        )
    })?;
    if items.is_empty() {
        return Err(ErrorInfo::invalid(
            "messages",
            "messages: must not be an empty array",
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = item
            .get("role")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                ErrorInfo::invalid(
                    format!("{param}.role"),
                    format!("{param}.role: expected a string"),
                )
            })?;
        let role = match role {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ErrorInfo::invalid(
                    format!("{param}.role"),
                    format!(
                        "{param}.role: must be system, developer, user, assistant or tool, got {other:?}"
                    ),
                ))
            }
        };
        let tool_calls = if role == "assistant" {
            features::message_tool_calls(item.get("tool_calls"), &format!("{param}.tool_calls"))?
        } else {
            vec![]
        };
        let content = match item.get("content") {
            // An assistant turn that only called tools has no content.
            Some(serde_json::Value::Null) | None if !tool_calls.is_empty() => String::new(),
            Some(c) => message_content(c, &format!("{param}.content"))?,
            None => {
                return Err(ErrorInfo::invalid(
                    format!("{param}.content"),
                    format!("{param}.content: missing"),
                ))
            }
        };
        let tool_call_id = match (role, item.get("tool_call_id")) {
            ("tool", Some(serde_json::Value::String(id))) => Some(id.clone()),
            ("tool", _) => {
                return Err(ErrorInfo::invalid(
                    format!("{param}.tool_call_id"),
                    format!("{param}.tool_call_id: a tool message names the call it answers"),
                ))
            }
            _ => None,
        };
        out.push(ChatMessage {
            role: role.to_string(),
            content,
            tool_calls,
            tool_call_id,
        });
    }
    Ok(out)
}

fn completion_prompt(value: Option<&serde_json::Value>) -> Result<String, ErrorInfo> {
    use serde_json::Value;
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ErrorInfo::invalid("prompt", "prompt: must not be empty")),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            completion_prompt(items.first())
        }
        Some(Value::Array(_)) => Err(ErrorInfo::invalid(
            "prompt",
            "prompt: one prompt per request (a string, or an array holding one string)",
        )),
        Some(other) => Err(ErrorInfo::invalid(
            "prompt",
            format!("prompt: expected a string, got {}", kind(other)),
        )),
        None => Err(ErrorInfo::invalid(
            "prompt",
            "prompt: missing field `prompt`",
        )),
    }
}

/// Checks a chat (`chat == true`) or completion request.
pub fn generation(body: GenerationRequestBody, chat: bool) -> Result<ValidGeneration, ErrorInfo> {
    if body.model.trim().is_empty() {
        return Err(ErrorInfo::invalid(
            "model",
            "model: must name a model (see GET /v1/models)",
        ));
    }
    let prompt = if chat {
        Prompt::Chat(chat_messages(body.messages.as_ref())?)
    } else {
        Prompt::Text(completion_prompt(body.prompt.as_ref())?)
    };
    let (max_param, max_tokens) = match (body.max_completion_tokens, body.max_tokens) {
        (Some(v), _) => ("max_completion_tokens", Some(v)),
        (None, v) => ("max_tokens", v),
    };
    let max_tokens = match max_tokens {
        None => None,
        Some(v) if v >= 1 && v <= u32::MAX as i64 => Some(v as u32),
        Some(v) => {
            return Err(ErrorInfo::invalid(
                max_param,
                format!("{max_param}: must be at least 1, got {v}"),
            ))
        }
    };
    let n = features::choices(body.n)?;
    let logprobs = features::logprobs(chat, body.logprobs.as_ref(), body.top_logprobs)?;
    let response_format = features::response_format(body.response_format.as_ref())?;
    let tools = features::tools(body.tools.as_ref())?;
    if !chat && !tools.is_empty() {
        return Err(ErrorInfo::invalid(
            "tools",
            "tools: only chat completions may offer tools",
        ));
    }
    let tool_choice = features::tool_choice(body.tool_choice.as_ref(), !tools.is_empty())?;
    let top_k = match body.top_k {
        None => 0,
        Some(k) if (0..=u32::MAX as i64).contains(&k) => k as u32,
        Some(k) => {
            return Err(ErrorInfo::invalid(
                "top_k",
                format!("top_k: must be 0 (off) or more, got {k}"),
            ))
        }
    };
    let defaults = SamplingParams::default();
    let sampling = SamplingParams {
        temperature: in_range("temperature", body.temperature, 0.0, 2.0, false)?
            .unwrap_or(defaults.temperature),
        top_p: in_range("top_p", body.top_p, 0.0, 1.0, true)?.unwrap_or(defaults.top_p),
        top_k,
        min_p: in_range("min_p", body.min_p, 0.0, 1.0, false)?.unwrap_or(defaults.min_p),
        seed: body.seed.map(|s| s as u64),
        presence_penalty: in_range("presence_penalty", body.presence_penalty, -2.0, 2.0, false)?
            .unwrap_or(0.0),
        frequency_penalty: in_range(
            "frequency_penalty",
            body.frequency_penalty,
            -2.0,
            2.0,
            false,
        )?
        .unwrap_or(0.0),
        ignore_eos: body.ignore_eos.unwrap_or(false),
    };
    let stream = body.stream.unwrap_or(false);
    if body.stream_options.is_some() && !stream {
        return Err(ErrorInfo::invalid(
            "stream_options",
            "stream_options: only allowed when stream is true",
        ));
    }
    let request = GenerateRequest {
        prompt,
        max_tokens,
        stop: stop_strings(body.stop.as_ref())?,
        sampling,
        n,
        logprobs,
        response_format,
        tools,
        tool_choice,
        continuation: Vec::new(),
    };
    request.check()?;
    Ok(ValidGeneration {
        timeout_ms: body_timeout(body.timeout)?,
        model: body.model,
        request,
        stream,
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
