//! One tenant's flood does not starve another: the flooding tenant is held to its concurrency
//! (the rest of its requests are shed with 429 at once) and the model's queue serves tenants in
//! turn, so a calm tenant's request takes the next free slot instead of waiting behind the
//! flood. Its median latency under a flood eight times over the flooder's share stays within
//! twice its median with the flooder at its share.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestNode;
use serde_json::json;

fn create_key(node: &TestNode, tenant: &str, extra: &[&str]) -> String {
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut args = vec!["key", "create", "--http", &addr, "--tenant", tenant];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_golek"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

async fn timed(client: &reqwest::Client, url: &str, key: &str, max_tokens: u32) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": "smollm2-135m-instruct", "prompt": "calm and steady", "max_tokens": max_tokens,
                      "temperature": 0, "ignore_eos": true}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

async fn median_latency(node: &TestNode, key: &str, n: usize) -> Duration {
    let url = node.url("/v1/completions");
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, t) = timed(&node.client, &url, key, 16).await;
        assert_eq!(status, 200);
        took.push(t);
    }
    took.sort();
    took[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_is_shed_and_a_calm_one_keeps_its_latency() {
    // The real chat model: its decode steps are bound by memory, as on a real deployment,
    // so sequences share a batch cheaply (the random-weight test model is all compute).
    let node = TestNode::start_default_models(&[]).await;
    let calm = create_key(&node, "calm", &[]);
    // Its share: one sequence at a time; the rest of the flood is shed.
    let flood = create_key(&node, "flood", &["--max-concurrency", "1"]);
    // Warm up, then the calm tenant's unloaded median.
    median_latency(&node, &calm, 2).await;
    let unloaded = median_latency(&node, &calm, 7).await;

    // The flooding tenant within its share (one client, never shed), then eight times over it.
    let (shared, served_alone, shed_alone) = under_flood(&node, &calm, &flood, 1).await;
    let (flooded, served, shed) = under_flood(&node, &calm, &flood, 8).await;
    eprintln!(
        "calm p50: unloaded {unloaded:?}; the flood within its share {shared:?} (served {served_alone}, shed {shed_alone}); \
         the flood 8x over {flooded:?} (served {served}, shed {shed})"
    );
    assert_eq!(shed_alone, 0, "one request at a time is within the share");
    assert!(shed > 0, "the flood was never shed");
    assert!(served > 0, "the flood was not served at all");
    // On this machine's two cores one concurrent sequence alone about doubles a decode step,
    // so the reference is the flood at its share: what it sends beyond that is shed at the
    // door and must not cost the calm tenant more than twice that.
    assert!(
        flooded <= shared * 2,
        "the calm tenant's median went from {shared:?} to {flooded:?} under the flood"
    );
}

/// The calm tenant's median while `clients` flood clients send as fast as they are answered.
async fn under_flood(
    node: &TestNode,
    calm: &str,
    flood: &str,
    clients: usize,
) -> (Duration, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let shed = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, shed, served) = (stop.clone(), shed.clone(), served.clone());
            let client = reqwest::Client::new();
            let url = node.url("/v1/completions");
            let key = flood.to_string();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match timed(&client, &url, &key, 64).await.0 {
                        429 => {
                            shed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        200 => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("flood request answered {other}"),
                    }
                }
            })
        })
        .collect();
    // Let the flood take its slot first: wait until it has been answered once.
    let before = served.load(Ordering::Relaxed);
    let flooding = node
        .wait_until(Duration::from_secs(30), || async {
            served.load(Ordering::Relaxed) > before
        })
        .await;
    assert!(flooding, "the flood was never served");
    let median = median_latency(node, calm, 7).await;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    (
        median,
        served.load(Ordering::Relaxed),
        shed.load(Ordering::Relaxed),
    )
}
