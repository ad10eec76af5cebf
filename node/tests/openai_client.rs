//! The official OpenAI Python client (installed by scripts/setup.sh) against a real node.

mod common;

use std::process::Command;

use common::TestNode;

#[tokio::test]
async fn the_official_openai_python_client_works_against_the_node() {
    let python = golek_config::default_assets_dir().join("client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (make test does)",
        python.display()
    );
    let node = TestNode::start(&[]).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let base = node.base.clone();
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(base).output())
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai client: ok"));
}
