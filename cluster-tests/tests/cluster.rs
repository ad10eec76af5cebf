//! Real `golek` processes on loopback: membership, forwarding, failure and identity.

use std::time::Duration;

use golek_cluster_tests::{alive_members, serves_model, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(20);

fn completion(stream: bool) -> Value {
    json!({"model": "golek-tiny", "prompt": "the cluster", "max_tokens": 8,
           "temperature": 0, "ignore_eos": true, "stream": stream})
}

/// Concatenated text of an SSE completion stream, and whether it ended with [DONE].
fn sse_text(body: &str) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            done = true;
        } else {
            let v: Value = serde_json::from_str(line).unwrap();
            text.push_str(v["choices"][0]["text"].as_str().unwrap_or(""));
        }
    }
    (text, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_converge_forward_fail_over_and_rejoin() {
    let ca = Ca::new();
    // A embeds; B serves nothing; C and D generate (D is C's replica).
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::Embeddings)).await;
    let seed = a.spec.quic;
    let b = Node::spawn(NodeSpec::new("b", ca.issue("b"), Models::None).seed(seed));
    let mut c = Node::spawn(NodeSpec::new("c", ca.issue("c"), Models::Generation).seed(seed));
    b.wait_ready().await;
    c.wait_ready().await;
    let three = vec!["a".to_string(), "b".into(), "c".into()];
    for node in [&a, &b, &c] {
        let converged = wait_until(CONVERGE, || async { node.alive().await == three }).await;
        assert!(
            converged,
            "{} sees {:?}\n{}",
            node.spec.id,
            node.cluster().await,
            node.log()
        );
    }

    // Every node lists every model, with where it is served (once gossip carried the models,
    // which may come a round after the membership).
    let listed = wait_until(CONVERGE, || async {
        let models = b.get("/v1/models").await;
        models["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    let models = b.get("/v1/models").await;
    assert!(listed, "{models}");
    let where_served = |name: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == name)
            .map(|m| m["golek"]["nodes"].clone())
    };
    assert_eq!(
        where_served("all-minilm-l6-v2"),
        Some(json!(["a"])),
        "{models}"
    );
    assert_eq!(where_served("golek-tiny"), Some(json!(["c"])), "{models}");

    // B has no models: both are served through it, embeddings equal to A's own.
    let local: Value = a
        .post(
            "/v1/embeddings",
            &json!({"model": "all-minilm-l6-v2", "input": "hello"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let via_b = b
        .post(
            "/v1/embeddings",
            &json!({"model": "all-minilm-l6-v2", "input": "hello"}),
        )
        .await;
    assert_eq!(via_b.status(), 200);
    let via_b: Value = via_b.json().await.unwrap();
    assert_eq!(via_b["data"][0]["embedding"], local["data"][0]["embedding"]);

    // Generation on C, through A: the same greedy text, whole and streamed chunk by chunk.
    let direct: Value = c
        .post("/v1/completions", &completion(false))
        .await
        .json()
        .await
        .unwrap();
    let through = a.post("/v1/completions", &completion(false)).await;
    assert_eq!(through.status(), 200);
    let through: Value = through.json().await.unwrap();
    let text = direct["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(through["choices"][0]["text"], text);
    assert_eq!(through["usage"], direct["usage"]);
    let streamed = a.post("/v1/completions", &completion(true)).await;
    assert_eq!(streamed.status(), 200);
    let (streamed_text, done) = sse_text(&streamed.text().await.unwrap());
    assert!(done);
    assert_eq!(streamed_text, text);
    // A client that goes away mid-stream cancels the work on the node that runs it.
    let mut long = a
        .post(
            "/v1/completions",
            &json!({"model": "golek-tiny", "prompt": "go on", "max_tokens": 900,
                    "ignore_eos": true, "stream": true}),
        )
        .await;
    assert_eq!(long.status(), 200);
    assert!(long.chunk().await.unwrap().is_some());
    drop(long);
    let cancelled = wait_until(Duration::from_secs(10), || async {
        let text = reqwest::get(c.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().any(|l| {
            l.starts_with("golek_gen_cancelled_total{model=\"golek-tiny\"}") && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(
        cancelled,
        "C did not cancel the abandoned stream\n{}",
        c.log()
    );

    // The QUIC client API: a client certificate from the CA, the same greedy text via B.
    let client_tls = ca.issue("client-1");
    let quic_text = golek_cluster_tests::golek(&[
        "infer",
        "--quic",
        &b.spec.quic.to_string(),
        "--tls-dir",
        &client_tls.to_string_lossy(),
        "--model",
        "golek-tiny",
        "--prompt",
        "the cluster",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--ignore-eos",
    ]);
    assert_eq!(quic_text.trim_end_matches('\n'), text);
    let vectors = golek_cluster_tests::golek(&[
        "infer",
        "--quic",
        &c.spec.quic.to_string(),
        "--tls-dir",
        &client_tls.to_string_lossy(),
        "--model",
        "all-minilm-l6-v2",
        "--embed",
        "hello",
    ]);
    let line: Value = serde_json::from_str(vectors.lines().next().unwrap()).unwrap();
    let as_f32 = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(
        as_f32(&line["embedding"]),
        as_f32(&local["data"][0]["embedding"])
    );
    let status = golek_cluster_tests::golek(&[
        "cluster",
        "status",
        "--http",
        a.base.trim_start_matches("http://"),
    ]);
    assert!(
        status.contains("golek-tiny (ready)") && status.contains("yes"),
        "{status}"
    );

    // A replica D joins; C is killed: A notices and serves from D.
    let mut d = Node::start(NodeSpec::new("d", ca.issue("d"), Models::Generation).seed(seed)).await;
    let four = vec!["a".to_string(), "b".into(), "c".into(), "d".into()];
    assert!(
        wait_until(CONVERGE, || async { a.alive().await == four }).await,
        "{}",
        a.cluster().await
    );
    c.kill9();
    let noticed = wait_until(Duration::from_secs(10), || async {
        !a.alive().await.contains(&"c".to_string())
    })
    .await;
    assert!(noticed, "A still sees C alive: {}", a.cluster().await);
    let from_d = a.post("/v1/completions", &completion(false)).await;
    let status = from_d.status();
    let from_d: Value = from_d.json().await.unwrap();
    assert_eq!(status, 200, "{from_d}\n{}\n{}", a.cluster().await, a.log());
    assert_eq!(
        from_d["choices"][0]["text"], text,
        "same model, same greedy text"
    );

    // D dies too: no node serves the model, A answers 503 at once.
    d.kill9();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            a.alive().await == ["a", "b"]
        })
        .await,
        "{}",
        a.cluster().await
    );
    let started = std::time::Instant::now();
    let gone = a.post("/v1/completions", &completion(false)).await;
    assert_eq!(gone.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body: Value = gone.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("golek-tiny"),
        "{body}"
    );

    // C comes back with the same data dir and certificate: it rejoins and serves again.
    c.restart().await;
    assert!(
        wait_until(CONVERGE, || async {
            serves_model(&a.cluster().await, "c", "golek-tiny")
        })
        .await,
        "{}",
        a.cluster().await
    );
    assert_eq!(a.alive().await, ["a", "b", "c"]);
    let again = a.post("/v1/completions", &completion(false)).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["choices"][0]["text"], text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_certificates_and_borrowed_ids_are_refused() {
    let ca = Ca::new();
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::None)).await;

    // A node with a certificate from another CA cannot join.
    let other = Ca::new();
    let foreign =
        Node::start(NodeSpec::new("x", other.issue("x"), Models::None).seed(a.spec.quic)).await;
    let refused = wait_until(CONVERGE, || async {
        a.log().contains("refused a QUIC connection")
    })
    .await;
    assert!(refused, "A log:\n{}", a.log());
    assert_eq!(alive_members(&foreign.cluster().await), ["x"]);
    assert_eq!(a.alive().await, ["a"]);

    // A certificate for one id cannot be used under another: the node refuses to start...
    let mut impostor =
        Node::spawn(NodeSpec::new("c", ca.issue("e"), Models::None).seed(a.spec.quic));
    let status = impostor.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| !s.success()), "{}", impostor.log());
    assert!(
        impostor.log().contains("the certificate"),
        "{}",
        impostor.log()
    );

    // ...and one that skips its own check is refused by the others, with the reason logged.
    let mut spec = NodeSpec::new("c", ca.issue("f"), Models::None).seed(a.spec.quic);
    spec.env
        .push(("UNSAFE_GOLEK_SKIP_ID_CHECK".into(), "1".into()));
    let _impostor = Node::start(spec).await;
    let noticed = wait_until(CONVERGE, || async {
        a.cluster().await["refused"]
            .as_array()
            .is_some_and(|r| r.iter().any(|l| l.as_str().unwrap_or("").contains("\"f\"")))
    })
    .await;
    assert!(noticed, "{}\n{}", a.cluster().await, a.log());
    assert!(a.log().contains("refused member c"), "{}", a.log());
    assert_eq!(a.alive().await, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_admits_one_node_once() {
    let ca = Ca::new();
    let mut seed_spec = NodeSpec::new("a", ca.issue("a"), Models::None);
    seed_spec.args = vec![
        "--ca-dir".into(),
        ca.ca_dir().to_string_lossy().into_owned(),
    ];
    let a = Node::start(seed_spec).await;
    let token = ca.token();
    let fresh = tempfile::tempdir().unwrap();
    let joiner = |id: &str, token: &str| {
        let mut spec = NodeSpec::new(id, fresh.path().join(id), Models::None).seed(a.spec.quic);
        spec.args = vec!["--join-token".into(), token.to_string()];
        spec
    };

    // The token gets J its certificate from A; J joins like any node.
    let j = Node::start(joiner("j", &token)).await;
    assert!(fresh.path().join("j/node.pem").exists());
    assert!(
        wait_until(CONVERGE, || async { a.alive().await == ["a", "j"] }).await,
        "{}\n{}",
        a.cluster().await,
        j.log()
    );

    // The same token again is refused; so is a token whose secret was changed.
    let mut again = Node::spawn(joiner("k", &token));
    assert!(again
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| !s.success()));
    assert!(again.log().contains("already used"), "{}", again.log());
    let fresh_token = ca.token();
    let mut parts: Vec<String> = fresh_token.split('.').map(String::from).collect();
    parts[3] = parts[3].chars().rev().collect();
    let mut forged = Node::spawn(joiner("l", &parts.join(".")));
    assert!(forged
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| !s.success()));
    assert!(forged.log().contains("not valid"), "{}", forged.log());
    assert!(a.log().contains("refused a join"), "{}", a.log());
    assert_eq!(a.alive().await, ["a", "j"]);
}
