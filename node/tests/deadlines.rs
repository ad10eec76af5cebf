//! Deadlines: a client's `x-golek-timeout-ms` (clamped to `http.request_timeout_ms`) bounds
//! its request; a malformed one is refused naming the header.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use serde_json::json;

#[tokio::test]
async fn a_client_deadline_bounds_its_request_and_a_bad_one_is_refused() {
    let node = TestNode::start(&[]).await;
    let long = json!({"model": "golek-tiny", "prompt": "a very long story", "max_tokens": 1000,
                      "temperature": 0, "ignore_eos": true});

    let bad = node
        .client
        .post(node.url("/v1/completions"))
        .header("x-golek-timeout-ms", "soon")
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["param"], "x-golek-timeout-ms", "{body}");

    let started = Instant::now();
    let cut = node
        .client
        .post(node.url("/v1/completions"))
        .header("x-golek-timeout-ms", "20")
        .json(&long)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(cut.status(), 504, "{}", cut.text().await.unwrap());
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The body's `timeout` (seconds) does the same; a bad one is refused naming it.
    let started = Instant::now();
    let mut body_deadline = long.clone();
    body_deadline["timeout"] = json!(0.02);
    let cut = node.post_json("/v1/completions", &body_deadline).await;
    assert_eq!(cut.status(), 504, "{}", cut.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5));
    body_deadline["timeout"] = json!(-1);
    let bad = node.post_json("/v1/completions", &body_deadline).await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["param"], "timeout", "{body}");

    // Without the header the same node still answers in full.
    let whole = node
        .post_json(
            "/v1/completions",
            &json!({"model": "golek-tiny", "prompt": "short", "max_tokens": 4,
                    "temperature": 0, "ignore_eos": true}),
        )
        .await;
    assert_eq!(whole.status(), 200);
}
