//! Chat templates: the GGUF's own Jinja template rendered with minijinja the way Hugging Face's
//! `apply_chat_template` does (messages, tools, tool calls and tool results), falling back to
//! llama.cpp's built-in templates when the model ships none or a built-in name is configured.
//!
//! A template that knows nothing of tools still gets them: the tools are described in the
//! system message in the Hermes format (`<tools>` JSON, answers in `<tool_call>` blocks), past
//! assistant calls are written as `<tool_call>` blocks and tool results as `<tool_response>`
//! blocks in a user turn. That is the format [`super::tools`] parses back out.

use golek_protocol::generation::ToolSpec;
use golek_protocol::inference::ChatMessage;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde_json::json;

use crate::{ProviderError, Result};

/// How a deployment renders chats.
pub enum ChatTemplate {
    /// Jinja source, rendered by minijinja.
    Jinja {
        env: Box<Environment<'static>>,
        knows_tools: bool,
        knows_tool_calls: bool,
        bos: String,
        eos: String,
    },
    /// One of llama.cpp's built-in templates, by name (`chatml`, `llama2`, ...).
    Builtin(LlamaChatTemplate),
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use it for "today's date" in system prompts; a fixed UTC clock is enough.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month_name = MONTHS[(month - 1) as usize];
    format
        .replace("%Y", &year.to_string())
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
        .replace("%B", month_name)
        .replace("%b", &month_name[..3])
}

fn token_text(model: &LlamaModel, token: llama_cpp_2::token::LlamaToken) -> String {
    if token.0 < 0 {
        return String::new();
    }
    let bytes = model.vocab().token_to_piece(token, true, None);
    String::from_utf8_lossy(&bytes).into_owned()
}

impl ChatTemplate {
    /// The configured template (a built-in name or Jinja text), else the GGUF's own, else
    /// llama.cpp's chatml.
    pub fn pick(model: &LlamaModel, configured: Option<&str>) -> Result<ChatTemplate> {
        let bad = |e: String| ProviderError::Load(format!("bad chat template: {e}"));
        let source = match configured {
            Some(t) if t.contains("{%") || t.contains("{{") => t.to_string(),
            Some(name) => {
                return LlamaChatTemplate::new(name)
                    .map(ChatTemplate::Builtin)
                    .map_err(|e| bad(e.to_string()))
            }
            None => match model.meta_val_str("tokenizer.chat_template") {
                Ok(t) if !t.trim().is_empty() => t,
                _ => {
                    return LlamaChatTemplate::new("chatml")
                        .map(ChatTemplate::Builtin)
                        .map_err(|e| bad(e.to_string()))
                }
            },
        };
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let knows_tools = source.contains("tools");
        let knows_tool_calls = source.contains("tool_calls");
        env.add_template_owned("chat", source)
            .map_err(|e| bad(format!("{e:#}")))?;
        Ok(ChatTemplate::Jinja {
            env: Box::new(env),
            knows_tools,
            knows_tool_calls,
            bos: token_text(model, model.vocab().bos()),
            eos: token_text(model, model.vocab().eos()),
        })
    }

    /// Renders a conversation, ending with the assistant's turn.
    pub fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<String> {
        let bad = |message: String| ProviderError::BadInput {
            param: "messages".into(),
            message: format!("the chat template cannot render these messages: {message}"),
        };
        match self {
            ChatTemplate::Builtin(template) => {
                let messages = plain_messages(messages, tools);
                let chat = messages
                    .iter()
                    .enumerate()
                    .map(|(i, (role, content))| {
                        LlamaChatMessage::new(role.clone(), content.clone()).map_err(|e| {
                            ProviderError::BadInput {
                                param: format!("messages[{i}]"),
                                message: format!("messages[{i}]: {e}"),
                            }
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| bad(e.to_string()))
            }
            ChatTemplate::Jinja {
                env,
                knows_tools,
                knows_tool_calls,
                bos,
                eos,
            } => {
                let template = env.get_template("chat").map_err(|e| bad(e.to_string()))?;
                let (messages, tools_value) = if *knows_tools && *knows_tool_calls {
                    (jinja_messages(messages), jinja_tools(tools))
                } else {
                    let plain = plain_messages(messages, tools);
                    let as_json = plain
                        .into_iter()
                        .map(|(role, content)| json!({"role": role, "content": content}))
                        .collect::<Vec<_>>();
                    (as_json, Vec::new())
                };
                let mut ctx = context! {
                    messages => Value::from_serialize(&messages),
                    add_generation_prompt => true,
                    bos_token => bos,
                    eos_token => eos,
                };
                if !tools_value.is_empty() {
                    ctx = context! { tools => Value::from_serialize(&tools_value), ..ctx };
                }
                template.render(ctx).map_err(|e| bad(format!("{e:#}")))
            }
        }
    }
}

fn parsed(json_text: &str) -> serde_json::Value {
    serde_json::from_str(json_text).unwrap_or_else(|_| json!({}))
}

fn jinja_tools(tools: &[ToolSpec]) -> Vec<serde_json::Value> {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.name, "description": t.description.clone().unwrap_or_default(),
                "parameters": parsed(&t.parameters)}})
        })
        .collect()
}

