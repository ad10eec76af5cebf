//! Placement benchmark (not a test), real `golek` processes on loopback (release build):
//! - the time from a deploy (replicas on every node, the file in one node's store) to every
//!   replica ready;
//! - peer-to-peer model file throughput (one seed to one node, MB/s over QUIC with mutual TLS)
//!   against `curl` downloading the same file from a local nginx, best of `--runs`;
//! - four nodes fetching one file at once from one seed: the bytes each sender sent.
//!
//!   bash bench/placement.sh
//!   cargo bench -p golek-node --bench placement -- --mb 256 --runs 3
//!   cargo bench -p golek-node --bench placement -- --mb 128 --runs 5 --p2p-only

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use golek_cluster_tests::{alive_members, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

mod common;
use common::{arg, runtime};

fn spec(ca: &Ca, id: &str, seed: Option<&Node>) -> NodeSpec {
    let mut s = NodeSpec::new(id, ca.issue(id), Models::None);
    if let Some(seed) = seed {
        s = s.seed(seed.spec.quic);
    }
    s
}

async fn post(node: &Node, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(node.url(path))
        .json(&body)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn sees_file(node: &Node, peers: usize, sha: &str) -> bool {
    let view = node.cluster().await;
    alive_members(&view).len() > peers
        && view["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["files"].to_string().contains(sha))
}

/// Bytes each node sent (`golek_model_bytes_sent_total`, summed over peers).
async fn sent(node: &Node) -> f64 {
    golek_cluster_tests::metric_by_label(node, "golek_model_bytes_sent_total")
        .await
        .values()
        .sum()
}

/// nginx serving `dir` on a free port, in the foreground (killed on drop), with its prefix
/// folder.
struct Nginx {
    child: std::process::Child,
    _prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(dir: &std::path::Path) -> Option<(Nginx, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let prefix = tempfile::tempdir().ok()?;
    std::fs::create_dir_all(prefix.path().join("logs")).ok()?;
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; pid {p}/nginx.pid; error_log {p}/logs/error.log;\n\
             events {{}}\nhttp {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port};\n\
             root {root}; }} }}\n",
            p = prefix.path().display(),
            root = dir.display()
        ),
    )
    .ok()?;
    let child = Command::new("nginx")
        .args(["-p", &prefix.path().to_string_lossy(), "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some((
        Nginx {
            child,
            _prefix: prefix,
        },
        port,
    ))
}

