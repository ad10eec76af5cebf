//! Keys are cluster-wide: a key made on one node works on every node within seconds, a key
//! revoked on another stops working everywhere, and a request forwarded to a peer carries its
//! tenant, so the tenant's limits hold on the node that serves it (and its 429 is the answer,
//! not retried on another replica).

use std::time::Duration;

use golek_cluster_tests::{serves, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(20);

async fn complete(node: &Node, key: &str) -> u16 {
    reqwest::Client::new()
        .post(node.url("/v1/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "golek-tiny", "prompt": "whose request", "max_tokens": 2}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn make_key(node: &Node, body: Value) -> (String, String) {
    let made: Value = node.post("/admin/keys", &body).await.json().await.unwrap();
    (
        made["key"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_by_gossip_and_limits_hold_where_requests_are_served() {
    let ca = Ca::new();
    let b = Node::start(NodeSpec::new("b", ca.issue("b"), Models::Generation)).await;
    // a requires keys (so a revoked one is refused there); b serves anyone.
    let mut spec = NodeSpec::new("a", ca.issue("a"), Models::None).seed(b.spec.quic);
    spec.args = vec!["--set".into(), "auth.required=true".into()];
    let a = Node::start(spec).await;
    assert!(
        wait_until(CONVERGE, || async { serves(&a.cluster().await, "b") }).await,
        "{}",
        a.cluster().await
    );

    // Made on a (from its loopback, no admin key existing yet), b learns it: its own list.
    let (key, id) = make_key(&a, json!({"tenant": "acme"})).await;
    assert!(
        wait_until(CONVERGE, || async {
            b.get("/admin/keys").await["keys"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["id"] == id.as_str()))
        })
        .await,
        "the key never reached b"
    );
    assert_eq!(complete(&b, &key).await, 200);

    // Revoked on b, refused on a within seconds.
    let revoked = reqwest::Client::new()
        .delete(b.url(&format!("/admin/keys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert!(
        wait_until(CONVERGE, || async {
            reqwest::Client::new()
                .get(a.url("/v1/models"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
                == 401
        })
        .await,
        "the revocation never reached a"
    );

    // Two requests a minute: a forwards to b, and b holds the tenant to it.
    let (tight, tight_id) = make_key(&a, json!({"tenant": "tight", "rpm": 2})).await;
    assert!(
        wait_until(CONVERGE, || async {
            b.get("/admin/keys").await["keys"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["id"] == tight_id.as_str()))
        })
        .await
    );
    assert_eq!(complete(&a, &tight).await, 200);
    assert_eq!(complete(&a, &tight).await, 200);
    assert_eq!(
        complete(&a, &tight).await,
        429,
        "b refuses the third, a passes that on"
    );
    let text = reqwest::get(b.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("golek_tenant_rejected_total{tenant=\"tight\",reason=\"rpm\"} 1"),
        "{text}"
    );
    // Keys survive in b's own store: restarted alone, it still knows them.
    let mut b = b;
    drop(a);
    b.restart().await;
    let keys = b.get("/admin/keys").await;
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["revoked"] == true),
        "{keys}"
    );
}
