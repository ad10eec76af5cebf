//! The built-in plugins: native Rust with the same lifecycle and hooks as WebAssembly ones,
//! enabled by a `[plugins.NAME]` table (NAME is the kind, or any name with `kind = "..."`).

mod audit;
mod cache;
mod guard;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::{Manifest, Plugin};

pub use audit::AuditLog;
pub use cache::ResponseCache;
pub use guard::PromptGuard;

/// The kinds of built-in plugin.
pub const KINDS: [&str; 3] = ["audit-log", "prompt-guard", "response-cache"];

/// What a built-in plugin may need from the node.
#[derive(Debug, Clone)]
pub struct Context {
    pub data_dir: PathBuf,
}

/// The manifest of a built-in kind (its name is the instance's).
pub fn manifest(kind: &str, name: &str) -> Option<Manifest> {
    let (hooks, schema) = match kind {
        "audit-log" => (audit::HOOKS.to_vec(), audit::schema()),
        "prompt-guard" => (guard::HOOKS.to_vec(), guard::schema()),
        "response-cache" => (cache::HOOKS.to_vec(), cache::schema()),
        _ => return None,
    };
    Some(Manifest {
        name: name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        api: super::PLUGIN_API_VERSION,
        hooks,
        depends: Default::default(),
        config_schema: Some(schema),
    })
}

/// Builds a built-in plugin from its (schema-checked) configuration.
pub fn build(kind: &str, config: &Value, ctx: &Context) -> Result<Arc<dyn Plugin>, String> {
    Ok(match kind {
        "audit-log" => Arc::new(AuditLog::new(config, ctx)?),
        "prompt-guard" => Arc::new(PromptGuard::new(config)?),
        "response-cache" => Arc::new(ResponseCache::new(config)?),
        other => return Err(format!("there is no built-in plugin {other:?}")),
    })
}

/// The texts of a request a person wrote: chat messages (plain or in parts), prompts, inputs.
pub fn texts(body: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn push<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|i| push(i, out)),
            Value::Object(o) => {
                if let Some(t) = o.get("text") {
                    push(t, out)
                }
            }
            _ => {}
        }
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            if let Some(c) = m.get("content") {
                push(c, &mut out);
            }
        }
    }
    for key in ["prompt", "input"] {
        if let Some(v) = body.get(key) {
            push(v, &mut out);
        }
    }
    out
}
