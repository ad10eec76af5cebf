//! Configuration that changes while the node runs: `golek config set` and `PUT /admin/config`,
//! an edit of the file, SIGHUP; hot keys apply at once (a model's queue capacity under load, the
//! log filter), restart-only ones wait as pending, and every change survives a restart.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestNode;
use serde_json::{json, Value};

fn addr(node: &TestNode) -> String {
    node.base.trim_start_matches("http://").to_string()
}

/// Runs `golek ARGS`; returns (success, stdout, stderr).
fn golek(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_golek"))
        .args(args)
        .output()
        .expect("golek runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The running node's value of `key` and its layer.
async fn entry(node: &TestNode, key: &str) -> (String, String) {
    let report = node.get_json("/admin/config").await;
    let e = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .clone();
    (
        e["value"].as_str().unwrap().to_string(),
        e["source"].as_str().unwrap().to_string(),
    )
}

async fn put_config(node: &TestNode, body: &str) -> reqwest::Response {
    node.client
        .put(node.url("/admin/config"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn complete(client: &reqwest::Client, url: &str, max_tokens: u32) -> u16 {
    client
        .post(url)
        .json(
            &json!({"model": "golek-tiny", "prompt": "steady", "max_tokens": max_tokens,
                      "temperature": 0, "ignore_eos": true}),
        )
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `n` requests at once; their statuses.
async fn burst(node: &TestNode, n: usize, max_tokens: u32) -> Vec<u16> {
    let url = node.url("/v1/completions");
    let all: Vec<_> = (0..n)
        .map(|_| {
            let client = node.client.clone();
            let url = url.clone();
            tokio::spawn(async move { complete(&client, &url, max_tokens).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in all {
        statuses.push(h.await.unwrap());
    }
    statuses
}

async fn tiny_generation(node: &TestNode) -> (u64, u64) {
    let models = node.get_json("/admin/models").await;
    let m = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "golek-tiny")
        .unwrap()
        .clone();
    (
        m["generation"].as_u64().unwrap(),
        m["restarts"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_capacity_raised_under_load_applies_without_a_restart_or_a_failed_request() {
    let node = TestNode::start(&[
        "--set",
        "models.golek-tiny.queue_capacity=2",
        "--set",
        "models.golek-tiny.params.slots=1",
        "--set",
        "debug.fault_injection=true",
    ])
    .await;
    // The worker holds its next job a while, so a burst meets a full queue: with two places,
    // most of it is refused.
    let hold = || async {
        let r = node
            .client
            .post(node.url("/admin/debug/hang/golek-tiny?ms=1500"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    };
    hold().await;
    let before = burst(&node, 24, 16).await;
    let refused = before.iter().filter(|&&s| s == 429).count();
    assert!(
        refused > 0,
        "the small queue refuses some of a burst: {before:?}"
    );
    assert!(before.iter().all(|&s| s == 200 || s == 429), "{before:?}");
    let generation = tiny_generation(&node).await;

    // Steady load (within the small queue) runs across the change.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let steady: Vec<_> = (0..2)
        .map(|_| {
            let client = node.client.clone();
            let url = node.url("/v1/completions");
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    statuses.push(complete(&client, &url, 16).await);
                    done.fetch_add(1, Ordering::SeqCst);
                }
                statuses
            })
        })
        .collect();
    // The change lands while the steady load is under way.
    assert!(
        node.wait_until(Duration::from_secs(10), || async {
            done.load(Ordering::SeqCst) >= 2
        })
        .await
    );
    let (ok, out, err) = golek(&[
        "config",
        "set",
        "models.golek-tiny.queue_capacity",
        "64",
        "--http",
        &addr(&node),
    ]);
    assert!(ok, "config set: {out}{err}");
    assert!(
        out.contains("applied now: models.golek-tiny.queue_capacity"),
        "{out}"
    );

    hold().await;
    let after = burst(&node, 24, 16).await;
    assert!(
        after.iter().all(|&s| s == 200),
        "the raised capacity takes the burst: {after:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let mut steady_statuses = Vec::new();
    for h in steady {
        steady_statuses.extend(h.await.unwrap());
    }
    assert!(!steady_statuses.is_empty());
    assert!(
        steady_statuses.iter().all(|&s| s == 200),
        "no request failed across the change: {steady_statuses:?}"
    );
    assert_eq!(
        tiny_generation(&node).await,
        generation,
        "the worker was not restarted"
    );
    assert_eq!(
        entry(&node, "models.golek-tiny.queue_capacity").await,
        ("64".into(), "run-time change".into())
    );
    let tree = node.get_json("/admin/models").await;
    let cap = tree["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "golek-tiny")
        .unwrap()["queue_capacity"]
        .clone();
    assert_eq!(cap, json!(64));
}

#[tokio::test]
async fn an_invalid_change_is_refused_whole_and_restart_only_ones_wait_for_the_next_start() {
    let node = TestNode::start(&[]).await;
    // One good key, one bad: 400 naming the bad one, and nothing of it applied.
    let refused = put_config(
        &node,
        r#"{"http": {"retry_after_s": 7}, "models": {"golek-tiny": {"queue_capacity": 0}}}"#,
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("models.golek-tiny.queue_capacity"),
        "{message}"
    );
    assert!(message.contains("between"), "{message}");
    assert_eq!(
        entry(&node, "http.retry_after_s").await,
        ("1".into(), "default".into())
    );
    // Unknown keys and malformed documents are refused the same way.
    let unknown = put_config(&node, "[http]\nspeed = 3\n").await;
    assert_eq!(unknown.status(), 400);
    let malformed = put_config(&node, "{\"http\": ").await;
    assert_eq!(malformed.status(), 400);
    let fixed = put_config(&node, "[node]\ndata_dir = \"/elsewhere\"\n").await;
    assert_eq!(fixed.status(), 400);

    // A restart-only key is accepted and pending; a hot one applies.
    let (ok, out, err) = golek(&[
        "config",
        "set",
        "http.admin_from_anywhere",
        "true",
        "--http",
        &addr(&node),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("pending restart: http.admin_from_anywhere = true (running: false)"),
        "{out}"
    );
    let set = put_config(&node, "[reliability]\nmax_continuations = 5\n").await;
    assert_eq!(set.status(), 200);
    let report = node.get_json("/admin/config").await;
    let pending: Vec<&str> = report["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(pending, vec!["http.admin_from_anywhere"]);
    let (ok, shown, _) = golek(&["config", "show", "--http", &addr(&node)]);
    assert!(ok);
    assert!(
        shown.contains("reliability.max_continuations = 5  # run-time change, hot"),
        "{shown}"
    );
    assert!(
        shown.contains("pending restart: http.admin_from_anywhere"),
        "{shown}"
    );
    let reliability = node.get_json("/admin/reliability").await;
    assert_eq!(reliability["config"]["max_continuations"], 5);

    // Both survive a restart; the pending one is in effect then.
    let dir = node.stop();
    let node = TestNode::start_in(dir, &common::TINY_INSTEAD_OF_SMOLLM2).await;
    assert_eq!(
        entry(&node, "http.admin_from_anywhere").await,
        ("true".into(), "run-time change".into())
    );
    assert_eq!(
        entry(&node, "reliability.max_continuations").await,
        ("5".into(), "run-time change".into())
    );
    let report = node.get_json("/admin/config").await;
    assert_eq!(report["pending"], json!([]));
    // Removing a run-time value falls back to the layer below.
    let (ok, out, err) = golek(&[
        "config",
        "unset",
        "reliability.max_continuations",
        "--http",
        &addr(&node),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        entry(&node, "reliability.max_continuations").await,
        ("2".into(), "default".into())
    );
}

#[tokio::test]
async fn the_log_filter_goes_to_debug_and_back_at_run_time() {
    let node = TestNode::start(&[]).await;
    let marked = |id: &'static str| {
        let node = &node;
        async move {
            let r = node
                .client
                .get(node.url("/v1/models"))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-request-id"], id);
        }
    };
    marked("quiet-before").await;
    let (ok, out, err) = golek(&[
        "config",
        "set",
        "log.filter",
        "debug",
        "--http",
        &addr(&node),
    ]);
    assert!(ok, "{out}{err}");
    marked("loud-during").await;
    let (ok, _, _) = golek(&[
        "config",
        "set",
        "log.filter",
        "info",
        "--http",
        &addr(&node),
    ]);
    assert!(ok);
    marked("quiet-after").await;
    let logged = |id: &str| {
        node.log()
            .lines()
            .any(|l| l.contains("request answered") && l.contains(id))
    };
    assert!(
        node.wait_until(Duration::from_secs(5), || async { logged("loud-during") })
            .await,
        "a debug line of the request while the filter was debug; log:\n{}",
        node.log()
    );
    assert!(!logged("quiet-before"), "{}", node.log());
    assert!(!logged("quiet-after"), "{}", node.log());
    assert!(node.log().contains("log filter changed"), "{}", node.log());
}
