//! Constrained sampling with llguidance: `response_format` (any JSON object, or JSON that
//! validates against a schema) and forced tool calls (`tool_choice` `required` or a named
//! function), whose answer is one JSON call `{"name": ..., "arguments": {...}}`.
//!
//! The token trie is built once per model, on the worker thread, the first time a constrained
//! request arrives (it walks the whole vocabulary).

use golek_protocol::generation::{ResponseFormat, ToolChoice};
use golek_protocol::inference::GenerateRequest;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::{ProviderError, Result};

/// The schema that makes a whole answer one call to one of the offered tools.
pub fn forced_call_schema(request: &GenerateRequest) -> Option<Value> {
    let tools: Vec<_> = match &request.tool_choice {
        ToolChoice::Required => request.tools.iter().collect(),
        ToolChoice::Function(name) => request.tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::None | ToolChoice::Auto => return None,
    };
    if tools.is_empty() {
        return None;
    }
    let options: Vec<Value> = tools
        .iter()
        .map(|t| {
            let params: Value =
                serde_json::from_str(&t.parameters).unwrap_or_else(|_| json!({"type": "object"}));
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    Some(if options.len() == 1 {
        options.into_iter().next().unwrap_or_default()
    } else {
        json!({"anyOf": options})
    })
}

/// The schema a request's answer must follow, and the parameter to blame when it is bad.
fn wanted_schema(request: &GenerateRequest) -> Result<Option<(Value, &'static str)>> {
    if let Some(schema) = forced_call_schema(request) {
        return Ok(Some((schema, "tools")));
    }
    let bad = |message: String| ProviderError::BadInput {
        param: "response_format".into(),
        message,
    };
    match &request.response_format {
        None => Ok(None),
        Some(ResponseFormat::JsonObject) => {
            Ok(Some((json!({"type": "object"}), "response_format")))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            let value: Value = serde_json::from_str(schema)
                .map_err(|e| bad(format!("response_format.json_schema.schema: {e}")))?;
            Ok(Some((value, "response_format")))
        }
    }
}

/// Compact separators and no free whitespace: small models otherwise pad JSON with newlines
/// until they run out of tokens.
fn with_layout(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// Builds grammar samplers for one model.
pub struct Grammars {
    factory: Option<ParserFactory>,
}

impl Grammars {
    pub fn new() -> Self {
        Grammars { factory: None }
    }

    fn factory(&mut self, model: &LlamaModel) -> Result<&ParserFactory> {
        if self.factory.is_none() {
            let started = std::time::Instant::now();
            let env = LlamaSampler::llguidance_tok_env(model);
            let factory = ParserFactory::new_simple(&env)
                .map_err(|e| ProviderError::Inference(format!("cannot start llguidance: {e}")))?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "llguidance token trie built"
            );
            self.factory = Some(factory);
        }
        self.factory
            .as_ref()
            .ok_or_else(|| ProviderError::Inference("llguidance is not available".into()))
    }

    /// The constraining sampler for a request, if it asks for one; a schema llguidance cannot
    /// compile is a bad request naming `response_format` (or `tools`).
    pub fn sampler(
        &mut self,
        model: &LlamaModel,
        request: &GenerateRequest,
    ) -> Result<Option<LlamaSampler>> {
        let Some((schema, param)) = wanted_schema(request)? else {
            return Ok(None);
        };
        let factory = self.factory(model)?;
        let grammar = TopLevelGrammar::from_json_schema(with_layout(schema));
        let parser = factory
            .create_parser(grammar)
            .map_err(|e| ProviderError::BadInput {
                param: param.into(),
                message: format!("{param}: the schema cannot be enforced: {e}"),
            })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ProviderError::BadInput {
                param: param.into(),
                message: format!("{param}: the schema cannot be enforced: {e}"),
            });
        }
        Ok(Some(LlamaSampler::from(matcher)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::generation::ToolSpec;
    use golek_protocol::inference::{ChatMessage, Prompt, SamplingParams};

    #[test]
    fn forced_calls_name_the_tool_and_its_parameters() {
        let mut r = GenerateRequest::new(
            Prompt::Chat(vec![ChatMessage::new("user", "hi")]),
            None,
            SamplingParams::default(),
        );
        r.tools = ["a", "b"]
            .iter()
            .map(|n| ToolSpec {
                name: n.to_string(),
                description: None,
                parameters: r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#.into(),
            })
            .collect();
        assert_eq!(forced_call_schema(&r), None);
        r.tool_choice = ToolChoice::Function("b".into());
        let one = forced_call_schema(&r).unwrap();
        assert_eq!(one["properties"]["name"]["const"], "b");
        assert_eq!(
            one["properties"]["arguments"]["properties"]["x"]["type"],
            "integer"
        );
        r.tool_choice = ToolChoice::Required;
        assert_eq!(
            forced_call_schema(&r).unwrap()["anyOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(with_layout(json!({})).get("x-guidance").is_some());
        assert_eq!(with_layout(json!(true)), json!(true));
    }
}
