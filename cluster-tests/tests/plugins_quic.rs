//! The plugins' hooks on the QUIC client API (`golek-client/1`): a request is seen in the HTTP
//! API's shape, so the same plugins that guard and rewrite HTTP requests guard and rewrite it,
//! its generated text passes the chunk hooks, and the audit log gets its line.

use std::time::Duration;

use golek_actors::cluster::client::QuicClient;
use golek_cluster_tests::{wait_until, Ca, Models, Node, NodeSpec};
use golek_protocol::inference::{
    ChatMessage, GenerateRequest, InferenceEvent, InferenceRequest, Prompt, SamplingParams,
};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

fn chat(text: &str) -> InferenceRequest {
    let sampling = SamplingParams {
        temperature: 0.0,
        ignore_eos: true,
        ..Default::default()
    };
    InferenceRequest::Generate(GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", text)]),
        Some(4),
        sampling,
    ))
}

async fn events(
    client: &QuicClient,
    model: &str,
    request: InferenceRequest,
) -> Vec<Result<InferenceEvent, ErrorInfo>> {
    let mut stream = client
        .infer(model, request, Duration::from_secs(30))
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item);
    }
    out
}

/// A WebAssembly plugin whose chunk hook turns every chunk's text into `X`.
fn chunk_x() -> Vec<u8> {
    let manifest =
        json!({"name": "chunk-x", "version": "1.0.0", "api": 1, "hooks": ["on_chunk"]}).to_string();
    let answer =
        json!({"chunk": {"choices": [{"index": 0, "delta": {"content": "X"}}]}}).to_string();
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 16) "{m}")
          (data (i32.const 2048) "{a}")
          (func (export "alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "manifest") (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {ml})))
          (func (export "on_chunk") (param i32) (param i32) (result i64)
            (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const {al}))))"#,
        m = manifest.replace('"', "\\\""),
        ml = manifest.len(),
        a = answer.replace('"', "\\\""),
        al = answer.len(),
    );
    wat::parse_str(wat).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_client_requests_pass_the_request_chunk_and_done_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins");
    std::fs::write(
        plugins.join("model-alias.wasm"),
        wat::parse_file(examples.join("model-alias.wat")).unwrap(),
    )
    .unwrap();
    let audit = dir.path().join("audit.log");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nplugin_dir = {plugins:?}\n\
             [plugins.prompt-guard]\ndeny = [\"(?i)forbidden\"]\n\
             [plugins.audit-log]\npath = {audit:?}\n\
             [plugins.model-alias]\nmodel = \"golek-tiny\"\n"
        ),
    )
    .unwrap();
    let ca = Ca::new();
    let mut spec = NodeSpec::new("door", ca.issue("door"), Models::Generation);
    spec.args = vec!["--config".into(), config.to_str().unwrap().into()];
    let node = Node::start(spec).await;
    let client = QuicClient::connect(node.spec.quic, &ca.issue("client"))
        .await
        .unwrap();

    // The guard refuses it, naming its rule; nothing reaches a model.
    let refused = events(&client, "golek-tiny", chat("a FORBIDDEN word")).await;
    match refused.as_slice() {
        [Err(e)] => {
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{e:?}");
            assert!(
                e.message.contains("prompt-guard") && e.message.contains("forbidden"),
                "{e:?}"
            );
        }
        other => panic!("expected one refusal, got {other:?}"),
    }

    // model-alias (WebAssembly) rewrites the model: a name no model has is served.
    let served = events(&client, "a-name-no-model-has", chat("hello")).await;
    assert!(
        served.iter().any(
            |e| matches!(e, Ok(InferenceEvent::Served { model, .. }) if model == "golek-tiny")
        ),
        "{served:?}"
    );
    assert!(
        matches!(served.last(), Some(Ok(InferenceEvent::Finished { .. }))),
        "{served:?}"
    );

    // A chunk hook loaded while serving changes the generated text of the next request.
    std::fs::write(plugins.join("chunk-x.wasm"), chunk_x()).unwrap();
    let x_only = |events: &[Result<InferenceEvent, ErrorInfo>]| {
        let texts: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Ok(InferenceEvent::Text { text, .. }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        !texts.is_empty() && texts.iter().all(|t| *t == "X")
    };
    let mut last = Vec::new();
    for _ in 0..100 {
        last = events(&client, "golek-tiny", chat("hello")).await;
        if x_only(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        x_only(&last),
        "the chunk hook never changed the text: {last:?}"
    );

    // The audit log has a line for each exchange, in the HTTP API's terms.
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            lines().iter().any(|l| l["status"] == 400)
                && lines().iter().any(|l| {
                    l["status"] == 200
                        && l["model"] == "golek-tiny"
                        && l["completion_tokens"] == 4
                        && l["served_by"] == "door/golek-tiny"
                })
        })
        .await,
        "{:?}",
        lines()
    );
    assert!(lines().iter().all(|l| l["path"] == "/v1/chat/completions"));
}
