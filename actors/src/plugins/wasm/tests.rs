use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn example(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../examples/plugins/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(path).unwrap()
}

/// A module named `name` whose `on_request` runs `body` (WAT instructions leaving an i64).
pub(crate) fn module(name: &str, imports: &str, body: &str) -> Vec<u8> {
    let manifest =
        format!(r#"{{"name":"{name}","version":"1.0.0","api":1,"hooks":["on_request"]}}"#);
    let escaped = manifest.replace('"', "\\\"");
    let wat = format!(
        r#"(module
          {imports}
          (memory (export "memory") 1)
          (data (i32.const 16) "{escaped}")
          (func (export "alloc") (param i32) (result i32) (i32.const 4096))
          (func (export "manifest") (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len})))
          (func (export "on_request") (param $ptr i32) (param $len i32) (result i64) {body}))"#,
        len = manifest.len()
    );
    wat::parse_str(wat).unwrap()
}

fn request() -> RequestCall {
    RequestCall {
        path: "/v1/chat/completions".into(),
        model: "chat".into(),
        tenant: Some("acme".into()),
        body: json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
    }
}

fn load(name: &str, bytes: &[u8], limits: Limits) -> Result<WasmPlugin, String> {
    WasmPlugin::load(name, bytes, limits, &json!({})).map(|(p, _)| p)
}

#[test]
fn the_add_header_example_annotates_responses() {
    let (plugin, manifest) = WasmPlugin::load(
        "add-header",
        &example("add-header"),
        Limits::default(),
        &json!({}),
    )
    .unwrap();
    assert_eq!(manifest.hooks, [Hook::OnResponse]);
    let call = ResponseCall {
        path: "/v1/chat/completions".into(),
        model: "chat".into(),
        tenant: None,
        status: 200,
        served_by: None,
        stream: false,
        body: Some(json!({"id": "x"})),
        request: None,
    };
    let edit = plugin.on_response(&call).unwrap();
    assert_eq!(edit.headers["x-golek-plugin-example"], "1");
    assert_eq!(edit.body, None);
}

#[test]
fn the_model_alias_example_rewrites_requests_and_refuses_a_bad_configuration() {
    let bytes = example("model-alias");
    let (plugin, manifest) = WasmPlugin::load(
        "model-alias",
        &bytes,
        Limits::default(),
        &json!({"model": "golek-tiny"}),
    )
    .unwrap();
    assert!(manifest.config_schema.is_some());
    plugin.warm().unwrap();
    for _ in 0..3 {
        match plugin.on_request(&request()).unwrap() {
            Verdict::Rewrite(body) => {
                assert_eq!(body["model"], "golek-tiny");
                assert_eq!(body["messages"][0]["content"], "hi");
            }
            other => panic!("{other:?}"),
        }
    }
    let (wrong, _) =
        WasmPlugin::load("model-alias", &bytes, Limits::default(), &json!({"x": 1})).unwrap();
    let err = wrong.warm().unwrap_err();
    assert!(err.contains("init returned 1"), "{err}");
}

#[test]
fn a_loop_runs_out_of_time_or_fuel_and_the_next_call_works() {
    let looping = module("spin", "", "(loop $l (br $l)) (i64.const 0)");
    let limits = Limits {
        timeout: Duration::from_millis(30),
        ..Limits::default()
    };
    let plugin = load("spin", &looping, limits.clone()).unwrap();
    let began = Instant::now();
    let err = plugin.on_request(&request()).unwrap_err();
    assert!(err.contains("time limit"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(2));
    let fuelled = Limits {
        fuel: 50_000,
        ..limits
    };
    let plugin = load("spin", &looping, fuelled).unwrap();
    let err = plugin.on_request(&request()).unwrap_err();
    assert!(err.contains("out of fuel"), "{err}");
}

#[test]
fn memory_past_the_cap_and_traps_fail_the_call() {
    let hungry = module(
        "hungry",
        "",
        "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0)",
    );
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let plugin = load("hungry", &hungry, limits).unwrap();
    let err = plugin.on_request(&request()).unwrap_err();
    assert!(err.contains("memory"), "{err}");

    let trapping = module("trap", "", "(unreachable)");
    let plugin = load("trap", &trapping, Limits::default()).unwrap();
    let err = plugin.on_request(&request()).unwrap_err();
    assert!(err.contains("trapped"), "{err}");
    // Each failed call dropped its instance; the next one is fresh (and fails alike).
    assert!(plugin.on_request(&request()).is_err());
    assert!(plugin.stats()["instances_made"].as_u64().unwrap() >= 3);

    // An answer outside the guest's memory is an error, not a read past it.
    let liar = module("liar", "", "(i64.const 0x7fff000000000100)");
    let err = load("liar", &liar, Limits::default())
        .unwrap()
        .on_request(&request())
        .unwrap_err();
    assert!(err.contains("outside its memory"), "{err}");
}

#[test]
fn malformed_modules_unknown_imports_and_ungranted_capabilities_are_refused() {
    let err = load("x", b"\0asm but not really", Limits::default())
        .err()
        .unwrap();
    assert!(err.contains("not a valid WebAssembly module"), "{err}");

    let wasi = module(
        "files",
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        "(i64.const 0)",
    );
    let err = load("files", &wasi, Limits::default()).err().unwrap();
    assert!(err.contains("wasi_snapshot_preview1.fd_write"), "{err}");

    let logging = module(
        "logs",
        r#"(import "golek" "log" (func $log (param i32 i32 i32)))"#,
        "(call $log (i32.const 2) (i32.const 16) (i32.const 4)) (i64.const 0)",
    );
    let err = load("logs", &logging, Limits::default()).err().unwrap();
    assert!(err.contains("capabilities = [\"log\"]"), "{err}");
    let granted = Limits {
        log: true,
        ..Limits::default()
    };
    let plugin = load("logs", &logging, granted).unwrap();
    assert!(matches!(
        plugin.on_request(&request()).unwrap(),
        Verdict::Continue
    ));

    let err = load("other-name", &logging, Limits::default())
        .err()
        .unwrap();
    assert!(
        err.contains("capabilities") || err.contains("must match"),
        "{err}"
    );
    let plain = module("plain", "", "(i64.const 0)");
    let err = load("renamed", &plain, Limits::default()).err().unwrap();
    assert!(err.contains("must match"), "{err}");
}
