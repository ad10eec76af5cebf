//! `prompt-guard`: refuses requests whose text (chat messages, prompts, embedding inputs)
//! matches one of the configured patterns, with the rule that matched.
//!
//! ```toml
//! [plugins.prompt-guard]
//! deny = ["(?i)ignore (all|previous) instructions", "\\b\\d{3}-\\d{2}-\\d{4}\\b"]
//! status = 400
//! ```

use regex::RegexSet;
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{Hook, Plugin, RequestCall, Verdict};

pub const HOOKS: [Hook; 1] = [Hook::OnRequest];

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "deny": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "status": {"type": "integer", "minimum": 400, "maximum": 499}
        },
        "required": ["deny"],
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
struct Config {
    deny: Vec<String>,
    #[serde(default = "default_status")]
    status: u16,
}

fn default_status() -> u16 {
    400
}

pub struct PromptGuard {
    rules: RegexSet,
    status: u16,
}

impl PromptGuard {
    pub fn new(config: &Value) -> Result<Self, String> {
        let c: Config = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        for (i, rule) in c.deny.iter().enumerate() {
            regex::Regex::new(rule).map_err(|e| {
                format!("deny[{i}]: {rule:?} is not a valid regular expression: {e}")
            })?;
        }
        let rules = RegexSet::new(&c.deny).map_err(|e| format!("deny: {e}"))?;
        Ok(PromptGuard {
            rules,
            status: c.status,
        })
    }
}

impl Plugin for PromptGuard {
    fn on_request(&self, call: &RequestCall) -> Result<Verdict, String> {
        for text in super::texts(&call.body) {
            if let Some(i) = self.rules.matches(text).iter().next() {
                return Ok(Verdict::Reject {
                    status: self.status,
                    message: format!(
                        "the request was refused by prompt-guard: it matches rule {i} ({:?})",
                        self.rules.patterns()[i]
                    ),
                });
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: Value) -> RequestCall {
        RequestCall {
            path: "/v1/chat/completions".into(),
            model: "m".into(),
            tenant: None,
            body,
        }
    }

    #[test]
    fn a_matching_message_part_or_input_is_refused_with_its_rule() {
        let g = PromptGuard::new(&json!({"deny": ["secret", "(?i)drop table"]})).unwrap();
        let chat = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "please DROP TABLE x"}]}]});
        match g.on_request(&call(chat)).unwrap() {
            Verdict::Reject { status, message } => {
                assert_eq!(status, 400);
                assert!(message.contains("rule 1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let input = json!({"input": ["fine", "a secret"]});
        assert!(matches!(
            g.on_request(&call(input)).unwrap(),
            Verdict::Reject { .. }
        ));
        let clean = json!({"messages": [{"role": "user", "content": "hello"}], "prompt": "x"});
        assert!(matches!(
            g.on_request(&call(clean)).unwrap(),
            Verdict::Continue
        ));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = PromptGuard::new(&json!({"deny": ["ok", "(unclosed"]}))
            .err()
            .unwrap();
        assert!(err.starts_with("deny[1]"), "{err}");
    }
}
