//! Fallback chains: `[routes.NAME]` serves a name from the first of its targets that can take
//! the request; a missing, refusing or failing target passes it on, a client's mistake does
//! not; every answer says who served it (`x-golek-served-by`, and `golek.served_by` in JSON).

mod common;

use common::TestNode;
use serde_json::{json, Value};

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.golek/models/golek-tiny.gguf")
        .canonicalize()
        .expect("golek-tiny.gguf (made by the test setup)");
    let path = dir.join("fallback.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[debug]
fault_injection = true

# A second, smaller deployment of the same weights: the chain's last resort.
[models.tiny-b]
provider = "gguf"

[models.tiny-b.params]
model_path = "{}"
n_ctx = 1024
slots = 2

[routes.chain]
targets = ["not-deployed", "golek-tiny", "tiny-b"]
"#,
            model.display()
        ),
    )
    .unwrap();
    path
}

fn body(stream: bool) -> Value {
    json!({"model": "chain", "prompt": "fall back", "max_tokens": 4, "temperature": 0,
           "ignore_eos": true, "stream": stream})
}

async fn served_by(node: &TestNode, stream: bool) -> (u16, String, String) {
    let response = node.post_json("/v1/completions", &body(stream)).await;
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-golek-served-by")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, header, response.text().await.unwrap())
}

#[tokio::test]
async fn a_chain_serves_from_the_next_target_when_one_is_down_and_says_who_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path());
    let node = TestNode::start(&["--config", file.to_str().unwrap()]).await;
    let id = node.get_json("/admin/models").await["node_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The first target is deployed nowhere: the second serves, and says so.
    let (status, header, text) = served_by(&node, false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header, format!("{id}/golek-tiny"));
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["golek"]["served_by"], header.as_str(), "{answer}");
    assert_eq!(answer["model"], "chain");

    // golek-tiny refuses (unavailable, its worker alive): tiny-b serves, streams too.
    let armed = node
        .post_json(
            "/admin/debug/refuse/golek-tiny?n=2&code=unavailable",
            &json!({}),
        )
        .await;
    assert_eq!(armed.status(), 202);
    let (status, header, text) = served_by(&node, false).await;
    assert_eq!(
        (status, header.as_str()),
        (200, &*format!("{id}/tiny-b")),
        "{text}"
    );
    let (status, header, text) = served_by(&node, true).await;
    assert_eq!(
        (status, header.as_str()),
        (200, &*format!("{id}/tiny-b")),
        "{text}"
    );
    assert!(
        text.contains("data: [DONE]") && !text.contains("\"error\""),
        "{text}"
    );

    // golek-tiny fails every request with a provider error: tiny-b again.
    let armed = node
        .post_json("/admin/debug/fault/golek-tiny", &json!({"error_rate": 1.0}))
        .await;
    assert_eq!(armed.status(), 202);
    let (status, header, text) = served_by(&node, false).await;
    assert_eq!(
        (status, header.as_str()),
        (200, &*format!("{id}/tiny-b")),
        "{text}"
    );
    let fallbacks = node
        .metric("golek_route_fallbacks_total{route=\"chain\"}")
        .await
        .unwrap_or(0.0);
    assert!(fallbacks >= 7.0, "fallbacks counted: {fallbacks}");

    // A client's mistake is not passed on: it is the answer.
    let too_long = node
        .post_json(
            "/v1/completions",
            &json!({"model": "chain", "prompt": "x", "max_tokens": 100000}),
        )
        .await;
    assert_eq!(too_long.status(), 400, "{}", too_long.text().await.unwrap());

    // Every target down: 503, naming the route and its targets.
    node.post_json(
        "/admin/debug/refuse/tiny-b?n=10&code=unavailable",
        &json!({}),
    )
    .await;
    let (status, _, text) = served_by(&node, false).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("route \\\"chain\\\"") && text.contains("tiny-b"),
        "{text}"
    );

    // A model asked for by its own name says who served it as well (golek-tiny's and tiny-b's
    // outcome breakers are open now, after their failures: MiniLM answers).
    let direct = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": "all-minilm-l6-v2", "input": "who served me"}),
        )
        .await;
    assert_eq!(direct.status(), 200);
    assert_eq!(
        direct.headers()["x-golek-served-by"],
        format!("{id}/all-minilm-l6-v2").as_str()
    );
}
