//! Checks for the generation features beyond plain text: `n`, log probabilities,
//! `response_format`, `tools` and `tool_choice`, and the tool parts of chat messages.

use crate::generation::{ResponseFormat, ToolCall, ToolChoice, ToolSpec, MAX_TOP_LOGPROBS};
use crate::ErrorInfo;
use serde_json::Value;

use super::kind;

/// The most choices one request may ask for (OpenAI's limit; a model's slots may allow fewer).
pub const MAX_CHOICES: i64 = 128;
/// The most tools one request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

fn invalid(param: &str, message: String) -> ErrorInfo {
    ErrorInfo::invalid(param, format!("{param}: {message}"))
}

pub fn choices(n: Option<i64>) -> Result<u32, ErrorInfo> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES).contains(&n) => Ok(n as u32),
        Some(n) => Err(invalid("n", format!("must be 1 to {MAX_CHOICES}, got {n}"))),
    }
}

/// Chat: `logprobs: true` and `top_logprobs` 0..=20; completions: `logprobs` 0..=20.
pub fn logprobs(
    chat: bool,
    logprobs: Option<&Value>,
    top: Option<i64>,
) -> Result<Option<u32>, ErrorInfo> {
    let top_range = |param: &str, k: i64| {
        if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
            Ok(k as u32)
        } else {
            Err(invalid(
                param,
                format!("must be 0 to {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
    };
    if chat {
        let on = match logprobs {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(
                    "logprobs",
                    format!("expected a boolean, got {}", kind(other)),
                ))
            }
        };
        match (on, top) {
            (false, Some(_)) => Err(invalid("top_logprobs", "needs logprobs: true".into())),
            (false, None) => Ok(None),
            (true, top) => Ok(Some(top_range("top_logprobs", top.unwrap_or(0))?)),
        }
    } else {
        match logprobs {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(k) => Ok(Some(top_range("logprobs", k)?)),
                None => Err(invalid("logprobs", format!("expected an integer, got {n}"))),
            },
            Some(other) => Err(invalid(
                "logprobs",
                format!("expected an integer, got {}", kind(other)),
            )),
        }
    }
}

fn str_field<'a>(value: &'a Value, key: &str, param: &str) -> Result<&'a str, ErrorInfo> {
    match value.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(
            &format!("{param}.{key}"),
            format!("expected a string, got {}", kind(other)),
        )),
        None => Err(invalid(&format!("{param}.{key}"), "missing".into())),
    }
}

pub fn response_format(value: Option<&Value>) -> Result<Option<ResponseFormat>, ErrorInfo> {
    let param = "response_format";
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(invalid(
                param,
                format!("expected an object, got {}", kind(other)),
            ))
        }
    };
    match str_field(value, "type", param)? {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let p = "response_format.json_schema";
            let spec = value
                .get("json_schema")
                .filter(|v| v.is_object())
                .ok_or_else(|| invalid(p, "expected an object with name and schema".into()))?;
            let name = str_field(spec, "name", p)?.to_string();
            let schema = match spec.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(_))) => s.to_string(),
                None => "{}".to_string(),
                Some(other) => {
                    return Err(invalid(
                        &format!("{p}.schema"),
                        format!("expected a JSON Schema object, got {}", kind(other)),
                    ))
                }
            };
            let strict = match spec.get("strict") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(invalid(
                        &format!("{p}.strict"),
                        format!("expected a boolean, got {}", kind(other)),
                    ))
                }
            };
            Ok(Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            }))
        }
        other => Err(invalid(
            "response_format.type",
            format!("must be text, json_object or json_schema, got {other:?}"),
        )),
    }
}

fn function_name(name: &str, param: &str) -> Result<String, ErrorInfo> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(name.to_string())
    } else {
        Err(invalid(
            param,
            format!("must be 1 to 64 letters, digits, underscores or dashes, got {name:?}"),
        ))
    }
}

pub fn tools(value: Option<&Value>) -> Result<Vec<ToolSpec>, ErrorInfo> {
    let items = match value {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid(
                "tools",
                format!("expected an array, got {}", kind(other)),
            ))
        }
    };
    if items.len() > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("tools[{i}]");
            if str_field(item, "type", &p)? != "function" {
                return Err(invalid(&format!("{p}.type"), "must be \"function\"".into()));
            }
            let f = item
                .get("function")
                .filter(|f| f.is_object())
                .ok_or_else(|| invalid(&format!("{p}.function"), "expected an object".into()))?;
            let fp = format!("{p}.function");
            let name = function_name(str_field(f, "name", &fp)?, &format!("{fp}.name"))?;
            let description = match f.get("description") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(invalid(
                        &format!("{fp}.description"),
                        format!("expected a string, got {}", kind(other)),
                    ))
                }
            };
            let parameters = match f.get("parameters") {
                None | Some(Value::Null) => r#"{"type":"object","properties":{}}"#.to_string(),
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(other) => {
                    return Err(invalid(
                        &format!("{fp}.parameters"),
                        format!("expected a JSON Schema object, got {}", kind(other)),
                    ))
                }
            };
            Ok(ToolSpec {
                name,
                description,
                parameters,
            })
        })
        .collect()
}

