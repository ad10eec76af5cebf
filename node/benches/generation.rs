//! Text generation through a real node's HTTP API against llama.cpp's own tools on the same
//! GGUF and thread count: single-stream tokens/s against `llama-bench` (tg128), and the
//! aggregate tokens/s of 8 concurrent streams against `llama-batched-bench` (8 sequences).
//! Run with `bash bench/generation.sh`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use golek_providers::gguf::{write_test_gguf, TestModelSpec};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One streamed completion: (tokens, seconds from first to last token, seconds in all).
async fn stream_once(client: &reqwest::Client, base: &str, seed: u64, n: u32) -> (u32, f64, f64) {
    let body = serde_json::json!({
        "model": "bench", "prompt": "once upon a time there was", "max_tokens": n,
        "temperature": 0.8, "seed": seed, "stream": true, "stream_options": {"include_usage": true},
    });
    let start = Instant::now();
    let mut response = client
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let (mut first, mut last) = (None, start);
    let mut tokens = 0;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let payload = event.trim().trim_start_matches("data: ");
            if payload == "[DONE]" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(payload).expect("json chunk");
            if let Some(t) = v["usage"]["completion_tokens"].as_u64() {
                tokens = t as u32;
            } else if v["choices"][0]["finish_reason"].is_null() {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
            }
        }
    }
    let first = first.unwrap_or(last);
    (
        tokens,
        last.duration_since(first).as_secs_f64(),
        start.elapsed().as_secs_f64(),
    )
}

fn tool(dir: &Path, name: &str, args: &[String]) -> String {
    let out = Command::new(dir.join(name))
        .args(args)
        .output()
        .expect("llama.cpp tool runs");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let threads: u32 = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(1);
    let tools = arg("--tools").map(PathBuf::from);
    let assets = golek_config::default_assets_dir();
    let model = assets.join("models/golek-15m.gguf");
    if !model.exists() {
        write_test_gguf(&model, &TestModelSpec::bench_15m()).expect("write the 15M model");
    }
    let n = 128u32;

    // The node, serving only the benchmark model.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let sets = [
        "models.all-minilm-l6-v2.enabled=false".to_string(),
        "models.golek-tiny.enabled=false".to_string(),
        "models.bench.provider=gguf".to_string(),
        format!("models.bench.params.model_path={}", model.display()),
        format!("models.bench.params.threads={threads}"),
        "models.bench.params.slots=8".to_string(),
        "models.bench.params.n_ctx=4096".to_string(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_golek"));
    cmd.args([
        "serve",
        "--http-addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data.path());
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let mut node = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("golek starts");
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (single, aggregate) = rt.block_on(async {
        let client = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(60);
        while !matches!(client.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200) {
            assert!(Instant::now() < ready, "node not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stream_once(&client, &base, 1, 16).await; // warm up
        // Single stream: decode rate between the first and the last token, best of 3.
        let mut single: f64 = 0.0;
        for seed in 0..3 {
            let (tokens, decode_s, _) = stream_once(&client, &base, 100 + seed, n).await;
            single = single.max((tokens.saturating_sub(1)) as f64 / decode_s);
        }
        // Eight concurrent streams: all generated tokens over the wall time, best of 3.
        let mut aggregate: f64 = 0.0;
        for round in 0..3u64 {
            let start = Instant::now();
            let tasks: Vec<_> = (0..8u64)
                .map(|i| {
                    let client = client.clone();
                    let base = base.clone();
                    tokio::spawn(async move { stream_once(&client, &base, round * 10 + i, n).await })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap().0;
            }
            aggregate = aggregate.max(total as f64 / start.elapsed().as_secs_f64());
        }
        (single, aggregate)
    });
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let _ = node.wait();

    println!("## Text generation, golek-15m (6 layers, dim 288, F16, random weights), {threads} thread(s)\n");
    println!("| measure | golek HTTP | llama.cpp tool | ratio |");
    println!("|---|---|---|---|");
    match tools {
        Some(dir) => {
            let t = threads.to_string();
            let m = model.display().to_string();
            let bench = tool(
                &dir,
                "llama-bench",
                &[
                    "-m".into(),
                    m.clone(),
                    "-p".into(),
                    "0".into(),
                    "-n".into(),
                    n.to_string(),
                    "-t".into(),
                    t.clone(),
                    "-o".into(),
                    "json".into(),
                ],
            );
            let tg: f64 = serde_json::from_str::<serde_json::Value>(&bench)
                .ok()
                .and_then(|v| v[0]["avg_ts"].as_f64())
                .unwrap_or(f64::NAN);
            let batched = tool(
                &dir,
                "llama-batched-bench",
                &[
                    "-m".into(),
                    m,
                    "-c".into(),
                    "4096".into(),
                    "-b".into(),
                    "512".into(),
                    "-ub".into(),
                    "512".into(),
                    "-npp".into(),
                    "8".into(),
                    "-ntg".into(),
                    n.to_string(),
                    "-npl".into(),
                    "8".into(),
                    "-t".into(),
                    t.clone(),
                    "-tb".into(),
                    t,
                    "--output-format".into(),
                    "jsonl".into(),
                ],
            );
            let s_tg: f64 = batched
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["speed_tg"].as_f64())
                .next_back()
                .unwrap_or(f64::NAN);
            println!("| single stream tokens/s (vs llama-bench tg{n}) | {single:.1} | {tg:.1} | {:.0}% |", 100.0 * single / tg);
            println!("| 8 streams aggregate tokens/s (vs llama-batched-bench S_TG, 8 seqs) | {aggregate:.1} | {s_tg:.1} | {:.0}% |", 100.0 * aggregate / s_tg);
        }
        None => {
            println!("| single stream tokens/s | {single:.1} | (no --tools) | |");
            println!("| 8 streams aggregate tokens/s | {aggregate:.1} | (no --tools) | |");
        }
    }
    println!("\n8 streams / single stream: {:.2}x", aggregate / single);
}
