//! The KServe v2 API's answers and errors over HTTP, against a real node.

mod common;

use common::TestNode;
use serde_json::{json, Value};

fn minilm_inputs(ids: Value, shape: Value) -> Value {
    json!({"inputs": [
        {"name": "input_ids", "shape": shape, "datatype": "INT64", "data": ids},
        {"name": "attention_mask", "shape": [1, 4], "datatype": "INT64", "data": [1, 1, 1, 1]},
        {"name": "token_type_ids", "shape": [1, 4], "datatype": "INT64", "data": [[0, 0, 0, 0]]},
    ], "id": "req-7"})
}

async fn error_of(node: &TestNode, path: &str, body: &Value, status: u16) -> String {
    let r = node.post_json(path, body).await;
    assert_eq!(r.status().as_u16(), status, "{path} {body}");
    let body: Value = r.json().await.unwrap();
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("a KServe error body: {body}"))
        .to_string()
}

#[tokio::test]
async fn kserve_v2_infers_and_names_the_tensor_at_fault() {
    let node = TestNode::start(&[]).await;
    let path = "/v2/models/all-minilm-l6-v2/versions/1/infer";
    let r = node
        .post_json(
            path,
            &minilm_inputs(json!([101, 7592, 2088, 102]), json!([1, 4])),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "req-7");
    assert_eq!(body["model_name"], "all-minilm-l6-v2");
    let out = &body["outputs"][0];
    assert_eq!(
        (out["name"].as_str(), out["datatype"].as_str()),
        (Some("last_hidden_state"), Some("FP32"))
    );
    assert_eq!(out["shape"], json!([1, 4, 384]));
    assert_eq!(out["data"].as_array().unwrap().len(), 4 * 384);

    let path = "/v2/models/all-minilm-l6-v2/infer";
    let e = error_of(
        &node,
        path,
        &minilm_inputs(json!([101, 7592, 2088]), json!([1, 4])),
        400,
    )
    .await;
    assert!(
        e.contains("input_ids") && e.contains("needs 4 elements"),
        "{e}"
    );
    let e = error_of(
        &node,
        path,
        &minilm_inputs(json!([101, 7592, 2088, 102]), json!([4])),
        400,
    )
    .await;
    assert!(e.contains("input_ids") && e.contains("rank"), "{e}");
    let mut wrong = minilm_inputs(json!([101, 7592, 2088, 102]), json!([1, 4]));
    wrong["inputs"][1]["datatype"] = json!("INT32");
    let e = error_of(&node, path, &wrong, 400).await;
    assert!(e.contains("attention_mask") && e.contains("INT64"), "{e}");
    let mut unknown = minilm_inputs(json!([101, 7592, 2088, 102]), json!([1, 4]));
    unknown["inputs"][2]["name"] = json!("segment_ids");
    let e = error_of(&node, path, &unknown, 400).await;
    assert!(e.contains("token_type_ids"), "{e}");
    let e = error_of(&node, path, &json!({"inputs": "nope"}), 400).await;
    assert!(e.contains("inputs"), "{e}");
    let e = error_of(
        &node,
        "/v2/models/all-minilm-l6-v2/versions/2/infer",
        &minilm_inputs(json!([1, 2, 3, 4]), json!([1, 4])),
        404,
    )
    .await;
    assert!(e.contains("version"), "{e}");
    // The llama.cpp model is not a tensor model; unknown models are 404.
    let e = error_of(
        &node,
        "/v2/models/golek-tiny/infer",
        &minilm_inputs(json!([1, 2, 3, 4]), json!([1, 4])),
        404,
    )
    .await;
    assert!(e.contains("/v1"), "{e}");
    error_of(
        &node,
        "/v2/models/nope/infer",
        &minilm_inputs(json!([1, 2, 3, 4]), json!([1, 4])),
        404,
    )
    .await;

    assert_eq!(node.get_json("/v2/health/live").await["live"], true);
    assert_eq!(node.get_json("/v2/health/ready").await["ready"], true);
    assert_eq!(
        node.get_json("/v2/models/all-minilm-l6-v2/ready").await["ready"],
        true
    );
    assert_eq!(node.get_json("/v2").await["name"], "golek");

    // The binary extension's framing is checked: a header length beyond the body, and bytes
    // that no input claims, are 400 with what was wrong.
    let client = reqwest::Client::new();
    let header = serde_json::to_vec(&minilm_inputs(json!([1, 2, 3, 4]), json!([1, 4]))).unwrap();
    for (length, extra, needle) in [
        (
            header.len() + 100,
            &b""[..],
            "Inference-Header-Content-Length is",
        ),
        (header.len(), &b"junk"[..], "4 bytes of binary data"),
    ] {
        let mut body = header.clone();
        body.extend_from_slice(extra);
        let response = client
            .post(node.url("/v2/models/all-minilm-l6-v2/infer"))
            .header("inference-header-content-length", length.to_string())
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let e: Value = response.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(needle), "{e}");
    }
}
