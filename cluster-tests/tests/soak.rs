//! A soak: a couple of thousand requests, streaming and not, through an entry node to two
//! replicas whose faults change at random (provider errors at some rate, streams cut mid-way,
//! added latency). Every accepted request gets exactly one final answer (a finish or an error,
//! never both, never two), and every answer that finished has the greedy text of a run with no
//! faults: continuations repeat nothing and lose nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use golek_cluster_tests::{faulty_with, replicas_behind_an_entry, NodeSpec};
use serde_json::{json, Value};

const CLIENTS: usize = 8;

/// Fault switches on; breakers that probe again after 300 ms, so a soak of a few seconds
/// sees them open and close many times.
fn soaked(spec: NodeSpec) -> NodeSpec {
    faulty_with(spec, &["reliability.breaker_cooldown_ms=300"])
}
const PER_CLIENT: usize = 250;

/// One request's outcome: its HTTP status, the final answers it got (finishes plus errors) and
/// the text of a finished one.
#[derive(Debug)]
struct Answer {
    status: u16,
    finals: usize,
    text: Option<String>,
}

async fn ask(client: &reqwest::Client, url: &str, stream: bool) -> Answer {
    let body = json!({"model": "golek-tiny", "prompt": "soak", "max_tokens": 8, "temperature": 0,
                      "ignore_eos": true, "stream": stream});
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    if !stream || status != 200 {
        let v: Value = serde_json::from_str(&text).unwrap();
        let finished = v["choices"][0]["finish_reason"].is_string();
        let failed = v.get("error").is_some();
        return Answer {
            status,
            finals: usize::from(finished) + usize::from(failed),
            text: finished.then(|| v["choices"][0]["text"].as_str().unwrap().to_string()),
        };
    }
    let (mut finals, mut out, mut finished) = (0, String::new(), false);
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            finals += 1;
        }
        if let Some(t) = v["choices"][0]["text"].as_str() {
            out.push_str(t);
        }
        if v["choices"][0]["finish_reason"].is_string() {
            finals += 1;
            finished = true;
        }
    }
    Answer {
        status,
        finals,
        text: finished.then_some(out),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_request_gets_exactly_one_final_answer_under_random_faults() {
    let (a, b, c) = replicas_behind_an_entry(soaked, soaked).await;
    let url = a.url("/v1/completions");
    let client = reqwest::Client::new();
    let reference = ask(&client, &url, false).await.text.expect("a clean run");

    // Faults change at random every 100 ms on either replica.
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let stop = stop.clone();
        let targets = [
            b.url("/admin/debug/fault/golek-tiny"),
            c.url("/admin/debug/fault/golek-tiny"),
        ];
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let target = &targets[fastrand::usize(..targets.len())];
                let error_rate = [0.0, 0.0, 0.1, 0.3][fastrand::usize(..4)];
                let cut = [0, 0, 3, 6][fastrand::usize(..4)];
                let delay = [0, 0, 1, 5][fastrand::usize(..4)];
                let settings =
                    json!({"error_rate": error_rate, "cut_after_events": cut, "delay_ms": delay});
                let _ = client.post(target).json(&settings).send().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for target in &targets {
                let _ = client.post(target).json(&json!({})).send().await;
            }
        })
    };
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(PER_CLIENT);
                for i in 0..PER_CLIENT {
                    answers.push(ask(&client, &url, (w + i) % 2 == 0).await);
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    chaos.await.unwrap();

    let accepted = answers
        .iter()
        .filter(|a| a.status < 500 || a.finals > 0)
        .count();
    let one_final = answers.iter().filter(|a| a.finals == 1).count();
    let ok = answers.iter().filter(|a| a.text.is_some()).count();
    let mut statuses = std::collections::BTreeMap::new();
    for a in &answers {
        *statuses.entry((a.status, a.text.is_some())).or_insert(0) += 1;
    }
    eprintln!(
        "soak: {} requests, {accepted} accepted, {one_final} with one final answer, {ok} finished; (status, finished): {statuses:?}",
        answers.len()
    );
    for a in &answers {
        assert_eq!(
            a.finals, 1,
            "a request without exactly one final answer: {a:?}"
        );
        if let Some(text) = &a.text {
            assert_eq!(
                *text, reference,
                "a finished answer differs from the clean run"
            );
        }
    }
    assert_eq!(one_final, answers.len());
    assert!(
        ok * 2 >= answers.len(),
        "only {ok} of {} finished",
        answers.len()
    );
}
