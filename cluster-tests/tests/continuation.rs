//! Streams that survive their node: when the node serving a generation dies (`kill -9`, before
//! the others mark it dead) or its link is cut mid-stream, the entry node goes on from the
//! token ids already delivered on another replica. The client's text equals an uninterrupted
//! greedy run, with no error and nothing repeated; non-streaming requests in flight are
//! answered too.

use std::time::Duration;

use golek_cluster_tests::{actor, faulty, metric, replicas_behind_an_entry, Node};
use serde_json::{json, Value};

const PROMPT: &str = "the stream that outlives its node";

fn body(max_tokens: u32, stream: bool) -> Value {
    json!({"model": "golek-tiny", "prompt": PROMPT, "max_tokens": max_tokens,
           "temperature": 0, "ignore_eos": true, "stream": stream})
}

/// What a streamed completion said: its text, its usage, and any error event.
#[derive(Debug, Default)]
struct Streamed {
    text: String,
    completion_tokens: Option<u64>,
    error: Option<String>,
    done: bool,
}

/// Reads an SSE completion stream to its end.
async fn read_stream(response: reqwest::Response) -> Streamed {
    let mut response = response;
    let mut out = Streamed::default();
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.unwrap_or(None) {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                out.done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(e) = v.get("error") {
                out.error = Some(e.to_string());
            }
            if let Some(t) = v["choices"][0]["text"].as_str() {
                out.text.push_str(t);
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                out.completion_tokens = Some(n);
            }
        }
    }
    out
}

async fn stream(entry: &Node, max_tokens: u32) -> Streamed {
    let mut request = body(max_tokens, true);
    request["stream_options"] = json!({"include_usage": true});
    read_stream(entry.post("/v1/completions", &request).await).await
}

async fn serving(node: &Node) -> u64 {
    let tree = node.get("/admin/actors").await;
    actor(&tree, &["ClusterManager", "peers"])
        .and_then(|m| m["details"]["serving"].as_u64())
        .unwrap_or(0)
}

async fn set_fault(node: &Node, settings: Value) {
    let armed = node.post("/admin/debug/fault/golek-tiny", &settings).await;
    assert_eq!(armed.status(), 202, "{}", armed.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_hands_its_streams_to_another_replica() {
    let (a, mut b, mut c) = replicas_behind_an_entry(faulty, |spec| spec).await;
    let reference = stream(&a, 48).await;
    assert!(reference.done && reference.error.is_none(), "{reference:?}");
    assert_eq!(reference.completion_tokens, Some(48));
    let reference_short = a.post("/v1/completions", &body(16, false)).await;
    assert_eq!(reference_short.status(), 200);
    let reference_short: Value = reference_short.json().await.unwrap();

    // Slow both replicas down (each event held 40 ms) so the kill lands mid-stream.
    set_fault(&b, json!({"delay_ms": 40})).await;
    set_fault(&c, json!({"delay_ms": 40})).await;
    let entry = a.base.clone();
    let streamed = tokio::spawn({
        let client = reqwest::Client::new();
        let mut request = body(48, true);
        request["stream_options"] = json!({"include_usage": true});
        async move {
            let r = client
                .post(format!("{entry}/v1/completions"))
                .json(&request)
                .send()
                .await
                .unwrap();
            read_stream(r).await
        }
    });
    // Which replica serves the stream.
    let mut victim = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        match (serving(&b).await, serving(&c).await) {
            (1, 0) => victim = Some("b"),
            (0, 1) => victim = Some("c"),
            _ => continue,
        }
        break;
    }
    let victim = victim.expect("neither replica took the stream");
    // Non-streaming requests in flight as well.
    let short: Vec<_> = (0..4)
        .map(|_| {
            let client = reqwest::Client::new();
            let url = a.url("/v1/completions");
            let request = body(16, false);
            tokio::spawn(async move {
                let r = client.post(url).json(&request).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    if victim == "b" {
        b.kill9();
    } else {
        c.kill9();
    }

    let got = tokio::time::timeout(Duration::from_secs(60), streamed)
        .await
        .expect("the stream never ended")
        .unwrap();
    assert!(got.error.is_none(), "the stream broke: {got:?}");
    assert!(got.done, "{got:?}");
    assert_eq!(
        got.text, reference.text,
        "a continued greedy stream equals an uninterrupted one"
    );
    assert_eq!(got.completion_tokens, Some(48), "usage counts every token");
    for r in short {
        let (status, answer) = r.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["choices"][0]["text"], reference_short["choices"][0]["text"],
            "{answer}"
        );
    }
    let continued = metric(
        &a,
        &format!("golek_cluster_continuations_total{{peer=\"{victim}\"}}"),
    )
    .await;
    assert!(continued >= 1.0, "no continuation counted from {victim}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_stream_continues_on_the_other_replica() {
    let (a, b, c) = replicas_behind_an_entry(faulty, |spec| spec).await;
    let reference = stream(&a, 40).await;
    assert!(reference.done && reference.error.is_none(), "{reference:?}");

    // Cut b's next peer stream after 6 events. `a` orders equally loaded replicas at random;
    // while `c` serves, the cut stays armed and a later request meets it.
    set_fault(&b, json!({"cut_after_events": 6})).await;
    let mut continued = 0.0;
    for _ in 0..16 {
        let got = stream(&a, 40).await;
        assert!(got.error.is_none() && got.done, "{got:?}");
        assert_eq!(got.text, reference.text);
        assert_eq!(got.completion_tokens, Some(40));
        continued = metric(&a, "golek_cluster_continuations_total{peer=\"b\"}").await;
        if continued >= 1.0 {
            break;
        }
    }
    assert_eq!(
        continued,
        1.0,
        "b's stream was never cut and continued: {}\n{}",
        reqwest::get(a.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        b.log()
    );
    drop((b, c));
}
