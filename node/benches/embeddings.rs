//! `/v1/embeddings` through a real node against the in-process ceiling (the same pipeline
//! called directly through ort, no HTTP, no actors, no queue) and Python onnxruntime in a loop.
//! All three use one ONNX Runtime thread. Run with `bash bench/embeddings.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use golek_protocol::inference::EmbeddingInput;

mod common;
use common::{arg, runtime, BenchNode};
use golek_providers::onnx::{environment, Embedder};

const LEVELS: [usize; 3] = [1, 8, 32];

struct Point {
    sentences_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentiles(mut lat: Vec<Duration>) -> (f64, f64) {
    lat.sort();
    let at = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.99))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn http_point(base: &str, clients: usize, seconds: f64, sentences: &[String]) -> Point {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/embeddings");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let url = url.clone();
        let sentences = sentences.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < until {
                let body = serde_json::json!({"model": "all-minilm-l6-v2", "input": sentences[i % sentences.len()]});
                i += clients;
                let t0 = Instant::now();
                let r = client.post(&url).json(&body).send().await.expect("request");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.expect("body");
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = lat.len();
    let (p50_ms, p99_ms) = percentiles(lat);
    Point {
        sentences_per_s: n as f64 / elapsed,
        p50_ms,
        p99_ms,
    }
}

fn in_process_point(
    model_dir: &Path,
    ort_lib: &Path,
    batch: usize,
    seconds: f64,
    sentences: &[String],
) -> Point {
    let env = environment(ort_lib).expect("onnxruntime");
    let mut session = ort::session::Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(ort::Error::<()>::from))
        .and_then(|b| b.with_inter_threads(1).map_err(ort::Error::<()>::from))
        .and_then(|mut b| b.commit_from_file(model_dir.join("model.onnx")))
        .expect("session");
    let embedder =
        Embedder::new(&model_dir.join("tokenizer.json"), 512, true, &session).expect("embedder");
    let texts = |i: usize| -> Vec<EmbeddingInput> {
        (0..batch)
            .map(|k| EmbeddingInput::Text(sentences[(i + k) % sentences.len()].clone()))
            .collect()
    };
    let run = |session: &mut ort::session::Session, i: usize| {
        let rows = embedder.rows(&texts(i)).expect("rows");
        let refs: Vec<_> = rows.iter().collect();
        embedder.embed(session, &refs).expect("embed");
    };
    run(&mut session, 0);
    let mut lat = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let t0 = Instant::now();
        run(&mut session, i);
        lat.push(t0.elapsed());
        i += batch;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = lat.len();
    let (p50_ms, p99_ms) = percentiles(lat);
    Point {
        sentences_per_s: (calls * batch) as f64 / elapsed,
        p50_ms,
        p99_ms,
    }
}

fn python_points(
    python: &str,
    model_dir: &Path,
    seconds: f64,
    sentences_file: &Path,
) -> Vec<Point> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/python_ort.py");
    let levels = LEVELS.map(|l| l.to_string()).join(",");
    let out = Command::new(python)
        .arg(script)
        .arg(model_dir)
        .arg(seconds.to_string())
        .arg(levels)
        .arg(sentences_file)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            Point {
                sentences_per_s: v["sentences_per_s"].as_f64().unwrap_or(0.0),
                p50_ms: v["p50_ms"].as_f64().unwrap_or(0.0),
                p99_ms: v["p99_ms"].as_f64().unwrap_or(0.0),
            }
        })
        .collect()
}

fn main() {
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let python = arg("--python");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sentences_file = root.join("bench/sentences.txt");
    let sentences: Vec<String> = std::fs::read_to_string(&sentences_file)
        .expect("bench/sentences.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let assets = golek_config::default_assets_dir();
    let model_dir = assets.join("models/all-minilm-l6-v2");
    let ort_lib = assets.join("onnxruntime/libonnxruntime.so");

    // 1. The HTTP path through a real node (release build of the same workspace).
    let node = BenchNode::start(&[]);
    let pid = node.child.id();
    let base = node.base.clone();
    let (http, idle_kib) = runtime().block_on(async {
        let client = reqwest::Client::new();
        node.wait_ready(&client).await;
        let warm = serde_json::json!({"model": "all-minilm-l6-v2", "input": "warm up"});
        client
            .post(format!("{base}/v1/embeddings"))
            .json(&warm)
            .send()
            .await
            .unwrap();
        let idle = rss_kib(pid);
        let mut points = Vec::new();
        for c in LEVELS {
            points.push(http_point(&base, c, seconds, &sentences).await);
        }
        (points, idle)
    });
    drop(node);

    // 2. The ceiling: the same pipeline in this process, one batch of `c` sentences per call.
    let ceiling: Vec<Point> = LEVELS
        .iter()
        .map(|&b| in_process_point(&model_dir, &ort_lib, b, seconds, &sentences))
        .collect();

    // 3. Python onnxruntime in a loop.
    let py = python.map(|p| python_points(&p, &model_dir, seconds, &sentences_file));

    println!(
        "## /v1/embeddings, all-MiniLM-L6-v2 int8, 1 ONNX Runtime thread, {seconds} s per point\n"
    );
    println!("| clients / batch | golek HTTP sent/s | p50 ms | p99 ms | in-process ort sent/s | p50 ms | p99 ms | HTTP / ceiling | python ort sent/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, c) in LEVELS.iter().enumerate() {
        let (h, k) = (&http[i], &ceiling[i]);
        let py_cols = py
            .as_ref()
            .and_then(|p| p.get(i))
            .map(|p| {
                format!(
                    "{:.0} | {:.2} | {:.2}",
                    p.sentences_per_s, p.p50_ms, p.p99_ms
                )
            })
            .unwrap_or_else(|| "- | - | -".into());
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0}% | {py_cols} |",
            h.sentences_per_s,
            h.p50_ms,
            h.p99_ms,
            k.sentences_per_s,
            k.p50_ms,
            k.p99_ms,
            100.0 * h.sentences_per_s / k.sentences_per_s
        );
    }
    println!(
        "\nIdle node memory (RSS, model loaded): {} MiB",
        idle_kib.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    println!("HTTP latency is per request of one sentence; in-process and python latency is per call of one batch.");
}
