//! Tests of the QUIC door's view of requests (`door.rs`).

use super::*;
use golek_protocol::inference::{EmbeddingsRequest, SamplingParams};

fn chat() -> InferenceRequest {
    InferenceRequest::Generate(GenerateRequest::new(
        Prompt::Chat(vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "hello"),
        ]),
        Some(8),
        SamplingParams::default(),
    ))
}

#[test]
fn a_chat_request_is_seen_as_the_http_body_and_a_rewrite_goes_back() {
    let mut request = chat();
    let mut body = view("m", &request);
    assert_eq!(body["messages"][1]["content"], "hello");
    assert_eq!(body["stream"], true);
    assert_eq!(path_of("m", &request), "/v1/chat/completions");
    body["messages"][1]["content"] = "bonjour".into();
    body["max_tokens"] = 3.into();
    body["temperature"] = 0.into();
    apply(&body, &mut request).unwrap();
    let InferenceRequest::Generate(g) = &request else {
        panic!("still a generation request")
    };
    let Prompt::Chat(m) = &g.prompt else {
        panic!("still a chat")
    };
    assert_eq!(m[1].content, "bonjour");
    assert_eq!(g.max_tokens, Some(3));
    assert_eq!(g.sampling.temperature, 0.0);
}

#[test]
fn a_rewrite_of_the_wrong_type_names_the_field() {
    let mut request = chat();
    let mut body = view("m", &request);
    body["max_tokens"] = "many".into();
    let err = apply(&body, &mut request).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("max_tokens"));
    body["max_tokens"] = 3.into();
    body["messages"][0]["role"] = 7.into();
    let err = apply(&body, &mut request).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[0].role"));
}

#[test]
fn embeddings_inputs_round_trip() {
    let mut request = InferenceRequest::Embeddings(EmbeddingsRequest {
        inputs: vec![EmbeddingInput::Text("a".into())],
    });
    let mut body = view("e", &request);
    assert_eq!(body["input"], json!(["a"]));
    body["input"] = json!(["b", "c"]);
    apply(&body, &mut request).unwrap();
    let InferenceRequest::Embeddings(e) = &request else {
        panic!("still embeddings")
    };
    assert_eq!(
        e.inputs,
        vec![
            EmbeddingInput::Text("b".into()),
            EmbeddingInput::Text("c".into())
        ]
    );
}

#[test]
fn a_cached_chat_answer_becomes_events() {
    let answer = Answer {
        status: 200,
        content_type: "application/json".into(),
        body: serde_json::to_vec(&json!({
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }))
        .unwrap()
        .into(),
        headers: vec![],
    };
    let events = answer_events(&answer, true).unwrap();
    assert!(matches!(&events[2], InferenceEvent::Text { text, .. } if text == "hi"));
    assert!(matches!(
        events[3],
        InferenceEvent::Finished {
            reason: FinishReason::Length,
            prompt_tokens: 5,
            completion_tokens: 1,
            ..
        }
    ));
    let refused = Answer {
        status: 302,
        ..answer
    };
    assert!(answer_events(&refused, true).is_err());
}
