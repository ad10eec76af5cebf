//! A Golek node in front of an OpenAI-compatible upstream (the `openai` provider) against
//! LiteLLM's proxy in front of the same upstream: requests per second and the latency each adds
//! over calling the upstream directly, same load, same machine, one run. The upstream is a
//! minimal in-process server answering a fixed chat completion (JSON or SSE), so that the
//! proxies' own cost is what is measured. Run with `bash bench/proxy.sh`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use axum::Json;

mod common;
use common::{arg, runtime, BenchNode};

/// Concurrent clients of each measurement.
const LEVELS: [usize; 2] = [1, 32];

/// The fixed upstream: a chat completion, streamed when asked.
async fn upstream(Json(body): Json<serde_json::Value>) -> axum::response::Response {
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    if body["stream"].as_bool() == Some(true) {
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let usage = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
        let text = format!(
            "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {usage}\n\ndata: [DONE]\n\n",
            chunk(
                serde_json::json!({"role": "assistant", "content": ""}),
                serde_json::Value::Null
            ),
            chunk(
                serde_json::json!({"content": "hello there"}),
                serde_json::Value::Null
            ),
            chunk(serde_json::json!({}), serde_json::json!("stop")),
        );
        ([("content-type", "text/event-stream")], text).into_response()
    } else {
        Json(serde_json::json!({"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
        .into_response()
    }
}

async fn models() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "bench"}]}),
    )
}

struct Point {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    url: String,
    model: &str,
    key: Option<String>,
    clients: usize,
    seconds: f64,
) -> Point {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let mut request = client.post(&url).json(&body);
                    if let Some(k) = &key {
                        request = request.bearer_auth(k);
                    }
                    let r = request.send().await.expect("request");
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
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    Point {
        rps,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn start_litellm(litellm: &str, upstream: &str, dir: &std::path::Path) -> (Child, String, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!("model_list:\n  - model_name: fake\n    litellm_params:\n      model: openai/fake\n      api_base: {upstream}/v1\n      api_key: unused\n"),
    )
    .unwrap();
    let key = format!("sk-bench-{}", std::process::id());
    let child = Command::new(litellm)
        .arg("--config")
        .arg(&config)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY_DISABLED", "true")
        .env("LITELLM_MASTER_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litellm starts");
    (child, format!("http://127.0.0.1:{port}"), key)
}

fn main() {
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let litellm = arg("--litellm");
    let rt = runtime();
    // The upstream, on its own runtime thread.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(upstream))
        .route("/v1/models", axum::routing::get(models));
    rt.spawn(async move { axum::serve(listener, app).await });

    let node = BenchNode::start(&[
        "models.all-minilm-l6-v2.enabled=false".to_string(),
        "models.smollm2-135m-instruct.enabled=false".to_string(),
        "models.fake.provider=openai".to_string(),
        format!("models.fake.params.base_url={upstream_url}/v1"),
        "models.fake.params.max_in_flight=64".to_string(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let results = rt.block_on(async {
        let client = reqwest::Client::new();
        node.wait_ready(&client).await;
        let lite_server = litellm
            .as_ref()
            .map(|bin| start_litellm(bin, &upstream_url, dir.path()));
        if let Some((_, base, _)) = &lite_server {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !client
                .get(format!("{base}/health/liveliness"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                assert!(Instant::now() < deadline, "litellm not ready");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut results = Vec::new();
        for clients in LEVELS {
            let direct = load(
                format!("{upstream_url}/v1/chat/completions"),
                "fake",
                None,
                clients,
                seconds,
            )
            .await;
            let golek = load(
                format!("{}/v1/chat/completions", node.base),
                "fake",
                None,
                clients,
                seconds,
            )
            .await;
            let lite = match &lite_server {
                Some((_, base, key)) => Some(
                    load(
                        format!("{base}/v1/chat/completions"),
                        "fake",
                        Some(key.clone()),
                        clients,
                        seconds,
                    )
                    .await,
                ),
                None => None,
            };
            results.push((clients, direct, golek, lite));
        }
        if let Some((mut child, _, _)) = lite_server {
            let _ = child.kill();
            let _ = child.wait();
        }
        results
    });
    drop(node);
    println!("## Proxies in front of one OpenAI-compatible upstream, {seconds} s per point\n");
    println!("| clients | path | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for (clients, direct, golek, lite) in &results {
        println!(
            "| {clients} | upstream directly | {:.0} | {:.2} | {:.2} | - | - |",
            direct.rps, direct.p50_ms, direct.p99_ms
        );
        let row = |name: &str, p: &Point| {
            println!(
                "| {clients} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
                p.rps,
                p.p50_ms,
                p.p99_ms,
                p.p50_ms - direct.p50_ms,
                p.p99_ms - direct.p99_ms
            )
        };
        row("golek (openai provider)", golek);
        if let Some(l) = lite {
            row("LiteLLM proxy", l);
        }
    }
    for (clients, _, golek, lite) in &results {
        if let Some(l) = lite {
            println!(
                "\n{clients} clients: golek / LiteLLM throughput {:.1}x",
                golek.rps / l.rps
            );
        }
    }
}
