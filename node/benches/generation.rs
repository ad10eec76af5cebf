//! Text generation through a real node's HTTP API against llama.cpp's own tools on the same
//! GGUF and thread count: single-stream tokens/s against `llama-bench` (tg128), and the
//! aggregate tokens/s of 8 concurrent streams against `llama-batched-bench` (8 sequences).
//! Run with `bash bench/generation.sh`.

use std::path::{Path, PathBuf};

use std::process::Command;
use std::time::Instant;

use golek_providers::gguf::{write_test_gguf, TestModelSpec};

mod common;
use common::{arg, runtime, BenchNode};

/// One streamed completion: tokens, and when its first and last token arrived.
async fn stream_once(
    client: &reqwest::Client,
    base: &str,
    seed: u64,
    n: u32,
) -> (u32, Instant, Instant) {
    let body = serde_json::json!({
        "model": "bench", "prompt": "once upon a time there was", "max_tokens": n,
        "temperature": 0.8, "seed": seed, "stream": true, "stream_options": {"include_usage": true},
        "ignore_eos": true,
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
            // Only the usage chunk is parsed; token chunks are just timed.
            if payload.contains("\"usage\"") {
                let v: serde_json::Value = serde_json::from_str(payload).expect("json chunk");
                tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32;
            } else if payload.contains("\"finish_reason\":null") {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
            }
        }
    }
    (tokens, first.unwrap_or(last), last)
}

/// The provider in this process, no HTTP: `streams` sequences of `n` tokens submitted at once;
/// tokens per second between the first and the last token of any sequence.
fn in_process(model: &Path, threads: u32, slots: u32, streams: usize, n: u32) -> f64 {
    use golek_protocol::inference::*;
    use golek_providers::{job_queue, Job, Provider};
    let params = golek_config::GgufParams {
        model_path: model.to_path_buf(),
        n_ctx: 512 * slots,
        slots,
        threads,
        batch_size: 512,
        n_gpu_layers: 0,
        chat_template: None,
        embeddings: false,
        system_prompt: None,
        prompt_cache: true,
        prompt_cache_min_tokens: 32,
    };
    let mut provider = golek_providers::gguf::GgufProvider::load("bench", &params).expect("load");
    let (tx, queue) = job_queue(
        "bench",
        64,
        1,
        std::time::Duration::ZERO,
        Default::default(),
    );
    let mut receivers = Vec::new();
    for i in 0..streams {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let now = Instant::now();
        let request = InferenceRequest::Generate(GenerateRequest::new(
            Prompt::Text("once upon a time there was".into()),
            Some(n),
            SamplingParams {
                temperature: 0.8,
                seed: Some(i as u64),
                ignore_eos: true,
                ..Default::default()
            },
        ));
        tx.try_submit(Job {
            request,
            events,
            enqueued_at: now,
            deadline: now + std::time::Duration::from_secs(600),
            outcome: Default::default(),
            tenant: None,
            span: tracing::Span::none(),
            queued: None,
        })
        .expect("submit");
        receivers.push(rx);
    }
    drop(tx);
    let worker = std::thread::spawn(move || provider.serve(&queue));
    let (mut first, mut last, mut tokens) = (None::<Instant>, Instant::now(), 0u32);
    for mut rx in receivers {
        while let Some(Ok(event)) = rx.blocking_recv() {
            match event {
                InferenceEvent::Text { .. } => {
                    let now = Instant::now();
                    first = Some(first.map_or(now, |f| f.min(now)));
                    last = last.max(now);
                }
                InferenceEvent::Finished {
                    completion_tokens, ..
                } => tokens += completion_tokens.saturating_sub(1),
                _ => {}
            }
        }
    }
    let _ = worker.join();
    tokens as f64 / last.duration_since(first.unwrap_or(last)).as_secs_f64()
}

