//! The validation of client input, field by field.

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

fn gen(json: &str, chat: bool) -> Result<ValidGeneration, ErrorInfo> {
    generation(parse_json(json.as_bytes())?, chat)
}

#[test]
fn generation_requests_are_checked_field_by_field() {
    let ok = gen(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0,"stop":"x","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":5}"#, true).unwrap();
    assert!(ok.stream && ok.include_usage);
    assert_eq!(ok.request.max_tokens, Some(5));
    assert_eq!(ok.request.stop, vec!["x".to_string()]);
    assert_eq!(ok.request.sampling.temperature, 0.0);
    let ok = gen(
        r#"{"model":"m","prompt":["once"],"max_tokens":3,"top_k":40,"seed":-1}"#,
        false,
    )
    .unwrap();
    assert_eq!(ok.request.prompt, Prompt::Text("once".into()));
    let cases = [
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":-0.5}"#,
            true,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.5}"#,
            true,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            true,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":-1}"#,
            true,
            "max_completion_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#,
            true,
            "n",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
            true,
            "top_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":-3}"#,
            true,
            "top_k",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"min_p":1.5}"#,
            true,
            "min_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"presence_penalty":3}"#,
            true,
            "presence_penalty",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frequency_penalty":-9}"#,
            true,
            "frequency_penalty",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
            true,
            "stop",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[""]}"#,
            true,
            "stop",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":5}"#,
            true,
            "stop",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
            true,
            "stream_options",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            true,
            "temperature",
        ),
        (r#"{"model":"m"}"#, true, "messages"),
        (r#"{"model":"m","messages":[]}"#, true, "messages"),
        (r#"{"model":"m","messages":"hi"}"#, true, "messages"),
        (
            r#"{"model":"m","messages":[{"content":"x"}]}"#,
            true,
            "messages[0].role",
        ),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            true,
            "messages[0].role",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user"}]}"#,
            true,
            "messages[0].content",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
            true,
            "messages[0].content[0]",
        ),
        (r#"{"model":"m"}"#, false, "prompt"),
        (r#"{"model":"m","prompt":""}"#, false, "prompt"),
        (r#"{"model":"m","prompt":["a","b"]}"#, false, "prompt"),
        (r#"{"model":"m","prompt":7}"#, false, "prompt"),
    ];
    for (body, chat, param) in cases {
        let err = gen(body, chat).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {err:?}");
        assert!(err.message.starts_with(param), "{body}: {}", err.message);
    }
}
