//! The whole node under supervision: the cluster's loops are actors that restart, and SIGTERM
//! ends every task a clustered node started.

use std::time::Duration;

use golek_cluster_tests::{actor, alive_members, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_publish_loop_is_restarted_and_the_node_keeps_gossiping_and_routing() {
    let ca = Ca::new();
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::Generation)).await;
    let mut spec = NodeSpec::new("b", ca.issue("b"), Models::None).seed(a.spec.quic);
    spec.args = vec!["--set".into(), "debug.fault_injection=true".into()];
    let b = Node::start(spec).await;
    assert!(
        wait_until(CONVERGE, || async {
            alive_members(&b.cluster().await) == ["a", "b"]
        })
        .await,
        "b never saw a"
    );

    let tree = b.get("/admin/actors").await;
    let publisher = actor(&tree, &["ClusterManager", "publisher"]).expect("publisher in the tree");
    assert_eq!(publisher["kind"], "loop");
    assert_eq!(publisher["state"], "running");
    assert_eq!(publisher["restarts"], 0);
    for name in ["listener", "peer-server", "resources", "peers"] {
        assert!(
            actor(&tree, &["ClusterManager", name]).is_some(),
            "{name}: {tree}"
        );
    }
    assert_eq!(tree["details"]["node_id"], "b");

    let armed = b.post("/admin/debug/panic/publisher", &json!({})).await;
    assert_eq!(armed.status(), 202);
    let restarted = wait_until(CONVERGE, || async {
        let tree = b.get("/admin/actors").await;
        actor(&tree, &["ClusterManager", "publisher"])
            .is_some_and(|p| p["restarts"] == 1 && p["state"] == "running")
    })
    .await;
    let tree = b.get("/admin/actors").await;
    assert!(restarted, "publisher not restarted: {tree}");
    let publisher = actor(&tree, &["ClusterManager", "publisher"]).unwrap();
    assert!(
        publisher["last_failure"]
            .as_str()
            .is_some_and(|f| f.contains("fault injection")),
        "{publisher}"
    );

    // Gossip goes on: a node that joins after the restart is seen by b, and b still routes to a.
    let c = Node::start(NodeSpec::new("c", ca.issue("c"), Models::None).seed(a.spec.quic)).await;
    assert!(
        wait_until(CONVERGE, || async {
            alive_members(&b.cluster().await) == ["a", "b", "c"]
        })
        .await,
        "b's view stopped after the restart: {}",
        b.cluster().await
    );
    let answer = b
        .post(
            "/v1/completions",
            &json!({"model": "golek-tiny", "prompt": "after", "max_tokens": 4,
                    "temperature": 0, "ignore_eos": true}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    // The ids agree everywhere: the registry's, the cluster's and the admin views'.
    assert_eq!(b.get("/admin/models").await["node_id"], "b");
    assert_eq!(b.cluster().await["node_id"], "b");
    let metrics = reqwest::get(b.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("golek_node_info{node_id=\"b\""),
        "{metrics}"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_clustered_node_exits_zero_within_the_grace_period() {
    let ca = Ca::new();
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::Generation)).await;
    let mut b =
        Node::start(NodeSpec::new("b", ca.issue("b"), Models::None).seed(a.spec.quic)).await;
    assert!(
        wait_until(CONVERGE, || async {
            alive_members(&b.cluster().await) == ["a", "b"]
        })
        .await
    );
    b.sigterm();
    // The default grace period is 10 s; the node has nothing in flight.
    let status = b.wait_exit(Duration::from_secs(10)).expect("b exits");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        b.log()
    );
}
