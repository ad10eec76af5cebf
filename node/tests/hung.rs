//! A worker that stops making progress while it holds work is reported hung: its model
//! answers 503 at once, the supervision tree shows it, a replacement starts (there is memory
//! for one), and past `supervision.max_hung_workers` the node reports itself unhealthy.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use serde_json::json;

const MODEL: &str = "all-minilm-l6-v2";

#[tokio::test]
async fn a_hung_worker_is_reported_and_its_model_answers_503_within_the_hang_timeout() {
    let node = TestNode::start(&[
        "--set",
        "debug.fault_injection=true",
        "--set",
        "supervision.hang_timeout_s=1",
        "--set",
        "supervision.max_hung_workers=1",
    ])
    .await;
    let armed = node
        .client
        .post(node.url(&format!("/admin/debug/hang/{MODEL}?ms=30000")))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 202);

    // This request's job blocks the worker; nobody waits for its answer.
    let stuck = {
        let client = node.client.clone();
        let url = node.url("/v1/embeddings");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"model": MODEL, "input": "stuck"}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
        })
    };
    let hung_at = Instant::now();
    let answered_503 = node
        .wait_until(Duration::from_secs(10), || async {
            node.post_json("/v1/embeddings", &json!({"model": MODEL, "input": "x"}))
                .await
                .status()
                == 503
        })
        .await;
    let took = hung_at.elapsed();
    assert!(answered_503, "{}", node.get_json("/admin/models").await);
    // The hang timeout (1 s) plus one second.
    assert!(took <= Duration::from_secs(2), "503 only after {took:?}");

    let tree = node.get_json("/admin/actors").await;
    let supervisor = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ProviderSupervisor")
        .unwrap();
    let model = supervisor["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == MODEL)
        .unwrap();
    assert!(
        model["last_failure"]
            .as_str()
            .is_some_and(|f| f.contains("hung")),
        "{model}"
    );
    assert_eq!(model["details"]["hung_workers"], 1, "{model}");
    assert_eq!(supervisor["details"]["abandoned_workers"], 1);

    // One abandoned worker is the limit here: the node asks to be restarted.
    let health = node.client.get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert!(health.text().await.unwrap().contains("max_hung_workers"));

    // There is memory for a second copy: a replacement worker serves the model again.
    let replaced = node
        .wait_until(Duration::from_secs(60), || async {
            node.post_json("/v1/embeddings", &json!({"model": MODEL, "input": "x"}))
                .await
                .status()
                == 200
        })
        .await;
    assert!(replaced, "{}", node.get_json("/admin/actors").await);
    assert_eq!(
        node.metric("golek_provider_hung_total{model=\"all-minilm-l6-v2\"}")
            .await,
        Some(1.0)
    );
    stuck.abort();
}
