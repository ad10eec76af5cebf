//! Plugins that fail on a real node: ones that loop, grab memory or trap are cut off while the
//! node serves; fail-closed refuses; malformed and dependency-less ones are refused by name; the
//! lifecycle runs in dependency order; route, chunk and event hooks run.

mod common;

use std::time::Duration;

use common::plugins::*;
use common::TestNode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugins_are_cut_off_and_bad_ones_refused_while_the_node_serves() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[plugins.hungry]\nmemory_mib = 2\n[plugins.strict]\nfailure_policy = \"closed\"\n\
         [plugins.spin]\ntimeout_ms = 20\n",
    )
    .unwrap();
    let node = TestNode::start_in(
        dir,
        &[
            &common::TINY_INSTEAD_OF_SMOLLM2[..],
            // Past 2 failures in a minute a plugin is disabled (before its breaker opens at 5).
            &[
                "--config",
                config.to_str().unwrap(),
                "--set",
                "supervision.max_restarts=2",
            ],
        ]
        .concat(),
    )
    .await;
    let spin = plugin(
        "spin",
        "1.0.0",
        json!({}),
        &[("on_request", "(loop $l (br $l)) (i64.const 0)")],
    );
    let hungry = plugin(
        "hungry",
        "1.0.0",
        json!({}),
        &[(
            "on_request",
            "(loop $l (drop (memory.grow (i32.const 1))) (br $l)) (i64.const 0)",
        )],
    );
    let trap = plugin(
        "trap",
        "1.0.0",
        json!({}),
        &[("on_request", "(unreachable)")],
    );
    for (name, bytes) in [("spin", spin), ("hungry", hungry), ("trap", trap)] {
        assert_eq!(upload(&node, name, bytes).await.0, 201, "{name}");
    }
    // Each fails every call; they fail open, so every request is served, and past the
    // restart intensity each is disabled.
    for i in 0..8 {
        let r = chat(&node, "golek-tiny", &format!("request {i}")).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    for (name, why) in [
        ("spin", "time limit"),
        ("hungry", "memory"),
        ("trap", "trapped"),
    ] {
        let s = plugin_status(&node, name).await;
        assert_eq!(s["state"], "failed", "{s}");
        let last = s["last_failure"].as_str().unwrap();
        assert!(
            last.contains("disabled") && last.contains(why),
            "{name}: {last}"
        );
    }
    assert_eq!(node.get_json("/admin/plugins").await["chain"], json!([]));
    assert!(
        node.metric("golek_plugin_disabled_total{plugin=\"trap\"}")
            .await
            >= Some(1.0)
    );

    // Fail closed: the request is refused while the plugin fails.
    let strict = plugin(
        "strict",
        "1.0.0",
        json!({}),
        &[("on_request", "(unreachable)")],
    );
    assert_eq!(upload(&node, "strict", strict).await.0, 201);
    assert_eq!(chat(&node, "golek-tiny", "x").await.status(), 503);
    assert_eq!(
        node.client
            .delete(node.url("/admin/plugins/strict"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(chat(&node, "golek-tiny", "x").await.status(), 200);

    // A malformed module and a missing dependency are refused, by name.
    let (status, body) = upload(&node, "junk", b"\0asm\x01\0\0\0garbage".to_vec()).await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not a valid WebAssembly module"),
        "{message}"
    );
    assert!(!node.data_dir.path().join("plugins/junk.wasm").exists());
    let needy = plugin(
        "needy",
        "1.0.0",
        json!({"ghost": "^1"}),
        &[("on_request", "(i64.const 0)")],
    );
    let (status, body) = upload(&node, "needy", needy).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"ghost\""),
        "{body}"
    );

    // Dependencies start first; a cycle is refused naming it.
    let base = plugin(
        "zz-base",
        "1.2.0",
        json!({}),
        &[("on_request", "(i64.const 0)")],
    );
    let user = plugin(
        "aa-user",
        "1.0.0",
        json!({"zz-base": "^1.1"}),
        &[("on_request", "(i64.const 0)")],
    );
    assert_eq!(upload(&node, "zz-base", base).await.0, 201);
    assert_eq!(upload(&node, "aa-user", user).await.0, 201);
    let chain = node.get_json("/admin/plugins").await["chain"].clone();
    assert_eq!(chain, json!(["zz-base", "aa-user"]));
    let history = plugin_status(&node, "aa-user").await["history"].clone();
    assert_eq!(
        history,
        json!(["discovered", "loaded", "initialized", "started"])
    );
    let a = plugin(
        "cycle-a",
        "1.0.0",
        json!({"cycle-b": "*"}),
        &[("on_request", "(i64.const 0)")],
    );
    let b = plugin(
        "cycle-b",
        "1.0.0",
        json!({"cycle-a": "*"}),
        &[("on_request", "(i64.const 0)")],
    );
    let _ = upload(&node, "cycle-a", a).await;
    let (_, body) = upload(&node, "cycle-b", b).await;
    assert!(body.to_string().contains("cycle"), "{body}");

    // The node served throughout and still does.
    assert_eq!(chat(&node, "golek-tiny", "still here").await.status(), 200);
    assert_eq!(
        node.client
            .get(node.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_chunk_and_event_hooks_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[debug]\nfault_injection = true\n[plugins.events]\ncapabilities = [\"log\"]\n",
    )
    .unwrap();
    let node = TestNode::start_in(
        dir,
        &[
            &common::TINY_INSTEAD_OF_SMOLLM2[..],
            &["--config", config.to_str().unwrap()],
        ]
        .concat(),
    )
    .await;
    // Route: every target excluded, so the request has nowhere to go.
    let route = hooked("no-route", "on_route", "", EXCLUDE_ALL);
    assert_eq!(upload(&node, "no-route", route).await.0, 201);
    let r = chat(&node, "golek-tiny", "hi").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("route hooks"),
        "{body}"
    );
    node.client
        .delete(node.url("/admin/plugins/no-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(chat(&node, "golek-tiny", "hi").await.status(), 200);

    // Chunks: each chunk of a stream goes through the hook (here, replaced whole).
    let chunk = hooked(
        "chunky",
        "on_chunk",
        "",
        "(i64.or (i64.shl (i64.const 1200) (i64.const 32)) (i64.const 28))",
    );
    assert_eq!(upload(&node, "chunky", chunk).await.0, 201);
    let text = node
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "golek-tiny", "max_tokens": 3, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert!(data.len() >= 3, "{text}");
    assert_eq!(data.last(), Some(&"[DONE]"));
    for d in &data[..data.len() - 1] {
        assert_eq!(*d, r#"{"rewritten":true}"#, "{text}");
    }
    node.client
        .delete(node.url("/admin/plugins/chunky"))
        .send()
        .await
        .unwrap();

    // Events: a model restarting is told to the plugin (which logs what it gets).
    let events = hooked(
        "events",
        "on_event",
        r#"(import "golek" "log" (func $log (param i32 i32 i32)))"#,
        "(call $log (i32.const 2) (local.get $ptr) (local.get $len)) (i64.const 0)",
    );
    assert_eq!(upload(&node, "events", events).await.0, 201);
    let crashed = node
        .post_json("/admin/debug/crash/golek-tiny", &json!({}))
        .await;
    assert!(crashed.status().is_success(), "{}", crashed.status());
    // The worker panics when it next takes work.
    let crash = chat(&node, "golek-tiny", "crash now").await.status();
    let logged = node
        .wait_until(Duration::from_secs(20), || async {
            node.log().lines().any(|l| {
                l.contains("golek::plugin") && l.contains("model_state") && l.contains("golek-tiny")
            })
        })
        .await;
    assert!(
        logged,
        "{crash} {}\n{}",
        node.get_json("/admin/plugins/events").await,
        node.log()
            .lines()
            .filter(|l| !l.contains("llama"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
