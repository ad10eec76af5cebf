//! Cluster benchmark (not a test): convergence of 3, 10 and 30 cold-started nodes, time to mark
//! a `kill -9`ed node dead, and the latency a peer adds to an embedding request, on loopback
//! with real `golek` processes (release build).
//!
//!   bash bench/cluster.sh
//!   cargo bench -p golek-node --bench cluster -- --sizes 3,10,30 --requests 2000

use std::time::{Duration, Instant};

use golek_cluster_tests::{alive_members, Ca, Models, Node, NodeSpec};
use serde_json::json;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn spec(ca: &Ca, id: &str, models: Models, interval_ms: u64) -> NodeSpec {
    let mut s = NodeSpec::new(id, ca.issue(id), models);
    s.args = vec![
        "--set".into(),
        format!("cluster.gossip_interval_ms={interval_ms}"),
    ];
    s
}

/// Starts `n` nodes at once (all seeded with the first) and times until every node sees all.
async fn converge(n: usize, interval_ms: u64) -> (Duration, Duration) {
    let ca = Ca::new();
    let first = spec(&ca, "n0", Models::None, interval_ms);
    let seed = first.quic;
    let specs: Vec<NodeSpec> = std::iter::once(first)
        .chain((1..n).map(|i| spec(&ca, &format!("n{i}"), Models::None, interval_ms).seed(seed)))
        .collect();
    let started = Instant::now();
    let nodes: Vec<Node> = specs.into_iter().map(Node::spawn).collect();
    for node in &nodes {
        node.wait_ready().await;
    }
    let ready = started.elapsed();
    loop {
        let mut all = true;
        for node in &nodes {
            if alive_members(&node.cluster().await).len() != n {
                all = false;
                break;
            }
        }
        if all {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{n} nodes did not converge"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (started.elapsed(), ready)
}

/// Kills one of three nodes and times until both others mark it dead.
async fn detect_dead(interval_ms: u64) -> Duration {
    let ca = Ca::new();
    let a = Node::start(spec(&ca, "a", Models::None, interval_ms)).await;
    let b = Node::start(spec(&ca, "b", Models::None, interval_ms).seed(a.spec.quic)).await;
    let mut c = Node::start(spec(&ca, "c", Models::None, interval_ms).seed(a.spec.quic)).await;
    while alive_members(&a.cluster().await).len() != 3
        || alive_members(&b.cluster().await).len() != 3
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the failure detector learn the heartbeat interval, as in a running cluster.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Instant::now();
    c.kill9();
    loop {
        let a_sees = alive_members(&a.cluster().await);
        let b_sees = alive_members(&b.cluster().await);
        if !a_sees.contains(&"c".to_string()) && !b_sees.contains(&"c".to_string()) {
            return killed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p99 (ms) of `n` sequential embedding requests to `node`.
async fn latencies(node: &Node, n: usize) -> (f64, f64) {
    let client = reqwest::Client::new();
    let url = node.url("/v1/embeddings");
    let body = json!({"model": "all-minilm-l6-v2", "input": "a short sentence to embed"});
    for _ in 0..50 {
        client.post(&url).json(&body).send().await.unwrap();
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The release binary cargo built for this bench.
    unsafe { std::env::set_var("CLUSTER_TESTS_GOLEK_BIN", env!("CARGO_BIN_EXE_golek")) };
    let sizes: Vec<usize> = arg("--sizes", "3,10,30")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let requests: usize = arg("--requests", "2000").parse().unwrap();
    let interval: u64 = arg("--gossip-interval-ms", "200").parse().unwrap();
    println!("# Cluster benchmark (loopback, release build, gossip every {interval} ms)\n");
    println!(
        "| nodes | all ready (s) | converged from cold start (s) | converged after ready (s) |"
    );
    println!("|---:|---:|---:|---:|");
    for n in sizes {
        let (total, ready) = converge(n, interval).await;
        println!(
            "| {n} | {:.2} | {:.2} | {:.2} |",
            ready.as_secs_f64(),
            total.as_secs_f64(),
            total.saturating_sub(ready).as_secs_f64()
        );
    }
    let mut dead: Vec<f64> = Vec::new();
    for _ in 0..3 {
        dead.push(detect_dead(interval).await.as_secs_f64());
    }
    println!(
        "\nkill -9 of one of 3 nodes marked dead by both others in: {} s\n",
        dead.iter()
            .map(|d| format!("{d:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ca = Ca::new();
    let a = Node::start(spec(&ca, "a", Models::Embeddings, interval)).await;
    let b = Node::start(spec(&ca, "b", Models::None, interval).seed(a.spec.quic)).await;
    while alive_members(&b.cluster().await).len() != 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (local50, local99) = latencies(&a, requests).await;
    let (peer50, peer99) = latencies(&b, requests).await;
    println!("Embedding request (1 client, {requests} sequential requests):\n");
    println!("| path | p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|");
    println!("| served locally by A | {local50:.3} | {local99:.3} |");
    println!("| sent to B, forwarded to A over QUIC | {peer50:.3} | {peer99:.3} |");
    println!(
        "| added by forwarding | {:.3} | {:.3} |",
        peer50 - local50,
        peer99 - local99
    );
}
