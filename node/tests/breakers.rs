//! Outcome breakers on a node's own models: a model that answers errors while its worker lives
//! (a fault returning 5xx) opens its breaker within `reliability.breaker_failures`; requests
//! then get 503 at once without reaching it; after the cooldown one probe goes through, and
//! once the fault is removed it closes the breaker. Client mistakes never count.

mod common;

use std::time::Duration;

use common::TestNode;
use serde_json::{json, Value};

async fn complete(node: &TestNode, max_tokens: u32) -> (u16, Value) {
    let r = node
        .post_json(
            "/v1/completions",
            &json!({"model": "golek-tiny", "prompt": "break me", "max_tokens": max_tokens}),
        )
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn breaker(node: &TestNode) -> Value {
    let report = node.get_json("/admin/reliability").await;
    report["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"] == "model" && t["name"] == "golek-tiny")
        .map_or(Value::Null, |t| t["breaker"].clone())
}

#[tokio::test]
async fn a_failing_model_opens_its_breaker_and_a_probe_closes_it() {
    let node = TestNode::start(&[
        "--set",
        "debug.fault_injection=true",
        "--set",
        "reliability.breaker_failures=3",
        "--set",
        "reliability.breaker_cooldown_ms=700",
    ])
    .await;
    assert_eq!(complete(&node, 2).await.0, 200);
    assert_eq!(breaker(&node).await, "closed");

    // Client mistakes (a max_tokens past the context) never count.
    for _ in 0..5 {
        assert_eq!(complete(&node, 1_000_000).await.0, 400);
    }
    assert_eq!(breaker(&node).await, "closed");

    // Every request fails with a provider error, the worker alive: three open the breaker.
    let armed = node
        .post_json("/admin/debug/fault/golek-tiny", &json!({"error_rate": 1.0}))
        .await;
    assert_eq!(armed.status(), 202);
    for i in 0..3 {
        let (status, body) = complete(&node, 2).await;
        assert_eq!(status, 502, "#{i}: {body}");
    }
    assert_eq!(breaker(&node).await, "open");
    let (status, body) = complete(&node, 2).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outcome breaker is open"),
        "{body}"
    );
    assert_eq!(
        node.metric("golek_model_outcome_breaker_open_total{model=\"golek-tiny\"}")
            .await,
        Some(1.0)
    );
    let tree = node.get_json("/admin/actors").await;
    let manager = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ReliabilityManager")
        .expect("the ReliabilityManager in the tree");
    assert_eq!(manager["state"], "running");
    assert!(manager["details"]["targets"].is_array(), "{manager}");

    // After the cooldown the probe still meets the fault: open again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(breaker(&node).await, "half_open");
    assert_eq!(complete(&node, 2).await.0, 502);
    assert_eq!(breaker(&node).await, "open");

    // The fault removed, the next probe succeeds and closes it.
    node.post_json("/admin/debug/fault/golek-tiny", &json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = complete(&node, 2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(breaker(&node).await, "closed");
    assert_eq!(complete(&node, 2).await.0, 200);
}
