//! A clustered node started and stopped in this process leaves no task behind: every task its
//! managers started is tracked and ended by shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use golek_cluster_tests::{ensure_test_model, free_quic_addr, free_tcp_port, wait_until, Ca};
use golek_config::{CliOverride, ConfigInputs};

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_clustered_node_ends_every_task_it_started() {
    ensure_test_model();
    let ca = Ca::new();
    let tls = ca.issue("solo");
    let data = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let quic = free_quic_addr();
    let set = |key: &str, value: &str| CliOverride::new(key, value, "--set");
    let inputs = ConfigInputs {
        file: None,
        env: BTreeMap::new(),
        cli: vec![
            set("http.addr", &format!("127.0.0.1:{port}")),
            set("http.shutdown_grace_ms", "2000"),
            set("node.data_dir", &data.path().to_string_lossy()),
            set("cluster.node_id", "solo"),
            set("cluster.tls_dir", &tls.to_string_lossy()),
            set("cluster.quic_addr", &quic.to_string()),
            set("cluster.gossip_interval_ms", "100"),
            set("supervision.hang_timeout_s", "1"),
            set("models.golek-tiny.enabled", "true"),
            set("models.smollm2-135m-instruct.enabled", "false"),
            set("models.all-minilm-l6-v2.enabled", "false"),
        ],
        ..Default::default()
    };
    let loaded = golek_config::load(&inputs).expect("config");

    let before = alive_tasks();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(golek_node::serve(loaded, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let ready = wait_until(Duration::from_secs(60), || async {
        matches!(client.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ready, "the node did not become ready");
    let tree: serde_json::Value = client
        .get(format!("{url}/admin/actors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let running = alive_tasks();
    assert!(
        running > before,
        "the node runs tasks ({running} alive, {before} before)"
    );
    drop(client);

    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("serve returns within its grace period")
        .expect("serve does not panic");
    assert!(result.is_ok(), "serve failed: {result:?}");
    let settled = wait_until(Duration::from_secs(15), || async {
        alive_tasks() <= before
    })
    .await;
    assert!(
        settled,
        "{} tasks alive after shutdown, {before} before (the tree was {tree})",
        alive_tasks()
    );
}
