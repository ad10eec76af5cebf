//! Tenants and their keys: `golek key create|list|revoke` against a running node, keys stored
//! hashed in sled (they survive a restart), 401 without a valid key when auth is on, 403 for a
//! tenant's key on admin routes, admin routes only from loopback unless auth is on, and each
//! tenant's requests-per-minute, tokens-per-minute and concurrency limits (429 with
//! Retry-After at once).

mod common;

use std::process::Command;

use common::TestNode;
use serde_json::{json, Value};

/// Runs `golek ARGS`; its standard output (failing the test if it fails).
fn golek(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_golek"))
        .args(args)
        .env_remove("GOLEK_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "golek {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `golek key create ...`: the key is the last line.
fn create_key(node: &TestNode, extra: &[&str]) -> String {
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut args = vec!["key", "create", "--http", &addr];
    args.extend_from_slice(extra);
    let out = golek(&args);
    let key = out.lines().last().unwrap().to_string();
    assert!(key.starts_with("gk_"), "{out}");
    key
}

async fn complete(node: &TestNode, key: Option<&str>, max_tokens: u32) -> reqwest::Response {
    let mut request = node.client.post(node.url("/v1/completions")).json(
        &json!({"model": "golek-tiny", "prompt": "hello tenant", "max_tokens": max_tokens,
                "temperature": 0, "ignore_eos": true}),
    );
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// GET `path` with `key`: its JSON answer.
async fn get_json_as(node: &TestNode, path: &str, key: &str) -> Value {
    node.client
        .get(node.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get(node: &TestNode, path: &str, key: Option<&str>) -> u16 {
    let mut request = node.client.get(node.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn with_auth_on_keys_decide_who_may_do_what_and_survive_a_restart() {
    let node = TestNode::start(&["--set", "auth.required=true"]).await;
    assert_eq!(get(&node, "/v1/models", None).await, 401);
    assert_eq!(get(&node, "/v1/models", Some("gk_not-a-key")).await, 401);
    assert_eq!(get(&node, "/healthz", None).await, 200, "probes stay open");

    // No admin key yet: the node's own loopback may make the first one.
    let admin = create_key(&node, &["--tenant", "ops", "--admin"]);
    assert_eq!(
        get(&node, "/admin/keys", None).await,
        401,
        "now admin calls need it"
    );
    assert_eq!(get(&node, "/admin/keys", Some(&admin)).await, 200);
    let addr = node.base.trim_start_matches("http://").to_string();
    let acme = create_key(&node, &["--tenant", "acme", "--rpm", "3", "--key", &admin]);
    assert_eq!(get(&node, "/admin/keys", Some(&acme)).await, 403);
    let forbidden = get_json_as(&node, "/admin/actors", &acme).await;
    assert_eq!(
        forbidden["error"]["type"], "permission_error",
        "{forbidden}"
    );

    // Three requests a minute: the fourth is refused at once, saying when to retry.
    for i in 0..3 {
        let r = complete(&node, Some(&acme), 2).await;
        assert_eq!(r.status(), 200, "#{i}: {}", r.text().await.unwrap());
    }
    let over = complete(&node, Some(&acme), 2).await;
    assert_eq!(over.status(), 429);
    let retry_after: u32 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        node.metric("golek_tenant_rejected_total{tenant=\"acme\",reason=\"rpm\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );

    // The list shows ids and limits, never a secret; a revoked key stops working.
    let listed = golek(&["key", "list", "--http", &addr, "--key", &admin]);
    assert!(
        listed.contains("acme") && listed.contains("ops"),
        "{listed}"
    );
    assert!(
        !listed.contains(&acme) && !listed.contains("gk_"),
        "{listed}"
    );
    let keys = get_json_as(&node, "/admin/keys", &admin).await;
    let acme_id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["tenant"] == "acme")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = golek(&["key", "revoke", &acme_id, "--http", &addr, "--key", &admin]);
    assert!(revoked.contains(&acme_id), "{revoked}");
    assert_eq!(complete(&node, Some(&acme), 2).await.status(), 401);

    // Keys persist (hashed) across a restart.
    let dir = node.stop();
    let store = std::fs::read_dir(dir.path().join("registry"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
        .any(|bytes| bytes.windows(admin.len()).any(|w| w == admin.as_bytes()));
    assert!(!store, "the secret itself is never stored");
    let node = TestNode::start_in(dir, &["--set", "auth.required=true"]).await;
    assert_eq!(get(&node, "/admin/keys", Some(&admin)).await, 200);
    assert_eq!(
        complete(&node, Some(&acme), 2).await.status(),
        401,
        "still revoked"
    );
}

#[tokio::test]
async fn tokens_per_minute_and_concurrency_hold_per_tenant() {
    let node = TestNode::start(&["--set", "debug.fault_injection=true"]).await;
    // Auth off: no key is needed, an unknown one is ignored, a tenant's is held to its limits.
    assert_eq!(complete(&node, None, 2).await.status(), 200);
    assert_eq!(complete(&node, Some("unused"), 2).await.status(), 200);
    let tpm = create_key(&node, &["--tenant", "tokens", "--tpm", "40"]);
    let solo = create_key(&node, &["--tenant", "solo", "--max-concurrency", "1"]);

    // 40 tokens a minute: two requests of a few prompt and 30 generated tokens (the budget is
    // charged as they finish and may run into debt), then refused.
    for i in 0..2 {
        let r = complete(&node, Some(&tpm), 30).await;
        assert_eq!(r.status(), 200, "#{i}: {}", r.text().await.unwrap());
    }
    let over = complete(&node, Some(&tpm), 30).await;
    assert_eq!(over.status(), 429);
    let body: Value = over.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens-per-minute"),
        "{body}"
    );
    assert!(
        node.metric("golek_tenant_tokens_total{tenant=\"tokens\"}")
            .await
            .unwrap_or(0.0)
            >= 60.0
    );
    // Other tenants and anonymous requests are not affected.
    assert_eq!(complete(&node, Some(&solo), 2).await.status(), 200);
    assert_eq!(complete(&node, None, 2).await.status(), 200);

    // One request at a time: a second while the first runs (its worker held 3 s by a fault) is
    // refused, then admitted once the first is done.
    let armed = node
        .post_json("/admin/debug/hang/golek-tiny?ms=3000", &json!({}))
        .await;
    assert_eq!(armed.status(), 202);
    let long = {
        let client = node.client.clone();
        let url = node.url("/v1/completions");
        let key = solo.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(
                    &json!({"model": "golek-tiny", "prompt": "a long one", "max_tokens": 4,
                              "temperature": 0, "ignore_eos": true}),
                )
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Once the first is admitted (solo's second admitted request), it holds the permit.
    let admitted = node
        .wait_until(std::time::Duration::from_secs(10), || async {
            node.metric("golek_tenant_requests_total{tenant=\"solo\"}")
                .await
                .unwrap_or(0.0)
                >= 2.0
        })
        .await;
    assert!(admitted, "the long request was never admitted");
    let refused = node
        .wait_until(std::time::Duration::from_secs(2), || async {
            complete(&node, Some(&solo), 1).await.status() == 429
        })
        .await;
    assert!(refused, "the second concurrent request was never refused");
    assert_eq!(long.await.unwrap(), 200);
    assert_eq!(complete(&node, Some(&solo), 1).await.status(), 200);
}

#[tokio::test]
async fn admin_routes_answer_only_loopback_unless_allowed() {
    // This machine's first global IPv4 address: the node reached on it sees a non-loopback
    // client.
    let ip = String::from_utf8(
        Command::new("ip")
            .args(["-4", "-o", "addr", "show", "scope", "global"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .unwrap()
    .split_whitespace()
    .skip_while(|w| *w != "inet")
    .nth(1)
    .and_then(|cidr| cidr.split('/').next())
    .map(str::to_string);
    let Some(ip) = ip else {
        eprintln!("skipped: this machine has no global IPv4 address to reach a node from");
        return;
    };
    let tiny = common::TINY_INSTEAD_OF_SMOLLM2;
    let node = TestNode::start_bound(tempfile::tempdir().unwrap(), "0.0.0.0", &tiny).await;
    let port = node.base.rsplit(':').next().unwrap().to_string();
    let remote = format!("http://{ip}:{port}");
    let status = |path: &str| {
        let url = format!("{remote}{path}");
        let client = node.client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/admin/models").await, 403);
    assert_eq!(status("/v1/models").await, 200, "the API itself is open");
    assert_eq!(get(&node, "/admin/models", None).await, 200, "loopback is");
    drop(node);

    let node = TestNode::start_bound(
        tempfile::tempdir().unwrap(),
        "0.0.0.0",
        &[&tiny[..], &["--set", "http.admin_from_anywhere=true"]].concat(),
    )
    .await;
    let port = node.base.rsplit(':').next().unwrap().to_string();
    let answer = node
        .client
        .get(format!("http://{ip}:{port}/admin/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
