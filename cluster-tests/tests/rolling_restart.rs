//! A rolling restart with no failed request: three nodes, two of them with a replica of
//! golek-tiny, under steady load (whole and streamed answers) from clients that know all three
//! nodes and move to another one on a refused connection (as behind a load balancer). Each
//! node in turn is stopped with SIGTERM (the last once more with `golek drain`), must exit 0,
//! and is started again; the next waits until the others see it serving again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golek_cluster_tests::{golek, serves, wait_until, Ca, Models, Node, NodeSpec};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// One request's end: when it finished, how long it took and how often it moved to another
/// node, or what went wrong.
type Outcome = (Instant, Result<(Duration, usize), String>);

/// One chat request, moved to the next node when the one tried refuses the connection or
/// drops it before answering.
async fn one(
    client: &reqwest::Client,
    urls: &[String],
    first: usize,
    stream: bool,
) -> Result<(Duration, usize), String> {
    let began = Instant::now();
    let body = json!({"model": "golek-tiny", "max_tokens": 12, "temperature": 0,
                      "stream": stream, "messages": [{"role": "user", "content": "roll on"}]});
    let mut tried = Vec::new();
    for attempt in 0..urls.len() * 4 {
        let url = &urls[(first + attempt) % urls.len()];
        let response = match client
            .post(format!("{url}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
        {
            // No answer at all (refused, or closed before a status): the next node.
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(r) => r,
        };
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{url}: the answer broke off: {e}"))?;
        if status != 200 {
            return Err(format!("{url}: {status}: {text}"));
        }
        if stream {
            if !text.contains("data: [DONE]") || text.contains("\"error\"") {
                return Err(format!("{url}: a broken stream: {text}"));
            }
        } else {
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))?;
            if v["choices"][0]["message"]["content"].as_str().is_none() {
                return Err(format!("{url}: no answer: {text}"));
            }
        }
        return Ok((began.elapsed(), attempt));
    }
    Err(format!("no node took it: {tried:?}"))
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    let i = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    latencies.get(i).copied().unwrap_or_default()
}

async fn stopped(node: &mut Node) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = node.wait_exit(Duration::from_millis(20)) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    panic!("node {} did not stop; log:\n{}", node.spec.id, node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_fails_no_request() {
    let ca = Ca::new();
    let grace = ["--set", "http.shutdown_grace_ms=20000"]
        .map(String::from)
        .to_vec();
    let mut a = NodeSpec::new("a", ca.issue("a"), Models::Generation);
    a.args = grace.clone();
    let a = Node::start(a).await;
    let mut b = NodeSpec::new("b", ca.issue("b"), Models::Generation).seed(a.spec.quic);
    b.args = grace.clone();
    let b = Node::start(b).await;
    let mut c = NodeSpec::new("c", ca.issue("c"), Models::None).seed(a.spec.quic);
    c.args = grace;
    let c = Node::start(c).await;
    let mut nodes = [a, b, c];
    // Started again, a finds the cluster through b.
    nodes[0].spec.seeds.push(nodes[1].spec.quic);
    for n in &nodes {
        assert!(
            wait_until(CONVERGE, || async {
                let view = n.cluster().await;
                serves(&view, "a") && serves(&view, "b")
            })
            .await,
            "{} never saw both replicas: {}",
            n.spec.id,
            n.cluster().await
        );
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut loaders = Vec::new();
    for i in 0..4 {
        let (stop, outcomes, urls) = (stop.clone(), outcomes.clone(), urls.clone());
        loaders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let r = one(&client, &urls, n, i % 2 == 1).await;
                outcomes.lock().unwrap().push((Instant::now(), r));
                n += 1;
            }
        }));
    }

    // A warm-up (first connections, the prompt cache), then the steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_began = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarts_began = Instant::now();
    for i in 0..nodes.len() + 1 {
        let node = &mut nodes[i % 3];
        if i < 3 {
            node.sigterm();
        } else {
            // Once more, with the CLI.
            let out = golek(&[
                "drain",
                "--http",
                node.url("").trim_start_matches("http://"),
            ]);
            assert!(out.contains("has stopped"), "{out}");
        }
        let status = stopped(node).await;
        assert!(
            status.success(),
            "{} exited with {status}; log:\n{}",
            node.spec.id,
            node.log()
        );
        assert!(node.log().contains("draining"), "{}", node.log());
        node.restart().await;
        let id = node.spec.id.clone();
        let model = id != "c";
        for other in &nodes {
            let view_ok = wait_until(CONVERGE, || async {
                let view = other.cluster().await;
                let alive = view["members"].as_array().into_iter().flatten().any(|m| {
                    m["node_id"] == id.as_str() && m["alive"] == true && m["draining"] == false
                });
                alive && (!model || serves(&view, &id))
            })
            .await;
            assert!(
                view_ok,
                "{} never saw {id} back: {}",
                other.spec.id,
                other.cluster().await
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let latencies = |during: bool| -> Vec<Duration> {
        outcomes
            .iter()
            .filter(|(at, _)| *at >= steady_began && (*at >= restarts_began) == during)
            .filter_map(|(_, r)| r.as_ref().ok().map(|(d, _)| *d))
            .collect()
    };
    let (steady, rolling) = (latencies(false), latencies(true));
    let moved: usize = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|(_, m)| *m))
        .sum();
    println!(
        "rolling restart: {} requests ({} during the restarts), {} failed, {moved} moved to another node; p99 steady {:?}, during the restarts {:?}",
        outcomes.len(),
        rolling.len(),
        failures.len(),
        p99(steady.clone()),
        p99(rolling.clone()),
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(
        steady.len() >= 8 && rolling.len() >= 40,
        "too little load: {} then {}",
        steady.len(),
        rolling.len()
    );
}
