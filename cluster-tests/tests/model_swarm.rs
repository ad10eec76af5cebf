//! Model files between nodes while senders are slow or die (real `golek` processes): nodes
//! fetching one file at once take it from each other rather than each from the seed, and a
//! transfer whose sender is killed mid-file finishes from another peer.

use std::time::Duration;

use golek_cluster_tests::{faulty, metric_by_label, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

const MIB: usize = 1 << 20;

fn spec(id: &str, ca: &Ca, seed: Option<&Node>) -> NodeSpec {
    let mut s = NodeSpec::new(id, ca.issue(id), Models::None);
    if let Some(seed) = seed {
        s = s.seed(seed.spec.quic);
    }
    faulty(s)
}

async fn converged(nodes: &[&Node]) {
    for n in nodes {
        assert!(
            wait_until(Duration::from_secs(20), || async {
                golek_cluster_tests::alive_members(&n.cluster().await).len() == nodes.len()
            })
            .await
        );
    }
}

/// Puts `bytes` into `node`'s store; returns its sha256.
async fn store(node: &Node, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.bin");
    std::fs::write(&path, bytes).unwrap();
    let got: Value = node
        .post("/admin/models/pull", &json!({"path": path}))
        .await
        .json()
        .await
        .unwrap();
    got["sha256"].as_str().unwrap().to_string()
}

/// Holds back each chunk `node` sends by `ms`.
async fn slow(node: &Node, ms: u64) {
    let r = node
        .post("/admin/debug/slow/model-files", &json!({"delay_ms": ms}))
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// Whether `viewer` sees `member` advertise `sha` under `key` (`files` or `fetching`).
async fn sees(viewer: &Node, member: &str, key: &str, sha: &str) -> bool {
    viewer.cluster().await["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["node_id"] == member && m[key].to_string().contains(sha))
}

async fn pull(node: &Node, sha: &str) -> reqwest::Response {
    node.post("/admin/models/pull", &json!({"sha256": sha}))
        .await
}

fn stored(node: &Node, sha: &str) -> Vec<u8> {
    std::fs::read(node.data_dir().join("models").join(sha)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_fetching_one_file_at_once_take_it_from_each_other() {
    let ca = Ca::new();
    let a = Node::start(spec("a", &ca, None)).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    let c = Node::start(spec("c", &ca, Some(&a))).await;
    converged(&[&a, &b, &c]).await;
    // 64 MiB (16 chunks), only on `a`, which sends slowly (half a second a chunk).
    let bytes: Vec<u8> = (0..64 * MIB).map(|_| fastrand::u8(..)).collect();
    let sha = store(&a, &bytes).await;
    slow(&a, 500).await;
    for n in [&b, &c] {
        assert!(wait_until(Duration::from_secs(10), || sees(n, "a", "files", &sha)).await);
    }
    // `c` starts; `b` starts once it sees `c` fetching.
    let (from_c, from_b) = tokio::join!(pull(&c, &sha), async {
        assert!(
            wait_until(Duration::from_secs(20), || sees(&b, "c", "fetching", &sha)).await,
            "b sees c fetching"
        );
        pull(&b, &sha).await
    });
    assert_eq!(from_c.status(), 200, "{}", from_c.text().await.unwrap());
    assert_eq!(from_b.status(), 200, "{}", from_b.text().await.unwrap());
    assert!(stored(&b, &sha) == bytes && stored(&c, &sha) == bytes);
    // `b` took chunks from `c` (which had them from `a`), and `a` sent well under a copy
    // each: without the swarm it would have sent two.
    let into_b = metric_by_label(&b, "golek_model_bytes_fetched_total").await;
    assert!(into_b.get("c").is_some_and(|n| *n > 0.0), "{into_b:?}");
    let sent: f64 = metric_by_label(&a, "golek_model_bytes_sent_total")
        .await
        .values()
        .sum();
    let copies = sent / bytes.len() as f64;
    assert!(copies < 1.5, "the seed sent {copies:.2} copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_whose_sender_is_killed_mid_file_finishes_from_another_peer() {
    let ca = Ca::new();
    let mut a = Node::start(spec("a", &ca, None)).await;
    let b = Node::start(spec("b", &ca, Some(&a))).await;
    let d = Node::start(spec("d", &ca, Some(&a))).await;
    converged(&[&a, &b, &d]).await;
    // 64 MiB (16 chunks) on `a` and `b`, both slow senders (two rounds of chunks at least).
    let bytes: Vec<u8> = (0..64 * MIB).map(|_| fastrand::u8(..)).collect();
    let sha = store(&a, &bytes).await;
    assert_eq!(store(&b, &bytes).await, sha);
    slow(&a, 700).await;
    slow(&b, 700).await;
    for n in ["a", "b"] {
        assert!(wait_until(Duration::from_secs(10), || sees(&d, n, "files", &sha)).await);
    }
    let (pulled, at_kill) = tokio::join!(pull(&d, &sha), async {
        // `a` dies with `kill -9` once `d` has taken something from it.
        assert!(
            wait_until(Duration::from_secs(20), || async {
                metric_by_label(&d, "golek_model_bytes_fetched_total")
                    .await
                    .get("a")
                    .is_some_and(|n| *n > 0.0)
            })
            .await
        );
        // The pull shows, with its progress (what `golek model pull` draws).
        let pulls = d.get("/admin/models/pulls").await;
        let mine = pulls["pulls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["source"] == sha.as_str())
            .unwrap_or_else(|| panic!("{pulls}"))
            .clone();
        assert_eq!(mine["total_bytes"].as_u64(), Some(bytes.len() as u64));
        assert!(
            mine["bytes"].as_u64().unwrap() < bytes.len() as u64,
            "{mine}"
        );
        a.kill9();
        metric_by_label(&d, "golek_model_bytes_fetched_total")
            .await
            .values()
            .sum::<f64>()
    });
    assert!(at_kill < bytes.len() as f64, "killed mid-file: {at_kill}");
    let pulls = d.get("/admin/models/pulls").await;
    assert_eq!(pulls["pulls"], json!([]), "a pull that ended is gone");
    assert_eq!(pulled.status(), 200, "{}", pulled.text().await.unwrap());
    assert_eq!(stored(&d, &sha), bytes, "the stored file is the original");
    let fetched = metric_by_label(&d, "golek_model_bytes_fetched_total").await;
    let from_a = fetched.get("a").copied().unwrap_or(0.0);
    let from_b = fetched.get("b").copied().unwrap_or(0.0);
    assert!(
        from_a > 0.0 && from_a < bytes.len() as f64 && from_b > 0.0,
        "{fetched:?}"
    );
}
