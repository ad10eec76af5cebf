//! What tracing costs: requests per second and p50 of `/v1/embeddings` (MiniLM) and of the
//! gateway path (the `openai` provider in front of a static upstream) with tracing off (no
//! OTLP endpoint), on with sampling 0, and on with sampling 1 exporting to a local OTLP
//! receiver, in one run: best of 5 interleaved runs for throughput, and instructions per
//! request counted by `valgrind --tool=callgrind` (repeatable on a noisy machine). Run with
//! `bash bench/tracing.sh`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Json;

mod common;
use common::{arg, runtime, BenchNode};

const MODES: [(&str, Option<f64>); 3] = [
    ("tracing off", None),
    ("sampling 0", Some(0.0)),
    ("sampling 1", Some(1.0)),
];

async fn upstream() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    )
}

async fn models() -> Json<serde_json::Value> {
    Json(serde_json::json!({"object": "list", "data": []}))
}

#[derive(Clone, Copy)]
enum Path {
    Embeddings,
    Gateway,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Embeddings => "/v1/embeddings (MiniLM)",
            Path::Gateway => "gateway (openai provider)",
        }
    }

    fn request(self, client: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        match self {
            Path::Embeddings => client
                .post(format!("{base}/v1/embeddings"))
                .json(&serde_json::json!({"model": "all-minilm-l6-v2", "input": "A man is eating food."})),
            Path::Gateway => client.post(format!("{base}/v1/chat/completions")).json(
                &serde_json::json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
            ),
        }
    }

    fn clients(self) -> usize {
        match self {
            Path::Embeddings => 4,
            Path::Gateway => 32,
        }
    }
}

