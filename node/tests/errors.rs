//! Bad HTTP input of each kind gets the right status and an OpenAI-style error body, and the
//! node keeps serving afterwards.

mod common;

use std::time::Duration;

use common::TestNode;
use serde_json::json;

const MODEL: &str = "all-minilm-l6-v2";

async fn expect_error(
    node: &TestNode,
    request: reqwest::RequestBuilder,
    status: u16,
    kind: &str,
    param: Option<&str>,
) -> serde_json::Value {
    let _ = node;
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{status} {kind} {param:?}: {e}"));
    assert_eq!(response.status().as_u16(), status);
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    if let Some(param) = param {
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    body
}

async fn still_serves(node: &TestNode) {
    let response = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": "still here"}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn each_kind_of_bad_input_gets_its_status_and_the_node_keeps_serving() {
    let node = TestNode::start(&["--set", "http.max_body_bytes=4096"]).await;
    let url = node.url("/v1/embeddings");
    let post = |body: &'static str| {
        node.client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };
    expect_error(
        &node,
        post("{not json"),
        400,
        "invalid_request_error",
        Some("body"),
    )
    .await;
    expect_error(&node, post(""), 400, "invalid_request_error", Some("body")).await;
    expect_error(
        &node,
        post(r#"{"input":"x"}"#),
        400,
        "invalid_request_error",
        Some("model"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"all-minilm-l6-v2","input":{"a":1}}"#),
        400,
        "invalid_request_error",
        Some("input"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"all-minilm-l6-v2","input":["ok",null]}"#),
        400,
        "invalid_request_error",
        Some("input[1]"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"all-minilm-l6-v2","input":[[101,99999999]]}"#),
        400,
        "invalid_request_error",
        Some("input[0]"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"all-minilm-l6-v2","input":"x","encoding_format":"hex"}"#),
        400,
        "invalid_request_error",
        Some("encoding_format"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"all-minilm-l6-v2","input":"x","dimensions":128}"#),
        400,
        "invalid_request_error",
        Some("dimensions"),
    )
    .await;
    expect_error(
        &node,
        post(r#"{"model":"gpt-9","input":"x"}"#),
        404,
        "not_found_error",
        Some("model"),
    )
    .await;
    // Over the body limit: by declared length, and streamed without a length.
    let big = format!(r#"{{"model":"{MODEL}","input":"{}"}}"#, "a".repeat(10_000));
    expect_error(
        &node,
        node.client.post(&url).body(big.clone()),
        413,
        "payload_too_large",
        None,
    )
    .await;
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..5000].to_string()), Ok(big[5000..].to_string())];
    let streamed = reqwest::Body::wrap_stream(futures_util_stream(chunks));
    expect_error(
        &node,
        node.client.post(&url).body(streamed),
        413,
        "payload_too_large",
        None,
    )
    .await;
    // Routes and methods.
    expect_error(
        &node,
        node.client.get(&url),
        405,
        "method_not_allowed",
        None,
    )
    .await;
    expect_error(
        &node,
        node.client.get(node.url("/v1/nothing")),
        404,
        "not_found_error",
        None,
    )
    .await;
    expect_error(
        &node,
        node.client.get(node.url("/v1/models/gpt-9")),
        404,
        "not_found_error",
        Some("model"),
    )
    .await;
    // Fault injection is off unless configured.
    expect_error(
        &node,
        node.client
            .post(node.url("/admin/debug/crash/all-minilm-l6-v2")),
        404,
        "not_found_error",
        None,
    )
    .await;
    // Binary garbage.
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    expect_error(
        &node,
        node.client.post(&url).body(garbage),
        400,
        "invalid_request_error",
        Some("body"),
    )
    .await;
    still_serves(&node).await;
    let errors = node
        .metric("golek_http_requests_total{route=\"/v1/embeddings\",status=\"400\"}")
        .await
        .unwrap();
    assert!(errors >= 9.0, "{errors}");
}

/// A stream of body chunks without a declared length.
fn futures_util_stream(chunks: Vec<Result<String, std::io::Error>>) -> ChunkStream {
    ChunkStream(chunks.into_iter())
}

struct ChunkStream(std::vec::IntoIter<Result<String, std::io::Error>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<String, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    // One request in the queue at most, and slow batches (one long input each).
    let node = TestNode::start(&[
        "--set",
        "models.all-minilm-l6-v2.queue_capacity=1",
        "--set",
        "models.all-minilm-l6-v2.max_batch_size=1",
        "--set",
        "http.retry_after_s=2",
    ])
    .await;
    let long = "many words in a long sentence ".repeat(60);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let client = node.client.clone();
        let url = node.url("/v1/embeddings");
        let body = json!({"model": MODEL, "input": [long.clone(), long.clone()]});
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.expect("sent");
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, retry, body)
        }));
    }
    let mut overloaded = 0;
    let mut ok = 0;
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                overloaded += 1;
                assert_eq!(retry.as_deref(), Some("2"));
                assert_eq!(body["error"]["type"], "overloaded_error");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 1, "some requests are served");
    assert!(overloaded >= 1, "a full queue refuses at once ({ok} ok)");
    still_serves(&node).await;
}

#[tokio::test]
async fn a_crashed_worker_is_restarted_and_the_node_keeps_serving() {
    let node = TestNode::start(&["--set", "debug.fault_injection=true"]).await;
    let armed = node
        .client
        .post(node.url("/admin/debug/crash/all-minilm-l6-v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 202);
    // The worker panics when it next takes work; requests around the crash answer 200 or 503,
    // never hang, and then the restarted worker serves again.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = node
            .post_json("/v1/embeddings", &json!({"model": MODEL, "input": "x"}))
            .await;
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    let restarted = node
        .wait_until(Duration::from_secs(60), || async {
            let admin = node.get_json("/admin/models").await;
            let m = &admin["models"][0];
            m["restarts"] == 1 && m["state"] == "ready"
        })
        .await;
    assert!(restarted, "{}", node.get_json("/admin/models").await);
    let admin = node.get_json("/admin/models").await;
    assert!(admin["models"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("panicked"));
    still_serves(&node).await;
    assert_eq!(
        node.metric("golek_provider_restarts_total{model=\"all-minilm-l6-v2\"}")
            .await,
        Some(1.0)
    );
}