/// curl's download speed (bytes/s) of `url` into `out` (a file beside the nodes' stores, or
/// `/dev/null`).
fn curl(url: &str, out: &std::path::Path) -> f64 {
    let got = Command::new("curl")
        .args(["-s", "-o"])
        .arg(out)
        .args(["-w", "%{speed_download}", url])
        .output()
        .expect("curl");
    if out.starts_with(std::env::temp_dir()) {
        let _ = std::fs::remove_file(out);
    }
    String::from_utf8_lossy(&got.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

fn main() {
    let mb: usize = arg("--mb").and_then(|s| s.parse().ok()).unwrap_or(256);
    let runs: usize = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(3);
    // `--p2p-only`: the one-peer throughput alone (for profiling the transfer).
    let p2p_only = std::env::args().any(|a| a == "--p2p-only");
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.bin");
    let bytes: Vec<u8> = (0..mb << 20).map(|_| fastrand::u8(..)).collect();
    std::fs::write(&file, &bytes).unwrap();
    drop(bytes);
    let size = (mb << 20) as f64;

    // nginx and curl: the same file over plain HTTP, into a file on the same disk (as a
    // fetch stores it), and into /dev/null.
    let (http_best, http_null) = match nginx(dir.path()) {
        Some((_nginx, port)) => {
            let url = format!("http://127.0.0.1:{port}/model.bin");
            let to_file = dir.path().join("curl.out");
            let best =
                |out: &std::path::Path| (0..runs).map(|_| curl(&url, out)).fold(0.0, f64::max);
            (best(&to_file), best(std::path::Path::new("/dev/null")))
        }
        None => (0.0, 0.0),
    };

    rt.block_on(async {
        let ca = Ca::new();
        let seed = Node::start(spec(&ca, "seed", None)).await;
        let mut fetchers = Vec::new();
        for i in 0..4 {
            fetchers.push(Node::start(spec(&ca, &format!("f{i}"), Some(&seed))).await);
        }
        let got = post(&seed, "/admin/models/pull", json!({"path": file})).await;
        let sha = got["sha256"].as_str().unwrap().to_string();
        for f in &fetchers {
            assert!(wait_until(Duration::from_secs(30), || sees_file(f, 4, &sha)).await);
        }

        // One peer to one node, best of `runs` (the copy is removed between runs).
        let mut p2p_best = 0.0f64;
        for _ in 0..runs {
            let t = Instant::now();
            post(&fetchers[0], "/admin/models/pull", json!({"sha256": sha})).await;
            p2p_best = p2p_best.max(size / t.elapsed().as_secs_f64());
            post(&fetchers[0], "/admin/models/gc", json!({})).await;
        }
        // Where each one-peer fetch spent its time (the node logs one line a fetch).
        for line in fetchers[0]
            .log()
            .lines()
            .filter(|l| l.contains("fetched from peers"))
        {
            let phases = line
                .split("\"bytes\"")
                .nth(1)
                .unwrap_or(line)
                .trim_end_matches('}');
            eprintln!("one-peer fetch: bytes{phases}");
        }
        if p2p_only {
            println!(
                "| golek peer to peer, one seed | {:.0} MB/s ({:.0} % of HTTP into a file) |",
                p2p_best / 1e6,
                if http_best > 0.0 { p2p_best / http_best * 100.0 } else { 0.0 }
            );
            return;
        }
        // Four at once from the one seed.
        let before = sent(&seed).await;
        let t = Instant::now();
        let pulls: Vec<_> = fetchers
            .iter()
            .map(|f| post(f, "/admin/models/pull", json!({"sha256": sha})))
            .collect();
        futures_util::future::join_all(pulls).await;
        let swarm_s = t.elapsed().as_secs_f64();
        let mut by_sender = BTreeMap::new();
        by_sender.insert("seed".to_string(), (sent(&seed).await - before) / size);
        for f in &fetchers {
            by_sender.insert(f.spec.id.clone(), (sent(f).await / size).max(0.0));
        }

        // Deploy to ready: golek-tiny on all five nodes, its file in the seed's store only.
        let tiny = golek_config::default_assets_dir().join("models/golek-tiny.gguf");
        let got = post(&seed, "/admin/models/pull", json!({"path": tiny})).await;
        let tiny_sha = got["sha256"].as_str().unwrap().to_string();
        for f in &fetchers {
            assert!(wait_until(Duration::from_secs(30), || sees_file(f, 4, &tiny_sha)).await);
        }
        let t = Instant::now();
        post(
            &fetchers[0],
            "/admin/deployments",
            json!({"name": "bench-tiny", "provider": "gguf", "replicas": "all",
                   "model_sha256": tiny_sha, "params": {"n_ctx": 512, "slots": 1}}),
        )
        .await;
        let all_ready = wait_until(Duration::from_secs(120), || async {
            let d: Value = reqwest::get(fetchers[0].url("/admin/deployments/bench-tiny"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            let r = d["replicas"].as_array().cloned().unwrap_or_default();
            r.len() == 5 && r.iter().all(|x| x["state"] == "ready")
        })
        .await;
        let ready_s = t.elapsed().as_secs_f64();

        println!("## Placement and model files ({mb} MiB file, best of {runs})\n");
        println!("| measure | value |");
        println!("|---|---|");
        println!("| nginx + curl over HTTP, into a file | {:.0} MB/s |", http_best / 1e6);
        println!("| nginx + curl over HTTP, into /dev/null | {:.0} MB/s |", http_null / 1e6);
        println!(
            "| golek peer to peer, one seed (QUIC, mTLS, BLAKE3 per chunk against the seed's manifest, direct writes, fsync) | {:.0} MB/s ({:.0} % of HTTP into a file) |",
            p2p_best / 1e6,
            if http_best > 0.0 { p2p_best / http_best * 100.0 } else { 0.0 }
        );
        println!("| four nodes at once from one seed | {swarm_s:.2} s |");
        for (sender, copies) in &by_sender {
            println!("| copies sent by {sender} | {copies:.2} |");
        }
        println!(
            "| deploy to 5 replicas ready (golek-tiny, fetched from the seed) | {} |",
            if all_ready { format!("{ready_s:.2} s") } else { "not ready in 120 s".into() }
        );
    });
}
