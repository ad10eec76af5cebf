//! The supervision tree with real models: a worker that panics is restarted with backoff while
//! the node keeps serving its other models; a model that cannot load opens its breaker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use golek_actors::{start_node, ModelState, NodeHandle};
use golek_config::{CliOverride, ConfigInputs, NodeConfig};
use golek_protocol::inference::{
    EmbeddingInput, EmbeddingsRequest, InferenceEvent, InferenceRequest,
};
use golek_protocol::ErrorCode;

const WAIT: Duration = Duration::from_secs(60);

/// The default config plus overrides, with its own data dir.
fn config(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Arc<NodeConfig> {
    let mut env = BTreeMap::new();
    env.insert("HOME".to_string(), "/tmp".to_string());
    // These scenarios are about the ONNX model; the llama.cpp one has its own tests.
    let mut cli = vec![
        CliOverride::new(
            "node.data_dir",
            data_dir.display().to_string(),
            "--data-dir",
        ),
        CliOverride::new("models.golek-tiny.enabled", "false", "--set"),
        CliOverride::new("models.smollm2-135m-instruct.enabled", "false", "--set"),
    ];
    for (k, v) in extra {
        cli.push(CliOverride::new(*k, *v, "--set"));
    }
    Arc::new(
        golek_config::load(&ConfigInputs {
            file: None,
            env,
            cli,
            ..Default::default()
        })
        .unwrap()
        .config,
    )
}

fn request(text: &str) -> InferenceRequest {
    InferenceRequest::Embeddings(EmbeddingsRequest {
        inputs: vec![EmbeddingInput::Text(text.into())],
    })
}

async fn embed(node: &NodeHandle, model: &str) -> Result<usize, ErrorCode> {
    let mut rx = node
        .router
        .submit(
            model,
            request("a man is eating food"),
            Duration::from_secs(30),
        )
        .map_err(|e| e.code)?;
    // The answer opens with who serves it, then the embeddings.
    match rx.recv().await {
        Some(Ok(InferenceEvent::Served { model: m, .. })) => assert_eq!(m, model),
        other => panic!("unexpected first event {other:?}"),
    }
    match rx.recv().await {
        Some(Ok(InferenceEvent::Embeddings(v))) => Ok(v[0].vector.len()),
        Some(Ok(other)) => panic!("unexpected event {other:?}"),
        Some(Err(e)) => Err(e.code),
        None => Err(ErrorCode::Unavailable),
    }
}

fn state_of(node: &NodeHandle, model: &str) -> (ModelState, u64) {
    let table = node.router.table();
    let entry = &table.models[model];
    (entry.state.clone(), entry.restarts)
}

/// A second deployment of MiniLM under another name.
fn second_minilm(name: &str) -> Vec<(String, String)> {
    let assets = golek_config::default_assets_dir();
    let dir = assets.join("models/all-minilm-l6-v2");
    vec![
        (format!("models.{name}.provider"), "onnx".into()),
        (
            format!("models.{name}.params.pipeline"),
            "sentence-embedding".into(),
        ),
        (
            format!("models.{name}.params.model_path"),
            dir.join("model.onnx").display().to_string(),
        ),
        (
            format!("models.{name}.params.tokenizer_path"),
            dir.join("tokenizer.json").display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_restarted_while_other_models_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let extra = second_minilm("other");
    let mut overrides: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    overrides.push(("supervision.restart_backoff_initial_ms", "300"));
    let node = start_node(config(dir.path(), &overrides)).await.unwrap();
    assert!(
        node.router.wait_for(WAIT, |t| t.all_ready()).await,
        "models ready"
    );
    assert_eq!(embed(&node, "all-minilm-l6-v2").await, Ok(384));

    // A real panic on the worker thread: it fires when the worker next takes work.
    node.router.inject_crash("all-minilm-l6-v2").unwrap();
    let _ = embed(&node, "all-minilm-l6-v2").await;
    assert!(
        node.router
            .wait_for(WAIT, |t| t.models["all-minilm-l6-v2"].state
                != ModelState::Ready)
            .await,
        "the crash is noticed"
    );
    // While it restarts (300 ms backoff, then a reload), the other model answers.
    assert_eq!(embed(&node, "other").await, Ok(384));
    assert!(
        node.router
            .wait_for(WAIT, |t| {
                let e = &t.models["all-minilm-l6-v2"];
                e.state == ModelState::Ready && e.restarts == 1
            })
            .await,
        "restarted once and ready: {:?}",
        state_of(&node, "all-minilm-l6-v2")
    );
    let table = node.router.table();
    let entry = &table.models["all-minilm-l6-v2"];
    assert!(
        entry
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("fault injection"),
        "{:?}",
        entry.last_error
    );
    assert_eq!(entry.generation, 2);
    assert_eq!(embed(&node, "all-minilm-l6-v2").await, Ok(384));
    assert_eq!(state_of(&node, "other"), (ModelState::Ready, 0));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_keeps_failing_opens_its_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, b"this is not an onnx graph").unwrap();
    let broken = broken.display().to_string();
    let node = start_node(config(
        dir.path(),
        &[
            ("models.broken.provider", "onnx"),
            ("models.broken.params.pipeline", "tensor"),
            ("models.broken.params.model_path", &broken),
            ("supervision.restart_backoff_initial_ms", "10"),
            ("supervision.restart_backoff_max_ms", "20"),
            ("supervision.max_restarts", "2"),
            ("supervision.breaker_cooldown_s", "3600"),
        ],
    ))
    .await
    .unwrap();
    assert!(
        node.router
            .wait_for(WAIT, |t| t.models["broken"].state
                == ModelState::BreakerOpen)
            .await,
        "breaker opens: {:?}",
        state_of(&node, "broken")
    );
    let (_, restarts) = state_of(&node, "broken");
    assert_eq!(
        restarts, 2,
        "two restarts, then the third failure opened the breaker"
    );
    let err = node
        .router
        .submit("broken", request("x"), Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("breaker_open"), "{}", err.message);
    let table = node.router.table();
    assert!(table.models["broken"]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("failed to load"));
    // The healthy model is untouched.
    assert!(
        node.router
            .wait_for(WAIT, |t| t.models["all-minilm-l6-v2"].state
                == ModelState::Ready)
            .await
    );
    assert_eq!(embed(&node, "all-minilm-l6-v2").await, Ok(384));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_deployments_persist_across_node_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_node(config(dir.path(), &[])).await.unwrap();
    let id = first.node_id.clone();
    let deployed = first.deployments().await.unwrap();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0].name, "all-minilm-l6-v2");
    first.shutdown().await.unwrap();

    let second = start_node(config(
        dir.path(),
        &[("models.all-minilm-l6-v2.enabled", "false")],
    ))
    .await
    .unwrap();
    assert_eq!(second.node_id, id, "the node id is kept");
    assert!(
        second.deployments().await.unwrap().is_empty(),
        "a removed deployment is forgotten"
    );
    assert_eq!(
        second
            .router
            .submit("all-minilm-l6-v2", request("x"), Duration::from_secs(1))
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    second.shutdown().await.unwrap();
}
