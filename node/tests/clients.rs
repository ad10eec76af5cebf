//! Client libraries that others wrote, installed by scripts/setup.sh, against a real node: the
//! official OpenAI Python client and Triton's HTTP client.

mod common;

use std::process::Command;

use common::TestNode;

/// Runs a Python script from this folder with the client venv, against a fresh node.
async fn run_client_script(script: &str, address: impl Fn(&TestNode) -> String) -> String {
    let node = TestNode::start(&[]).await;
    run_script(&node, script, &address(&node)).await
}

/// Runs `script ARG` with the client venv's Python; fails with the node's log when it fails.
async fn run_script(node: &TestNode, script: &str, arg: &str) -> String {
    let python = golek_config::default_assets_dir().join("client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        python.display()
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let arg = arg.to_string();
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(arg).output())
            .await
            .unwrap()
            .expect("python runs");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_official_openai_python_client_works_against_the_node() {
    let out = run_client_script("openai_client.py", |n| n.base.clone()).await;
    assert!(out.contains("openai client: ok"));
}

#[tokio::test]
async fn the_openai_python_client_gets_structured_output_tools_logprobs_and_n() {
    let node = TestNode::start_default_models(&[]).await;
    let out = run_script(&node, "openai_features.py", &node.base).await;
    assert!(out.contains("openai features: ok"), "{out}");
}

#[tokio::test]
async fn tritonclient_works_against_the_kserve_v2_api() {
    let out = run_client_script("kserve_client.py", |n| {
        n.base.trim_start_matches("http://").to_string()
    })
    .await;
    assert!(out.contains("tritonclient: ok"));
}

#[tokio::test]
async fn fp16_bf16_and_bytes_tensors_travel_in_json_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("identity.onnx");
    // The graph is written by the onnx package (pinned in the client venv): Identity on FP16,
    // BF16 and string inputs, served as a generic tensor model.
    let python = golek_config::default_assets_dir().join("client-venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_identity_onnx.py");
    let made = Command::new(python)
        .arg(script)
        .arg(&model)
        .output()
        .expect("python runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let path = format!("models.identity.params.model_path={}", model.display());
    let node = TestNode::start(&[
        "--set",
        "models.identity.provider=onnx",
        "--set",
        "models.identity.params.pipeline=tensor",
        "--set",
        &path,
    ])
    .await;
    let host = node.base.trim_start_matches("http://").to_string();
    let out = run_script(&node, "kserve_types.py", &host).await;
    assert!(out.contains("tritonclient types: ok"));

    // BF16 in JSON (tritonclient sends it only in binary) comes back as the same numbers.
    let body = serde_json::json!({"inputs": [
        {"name": "half", "shape": [1], "datatype": "FP16", "data": [0.5]},
        {"name": "brain", "shape": [2], "datatype": "BF16", "data": [1.5, -0.25]},
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    ], "outputs": [{"name": "brain_out"}]});
    let response = node.post_json("/v2/models/identity/infer", &body).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["outputs"][0]["datatype"], "BF16");
    assert_eq!(
        answer["outputs"][0]["data"],
        serde_json::json!([1.5, -0.25])
    );
}
