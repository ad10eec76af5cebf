//! The OpenAI-compatible embeddings API against a real node serving the real MiniLM model.

mod common;

use base64::Engine;
use common::{cos, embedding, TestNode};
use serde_json::json;

const MODEL: &str = "all-minilm-l6-v2";

#[tokio::test]
async fn embeddings_are_real_unit_vectors_with_usage() {
    let node = TestNode::start(&[]).await;
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply on Monday.",
        "A man is riding a horse.",
        "A man is riding a white horse on an enclosed ground.",
        "A woman is playing the violin.",
    ];
    let response = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": sentences}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], MODEL);
    let vectors: Vec<Vec<f32>> = (0..sentences.len()).map(|i| embedding(&body, i)).collect();
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(body["data"][i]["index"], i);
        assert_eq!(body["data"][i]["object"], "embedding");
        assert_eq!(v.len(), 384);
        let norm = cos(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert!(cos(&vectors[0], &vectors[1]) > cos(&vectors[0], &vectors[2]) + 0.4);
    assert!(cos(&vectors[0], &vectors[1]) > cos(&vectors[0], &vectors[5]));
    assert!(cos(&vectors[3], &vectors[4]) > cos(&vectors[3], &vectors[2]) + 0.3);
    // "A man is eating food." is 6 word pieces plus [CLS] and [SEP].
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 6 * 8, "{tokens}");
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"]
    );

    // One string, base64 and token forms all agree with the float form.
    let one: serde_json::Value = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": sentences[0]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["usage"]["prompt_tokens"], 8);
    let single = embedding(&one, 0);
    for (a, b) in single.iter().zip(&vectors[0]) {
        assert!((a - b).abs() <= 1e-5);
    }
    let b64: serde_json::Value = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": sentences[0], "encoding_format": "base64"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, single);
    // [CLS] hello world [SEP] as token ids equals the text "hello world".
    let by_tokens: serde_json::Value = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": [[101, 7592, 2088, 102]]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let by_text: serde_json::Value = node
        .post_json(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": "hello world", "dimensions": 384}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_tokens["usage"]["prompt_tokens"], 4);
    for (a, b) in embedding(&by_tokens, 0).iter().zip(&embedding(&by_text, 0)) {
        assert!((a - b).abs() <= 1e-5);
    }
}

#[tokio::test]
async fn two_hundred_concurrent_requests_are_all_answered() {
    let node = TestNode::start(&[]).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = node.client.clone();
        let url = node.url("/v1/embeddings");
        tasks.push(tokio::spawn(async move {
            let text = format!("request number {i} asks for its own vector");
            let response = client
                .post(url)
                .json(&json!({"model": MODEL, "input": [text, "a shared second input"]}))
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json");
            (status, body)
        }));
    }
    let mut answered = 0;
    let mut shared: Option<Vec<f32>> = None;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        assert_eq!(embedding(&body, 0).len(), 384);
        // The same input gives the same vector whichever batch it landed in.
        let second = embedding(&body, 1);
        match &shared {
            None => shared = Some(second),
            Some(s) => {
                for (a, b) in s.iter().zip(&second) {
                    assert!((a - b).abs() <= 1e-5);
                }
            }
        }
        answered += 1;
    }
    assert_eq!(answered, 200);
    let ok = node
        .metric("golek_model_requests_total{model=\"all-minilm-l6-v2\",outcome=\"ok\"}")
        .await;
    assert_eq!(ok, Some(200.0));
    // Requests did share batches.
    let batches = node
        .metric("golek_provider_batch_size_count{model=\"all-minilm-l6-v2\"}")
        .await
        .unwrap();
    assert!(batches < 200.0, "{batches} batches for 200 requests");
}