/// (requests per second, p50 ms) of `path` for `seconds`.
async fn load(client: &reqwest::Client, base: &str, path: Path, seconds: f64) -> (f64, f64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..path.clients())
        .map(|_| {
            let (client, base) = (client.clone(), base.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let r = path.request(&client, &base).send().await.expect("request");
                    assert!(r.status().is_success(), "{}", r.status());
                    let _ = r.bytes().await;
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rps = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    (rps, lat[lat.len() / 2].as_secs_f64() * 1e3)
}

fn sets(upstream: &str, receiver: &str, sampling: Option<f64>) -> Vec<String> {
    let mut s = vec![
        "models.smollm2-135m-instruct.enabled=false".to_string(),
        "models.fake.provider=openai".to_string(),
        format!("models.fake.params.base_url={upstream}/v1"),
        "models.fake.params.max_in_flight=64".to_string(),
    ];
    if let Some(ratio) = sampling {
        s.push(format!("telemetry.otlp_endpoint={receiver}"));
        s.push(format!("telemetry.sampling_ratio={ratio}"));
    }
    s
}

/// Instructions the node executes for `n` requests of `path` (callgrind, only while the
/// requests run).
async fn instructions(client: &reqwest::Client, sets: &[String], path: Path, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("callgrind.out");
    let valgrind = [
        "valgrind".to_string(),
        "--tool=callgrind".to_string(),
        "--instr-atstart=no".to_string(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let node = BenchNode::start_under(sets, &valgrind);
    node.wait_ready_within(client, Duration::from_secs(600))
        .await;
    // One warm-up request (connections, lazy statics), then count.
    let _ = path
        .request(client, &node.base)
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let pid = node.child.id().to_string();
    let control = |args: &[&str]| {
        let ok = Command::new("callgrind_control")
            .args(args)
            .arg(&pid)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "callgrind_control {args:?}");
    };
    control(&["--instr=on"]);
    for _ in 0..n {
        let r = path.request(client, &node.base).send().await.unwrap();
        assert!(r.status().is_success());
        let _ = r.bytes().await;
    }
    control(&["--dump"]);
    control(&["--instr=off"]);
    drop(node);
    // The dump asked for (`callgrind.out.1`), not the one written at exit.
    let mut total = 0f64;
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.path().extension().and_then(|e| e.to_str()) != Some("1") {
            continue;
        }
        // `KEEP_CALLGRIND=DIR` keeps each dump there, for `callgrind_annotate`.
        if let Ok(keep) = std::env::var("KEEP_CALLGRIND") {
            let _ = std::fs::create_dir_all(&keep);
            let mode = sets
                .iter()
                .find(|s| s.starts_with("telemetry.sampling_ratio"))
                .map_or("off", String::as_str);
            let name = format!("{}-{mode}", path.name())
                .replace(['/', ' ', '(', ')', '=', '.'], "_")
                + ".out";
            let _ = std::fs::copy(entry.path(), std::path::Path::new(&keep).join(name));
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("summary:") || l.starts_with("totals:"))
        {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    total / n as f64
}

fn main() {
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let runs: usize = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(5);
    let counted: usize = arg("--requests")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rt = runtime();
    let bind = || {
        rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
    };
    let up = bind();
    let upstream_url = format!("http://{}", up.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(upstream))
        .route("/v1/models", axum::routing::get(models));
    rt.spawn(async move { axum::serve(up, app).await });
    // The OTLP receiver: takes every export (and counts the bytes).
    let rx = bind();
    let receiver = format!("http://{}/v1/traces", rx.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let _ = body.len();
            axum::http::StatusCode::OK
        }),
    );
    rt.spawn(async move { axum::serve(rx, app).await });

    // `--only gateway` (or `embeddings`) measures one path.
    let only = arg("--only");
    let paths: Vec<Path> = [Path::Embeddings, Path::Gateway]
        .into_iter()
        .filter(|p| only.as_deref().is_none_or(|o| p.name().contains(o)))
        .collect();
    let client = reqwest::Client::new();
    let nodes: Vec<BenchNode> = MODES
        .iter()
        .map(|(_, sampling)| {
            BenchNode::start_under(&sets(&upstream_url, &receiver, *sampling), &[])
        })
        .collect();
    // best[mode][path] = (rps, p50 of that run)
    let mut best = vec![vec![(0f64, 0f64); paths.len()]; MODES.len()];
    rt.block_on(async {
        for n in &nodes {
            n.wait_ready_within(&client, Duration::from_secs(120)).await;
        }
        for run in 0..runs {
            // Each run starts with the next mode, so no mode always goes first.
            for k in 0..nodes.len() {
                let m = (run + k) % nodes.len();
                let node = &nodes[m];
                for (p, path) in paths.iter().enumerate() {
                    let point = load(&client, &node.base, *path, seconds).await;
                    if point.0 > best[m][p].0 {
                        best[m][p] = point;
                    }
                }
            }
        }
    });
    drop(nodes);
    let mut ir = vec![vec![0f64; paths.len()]; MODES.len()];
    rt.block_on(async {
        for (m, (_, sampling)) in MODES.iter().enumerate() {
            for (p, path) in paths.iter().enumerate() {
                ir[m][p] = instructions(
                    &client,
                    &sets(&upstream_url, &receiver, *sampling),
                    *path,
                    counted,
                )
                .await;
            }
        }
    });
    println!("## Tracing cost, best of {runs} interleaved runs of {seconds} s; instructions over {counted} requests\n");
    println!(
        "| path | mode | req/s | p50 ms | throughput vs off | instructions / request | vs off |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (p, path) in paths.iter().enumerate() {
        for (m, (mode, _)) in MODES.iter().enumerate() {
            let (rps, p50) = best[m][p];
            let d_rps = (rps / best[0][p].0 - 1.0) * 100.0;
            let d_ir = (ir[m][p] / ir[0][p] - 1.0) * 100.0;
            println!(
                "| {} | {mode} | {rps:.0} | {p50:.2} | {d_rps:+.1} % | {:.0} | {d_ir:+.1} % |",
                path.name(),
                ir[m][p]
            );
        }
    }
}