/// Messages as Hugging Face templates expect them (tool-call arguments as objects).
fn jinja_messages(messages: &[ChatMessage]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = json!({"role": m.role, "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": parsed(&c.arguments)}})
                    })
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                v["tool_call_id"] = json!(id);
            }
            v
        })
        .collect()
}

/// The Hermes-style instructions that tell a model about its tools.
pub fn tools_system_prompt(tools: &[ToolSpec]) -> String {
    let listed = jinja_tools(tools)
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "You may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>"
    )
}

/// Roles and contents for a template that knows no tools: tools in the system message, calls
/// and results as tagged text.
fn plain_messages(messages: &[ChatMessage], tools: &[ToolSpec]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let prompt = tools_system_prompt(tools);
        match messages.first() {
            Some(m) if m.role == "system" => {
                out.push(("system".into(), format!("{}\n\n{prompt}", m.content)))
            }
            _ => out.push(("system".into(), prompt)),
        }
    }
    let skip =
        usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        match m.role.as_str() {
            "tool" => {
                let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
                match out.last_mut() {
                    // Consecutive results share one user turn.
                    Some((role, content))
                        if role == "user" && content.ends_with("</tool_response>") =>
                    {
                        content.push('\n');
                        content.push_str(&block);
                    }
                    _ => out.push(("user".into(), block)),
                }
            }
            "assistant" if !m.tool_calls.is_empty() => {
                let mut content = m.content.clone();
                for c in &m.tool_calls {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    let call = json!({"name": c.name, "arguments": parsed(&c.arguments)});
                    content.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
                }
                out.push(("assistant".into(), content));
            }
            role => out.push((role.to_string(), m.content.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::generation::ToolCall;

    #[test]
    fn templates_without_tools_get_them_in_the_system_message_and_calls_as_blocks() {
        let tools = vec![ToolSpec {
            name: "weather".into(),
            description: Some("the weather in a city".into()),
            parameters: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
        }];
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }];
        let mut result = ChatMessage::new("tool", "sunny");
        result.tool_call_id = Some("call_1".into());
        let messages = vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "weather in Paris?"),
            call,
            result,
        ];
        let plain = plain_messages(&messages, &tools);
        assert_eq!(plain.len(), 4);
        assert!(plain[0].1.starts_with("be brief\n\nYou may call"));
        assert!(plain[0].1.contains(r#""name":"weather""#));
        let call = plain[2]
            .1
            .strip_prefix("<tool_call>\n")
            .and_then(|c| c.strip_suffix("\n</tool_call>"))
            .unwrap();
        let call: serde_json::Value = serde_json::from_str(call).unwrap();
        assert_eq!(
            call,
            json!({"name": "weather", "arguments": {"city": "Paris"}})
        );
        assert_eq!(
            plain[3],
            (
                "user".into(),
                "<tool_response>\nsunny\n</tool_response>".into()
            )
        );
        assert_eq!(plain_messages(&messages[1..2], &[]).len(), 1);
    }

    #[test]
    fn strftime_now_formats_a_date() {
        let d = strftime_now("%Y-%m-%d".into());
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
