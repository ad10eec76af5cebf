//! Model files from a `model_url`, served by a real HTTP file server written by others
//! (tower-http's `ServeDir`, which answers ranges): a deployment that names a URL and a sha256
//! no peer has is downloaded and served; an interrupted download resumes with a range; a file
//! whose hash is not the one named is refused and not kept.

use std::time::Duration;

use golek_cluster_tests::{metric_by_label, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

fn sha256(bytes: &[u8]) -> String {
    golek_actors::placement::store::hash_bytes(bytes)
}

/// Serves `dir` over HTTP on a free loopback port; its base URL.
async fn serve(dir: std::path::PathBuf) -> String {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn from_url(node: &Node) -> f64 {
    metric_by_label(node, "golek_model_bytes_fetched_total")
        .await
        .get("url")
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_come_from_their_url_resume_and_are_checked() {
    let files = tempfile::tempdir().unwrap();
    let tiny =
        std::fs::read(golek_config::default_assets_dir().join("models/golek-tiny.gguf")).unwrap();
    std::fs::write(files.path().join("tiny.gguf"), &tiny).unwrap();
    let big: Vec<u8> = (0..6 << 20).map(|_| fastrand::u8(..)).collect();
    std::fs::write(files.path().join("big.bin"), &big).unwrap();
    let base = serve(files.path().to_path_buf()).await;

    let ca = Ca::new();
    let node = Node::start(NodeSpec::new("u", ca.issue("u"), Models::None)).await;
    // A deployment whose file no peer has comes from its URL, checked by its sha256.
    let deployment = json!({"name": "from-url", "provider": "gguf",
        "model_sha256": sha256(&tiny), "model_url": format!("{base}/tiny.gguf"),
        "params": {"n_ctx": 512, "slots": 1, "threads": 1}});
    let made = node.post("/admin/deployments", &deployment).await;
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let d: Value = node.get("/admin/deployments/from-url").await;
            d["replicas"][0]["state"] == "ready"
        })
        .await,
        "{}",
        node.get("/admin/deployments/from-url").await
    );
    let served = reqwest::Client::new()
        .post(node.url("/v1/completions"))
        .json(&json!({"model": "from-url", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(from_url(&node).await, tiny.len() as f64);

    // Interrupted after 2 MiB: only the rest travels.
    let big_sha = sha256(&big);
    let models = node.data_dir().join("models");
    std::fs::write(models.join(format!("{big_sha}.partial")), &big[..2 << 20]).unwrap();
    let before = from_url(&node).await;
    let pulled = node
        .post(
            "/admin/models/pull",
            &json!({"url": format!("{base}/big.bin"), "sha256": big_sha}),
        )
        .await;
    assert_eq!(pulled.status(), 200, "{}", pulled.text().await.unwrap());
    assert_eq!(from_url(&node).await - before, (4 << 20) as f64);
    assert_eq!(std::fs::read(models.join(&big_sha)).unwrap(), big);

    // The wrong hash: refused, nothing kept.
    let wrong = sha256(b"something else");
    let refused = node
        .post(
            "/admin/models/pull",
            &json!({"url": format!("{base}/tiny.gguf"), "sha256": wrong}),
        )
        .await;
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(text.contains("sha256"), "{text}");
    assert!(!models.join(&wrong).exists());
    assert!(!models.join(format!("{wrong}.partial")).exists());
}
