//! The OpenAI wire format on the upstream side: the request body a validated request becomes
//! (tools, `response_format`, log probabilities and `n` included), and the streamed chunks
//! read back into events: text per choice, log probabilities, tool-call deltas put back
//! together, finish reasons and usage.

use golek_protocol::generation::{ResponseFormat, TokenLogprobs, TokenProb, ToolCall, ToolChoice};
use golek_protocol::inference::{FinishReason, GenerateRequest, InferenceEvent, Prompt};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

fn message_json(m: &golek_protocol::inference::ChatMessage) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            v["content"] = Value::Null;
        }
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// The upstream request body for a validated request (always streamed upstream).
pub fn upstream_body(model: &str, request: &GenerateRequest) -> (String, Value) {
    let s = &request.sampling;
    let chat = matches!(request.prompt, Prompt::Chat(_));
    let (path, mut body) = match &request.prompt {
        Prompt::Chat(messages) => (
            "/chat/completions",
            json!({"model": model, "messages": messages.iter().map(message_json).collect::<Vec<_>>()}),
        ),
        Prompt::Text(text) => ("/completions", json!({"model": model, "prompt": text})),
    };
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body["temperature"] = json!(s.temperature);
    body["top_p"] = json!(s.top_p);
    if let Some(k) = request.max_tokens {
        body["max_tokens"] = json!(k);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed as i64);
    }
    if s.presence_penalty != 0.0 {
        body["presence_penalty"] = json!(s.presence_penalty);
    }
    if s.frequency_penalty != 0.0 {
        body["frequency_penalty"] = json!(s.frequency_penalty);
    }
    // Not OpenAI: only sent when asked for (llama.cpp and vLLM take them, OpenAI refuses).
    if s.top_k > 0 {
        body["top_k"] = json!(s.top_k);
    }
    if s.min_p > 0.0 {
        body["min_p"] = json!(s.min_p);
    }
    if s.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    if request.n > 1 {
        body["n"] = json!(request.n);
    }
    match (request.logprobs, chat) {
        (Some(k), true) => {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(k);
        }
        (Some(k), false) => body["logprobs"] = json!(k),
        (None, _) => {}
    }
    match &request.response_format {
        Some(ResponseFormat::JsonObject) => {
            body["response_format"] = json!({"type": "json_object"})
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            body["response_format"] = json!({"type": "json_schema",
                "json_schema": {"name": name, "schema": parsed(schema), "strict": strict}})
        }
        None => {}
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": parsed(&t.parameters)});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::None => json!("none"),
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
    }
    (path.to_string(), body)
}

pub fn upstream_error(status: u16, text: &str) -> ErrorInfo {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_else(|| text.chars().take(500).collect());
    let code = match status {
        400 | 404 | 413 | 422 => ErrorCode::InvalidRequest,
        429 => ErrorCode::Overloaded,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::ProviderError,
    };
    ErrorInfo::new(code, format!("upstream answered HTTP {status}: {message}"))
}

/// A tool call being put together from its deltas.
#[derive(Debug, Default, Clone)]
struct CallParts {
    id: String,
    name: String,
    arguments: String,
}

impl CallParts {
    fn into_event(self, choice: usize) -> InferenceEvent {
        InferenceEvent::ToolCall {
            choice: choice as u32,
            call: ToolCall {
                id: self.id,
                name: self.name,
                arguments: self.arguments,
            },
        }
    }
}

#[derive(Debug, Default)]
struct ChoiceState {
    calls: Vec<CallParts>,
    finish: Option<FinishReason>,
    chunks: u32,
}

/// What has been read of an upstream stream so far.
#[derive(Debug)]
pub struct StreamState {
    choices: Vec<ChoiceState>,
    pub prompt_tokens: u32,
    pub completion_tokens: Option<u32>,
    pub cached_tokens: u32,
    pub done: bool,
}

fn prob(token: &Value, text: &str, logprob: f64) -> TokenProb {
    let bytes = token["bytes"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u8)
                .collect()
        })
        .unwrap_or_else(|| text.as_bytes().to_vec());
    TokenProb {
        id: 0,
        bytes,
        logprob: logprob as f32,
    }
}

