//! WebAssembly test plugins (assembled from WAT) and the admin calls the plugin tests make.

use serde_json::{json, Value};

use super::TestNode;

pub fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins")
}

/// A WAT plugin: its manifest (hooks, version, dependencies) and hook bodies returning i64.
pub fn plugin(name: &str, version: &str, depends: Value, hooks: &[(&str, &str)]) -> Vec<u8> {
    let names: Vec<&str> = hooks.iter().map(|(h, _)| *h).collect();
    let manifest =
        json!({"name": name, "version": version, "api": 1, "hooks": names, "depends": depends})
            .to_string();
    let funcs: String = hooks
        .iter()
        .map(|(h, body)| {
            format!("(func (export \"{h}\") (param $ptr i32) (param $len i32) (result i64) {body})")
        })
        .collect();
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 16) "{escaped}")
          (data (i32.const 3072) "{{\"headers\":{{\"x-version\":\"{version}\"}}}}")
          (func (export "alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "manifest") (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len})))
          {funcs})"#,
        escaped = manifest.replace('"', "\\\""),
        len = manifest.len(),
    );
    wat::parse_str(wat).unwrap()
}

/// An `on_response` body answering `{"headers":{"x-version":VERSION}}` (at 3072; VERSION
/// must be the one given to [`plugin`]).
pub fn version_header(version: &str) -> String {
    let len = format!(r#"{{"headers":{{"x-version":"{version}"}}}}"#).len();
    format!("(i64.or (i64.shl (i64.const 3072) (i64.const 32)) (i64.const {len}))")
}

pub async fn upload(node: &TestNode, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = node
        .client
        .post(node.url(&format!("/admin/plugins?name={name}")))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn plugin_status(node: &TestNode, name: &str) -> Value {
    node.get_json(&format!("/admin/plugins/{name}")).await
}

pub async fn chat(node: &TestNode, model: &str, text: &str) -> reqwest::Response {
    node.client
        .post(node.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 4, "temperature": 0,
                      "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap()
}

/// A plugin with one hook whose body is `body`, and `imports`.
pub fn hooked(name: &str, hook: &str, imports: &str, body: &str) -> Vec<u8> {
    let manifest = json!({"name": name, "version": "1.0.0", "api": 1, "hooks": [hook]}).to_string();
    let wat = format!(
        r#"(module
          {imports}
          (memory (export "memory") 1)
          (data (i32.const 16) "{escaped}")
          (data (i32.const 1024) "{{\"exclude\":")
          (data (i32.const 1100) "\"candidates\":")
          (data (i32.const 1200) "{{\"chunk\":{{\"rewritten\":true}}}}")
          (func (export "alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "manifest") (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len})))
          (func (export "{hook}") (param $ptr i32) (param $len i32) (result i64)
            (local $i i32) (local $rest i32) {body}))"#,
        escaped = manifest.replace('"', "\\\""),
        len = manifest.len(),
    );
    wat::parse_str(wat).unwrap()
}

/// `on_route`: excludes every candidate (answers `{"exclude": <the candidates>}`).
pub const EXCLUDE_ALL: &str = r#"
    (local.set $i (local.get $ptr))
    (block $found
      (loop $scan
        (br_if $found (i32.and
          (i32.eq (i32.load (local.get $i)) (i32.load (i32.const 1100)))
          (i32.eq (i32.load offset=4 (local.get $i)) (i32.load (i32.const 1104)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.ge_u (local.get $i) (i32.add (local.get $ptr) (local.get $len)))
          (then (return (i64.const 0))))
        (br $scan)))
    ;; the answer at 4096: {"exclude": + the rest of the input after "candidates":
    (local.set $rest (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.add (local.get $i) (i32.const 13))))
    (memory.copy (i32.const 4096) (i32.const 1024) (i32.const 11))
    (memory.copy (i32.const 4107) (i32.add (local.get $i) (i32.const 13)) (local.get $rest))
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.extend_i32_u (i32.add (local.get $rest) (i32.const 11))))
"#;
