//! Requests that survive a refusing peer: a peer that answers overloaded or unavailable on
//! its first frame hands the request to another replica before the client sees anything, and
//! a peer that keeps failing opens its outcome breaker.

use std::time::Duration;

use golek_cluster_tests::{
    actor, faulty, metric, replicas_behind_an_entry, serves, wait_until, Ca, Models, Node, NodeSpec,
};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(20);

async fn complete(node: &Node) -> reqwest::Response {
    node.post(
        "/v1/completions",
        &json!({"model": "golek-tiny", "prompt": "retry me", "max_tokens": 4,
                "temperature": 0, "ignore_eos": true}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refusing_on_its_first_frame_is_replaced_by_another_replica() {
    let (a, b, c) = replicas_behind_an_entry(faulty, |spec| spec).await;

    // `a` orders replicas by gossiped load (equals at random), so it tries `b` first about half
    // the time. `b` refuses: 429 first, then 503 on everything; the requests are served by `c`
    // instead and the client never sees a refusal.
    let armed = b
        .post(
            "/admin/debug/refuse/golek-tiny?n=4&code=overloaded",
            &json!({}),
        )
        .await;
    assert_eq!(armed.status(), 202);
    for i in 0..4 {
        let answer = complete(&a).await;
        assert_eq!(
            answer.status(),
            200,
            "overloaded #{i}: {}",
            answer.text().await.unwrap()
        );
    }
    b.post(
        "/admin/debug/refuse/golek-tiny?n=1000&code=unavailable",
        &json!({}),
    )
    .await;
    let breaker_of_b = || async {
        let tree = a.get("/admin/actors").await;
        actor(&tree, &["ClusterManager", "peers", "b"])
            .map_or(Value::Null, |b| b["breaker"].clone())
    };
    let mut opened = false;
    for i in 0..40 {
        let answer = complete(&a).await;
        assert_eq!(
            answer.status(),
            200,
            "unavailable #{i}: {}",
            answer.text().await.unwrap()
        );
        if breaker_of_b().await == "open" {
            opened = true;
            break;
        }
    }
    // Unavailable counts against b (overloaded does not): five of them open its breaker.
    assert!(
        opened,
        "b's breaker never opened: {}",
        a.get("/admin/actors").await
    );
    let refused = metric(
        &a,
        "golek_cluster_forwarded_total{peer=\"b\",outcome=\"refused\"}",
    )
    .await;
    let retried = metric(&a, "golek_cluster_retries_total").await;
    assert!(
        refused >= 5.0 && retried >= refused,
        "refused {refused}, retried {retried}"
    );
    assert_eq!(
        metric(&a, "golek_cluster_peer_breaker_open_total{peer=\"b\"}").await,
        1.0
    );
    // An open breaker skips b: c serves at once, with no retry.
    assert_eq!(complete(&a).await.status(), 200);
    assert_eq!(metric(&a, "golek_cluster_retries_total").await, retried);
    // With b skipped and c refusing too, the client gets c's own 429 at once.
    c.post(
        "/admin/debug/refuse/golek-tiny?n=1&code=overloaded",
        &json!({}),
    )
    .await;
    let answer = complete(&a).await;
    assert_eq!(answer.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_replica_fails_the_retry_budget_caps_the_attempts() {
    // Retries: a tenth of requests, nothing for free; breakers out of the way.
    let (a, b, c) = replicas_behind_an_entry(faulty, |mut spec| {
        spec.args = [
            "reliability.retry_budget_ratio=0.1",
            "reliability.retry_budget_min_per_s=0",
            "reliability.breaker_failures=10000",
        ]
        .iter()
        .flat_map(|kv| ["--set".to_string(), kv.to_string()])
        .collect();
        spec
    })
    .await;
    for node in [&b, &c] {
        let armed = node
            .post(
                "/admin/debug/refuse/golek-tiny?n=100000&code=unavailable",
                &json!({}),
            )
            .await;
        assert_eq!(armed.status(), 202);
    }
    let requests = 40;
    for _ in 0..requests {
        assert_eq!(complete(&a).await.status(), 503);
    }
    let retried = metric(&a, "golek_cluster_retries_total").await;
    let attempts = metric(
        &a,
        "golek_cluster_forwarded_total{peer=\"b\",outcome=\"refused\"}",
    )
    .await
        + metric(
            &a,
            "golek_cluster_forwarded_total{peer=\"c\",outcome=\"refused\"}",
        )
        .await;
    // A tenth of 40 requests: at most 4 retries, however many replicas there are to try.
    assert!(retried <= 4.0, "{retried} retries for {requests} requests");
    assert_eq!(
        attempts,
        requests as f64 + retried,
        "one attempt each plus the retries"
    );
    let tree = a.get("/admin/reliability").await;
    assert!(tree["retries_refused"].as_u64().unwrap() >= 30, "{tree}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_travels_to_the_peer_that_serves_it() {
    let ca = Ca::new();
    let b = Node::start(NodeSpec::new("b", ca.issue("b"), Models::Generation)).await;
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::None).seed(b.spec.quic)).await;
    assert!(wait_until(CONVERGE, || async { serves(&a.cluster().await, "b") }).await);
    let answer = reqwest::Client::new()
        .post(a.url("/v1/completions"))
        .header("x-golek-timeout-ms", "2000")
        .json(&json!({"model": "golek-tiny", "prompt": "in time", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // b saw one request from a peer, with at most the two seconds the client gave (less what
    // a spent), not b's own five-minute default.
    let count = metric(&b, "golek_cluster_served_deadline_seconds_count").await;
    let sum = metric(&b, "golek_cluster_served_deadline_seconds_sum").await;
    assert_eq!(count, 1.0);
    assert!(sum > 1.0 && sum <= 2.0, "the deadline b saw: {sum} s");
    // A body `timeout` (seconds) does the same when there is no header.
    let answer = a
        .post(
            "/v1/completions",
            &json!({"model": "golek-tiny", "prompt": "in time", "max_tokens": 2, "timeout": 3}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let sum = metric(&b, "golek_cluster_served_deadline_seconds_sum").await;
    assert!(sum > 3.0 && sum <= 5.0, "the deadlines b saw: {sum} s");
}