/// Log probabilities of one chunk, in either OpenAI shape.
fn logprobs_of(v: &Value) -> Vec<TokenLogprobs> {
    if let Some(content) = v["content"].as_array() {
        return content
            .iter()
            .map(|t| {
                let text = t["token"].as_str().unwrap_or_default();
                TokenLogprobs {
                    token: prob(t, text, t["logprob"].as_f64().unwrap_or(f64::NEG_INFINITY)),
                    top: t["top_logprobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let text = a["token"].as_str().unwrap_or_default();
                            prob(a, text, a["logprob"].as_f64().unwrap_or(f64::NEG_INFINITY))
                        })
                        .collect(),
                }
            })
            .collect();
    }
    let tokens = v["tokens"].as_array().cloned().unwrap_or_default();
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let text = t.as_str().unwrap_or_default();
            let lp = v["token_logprobs"][i].as_f64().unwrap_or(f64::NEG_INFINITY);
            let mut top: Vec<TokenProb> = v["top_logprobs"][i]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, p)| prob(&Value::Null, k, p.as_f64().unwrap_or(f64::NEG_INFINITY)))
                .collect();
            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            TokenLogprobs {
                token: prob(&Value::Null, text, lp),
                top,
            }
        })
        .collect()
}

impl StreamState {
    pub fn new(n: u32) -> Self {
        StreamState {
            choices: (0..n.max(1)).map(|_| ChoiceState::default()).collect(),
            prompt_tokens: 0,
            completion_tokens: None,
            cached_tokens: 0,
            done: false,
        }
    }

