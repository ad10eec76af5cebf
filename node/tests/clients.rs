//! Client libraries that others wrote, installed by scripts/setup.sh, against a real node: the
//! official OpenAI Python client and Triton's HTTP client.

mod common;

use std::process::Command;

use common::TestNode;

/// Runs a Python script from this folder with the client venv, against a fresh node.
async fn run_client_script(script: &str, address: impl Fn(&TestNode) -> String) -> String {
    let python = golek_config::default_assets_dir().join("client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        python.display()
    );
    let node = TestNode::start(&[]).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let target = address(&node);
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(target).output())
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
async fn tritonclient_works_against_the_kserve_v2_api() {
    let out = run_client_script("kserve_client.py", |n| {
        n.base.trim_start_matches("http://").to_string()
    })
    .await;
    assert!(out.contains("tritonclient: ok"));
}
