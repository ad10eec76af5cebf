//! Logs a machine can read: JSON lines with the node id and the request and trace ids of every
//! request (the client's `x-request-id` and `traceparent` continued, or made and returned), and
//! no secret ever printed: API keys, join tokens, upstream keys.

mod common;

use common::TestNode;
use serde_json::{json, Value};

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[tokio::test]
async fn json_lines_carry_the_node_request_and_trace_ids() {
    let node = TestNode::start(&["--set", "log.format=json", "--set", "log.filter=debug"]).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let answer = node
        .client
        .post(node.url("/v1/completions"))
        .header("x-request-id", "req-42")
        .header("traceparent", parent)
        .json(&json!({"model": "golek-tiny", "prompt": "hello", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-request-id"], "req-42");
    let back = answer.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        back.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !back.contains("00f067aa0ba902b7"),
        "the caller's trace continues with this node's own span: {back}"
    );
    let _ = answer.text().await;
    // Without headers: an id is made and returned, and a new trace begins.
    let plain = node
        .client
        .get(node.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let made = plain.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(made.len() >= 16, "{made}");
    assert!(plain.headers().contains_key("traceparent"));
    // A request id that is not printable ASCII is replaced, not echoed.
    let odd = node
        .client
        .get(node.url("/v1/models"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(odd.headers()["x-request-id"], "a b");

    let node_id = node.get_json("/admin/models").await["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = node
        .wait_until(std::time::Duration::from_secs(5), || async {
            json_lines(&node.log())
                .iter()
                .any(|l| l["request_id"] == "req-42" && l["message"] == "request answered")
        })
        .await;
    assert!(ok, "{}", node.log());
    let lines = json_lines(&node.log());
    assert!(lines.len() > 5, "the log is JSON lines: {}", node.log());
    let mine: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == "req-42")
        .collect();
    assert!(!mine.is_empty());
    for line in &mine {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        assert_eq!(line["node_id"], node_id.as_str(), "{line}");
        assert_eq!(
            line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l["request_id"] == made.as_str()));
}

/// An OpenAI-compatible upstream that answers only the expected key; returns its base URL.
async fn upstream(key: &'static str) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    let authorized = move |headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {key}"))
    };
    let app = axum::Router::new()
        .route(
            "/v1/models",
            get(move |h: HeaderMap| async move {
                match authorized(&h) {
                    true => (StatusCode::OK, axum::Json(json!({"object": "list", "data": []}))),
                    false => (StatusCode::UNAUTHORIZED, axum::Json(json!({}))),
                }
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move |h: HeaderMap| async move {
                match authorized(&h) {
                    true => (StatusCode::OK, axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))),
                    false => (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "bad key"}}))),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_printed() {
    let upstream_secret = "sk-upstream-7f3a9c41d2";
    let base_url = upstream(upstream_secret).await;
    let join_secret = "join-token-b81f0e55aa";
    let data = tempfile::tempdir().unwrap();
    let key_file = data.path().join("upstream.key");
    std::fs::write(&key_file, upstream_secret).unwrap();
    let config = data.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[models.remote-chat]\nprovider = \"openai\"\n\n[models.remote-chat.params]\n\
             base_url = \"{base_url}\"\napi_key_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let node = TestNode::start(&[
        "--config",
        config.to_str().unwrap(),
        "--set",
        "log.format=json",
        "--set",
        "log.filter=debug",
    ])
    .await;
    let addr = node.base.trim_start_matches("http://").to_string();
    // A tenant's key, made and used.
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_golek"))
        .args(["key", "create", "--http", &addr, "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let created = String::from_utf8(made.stdout).unwrap();
    let api_key = created.lines().last().unwrap().trim().to_string();
    assert!(api_key.len() > 20, "{created}");
    for model in ["golek-tiny", "remote-chat"] {
        let answer = node
            .client
            .post(node.url("/v1/chat/completions"))
            .bearer_auth(&api_key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{model}: the upstream got its key");
    }
    // A key the node does not know (ignored with auth off, but never echoed either).
    let unknown = node
        .client
        .get(node.url("/v1/models"))
        .bearer_auth(format!("{api_key}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 200);
    let mut printed = node.log();
    for path in [
        "/admin/config",
        "/admin/keys",
        "/admin/actors",
        "/admin/models",
    ] {
        printed.push_str(
            &node
                .client
                .get(node.url(path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    // The offline `config show` of a joining node's flags.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_golek"))
        .args([
            "config",
            "show",
            "--config",
            config.to_str().unwrap(),
            "--node-id",
            "n1",
            "--seed",
            "127.0.0.1:7000",
            "--tls-dir",
            "/tmp/none",
            "--quic-addr",
            "127.0.0.1:7946",
            "--join-token",
            join_secret,
        ])
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    printed.push_str(&String::from_utf8_lossy(&shown.stdout));
    printed.push_str(&String::from_utf8_lossy(&shown.stderr));
    assert!(printed.contains("cluster.join_token = \"<redacted>\""));
    for secret in [upstream_secret, join_secret, api_key.as_str()] {
        assert!(
            !printed.contains(secret),
            "{secret} was printed:\n{printed}"
        );
    }
}