    /// Reads one `data:` payload; returns the events it makes (text and finished tool calls).
    pub fn read(&mut self, payload: &str) -> Result<Vec<InferenceEvent>, ErrorInfo> {
        if payload == "[DONE]" {
            self.done = true;
            return Ok(vec![]);
        }
        let v: Value = serde_json::from_str(payload).map_err(|e| {
            ErrorInfo::new(
                ErrorCode::ProviderError,
                format!("upstream sent a chunk that is not JSON: {e}"),
            )
        })?;
        if v.get("error").is_some() {
            return Err(upstream_error(502, payload));
        }
        let mut out = Vec::new();
        for choice in v["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().unwrap_or(0) as usize;
            let Some(state) = self.choices.get_mut(index) else {
                return Err(ErrorInfo::new(
                    ErrorCode::ProviderError,
                    format!(
                        "upstream sent choice {index}, more than the {} asked for",
                        self.choices.len()
                    ),
                ));
            };
            let text = choice["delta"]["content"]
                .as_str()
                .or_else(|| choice["text"].as_str())
                .unwrap_or_default();
            let logprobs = logprobs_of(&choice["logprobs"]);
            if !text.is_empty() || !logprobs.is_empty() {
                state.chunks += 1;
                out.push(InferenceEvent::Text {
                    choice: index as u32,
                    text: text.to_string(),
                    token_ids: vec![],
                    logprobs,
                });
            }
            for delta in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let at = delta["index"].as_u64().unwrap_or(state.calls.len() as u64) as usize;
                if at > state.calls.len() + 64 {
                    return Err(ErrorInfo::new(
                        ErrorCode::ProviderError,
                        format!("upstream sent tool call index {at}"),
                    ));
                }
                if state.calls.len() <= at {
                    state.calls.resize(at + 1, CallParts::default());
                }
                let call = &mut state.calls[at];
                if let Some(id) = delta["id"].as_str() {
                    call.id = id.to_string();
                }
                if let Some(name) = delta["function"]["name"].as_str() {
                    call.name.push_str(name);
                }
                if let Some(args) = delta["function"]["arguments"].as_str() {
                    call.arguments.push_str(args);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                state.finish = Some(match reason {
                    "length" => FinishReason::Length,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    _ => FinishReason::Stop,
                });
                out.extend(
                    std::mem::take(&mut state.calls)
                        .into_iter()
                        .map(|c| c.into_event(index)),
                );
            }
        }
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            self.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as u32;
            self.completion_tokens = usage["completion_tokens"].as_u64().map(|c| c as u32);
            self.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0) as u32;
        }
        Ok(out)
    }

    /// The end of the stream: calls never closed by a finish reason, then one `Finished` per
    /// choice. Upstream usage counts all choices: it goes to choice 0, the others count the
    /// chunks they got only when the upstream gave no usage.
    pub fn finish(mut self) -> Vec<InferenceEvent> {
        let mut out = Vec::new();
        for (index, state) in self.choices.iter_mut().enumerate() {
            let calls = std::mem::take(&mut state.calls);
            let called = !calls.is_empty();
            out.extend(calls.into_iter().map(|c| c.into_event(index)));
            if called && state.finish.is_none() {
                state.finish = Some(FinishReason::ToolCalls);
            }
        }
        for (index, state) in self.choices.iter().enumerate() {
            let completion_tokens = match self.completion_tokens {
                Some(total) if index == 0 => total,
                Some(_) => 0,
                None => state.chunks,
            };
            out.push(InferenceEvent::Finished {
                choice: index as u32,
                reason: state.finish.unwrap_or(FinishReason::Stop),
                prompt_tokens: self.prompt_tokens,
                completion_tokens,
                cached_tokens: self.cached_tokens,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::generation::ToolSpec;
    use golek_protocol::inference::{ChatMessage, SamplingParams};

    fn texts(events: &[InferenceEvent]) -> Vec<(u32, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                InferenceEvent::Text { choice, text, .. } => Some((*choice, text.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn chunks_of_both_kinds_with_choices_usage_and_logprobs_are_read() {
        let mut s = StreamState::new(2);
        let chat = r#"{"choices":[{"index":1,"delta":{"content":"hi"},"finish_reason":null,
            "logprobs":{"content":[{"token":"hi","logprob":-0.5,"bytes":[104,105],"top_logprobs":[{"token":"hi","logprob":-0.5}]}]}}]}"#;
        let events = s.read(chat).unwrap();
        assert_eq!(texts(&events), vec![(1, "hi".to_string())]);
        let InferenceEvent::Text { logprobs, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(logprobs[0].token.bytes, b"hi");
        assert_eq!(logprobs[0].top.len(), 1);
        let text = r#"{"choices":[{"index":0,"text":"yo","finish_reason":"length",
            "logprobs":{"tokens":["yo"],"token_logprobs":[-1.0],"top_logprobs":[{"yo":-1.0,"ya":-2.0}]}}]}"#;
        let events = s.read(text).unwrap();
        let InferenceEvent::Text { logprobs, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(logprobs[0].top[1].text(), "ya");
        s.read(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":3}}}"#).unwrap();
        s.read("[DONE]").unwrap();
        assert!(s.done);
        let end = s.finish();
        assert!(matches!(
            end[0],
            InferenceEvent::Finished {
                choice: 0,
                reason: FinishReason::Length,
                prompt_tokens: 5,
                completion_tokens: 7,
                cached_tokens: 3
            }
        ));
        assert!(matches!(
            end[1],
            InferenceEvent::Finished {
                choice: 1,
                completion_tokens: 0,
                ..
            }
        ));
        assert!(StreamState::new(1).read("{not json").is_err());
        let err = StreamState::new(1)
            .read(r#"{"error":{"message":"boom"}}"#)
            .unwrap_err();
        assert!(err.message.contains("boom"));
        assert!(StreamState::new(1)
            .read(r#"{"choices":[{"index":3,"delta":{}}]}"#)
            .is_err());
    }

    #[test]
    fn tool_call_deltas_are_put_back_together() {
        let mut s = StreamState::new(1);
        s.read(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#).unwrap();
        s.read(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#).unwrap();
        s.read(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#).unwrap();
        let events = s
            .read(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#)
            .unwrap();
        let InferenceEvent::ToolCall { call, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (call.id.as_str(), call.name.as_str()),
            ("call_1", "get_weather")
        );
        assert_eq!(call.arguments, r#"{"city":"Paris"}"#);
        let end = s.finish();
        assert!(matches!(
            end[0],
            InferenceEvent::Finished {
                reason: FinishReason::ToolCalls,
                ..
            }
        ));
    }

    #[test]
    fn the_upstream_body_carries_what_was_asked_and_only_that() {
        let mut request = GenerateRequest::new(
            Prompt::Text("once".into()),
            Some(4),
            SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
        );
        request.stop = vec!["x".into()];
        let (path, body) = upstream_body("m", &request);
        assert_eq!(path, "/completions");
        assert_eq!(body["prompt"], "once");
        assert_eq!(body["max_tokens"], 4);
        assert_eq!(body["stream"], true);
        for absent in ["top_k", "seed", "n", "logprobs", "tools", "response_format"] {
            assert!(body.get(absent).is_none(), "{absent}");
        }
        request.logprobs = Some(2);
        assert_eq!(upstream_body("m", &request).1["logprobs"], 2);
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }];
        let mut chat = GenerateRequest::new(
            Prompt::Chat(vec![ChatMessage::new("user", "hi"), call]),
            None,
            SamplingParams::default(),
        );
        chat.n = 2;
        chat.logprobs = Some(3);
        chat.tools = vec![ToolSpec {
            name: "f".into(),
            description: None,
            parameters: r#"{"type":"object"}"#.into(),
        }];
        chat.tool_choice = ToolChoice::Required;
        chat.response_format = Some(ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: r#"{"type":"object"}"#.into(),
            strict: true,
        });
        let (path, body) = upstream_body("m", &chat);
        assert_eq!(path, "/chat/completions");
        assert_eq!(
            (
                body["n"].clone(),
                body["logprobs"].clone(),
                body["top_logprobs"].clone()
            ),
            (json!(2), json!(true), json!(3))
        );
        assert_eq!(
            body["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        assert_eq!(body["messages"][1]["content"], Value::Null);
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(
            upstream_error(429, r#"{"error":{"message":"slow down"}}"#).code,
            ErrorCode::Overloaded
        );
        assert_eq!(upstream_error(500, "oops").code, ErrorCode::ProviderError);
    }
}
