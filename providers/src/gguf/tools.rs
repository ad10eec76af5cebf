//! Tool calls parsed out of generated text, as the text streams.
//!
//! Formats understood:
//! - Hermes / Qwen / SmolLM2: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks,
//!   any number of them, with text around them;
//! - Llama 3 and forced calls: the whole answer is one JSON object `{"name": ...,
//!   "arguments"|"parameters": {...}}` (optionally after `<|python_tag|>`), or an array of them.
//!
//! Text that could still turn into a call is held back; a block that does not parse as a call
//! is released as text, so nothing the model wrote is lost.

use std::sync::atomic::{AtomicU64, Ordering};

use golek_protocol::generation::{ToolCall, ToolSpec};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// A fresh call id (`call_` and 24 hex digits, unique within the process).
pub fn call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("call_{:016x}{:08x}", t ^ 0x9e37_79b9_7f4a_7c15, n as u32)
}

/// Reads one call object; `None` when it is not a call to one of `tools`.
fn call_from(value: &serde_json::Value, tools: &[ToolSpec]) -> Option<ToolCall> {
    let name = value.get("name")?.as_str()?;
    if !tools.iter().any(|t| t.name == name) {
        return None;
    }
    let args = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let arguments = match args {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Some(ToolCall {
        id: call_id(),
        name: name.to_string(),
        arguments,
    })
}

/// Calls from a whole answer that is JSON (one call or an array of calls).
pub fn parse_json_calls(text: &str, tools: &[ToolSpec]) -> Option<Vec<ToolCall>> {
    let text = text.trim();
    let text = text.strip_prefix(PYTHON_TAG).unwrap_or(text).trim();
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let calls: Option<Vec<ToolCall>> = match &value {
        serde_json::Value::Array(items) if !items.is_empty() => {
            items.iter().map(|v| call_from(v, tools)).collect()
        }
        serde_json::Value::Object(_) => call_from(&value, tools).map(|c| vec![c]),
        _ => None,
    };
    calls
}

/// What the scanner lets through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub text: String,
    pub calls: Vec<ToolCall>,
}

/// Separates tool calls from text as it streams.
#[derive(Debug)]
pub struct ToolScanner {
    tools: Vec<ToolSpec>,
    held: String,
    /// Inside a `<tool_call>` block.
    in_block: bool,
    /// The answer so far could be one JSON call (nothing but JSON seen yet).
    whole_json: bool,
    /// Anything released yet.
    started: bool,
    pub calls_made: usize,
}

impl ToolScanner {
    /// `forced`: the grammar makes the whole answer a JSON call.
    pub fn new(tools: Vec<ToolSpec>) -> Self {
        ToolScanner {
            tools,
            held: String::new(),
            in_block: false,
            whole_json: true,
            started: false,
            calls_made: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> Scanned {
        self.held.push_str(text);
        let mut out = Scanned::default();
        loop {
            if self.whole_json && !self.started {
                let t = self.held.trim_start();
                if t.is_empty() || t.starts_with('{') || t.starts_with('[') {
                    return out;
                }
                if PYTHON_TAG.starts_with(t) || t.starts_with(PYTHON_TAG) {
                    return out;
                }
                self.whole_json = false;
            }
            if self.in_block {
                let Some(end) = self.held.find(CLOSE) else {
                    return out;
                };
                let body = self.held[..end].to_string();
                self.held.drain(..end + CLOSE.len());
                self.in_block = false;
                match parse_json_calls(&body, &self.tools) {
                    Some(calls) => {
                        self.calls_made += calls.len();
                        out.calls.extend(calls);
                    }
                    None => out.text.push_str(&format!("{OPEN}{body}{CLOSE}")),
                }
                continue;
            }
            if let Some(at) = self.held.find(OPEN) {
                out.text.push_str(&self.held[..at]);
                self.held.drain(..at + OPEN.len());
                self.in_block = true;
                continue;
            }
            // Hold a suffix that may begin `<tool_call>`.
            let keep = (1..OPEN.len())
                .rev()
                .find(|&i| self.held.ends_with(&OPEN[..i]))
                .unwrap_or(0);
            let cut = self.held.len() - keep;
            out.text.push_str(&self.held[..cut]);
            self.held.drain(..cut);
            if !out.text.is_empty() {
                self.started = true;
            }
            // Text before a call is dropped by no one: it is released as it comes.
            if !out.text.trim().is_empty() {
                self.started = true;
            }
            return out;
        }
    }

    /// The end of the answer: a held JSON answer or an unclosed block becomes calls or text.
    pub fn finish(&mut self) -> Scanned {
        let held = std::mem::take(&mut self.held);
        let mut out = Scanned::default();
        if self.in_block || (self.whole_json && !self.started) {
            if let Some(calls) = parse_json_calls(&held, &self.tools) {
                self.calls_made += calls.len();
                out.calls = calls;
                return out;
            }
            if self.in_block {
                out.text.push_str(OPEN);
            }
        }
        out.text.push_str(&held);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "weather".into(),
            description: None,
            parameters: "{}".into(),
        }]
    }

    fn run(pieces: &[&str]) -> (String, Vec<ToolCall>) {
        let mut s = ToolScanner::new(tools());
        let (mut text, mut calls) = (String::new(), Vec::new());
        for p in pieces {
            let out = s.push(p);
            text.push_str(&out.text);
            calls.extend(out.calls);
        }
        let out = s.finish();
        text.push_str(&out.text);
        calls.extend(out.calls);
        (text, calls)
    }

    #[test]
    fn hermes_blocks_split_across_pieces_become_calls() {
        let (text, calls) = run(&[
            "Let me check.\n<tool",
            "_call>\n{\"name\": \"weather\", \"argu",
            "ments\": {\"city\": \"Paris\"}}\n</tool_call>",
        ]);
        assert_eq!(text, "Let me check.\n");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "weather");
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
        assert!(calls[0].id.starts_with("call_"));
    }

    #[test]
    fn whole_json_answers_are_calls_llama3_style() {
        let (text, calls) = run(&[
            "<|python_tag|>{\"name\": \"weather\", ",
            "\"parameters\": {}}",
        ]);
        assert_eq!(text, "");
        assert_eq!(calls[0].arguments, "{}");
        let (_, calls) = run(&["[{\"name\":\"weather\",\"arguments\":{}},{\"name\":\"weather\",\"arguments\":{\"a\":1}}]"]);
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn what_is_not_a_call_stays_text() {
        assert_eq!(run(&["plain ", "answer <tool"]).0, "plain answer <tool");
        assert_eq!(run(&["{\"a\": 1}"]), ("{\"a\": 1}".into(), vec![]));
        let (text, calls) = run(&["<tool_call>{\"name\": \"nope\"}</tool_call> x"]);
        assert_eq!(text, "<tool_call>{\"name\": \"nope\"}</tool_call> x");
        assert!(calls.is_empty());
        assert_eq!(run(&["<tool_call>{broken"]).0, "<tool_call>{broken");
    }
}
