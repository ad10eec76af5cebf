//! Plugins on a real node: the built-in chain (prompt-guard, response-cache, audit-log), WASM
//! plugins that rewrite requests and annotate responses, a hot swap under steady load with no
//! failed request (calls in flight finish on the old version), and the C guard example.
//! Failing plugins are in `plugin_failures.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::plugins::*;
use common::TestNode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_chain_guards_caches_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        r#"
[plugins.prompt-guard]
deny = ["(?i)forbidden word", "\\b\\d{3}-\\d{2}-\\d{4}\\b"]

[plugins.response-cache]
max_bytes = 1048576

[plugins.audit-log]
path = "audit/requests.log"
"#,
    )
    .unwrap();
    let node = TestNode::start(&["--config", config.to_str().unwrap()]).await;
    let listing = node.get_json("/admin/plugins").await;
    assert_eq!(
        listing["chain"],
        json!(["audit-log", "prompt-guard", "response-cache"]),
        "{listing}"
    );

    // The supervision tree has the manager and one actor per plugin.
    let tree = node.get_json("/admin/actors").await;
    let manager = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "PluginManager")
        .unwrap_or_else(|| panic!("{tree}"))
        .clone();
    let kids: Vec<(&str, &str)> = manager["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kids,
        [
            ("audit-log", "started"),
            ("prompt-guard", "started"),
            ("response-cache", "started")
        ]
    );
    assert_eq!(
        node.metric("golek_plugin_started{plugin=\"prompt-guard\"}")
            .await,
        Some(1.0)
    );

    // The guard: 400 with the rule that matched; the model never sees it.
    let refused = chat(&node, "golek-tiny", "say the FORBIDDEN WORD").await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("rule 0"), "{message}");
    assert_eq!(body["error"]["code"], "prompt-guard");
    let ssn = chat(&node, "golek-tiny", "my number is 123-45-6789").await;
    assert_eq!(ssn.status(), 400);

    // The cache: a greedy request answered again, saying so; a sampled one not cached.
    let first = chat(&node, "golek-tiny", "hello there").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-golek-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let again = chat(&node, "golek-tiny", "hello there").await;
    assert_eq!(again.headers()["x-golek-cache"], "hit");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    let sampled = node
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "golek-tiny", "max_tokens": 4, "temperature": 0.9,
                    "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(sampled.status(), 200);
    assert!(sampled.headers().get("x-golek-cache").is_none());
    let embed = json!({"model": "all-minilm-l6-v2", "input": ["a cached sentence"]});
    assert_eq!(
        node.post_json("/v1/embeddings", &embed).await.headers()["x-golek-cache"],
        "miss"
    );
    assert_eq!(
        node.post_json("/v1/embeddings", &embed).await.headers()["x-golek-cache"],
        "hit"
    );
    assert!(
        node.metric("golek_plugin_cache_total{result=\"hit\"}")
            .await
            >= Some(2.0)
    );

    // The audit log: one JSON line per exchange, without the prompts (not asked for).
    let log = node.data_dir.path().join("audit/requests.log");
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(
        node.wait_until(Duration::from_secs(5), || async { lines().len() >= 7 })
            .await
    );
    let all = lines();
    let statuses: Vec<u64> = all.iter().map(|l| l["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 2, "{all:?}");
    let served = all
        .iter()
        .find(|l| l["status"] == 200 && l["answered_by_plugin"] == false)
        .unwrap();
    assert!(
        served["served_by"]
            .as_str()
            .unwrap()
            .ends_with("/golek-tiny"),
        "{served}"
    );
    assert!(served["completion_tokens"].as_u64().unwrap() >= 1);
    assert!(served["latency_ms"].is_u64());
    assert!(all.iter().any(|l| l["answered_by_plugin"] == true));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hello there") && !text.contains("FORBIDDEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_plugins_rewrite_annotate_and_swap_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(
        plugins.join("add-header.wasm"),
        wat::parse_file(examples().join("add-header.wat")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        plugins.join("model-alias.wasm"),
        wat::parse_file(examples().join("model-alias.wat")).unwrap(),
    )
    .unwrap();
    let config = dir.path().join("node.toml");
    // slow-tiny: golek-tiny again, slowed by a fault, for a request in flight across a swap.
    let tiny = golek_config::default_assets_dir().join("models/golek-tiny.gguf");
    std::fs::write(
        &config,
        format!(
            "[debug]\nfault_injection = true\n[plugins.model-alias]\nmodel = \"golek-tiny\"\n\
             [models.slow-tiny]\nprovider = \"gguf\"\n[models.slow-tiny.params]\n\
             model_path = {:?}\nn_ctx = 512\n",
            tiny.display().to_string()
        ),
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

    // Rewritten to the configured model, and annotated.
    let r = chat(&node, "a-name-no-model-has", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-golek-plugin-example"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "golek-tiny");
    // Unloaded (its file removed), requests keep their model again.
    let gone = node
        .client
        .delete(node.url("/admin/plugins/model-alias"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(chat(&node, "a-name-no-model-has", "hi").await.status(), 404);

    // A versioned plugin swapped under steady load.
    let v1 = plugin(
        "versioned",
        "1.0.0",
        json!({}),
        &[("on_response", &version_header("1.0.0"))],
    );
    assert_eq!(upload(&node, "versioned", v1).await.0, 201);
    let delay = node
        .post_json("/admin/debug/fault/slow-tiny", &json!({"delay_ms": 400}))
        .await;
    assert_eq!(delay.status(), 202);
    let slow = {
        let (client, url) = (node.client.clone(), node.url("/v1/completions"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(
                    &json!({"model": "slow-tiny", "prompt": "long", "max_tokens": 2,
                              "ignore_eos": true}),
                )
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()["x-version"].to_str().unwrap().to_string(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (client, url) = (node.client.clone(), node.url("/v1/completions"));
            let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .post(&url)
                        .json(&json!({"model": "golek-tiny", "prompt": "steady", "max_tokens": 2}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let v = r
                                .headers()
                                .get("x-version")
                                .map(|v| v.to_str().unwrap().to_string());
                            seen.lock().unwrap().insert(v);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Replaced in the folder (written beside it, then renamed, as an operator would).
    let v2 = plugin(
        "versioned",
        "2.0.0",
        json!({}),
        &[("on_response", &version_header("2.0.0"))],
    );
    let folder = node.data_dir.path().join("plugins");
    std::fs::write(folder.join("versioned.tmp"), v2).unwrap();
    std::fs::rename(folder.join("versioned.tmp"), folder.join("versioned.wasm")).unwrap();
    let swapped = node
        .wait_until(Duration::from_secs(5), || async {
            plugin_status(&node, "versioned").await["version"] == "2.0.0"
        })
        .await;
    assert!(swapped, "{}", node.get_json("/admin/plugins").await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 10);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&Some("1.0.0".into())) && seen.contains(&Some("2.0.0".into())),
        "{seen:?} {}\n{}",
        node.get_json("/admin/plugins").await,
        node.log()
            .lines()
            .filter(|l| l.contains("plugin"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The request that was in flight across the swap finished on the old version.
    let (status, version) = slow.await.unwrap();
    assert_eq!((status, version.as_str()), (200, "1.0.0"));
    let after = chat(&node, "golek-tiny", "after").await;
    assert_eq!(after.headers()["x-version"], "2.0.0");

    // Removing the file unloads the plugin.
    std::fs::remove_file(folder.join("versioned.wasm")).unwrap();
    assert!(
        node.wait_until(Duration::from_secs(5), || async {
            chat(&node, "golek-tiny", "gone")
                .await
                .headers()
                .get("x-version")
                .is_none()
        })
        .await
    );
}

#[test]
fn the_c_guard_example_refuses_its_word() {
    // Built by scripts/build-plugins.sh (run by the setup script with --tests).
    let path = golek_config::default_assets_dir().join("plugins/guard.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run bash scripts/build-plugins.sh)",
            path.display()
        )
    });
    let (plugin, manifest) = golek_actors::plugins::wasm::WasmPlugin::load(
        "guard",
        &bytes,
        Default::default(),
        &json!({"word": "kumquat"}),
    )
    .unwrap();
    assert_eq!(manifest.version, "1.0.0");
    plugin.warm().unwrap();
    use golek_actors::plugins::{Plugin, RequestCall, Verdict};
    let call = |text: &str| RequestCall {
        path: "/v1/chat/completions".into(),
        model: "m".into(),
        tenant: None,
        body: json!({"messages": [{"role": "user", "content": text}]}),
    };
    match plugin.on_request(&call("I like kumquat pie")).unwrap() {
        Verdict::Reject { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("guard"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plugin.on_request(&call("I like apples")).unwrap(),
        Verdict::Continue
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_loads_lists_and_unloads_a_plugin() {
    let node = TestNode::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("add-header.wasm");
    std::fs::write(
        &file,
        wat::parse_file(examples().join("add-header.wat")).unwrap(),
    )
    .unwrap();
    let addr = node.base.trim_start_matches("http://").to_string();
    let golek = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_golek"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = golek(&["plugin", "load", file.to_str().unwrap(), "--http", &addr]);
    assert!(ok && text.contains("add-header started"), "{text}");
    assert_eq!(
        chat(&node, "golek-tiny", "hi").await.headers()["x-golek-plugin-example"],
        "1"
    );
    let (ok, text) = golek(&["plugin", "list", "--http", &addr]);
    assert!(
        ok && text.contains("chain: add-header") && text.contains("1.0.0"),
        "{text}"
    );
    let (ok, text) = golek(&["plugin", "unload", "add-header", "--http", &addr]);
    assert!(ok, "{text}");
    assert!(chat(&node, "golek-tiny", "hi")
        .await
        .headers()
        .get("x-golek-plugin-example")
        .is_none());
    // A file that is not a module: the node's reason, and a failed command.
    std::fs::write(&file, b"nope").unwrap();
    let (ok, text) = golek(&["plugin", "load", file.to_str().unwrap(), "--http", &addr]);
    assert!(
        !ok && text.contains("not a valid WebAssembly module"),
        "{text}"
    );
}
