//! Health, readiness, metrics, persistence and graceful shutdown of a real node process.

mod common;

use std::time::Duration;

use common::TestNode;
use serde_json::json;

const MODEL: &str = "all-minilm-l6-v2";

#[tokio::test]
async fn health_readiness_models_and_metrics() {
    let node = TestNode::start(&[]).await;
    assert_eq!(node.get_json("/healthz").await["status"], "ok");
    let ready = node.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"][MODEL], "ready");
    let models = node.get_json("/v1/models").await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["object"], "model");
    let one = node.get_json(&format!("/v1/models/{MODEL}")).await;
    assert_eq!(one["id"], MODEL);
    assert!(one["golek"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("embeddings")));

    let r = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = node
        .client
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "golek_http_requests_total",
        "golek_http_request_duration_seconds_bucket",
        "golek_model_requests_total",
        "golek_model_request_duration_seconds_bucket",
        "golek_provider_batch_size_bucket",
        "golek_provider_queue_wait_seconds_bucket",
        "golek_model_queue_depth",
        "golek_model_ready",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert_eq!(
        node.metric("golek_model_inputs_total{model=\"all-minilm-l6-v2\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_cleanly_and_keeps_state() {
    let mut node = TestNode::start(&[]).await;
    let node_id = node.get_json("/admin/models").await["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A request that takes a while: many long inputs, run as several batches.
    let inputs: Vec<String> = (0..160)
        .map(|i| format!("sentence {i} {}", "with many words ".repeat(20)))
        .collect();
    let client = node.client.clone();
    let url = node.url("/v1/embeddings");
    // The warm-up ran one batch already: count from here.
    let batches = "golek_provider_batch_size_count{model=\"all-minilm-l6-v2\"}";
    let before = node.metric(batches).await.unwrap_or(0.0);
    let in_flight = tokio::spawn(async move {
        let r = client
            .post(url)
            .json(&json!({"model": MODEL, "input": inputs}))
            .send()
            .await
            .expect("sent");
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("json");
        (status, body)
    });
    // Wait until its first batch is running, then ask the node to stop.
    let started = node
        .wait_until(Duration::from_secs(30), || async {
            node.metric(batches).await.unwrap_or(0.0) >= before + 1.0
        })
        .await;
    assert!(started);
    let code = tokio::task::block_in_place(|| node.terminate());
    assert_eq!(code, Some(0), "log:\n{}", node.log());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request finished: {body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 160);
    assert!(node.log().contains("shutting down"));
    assert!(node.log().contains("stopped"));

    // Same data dir: same identity.
    let dir = node.into_data_dir();
    let again = TestNode::start_in(dir, &common::TINY_INSTEAD_OF_SMOLLM2).await;
    assert_eq!(again.get_json("/admin/models").await["node_id"], node_id);
}
