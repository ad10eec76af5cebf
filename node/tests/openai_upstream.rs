//! The `openai` provider: a node serving a model that lives behind another OpenAI-compatible
//! server — another Golek node here, and llama.cpp's own server (llama-cpp-python) when it was
//! built into `.golek/llamacpp-venv`.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use serde_json::{json, Value};

async fn chat(node: &TestNode, model: &str, stream: bool) -> reqwest::Response {
    node.post_json(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "tell me a story"}],
            "max_tokens": 12, "temperature": 0, "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }}),
    )
    .await
}

fn streamed_text(body: &str) -> (String, Option<Value>) {
    let mut text = String::new();
    let mut usage = None;
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        let payload = event.trim_start_matches("data: ");
        if payload == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(payload).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_behind_another_openai_server_streams_through() {
    let upstream = TestNode::start(&[]).await;
    let base = format!("models.remote.params.base_url={}/v1", upstream.base);
    let front = TestNode::start(&[
        "--set",
        "models.remote.provider=openai",
        "--set",
        &base,
        "--set",
        "models.remote.params.remote_model=golek-tiny",
    ])
    .await;

    // Not streamed: the same answer as the upstream's own, usage passed back.
    let direct: Value = chat(&upstream, "golek-tiny", false)
        .await
        .json()
        .await
        .unwrap();
    let r = chat(&front, "remote", false).await;
    assert_eq!(r.status(), 200);
    let through: Value = r.json().await.unwrap();
    assert_eq!(
        through["choices"][0]["message"]["content"],
        direct["choices"][0]["message"]["content"]
    );
    assert_eq!(
        through["choices"][0]["finish_reason"],
        direct["choices"][0]["finish_reason"]
    );
    assert_eq!(through["usage"], direct["usage"]);
    assert_eq!(through["model"], "remote");

    // Streamed: chunk by chunk, same text, usage at the end.
    let r = chat(&front, "remote", true).await;
    assert_eq!(r.status(), 200);
    let (text, usage) = streamed_text(&r.text().await.unwrap());
    assert_eq!(
        text,
        direct["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        usage.unwrap()["completion_tokens"],
        direct["usage"]["completion_tokens"]
    );

    // An upstream refusal keeps its meaning: max_tokens beyond the upstream's context is a 400.
    let r = front
        .post_json(
            "/v1/completions",
            &json!({"model": "remote", "prompt": "x", "max_tokens": 5000}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream answered HTTP 400"),
        "{body}"
    );

    // The upstream goes away: a quick 502/503, not a hang.
    drop(upstream);
    let started = Instant::now();
    let r = chat(&front, "remote", false).await;
    assert!(matches!(r.status().as_u16(), 502 | 503), "{}", r.status());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_pythons_server_over_https_as_the_upstream() {
    let venv = golek_config::default_assets_dir().join("llamacpp-venv/bin/python");
    let installed = venv.exists()
        && std::process::Command::new(&venv)
            .args(["-c", "import llama_cpp.server"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed,
        "llama-cpp-python's server is missing: run scripts/setup.sh (make test does)"
    );
    common::ensure_test_models();
    let model = golek_config::default_assets_dir().join("models/golek-tiny.gguf");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The upstream speaks HTTPS with a certificate from a private CA made here.
    let tls = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "golek test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        tls.path().join("ca.pem"),
        tls.path().join("server.pem"),
        tls.path().join("server.key"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, server_cert.pem()).unwrap();
    std::fs::write(&key_pem, server_key.serialize_pem()).unwrap();
    let mut server = std::process::Command::new(&venv)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--model_alias",
            "tiny",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--n_ctx",
            "512",
            "--n_threads",
            "1",
            "--interrupt_requests",
            "False",
        ])
        .arg("--ssl_certfile")
        .arg(&cert_pem)
        .arg("--ssl_keyfile")
        .arg(&key_pem)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("llama_cpp.server starts");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(client.get(format!("https://127.0.0.1:{port}/v1/models")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(Instant::now() < deadline, "llama_cpp.server not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without the CA the upstream's certificate is refused, with the reason; skipping
    // verification (for testing only) accepts it.
    let base_url = format!("https://127.0.0.1:{port}/v1");
    let params = |tls: golek_config::RemoteTls| golek_config::OpenaiParams {
        base_url: base_url.clone(),
        remote_model: Some("tiny".into()),
        api_key_env: None,
        api_key_file: None,
        connection: golek_config::RemoteConnection {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_in_flight: 4,
            tls,
        },
    };
    let untrusted = params(Default::default());
    let insecure = params(golek_config::RemoteTls {
        insecure_skip_verify: true,
        ..Default::default()
    });
    let (untrusted, insecure) = tokio::task::spawn_blocking(move || {
        (
            golek_providers::openai::OpenaiProvider::load("remote", &untrusted).map(|_| ()),
            golek_providers::openai::OpenaiProvider::load("remote", &insecure).map(|_| ()),
        )
    })
    .await
    .unwrap();
    let refused = untrusted.unwrap_err().to_string();
    assert!(refused.contains("certificate"), "{refused}");
    insecure.unwrap();

    let base = format!("models.remote.params.base_url={base_url}");
    let ca_set = format!("models.remote.params.tls_ca_path={}", ca_pem.display());
    let front = TestNode::start(&[
        "--set",
        "models.remote.provider=openai",
        "--set",
        &base,
        "--set",
        &ca_set,
        "--set",
        "models.remote.params.remote_model=tiny",
    ])
    .await;
    let r = chat(&front, "remote", false).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        matches!(
            body["choices"][0]["finish_reason"].as_str(),
            Some("stop" | "length")
        ),
        "{body}"
    );
    let r = chat(&front, "remote", true).await;
    assert_eq!(r.status(), 200);
    let (text, _) = streamed_text(&r.text().await.unwrap());
    assert_eq!(
        text,
        body["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Tools, structured output, log probabilities and `n` pass through the `openai` provider
/// and come back in OpenAI's shape, streamed and not (the upstream: a Golek node serving the
/// real chat model).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_features_pass_through_the_openai_provider() {
    let upstream = TestNode::start_default_models(&[]).await;
    let base = format!("models.remote.params.base_url={}/v1", upstream.base);
    let front = TestNode::start(&[
        "--set",
        "models.remote.provider=openai",
        "--set",
        &base,
        "--set",
        "models.remote.params.remote_model=smollm2-135m-instruct",
        // A loaded CI machine is slow at building the grammar's token trie the first time.
        "--set",
        "models.remote.params.timeout_ms=120000",
    ])
    .await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": false}}}]);
    let body = json!({"model": "remote", "max_tokens": 48, "temperature": 0,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": tools, "tool_choice": "required"});
    let r: Value = front
        .post_json("/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    // Streamed: the call's deltas come through and are put back together.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = front
        .post_json("/v1/chat/completions", &streamed)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"tool_calls\"") && text.contains("\"finish_reason\":\"tool_calls\""),
        "{text}"
    );

    let body = json!({"model": "remote", "max_tokens": 48, "temperature": 0, "n": 2,
        "logprobs": true, "top_logprobs": 2,
        "messages": [{"role": "user", "content": "Give me a JSON object about Paris."}],
        "response_format": {"type": "json_object"}});
    let r: Value = front
        .post_json("/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    let choices = r["choices"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(choices.len(), 2, "{r}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let content = c["message"]["content"].as_str().unwrap();
        if c["finish_reason"] == "stop" {
            assert!(
                serde_json::from_str::<Value>(content).unwrap().is_object(),
                "{content}"
            );
        }
        let tokens: String = c["logprobs"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(tokens, content);
        assert_eq!(
            c["logprobs"]["content"][0]["top_logprobs"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

/// An upstream that ends its SSE lines with CRLF and splits a multi-byte character across
/// network writes (servers others wrote do both) still comes through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_event_streams_and_characters_split_across_writes_come_through_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                if request.starts_with("GET /v1/models") {
                    let body = r#"{"object":"list","data":[]}"#;
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                    let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let events = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße\"},\"finish_reason\":null}]}\r\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
                let bytes = events.as_bytes();
                // Split inside "ü" (two bytes in UTF-8).
                let cut = events.find("ü").unwrap() + 1;
                for part in [&bytes[..cut], &bytes[cut..]] {
                    let chunk = format!("{:x}\r\n", part.len());
                    let _ = socket.write_all(chunk.as_bytes()).await;
                    let _ = socket.write_all(part).await;
                    let _ = socket.write_all(b"\r\n").await;
                    let _ = socket.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    let base = format!("models.remote.params.base_url=http://{addr}/v1");
    let front = TestNode::start(&["--set", "models.remote.provider=openai", "--set", &base]).await;
    for stream in [false, true] {
        let r = chat(&front, "remote", stream).await;
        assert_eq!(r.status(), 200);
        let text = if stream {
            streamed_text(&r.text().await.unwrap()).0
        } else {
            let v: Value = r.json().await.unwrap();
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, "Grüße", "stream: {stream}");
    }
}
