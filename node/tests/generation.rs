//! Chat and completions over HTTP against a real node running llama.cpp on golek-tiny.

mod common;

use std::time::Duration;

use common::TestNode;
use serde_json::{json, Value};

const MODEL: &str = "golek-tiny";

/// Reads a whole SSE response into its JSON chunks; checks the framing on the way.
async fn sse_chunks(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(
        events.last(),
        Some(&"data: [DONE]"),
        "stream ends with [DONE]: {text}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| {
            let payload = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad event {e:?}"));
            serde_json::from_str(payload)
                .unwrap_or_else(|err| panic!("bad JSON {payload:?}: {err}"))
        })
        .collect()
}

fn chat_body(content: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_streams_complete_and_match_the_non_streamed_answer() {
    let node = TestNode::start(&[]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = node.client.clone();
        let url = node.url("/v1/chat/completions");
        let mut body = chat_body(&format!("tell me story number {i}"), 24, true);
        body["stream_options"] = json!({"include_usage": true});
        tasks.push(tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (i, sse_chunks(response).await)
        }));
    }
    let mut streamed = Vec::new();
    for t in tasks {
        let (i, chunks) = t.await.unwrap();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let id = chunks[0]["id"].as_str().unwrap().to_string();
        assert!(chunks
            .iter()
            .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk"));
        let usage_chunk = chunks.last().unwrap();
        assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
        let finish = &chunks[chunks.len() - 2]["choices"][0];
        let reason = finish["finish_reason"].as_str().unwrap().to_string();
        assert!(reason == "length" || reason == "stop");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let completion = usage_chunk["usage"]["completion_tokens"].as_u64().unwrap();
        if reason == "length" {
            assert_eq!(completion, 24);
        }
        assert_eq!(
            usage_chunk["usage"]["total_tokens"].as_u64().unwrap(),
            completion + usage_chunk["usage"]["prompt_tokens"].as_u64().unwrap()
        );
        streamed.push((i, text, reason));
    }
    // Greedy: the same request without streaming gives the same text.
    for (i, text, reason) in streamed.iter().take(3) {
        let r = node
            .post_json(
                "/v1/chat/completions",
                &chat_body(&format!("tell me story number {i}"), 24, false),
            )
            .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(&body["choices"][0]["message"]["content"], text);
        assert_eq!(&body["choices"][0]["finish_reason"], reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_report_usage_and_finish_reason() {
    let node = TestNode::start(&[]).await;
    let r = node
        .post_json("/v1/completions", &json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 5, "temperature": 0}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 4);
    let reason = body["choices"][0]["finish_reason"].as_str().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(
        (reason == "length" && completion == 5) || (reason == "stop" && completion < 5),
        "{body}"
    );
    // Streaming completions use text_completion chunks.
    let chunks = sse_chunks(
        node.client
            .post(node.url("/v1/completions"))
            .json(&json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 5, "temperature": 0, "stream": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, body["choices"][0]["text"].as_str().unwrap());
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_its_slot() {
    // Long sequences: 8192 tokens per slot.
    let node = TestNode::start(&["--set", "models.golek-tiny.params.n_ctx=65536"]).await;
    let mut body = chat_body("count forever", 8000, true);
    body["temperature"] = json!(1.0);
    // No end-of-generation token may end it before the client hangs up.
    body["ignore_eos"] = json!(true);
    let mut response = node
        .client
        .post(node.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Read until generation is under way, then hang up.
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let active = "golek_gen_active_sequences{model=\"golek-tiny\"}";
    assert!(
        node.wait_until(Duration::from_secs(20), || async {
            node.metric(active).await == Some(1.0)
        })
        .await,
        "the sequence is running"
    );
    drop(response);
    let freed = node
        .wait_until(Duration::from_secs(20), || async {
            node.metric("golek_gen_cancelled_total{model=\"golek-tiny\"}")
                .await
                == Some(1.0)
                && node.metric(active).await == Some(0.0)
        })
        .await;
    assert!(freed, "the slot was freed");
    // It had not finished on its own: no 8000-token completion was counted.
    let generated = node
        .metric("golek_gen_tokens_total{model=\"golek-tiny\"}")
        .await
        .unwrap_or(0.0);
    assert!(generated < 8000.0, "{generated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_generation_parameters_get_400_naming_the_field() {
    let node = TestNode::start(&["--set", "models.golek-tiny.params.n_ctx=512"]).await;
    let cases = [
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": -1}),
            "temperature",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            // More choices than the model's 8 slots.
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 9}),
            "n",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
            "response_format.type",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
        (json!({"model": MODEL, "messages": []}), "messages"),
        // Longer than a slot's context (512 / 8 = 64 tokens), streaming asked: still a 400.
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "word ".repeat(300)}], "stream": true}),
            "messages",
        ),
    ];
    for (body, param) in cases {
        let r = node.post_json("/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 400, "{param}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["param"], param, "{err}");
    }
    // The embedding model does not chat, and the text model does not embed.
    let r = node
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "all-minilm-l6-v2", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = node
        .post_json("/v1/embeddings", &json!({"model": MODEL, "input": "x"}))
        .await;
    assert_eq!(r.status(), 400);
    // Still serving.
    let r = node
        .post_json("/v1/chat/completions", &chat_body("hello", 2, false))
        .await;
    assert_eq!(r.status(), 200);
}