/// llama-bench tg`n` and llama-batched-bench S_TG (8 sequences), best of 3.
fn tool_rates(dir: &Path, model: &Path, threads: u32, n: u32) -> (f64, f64) {
    let t = threads.to_string();
    let m = model.display().to_string();
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let n = n.to_string();
    let (mut tg, mut s_tg): (f64, f64) = (0.0, 0.0);
    for _ in 0..3 {
        let bench = tool(
            dir,
            "llama-bench",
            &args(&["-m", &m, "-p", "0", "-n", &n, "-t", &t, "-o", "json"]),
        );
        let rate = serde_json::from_str::<serde_json::Value>(&bench)
            .ok()
            .and_then(|v| v[0]["avg_ts"].as_f64());
        tg = tg.max(rate.unwrap_or(0.0));
        let batched = tool(
            dir,
            "llama-batched-bench",
            &args(&[
                "-m",
                &m,
                "-c",
                "4096",
                "-b",
                "512",
                "-ub",
                "512",
                "-npp",
                "8",
                "-ntg",
                &n,
                "-npl",
                "8",
                "-t",
                &t,
                "-tb",
                &t,
                "--output-format",
                "jsonl",
            ]),
        );
        let rate = batched
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["speed_tg"].as_f64())
            .next_back();
        s_tg = s_tg.max(rate.unwrap_or(0.0));
    }
    (tg, s_tg)
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
    let sets = [
        "models.all-minilm-l6-v2.enabled=false".to_string(),
        "models.smollm2-135m-instruct.enabled=false".to_string(),
        "models.bench.provider=gguf".to_string(),
        format!("models.bench.params.model_path={}", model.display()),
        format!("models.bench.params.threads={threads}"),
        "models.bench.params.slots=8".to_string(),
        "models.bench.params.n_ctx=4096".to_string(),
    ];
    let node = BenchNode::start(&sets);
    let base = node.base.clone();
    let (single, aggregate) = runtime().block_on(async {
        let client = reqwest::Client::new();
        node.wait_ready(&client).await;
        stream_once(&client, &base, 1, 16).await; // warm up
                                                  // Single stream: decode rate between the first and the last token (as tg128 leaves the
                                                  // prompt out), best of 3.
        let mut single: f64 = 0.0;
        for seed in 0..3 {
            let (tokens, first, last) = stream_once(&client, &base, 100 + seed, n).await;
            single = single
                .max(tokens.saturating_sub(1) as f64 / last.duration_since(first).as_secs_f64());
        }
        // Eight concurrent streams: tokens generated between the first token of any stream and
        // the last token of any (as S_TG leaves prompt processing out), best of 3.
        let mut aggregate: f64 = 0.0;
        for round in 0..3u64 {
            let tasks: Vec<_> = (0..8u64)
                .map(|i| {
                    let client = client.clone();
                    let base = base.clone();
                    tokio::spawn(
                        async move { stream_once(&client, &base, round * 10 + i, n).await },
                    )
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            let first = results.iter().map(|r| r.1).min().unwrap();
            let last = results.iter().map(|r| r.2).max().unwrap();
            let tokens: u32 = results.iter().map(|r| r.0.saturating_sub(1)).sum();
            aggregate = aggregate.max(tokens as f64 / last.duration_since(first).as_secs_f64());
        }
        (single, aggregate)
    });
    drop(node);

    // The same provider without HTTP, in this process.
    let direct_single = (0..3)
        .map(|_| in_process(&model, threads, 8, 1, n))
        .fold(0.0, f64::max);
    let direct_eight = (0..3)
        .map(|_| in_process(&model, threads, 8, 8, n))
        .fold(0.0, f64::max);
    // A one-slot deployment, to show what the 8-slot context costs a lone stream.
    let one_slot = (0..3)
        .map(|_| in_process(&model, threads, 1, 1, n))
        .fold(0.0, f64::max);

    println!("## Text generation, golek-15m (6 layers, dim 288, F16, random weights), {threads} thread(s), best of 3\n");
    println!("| measure | golek HTTP | golek provider, no HTTP | llama.cpp tool | HTTP / tool |");
    println!("|---|---|---|---|---|");
    let (tg, s_tg) = tools.as_deref().map_or((f64::NAN, f64::NAN), |dir| {
        tool_rates(dir, &model, threads, n)
    });
    println!("| single stream tokens/s (tool: llama-bench tg{n}) | {single:.1} | {direct_single:.1} | {tg:.1} | {:.0}% |", 100.0 * single / tg);
    println!("| 8 streams, aggregate tokens/s (tool: llama-batched-bench S_TG, npl 8) | {aggregate:.1} | {direct_eight:.1} | {s_tg:.1} | {:.0}% |", 100.0 * aggregate / s_tg);
    println!(
        "\n8 streams / single stream through HTTP: {:.2}x",
        aggregate / single
    );
    println!(
        "A lone stream on a one-slot deployment (provider, no HTTP): {one_slot:.1} tokens/s ({:.0}% of llama-bench)",
        100.0 * one_slot / tg
    );
}
