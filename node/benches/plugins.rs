//! What plugins cost on the gateway path (the `openai` provider in front of a static
//! upstream): requests per second (32 clients) and p50 latency (1 client) with no plugins,
//! with the built-in chain (audit-log, prompt-guard, response-cache), and with one WASM plugin
//! (`add-header`, an `on_response` hook) on every request, in one run, best of `--runs`
//! interleaved runs. Also the WASM hook call itself, in process: p50 over many calls. Run with
//! `bash bench/plugins.sh`.

use std::time::{Duration, Instant};

use axum::Json;

mod common;
use common::{arg, runtime, BenchNode};

const MODES: [&str; 3] = ["no plugins", "built-in chain", "one WASM plugin"];

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

fn request(client: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    client.post(format!("{base}/v1/chat/completions")).json(
        &serde_json::json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
}

/// (requests per second, p50 ms) with `clients` for `seconds`.
async fn load(client: &reqwest::Client, base: &str, clients: usize, seconds: f64) -> (f64, f64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base) = (client.clone(), base.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let r = request(&client, &base).send().await.expect("request");
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

fn sets(upstream: &str, mode: usize, plugin_dir: &std::path::Path) -> Vec<String> {
    let mut s = vec![
        "models.smollm2-135m-instruct.enabled=false".to_string(),
        "models.all-minilm-l6-v2.enabled=false".to_string(),
        "models.fake.provider=openai".to_string(),
        format!("models.fake.params.base_url={upstream}/v1"),
        "models.fake.params.max_in_flight=64".to_string(),
    ];
    match mode {
        1 => s.extend([
            "plugins.audit-log.path=audit.log".to_string(),
            r#"plugins.prompt-guard.deny=["(?i)ignore (all|previous) instructions", "\\b\\d{3}-\\d{2}-\\d{4}\\b"]"#.to_string(),
            "plugins.response-cache.max_bytes=67108864".to_string(),
        ]),
        2 => s.push(format!("node.plugin_dir={}", plugin_dir.display())),
        _ => {}
    }
    s
}

/// p50 of one `on_response` call of the add-header plugin, in process (µs).
fn hook_call_p50(bytes: &[u8]) -> f64 {
    use golek_actors::plugins::wasm::{Limits, WasmPlugin};
    use golek_actors::plugins::{Plugin, ResponseCall};
    let (plugin, _) = WasmPlugin::load(
        "add-header",
        bytes,
        Limits::default(),
        &serde_json::json!({}),
    )
    .unwrap();
    let call = ResponseCall {
        path: "/v1/chat/completions".into(),
        model: "fake".into(),
        tenant: None,
        status: 200,
        served_by: Some("node/fake".into()),
        stream: false,
        body: Some(
            serde_json::json!({"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
        ),
        request: None,
    };
    let mut times: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            let edit = plugin.on_response(&call).unwrap();
            let d = t.elapsed();
            assert_eq!(edit.headers.len(), 1);
            d
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let runs: usize = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(5);
    let wasm = wat::parse_file(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/add-header.wat"),
    )
    .unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    std::fs::write(plugin_dir.path().join("add-header.wasm"), &wasm).unwrap();
    let rt = runtime();
    let up = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream_url = format!("http://{}", up.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(upstream))
        .route("/v1/models", axum::routing::get(models));
    rt.spawn(async move { axum::serve(up, app).await });
    let client = reqwest::Client::new();
    let nodes: Vec<BenchNode> = (0..MODES.len())
        .map(|m| BenchNode::start(&sets(&upstream_url, m, plugin_dir.path())))
        .collect();
    // best[mode] = (rps at 32 clients, p50 ms at 32), p50 at 1 client (lowest of the runs)
    let mut best = vec![((0f64, 0f64), f64::MAX); MODES.len()];
    rt.block_on(async {
        for n in &nodes {
            n.wait_ready_within(&client, Duration::from_secs(120)).await;
        }
        // The WASM node must have its plugin in the chain.
        let r = request(&client, &nodes[2].base).send().await.unwrap();
        assert_eq!(r.headers()["x-golek-plugin-example"], "1");
        for run in 0..runs {
            for k in 0..nodes.len() {
                let m = (run + k) % nodes.len();
                let busy = load(&client, &nodes[m].base, 32, seconds).await;
                let (_, alone) = load(&client, &nodes[m].base, 1, seconds / 2.0).await;
                if busy.0 > best[m].0 .0 {
                    best[m].0 = busy;
                }
                best[m].1 = best[m].1.min(alone);
            }
        }
    });
    drop(nodes);
    let hook_us = hook_call_p50(&wasm);
    println!("## Plugins on the gateway path (openai provider, static upstream)\n");
    println!("Best of {runs} interleaved runs of {seconds} s; p50 at 1 client is the lowest of the runs.\n");
    println!("| mode | req/s (32 clients) | p50 at 32 | p50 at 1 client | added at 1 client |");
    println!("|---|---|---|---|---|");
    let base = best[0].1;
    for (m, name) in MODES.iter().enumerate() {
        let ((rps, p50), alone) = best[m];
        println!(
            "| {name} | {rps:.0} | {p50:.2} ms | {:.0} µs | {:+.0} µs |",
            alone * 1e3,
            (alone - base) * 1e3
        );
    }
    println!("\nOne WASM hook call (add-header's on_response, in process, p50 of 20,000): {hook_us:.1} µs (target: under 20 µs)");
}