/// `none`, `auto`, `required` or `{"type": "function", "function": {"name": ...}}`; without
/// tools the default is `none`, with tools `auto` (as OpenAI).
pub fn tool_choice(value: Option<&Value>, has_tools: bool) -> Result<ToolChoice, ErrorInfo> {
    let param = "tool_choice";
    match value {
        None | Some(Value::Null) => Ok(if has_tools {
            ToolChoice::Auto
        } else {
            ToolChoice::None
        }),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                param,
                format!("must be none, auto, required or a function, got {other:?}"),
            )),
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.function.name", "missing".into()))?;
            Ok(ToolChoice::Function(name.to_string()))
        }
        Some(other) => Err(invalid(
            param,
            format!("expected a string or an object, got {}", kind(other)),
        )),
    }
}

/// An assistant message's `tool_calls`, as the client sends its history back.
pub fn message_tool_calls(value: Option<&Value>, param: &str) -> Result<Vec<ToolCall>, ErrorInfo> {
    let items = match value {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid(
                param,
                format!("expected an array, got {}", kind(other)),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let p = format!("{param}[{j}]");
            let f = call
                .get("function")
                .filter(|f| f.is_object())
                .ok_or_else(|| invalid(&format!("{p}.function"), "expected an object".into()))?;
            let fp = format!("{p}.function");
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                None | Some(Value::Null) => "{}".into(),
                Some(other) => {
                    return Err(invalid(
                        &format!("{fp}.arguments"),
                        format!("expected a JSON string, got {}", kind(other)),
                    ))
                }
            };
            Ok(ToolCall {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: str_field(f, "name", &fp)?.to_string(),
                arguments,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn response_formats_and_their_errors_name_the_field() {
        assert_eq!(response_format(None).unwrap(), None);
        assert_eq!(
            response_format(Some(&json!({"type": "text"}))).unwrap(),
            None
        );
        assert_eq!(
            response_format(Some(&json!({"type": "json_object"}))).unwrap(),
            Some(ResponseFormat::JsonObject)
        );
        let f = response_format(Some(&json!({"type": "json_schema",
            "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": true}})))
        .unwrap();
        assert!(matches!(
            f,
            Some(ResponseFormat::JsonSchema { strict: true, .. })
        ));
        for (bad, param) in [
            (json!("json"), "response_format"),
            (json!({"type": "yaml"}), "response_format.type"),
            (
                json!({"type": "json_schema"}),
                "response_format.json_schema",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
                "response_format.json_schema.schema",
            ),
        ] {
            let e = response_format(Some(&bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{bad}");
        }
    }

    #[test]
    fn tools_choices_and_logprobs_are_checked() {
        let t = tools(Some(
            &json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object"}}}]),
        ))
        .unwrap();
        assert_eq!(t[0].name, "get_weather");
        let e = tools(Some(
            &json!([{"type": "function", "function": {"name": "bad name"}}]),
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
        assert_eq!(tool_choice(None, true).unwrap(), ToolChoice::Auto);
        assert_eq!(tool_choice(None, false).unwrap(), ToolChoice::None);
        assert_eq!(
            tool_choice(
                Some(&json!({"type": "function", "function": {"name": "f"}})),
                true
            )
            .unwrap(),
            ToolChoice::Function("f".into())
        );
        assert!(tool_choice(Some(&json!("always")), true).is_err());
        assert_eq!(
            logprobs(true, Some(&json!(true)), Some(3)).unwrap(),
            Some(3)
        );
        assert_eq!(logprobs(true, None, None).unwrap(), None);
        assert_eq!(
            logprobs(true, None, Some(2)).unwrap_err().param.as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(
            logprobs(true, Some(&json!(true)), Some(21))
                .unwrap_err()
                .param
                .as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(logprobs(false, Some(&json!(2)), None).unwrap(), Some(2));
        assert!(logprobs(false, Some(&json!(true)), None).is_err());
        assert_eq!(choices(Some(3)).unwrap(), 3);
        assert!(choices(Some(0)).is_err());
        assert!(choices(Some(i64::MAX)).is_err());
    }
}
