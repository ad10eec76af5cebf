//! Client input, checked and turned into the internal `Valid*` forms. Every error names the
//! field at fault; nothing here panics on any input.

use golek_protocol::inference::{EmbeddingInput, EmbeddingsRequest, InferenceRequest};
use golek_protocol::openai::{EmbeddingsRequestBody, EncodingFormat};
use golek_protocol::ErrorInfo;
use serde::de::DeserializeOwned;

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
        model: body.model,
        request: InferenceRequest::Embeddings(EmbeddingsRequest { inputs }),
        encoding_format: body.encoding_format.unwrap_or_default(),
        dimensions: body.dimensions,
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
mod tests {
    use super::*;

    fn check(json: &str) -> Result<ValidEmbeddings, ErrorInfo> {
        embeddings(parse_json(json.as_bytes())?)
    }

    fn inputs(v: &ValidEmbeddings) -> &[EmbeddingInput] {
        match &v.request {
            InferenceRequest::Embeddings(r) => &r.inputs,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_input_form_is_accepted() {
        let v = check(r#"{"model":"m","input":"hi"}"#).unwrap();
        assert_eq!(inputs(&v), &[EmbeddingInput::Text("hi".into())]);
        let v = check(r#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#).unwrap();
        assert_eq!(inputs(&v).len(), 2);
        assert_eq!(v.encoding_format, EncodingFormat::Base64);
        let v = check(r#"{"model":"m","input":[1,2,3]}"#).unwrap();
        assert_eq!(inputs(&v), &[EmbeddingInput::Tokens(vec![1, 2, 3])]);
        let v = check(r#"{"model":"m","input":[[1],[2,3]],"user":"u","extra":true}"#).unwrap();
        assert_eq!(inputs(&v).len(), 2);
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let cases = [
            ("", "body", "empty"),
            ("{", "body", "malformed JSON"),
            ("[1,2]", "body", "invalid type"),
            (
                r#"{"model":"m","input":"x"} trailing"#,
                "body",
                "malformed JSON",
            ),
            (r#"{"input":"x"}"#, "model", "missing field `model`"),
            (r#"{"model":"m"}"#, "input", "missing field `input`"),
            (r#"{"model":"","input":"x"}"#, "model", "must name a model"),
            (r#"{"model":7,"input":"x"}"#, "model", "invalid type"),
            (r#"{"model":"m","input":""}"#, "input", "empty string"),
            (r#"{"model":"m","input":[]}"#, "input", "empty array"),
            (r#"{"model":"m","input":5}"#, "input", "got a number"),
            (r#"{"model":"m","input":null}"#, "input", "got null"),
            (
                r#"{"model":"m","input":["a",3]}"#,
                "input[1]",
                "got a number",
            ),
            (
                r#"{"model":"m","input":["a",""]}"#,
                "input[1]",
                "empty string",
            ),
            (
                r#"{"model":"m","input":[-1]}"#,
                "input",
                "token ids are integers",
            ),
            (
                r#"{"model":"m","input":[1.5]}"#,
                "input",
                "token ids are integers",
            ),
            (
                r#"{"model":"m","input":[[1],[]]}"#,
                "input[1]",
                "must not be empty",
            ),
            (
                r#"{"model":"m","input":[[1],[99999999999]]}"#,
                "input[1]",
                "token ids are integers",
            ),
            (
                r#"{"model":"m","input":"x","encoding_format":"int8"}"#,
                "encoding_format",
                "unknown variant",
            ),
            (
                r#"{"model":"m","input":"x","dimensions":0}"#,
                "dimensions",
                "at least 1",
            ),
            (
                r#"{"model":"m","input":"x","dimensions":-4}"#,
                "dimensions",
                "invalid value",
            ),
        ];
        for (body, param, needle) in cases {
            let err = check(body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {err:?}");
            assert!(
                err.message.contains(needle),
                "{body}: {needle:?} not in {:?}",
                err.message
            );
        }
        let many = format!(
            r#"{{"model":"m","input":[{}]}}"#,
            vec!["\"a\""; 2049].join(",")
        );
        assert_eq!(check(&many).unwrap_err().param.as_deref(), Some("input"));
    }
}
