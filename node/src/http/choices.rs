//! The OpenAI shapes of a generation's choices: collected for a JSON answer, or as SSE chunks;
//! log probabilities in the chat shape (`logprobs.content`) and the legacy completions shape
//! (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

use golek_protocol::generation::{TokenLogprobs, ToolCall};
use golek_protocol::inference::FinishReason;
use golek_protocol::openai::{AssistantMessage, ToolCallObject};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// One choice as it is collected.
#[derive(Default)]
pub struct Choice {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub logprobs: Vec<TokenLogprobs>,
    pub finish: Option<FinishReason>,
    pub completion_tokens: u32,
}

/// Chat logprob entries (`logprobs.content[i]`).
pub fn chat_logprobs(entries: &[TokenLogprobs]) -> Value {
    let entry = |t: &golek_protocol::generation::TokenProb| json!({"token": t.text(), "logprob": t.logprob, "bytes": t.bytes});
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = entry(&e.token);
            v["top_logprobs"] = e.top.iter().map(entry).collect();
            v
        })
        .collect();
    json!({"content": content})
}

/// Completions logprobs; `offset` is where this text starts in the whole choice.
pub fn completion_logprobs(entries: &[TokenLogprobs], mut offset: usize) -> Value {
    let mut tokens = Vec::with_capacity(entries.len());
    let mut token_logprobs = Vec::with_capacity(entries.len());
    let mut top = Vec::with_capacity(entries.len());
    let mut offsets = Vec::with_capacity(entries.len());
    for e in entries {
        let text = e.token.text();
        offsets.push(offset);
        offset += text.len();
        tokens.push(text);
        token_logprobs.push(e.token.logprob);
        let map: serde_json::Map<String, Value> =
            e.top.iter().map(|t| (t.text(), json!(t.logprob))).collect();
        top.push(Value::Object(map));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
           "text_offset": offsets})
}

/// Whether the request asked for log probabilities is not known here: `None` entries and no
/// request for them both give `null`.
fn logprobs_value(kind: Kind, entries: &[TokenLogprobs], wanted: bool, offset: usize) -> Value {
    if !wanted {
        return Value::Null;
    }
    match kind {
        Kind::Chat => chat_logprobs(entries),
        Kind::Completion => completion_logprobs(entries, offset),
    }
}

/// The `choices` array of a JSON answer.
pub fn collected(kind: Kind, choices: Vec<Choice>, wants_logprobs: bool) -> Vec<Value> {
    choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let reason = c.finish.map(|r| r.as_str());
            let logprobs = logprobs_value(kind, &c.logprobs, wants_logprobs, 0);
            match kind {
                Kind::Chat => {
                    let message = AssistantMessage {
                        role: "assistant".into(),
                        content: (!c.text.is_empty() || c.calls.is_empty()).then_some(c.text),
                        tool_calls: c.calls.iter().map(ToolCallObject::from).collect(),
                    };
                    json!({"index": index, "message": message, "finish_reason": reason,
                           "logprobs": logprobs})
                }
                Kind::Completion => json!({"index": index, "text": c.text,
                    "finish_reason": reason, "logprobs": logprobs}),
            }
        })
        .collect()
}

/// Builds SSE chunks for one request.
pub struct Chunks {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub kind: Kind,
    pub wants_logprobs: bool,
    /// Bytes of text sent so far per choice (completions' `text_offset`).
    pub offsets: Vec<usize>,
    /// Tool calls sent so far per choice (their `index`).
    pub calls: Vec<usize>,
}

impl Chunks {
    fn object(&self) -> &'static str {
        match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        }
    }

    fn wrap(&self, choice: Value) -> Value {
        json!({"id": self.id, "object": self.object(), "created": self.created,
               "model": self.model, "choices": [choice]})
    }

    /// The first chunk of a chat choice: its role.
    pub fn role(&self, choice: u32) -> Value {
        self.wrap(
            json!({"index": choice, "delta": {"role": "assistant", "content": ""},
                         "finish_reason": null, "logprobs": null}),
        )
    }

    pub fn text(&mut self, choice: u32, text: &str, logprobs: &[TokenLogprobs]) -> Value {
        let i = choice as usize;
        let offset = self.offsets.get(i).copied().unwrap_or(0);
        if let Some(o) = self.offsets.get_mut(i) {
            *o += text.len();
        }
        let lp = logprobs_value(self.kind, logprobs, self.wants_logprobs, offset);
        match self.kind {
            Kind::Chat => self.wrap(json!({"index": choice, "delta": {"content": text},
                                           "finish_reason": null, "logprobs": lp})),
            Kind::Completion => self.wrap(json!({"index": choice, "text": text,
                                                 "finish_reason": null, "logprobs": lp})),
        }
    }

    /// A whole tool call in one delta (OpenAI's clients accumulate deltas by `index`).
    pub fn tool_call(&mut self, choice: u32, call: &ToolCall) -> Value {
        let i = choice as usize;
        let index = self.calls.get(i).copied().unwrap_or(0);
        if let Some(n) = self.calls.get_mut(i) {
            *n += 1;
        }
        self.wrap(json!({"index": choice, "delta": {"tool_calls": [{
            "index": index, "id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}]},
            "finish_reason": null, "logprobs": null}))
    }

    pub fn finish(&self, choice: u32, reason: FinishReason) -> Value {
        match self.kind {
            Kind::Chat => self.wrap(json!({"index": choice, "delta": {},
                "finish_reason": reason.as_str(), "logprobs": null})),
            Kind::Completion => self.wrap(json!({"index": choice, "text": "",
                "finish_reason": reason.as_str(), "logprobs": null})),
        }
    }

    pub fn usage(&self, usage: &golek_protocol::openai::CompletionUsage) -> Value {
        json!({"id": self.id, "object": self.object(), "created": self.created,
               "model": self.model, "choices": [], "usage": usage})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::generation::TokenProb;

    fn lp(text: &str, logprob: f32) -> TokenLogprobs {
        let p = TokenProb {
            id: 1,
            bytes: text.as_bytes().to_vec(),
            logprob,
        };
        TokenLogprobs {
            token: p.clone(),
            top: vec![p],
        }
    }

    #[test]
    fn logprobs_take_openais_chat_and_completion_shapes() {
        let entries = [lp("Hel", -0.5), lp("lo", -0.25)];
        let chat = chat_logprobs(&entries);
        assert_eq!(chat["content"][1]["token"], "lo");
        assert_eq!(chat["content"][1]["bytes"], json!([108, 111]));
        assert_eq!(chat["content"][0]["top_logprobs"][0]["logprob"], -0.5);
        let completion = completion_logprobs(&entries, 4);
        assert_eq!(completion["text_offset"], json!([4, 7]));
        assert_eq!(completion["top_logprobs"][1]["lo"], -0.25);
    }

    #[test]
    fn a_choice_that_only_called_tools_has_null_content() {
        let choice = Choice {
            calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish: Some(FinishReason::ToolCalls),
            ..Default::default()
        };
        let out = collected(Kind::Chat, vec![choice], false);
        assert_eq!(out[0]["message"]["content"], Value::Null);
        assert_eq!(out[0]["message"]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(out[0]["finish_reason"], "tool_calls");
        assert_eq!(out[0]["logprobs"], Value::Null);
    }
}
