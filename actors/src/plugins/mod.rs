//! Plugins: code an operator adds to the request path, native (built in) or WebAssembly.
//!
//! ```text
//! PluginManager          finds plugins (config tables, the plugin folder), orders them by
//! │                      their dependencies, loads, swaps and unloads them; publishes the chain
//! └── PluginActor*       one per plugin instance: its state, failures and restart intensity
//! ```
//!
//! The request path never waits on a mailbox: it reads the published [`Chain`] and calls each
//! plugin's hooks directly. Hooks, in this order for one HTTP request:
//!
//! 1. `on_request`, in chain order: continue, rewrite the request body, reject it with a status
//!    and message, or answer it (a cache hit); later plugins do not see an answered request;
//! 2. `on_route`, in chain order, when the router picks where the request runs: prefer or
//!    exclude targets (node ids);
//! 3. `on_chunk`, for each chunk of a streamed answer, in reverse chain order;
//! 4. `on_response`, in reverse chain order (the first plugin sees the final answer): rewrite
//!    the body of a whole answer, add headers (for a stream, before its first byte);
//! 5. `on_event`, off the request path: membership changes and model state changes.
//!
//! A hook sees only what its call holds: the request body, its tenant and model; never the
//! request's headers or keys, nor another request's data. A failing hook (an error, a trap,
//! out of fuel or time) fails that call by the plugin's failure policy: `open` goes on without
//! it, `closed` refuses the request (503). Its failures feed its breaker; past the restart
//! intensity (`supervision.max_restarts` in `supervision.restart_window_s`) it is disabled.

mod admin;
pub mod builtin;
mod chain;
pub mod door;
mod events;
mod instance;
mod load;
mod manager;
mod order;
pub mod wasm;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use chain::{Chain, Failure, Loaded, Plugins, Refusal, RequestOutcome, Settled};
pub use instance::{PluginActor, PluginMsg, Status};
pub use manager::{PluginArgs, PluginManager, PluginManagerMsg, PluginsHandle};

/// The plugin API version this node implements; a plugin asking for another is refused.
pub const PLUGIN_API_VERSION: u32 = 1;

/// The hooks a plugin may implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    OnRequest,
    OnRoute,
    OnResponse,
    OnChunk,
    OnEvent,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::OnRequest,
        Hook::OnRoute,
        Hook::OnResponse,
        Hook::OnChunk,
        Hook::OnEvent,
    ];

    /// The name of the hook, which is also its WebAssembly export.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on_request",
            Hook::OnRoute => "on_route",
            Hook::OnResponse => "on_response",
            Hook::OnChunk => "on_chunk",
            Hook::OnEvent => "on_event",
        }
    }
}

/// What a plugin says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// A semantic version (`1.2.0`).
    pub version: String,
    /// The plugin API version it is written for ([`PLUGIN_API_VERSION`]).
    pub api: u32,
    pub hooks: Vec<Hook>,
    /// Other plugins it needs, by name, with a version requirement (`^1.0`, `>=0.2, <0.4`).
    #[serde(default)]
    pub depends: BTreeMap<String, String>,
    /// A JSON Schema for its `[plugins.NAME]` keys.
    #[serde(default)]
    pub config_schema: Option<Value>,
}

impl Manifest {
    /// Whether the manifest can be used by this node: the name, version, API version and
    /// dependency requirements all parse and fit.
    pub fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "the plugin name {:?} is not valid (letters, digits, '-', '_', 1 to 64 characters)",
                self.name
            ));
        }
        semver::Version::parse(&self.version)
            .map_err(|e| format!("version {:?} is not a semantic version: {e}", self.version))?;
        if self.api != PLUGIN_API_VERSION {
            return Err(format!(
                "it needs plugin API version {}, and this node implements version {PLUGIN_API_VERSION}",
                self.api
            ));
        }
        for (dep, req) in &self.depends {
            semver::VersionReq::parse(req).map_err(|e| {
                format!("its dependency {dep:?} has a version requirement {req:?} that does not parse: {e}")
            })?;
        }
        if let Some(schema) = &self.config_schema {
            jsonschema::validator_for(schema)
                .map_err(|e| format!("its config schema is not a valid JSON Schema: {e}"))?;
        }
        Ok(())
    }

    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }
}

/// Plugin names: what a `.wasm` file is called, a `[plugins.NAME]` table, a URL segment.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// A plugin's place in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Found (a config table or a file), not read yet.
    Discovered,
    /// Read and checked: its manifest is known.
    Loaded,
    /// Its configuration passed its schema and its instance is built.
    Initialized,
    /// In the chain: requests pass through it.
    Started,
    /// Out of the chain; calls in flight are finishing.
    Stopping,
    Stopped,
    /// Refused or disabled, with the reason.
    Failed,
}

impl PluginState {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Discovered => "discovered",
            PluginState::Loaded => "loaded",
            PluginState::Initialized => "initialized",
            PluginState::Started => "started",
            PluginState::Stopping => "stopping",
            PluginState::Stopped => "stopped",
            PluginState::Failed => "failed",
        }
    }

    /// The transitions a plugin may make; any state may fail.
    pub fn may_become(self, next: PluginState) -> bool {
        use PluginState::*;
        matches!(
            (self, next),
            (_, Failed)
                | (Discovered, Loaded)
                | (Loaded, Initialized)
                | (Initialized, Started)
                | (Started, Stopping)
                | (Initialized, Stopping)
                | (Stopping, Stopped)
                | (Stopped, Discovered)
                | (Failed, Discovered)
        )
    }
}

/// How a failing call is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The request goes on as if the plugin were not there.
    #[default]
    Open,
    /// The request is refused (503).
    Closed,
}

/// What `on_request` is given.
#[derive(Debug, Clone, Serialize)]
pub struct RequestCall {
    /// The API path (`/v1/chat/completions`, `/v2/models/m/infer`).
    pub path: String,
    pub model: String,
    pub tenant: Option<String>,
    /// The request's JSON body as the client sent it (or as earlier plugins rewrote it).
    pub body: Value,
}

/// A whole answer a plugin gives in place of the model's (a cache hit).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: bytes::Bytes,
    pub headers: Vec<(String, String)>,
}

/// What `on_request` decides.
#[derive(Debug, Clone)]
pub enum Verdict {
    Continue,
    /// Go on with this body instead.
    Rewrite(Value),
    /// Refuse the request: an HTTP status (400 to 599) and a message for the client.
    Reject {
        status: u16,
        message: String,
    },
    /// Answer the request without the model.
    Respond(Answer),
}

/// What `on_route` is given: the targets the request may go to, in the router's order.
#[derive(Debug, Clone, Serialize)]
pub struct RouteCall {
    pub model: String,
    pub tenant: Option<String>,
    /// Node ids; this node's own id stands for serving it here.
    pub candidates: Vec<String>,
}

/// What `on_route` advises.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAdvice {
    /// Tried first, in this order (ids not among the candidates are ignored).
    #[serde(default)]
    pub prefer: Vec<String>,
    /// Never tried for this request.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// What `on_response` is given.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseCall {
    pub path: String,
    pub model: String,
    pub tenant: Option<String>,
    pub status: u16,
    /// `node/model` that served it, when a model did.
    pub served_by: Option<String>,
    /// A streamed answer: called before its first byte, with no body.
    pub stream: bool,
    /// The whole answer's JSON body (absent for a stream or a body that is not JSON).
    pub body: Option<Value>,
    /// The request as the model got it (native plugins only: not sent to WebAssembly).
    #[serde(skip)]
    pub request: Option<Value>,
}

/// What `on_response` changes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseEdit {
    /// Headers to add to the answer (names and values must be valid HTTP).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The answer's new body (a whole answer only).
    #[serde(default)]
    pub body: Option<Value>,
}

/// What `on_chunk` is given: one chunk of a streamed answer (an SSE `data:` JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct ChunkCall {
    pub model: String,
    pub tenant: Option<String>,
    pub chunk: Value,
}

/// Something that happened on the node, for `on_event`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    MemberUp { node: String },
    MemberDown { node: String },
    ModelState { model: String, state: String },
}

/// How one exchange ended (native plugins only: the audit log).
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub path: String,
    pub model: String,
    pub tenant: Option<String>,
    pub served_by: Option<String>,
    pub status: u16,
    pub stream: bool,
    pub latency_ms: u64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Whether a plugin answered it (a cache hit).
    pub answered_by_plugin: bool,
    #[serde(skip)]
    pub request: Option<Value>,
    #[serde(skip)]
    pub response: Option<Value>,
}

/// A plugin's code, native or WebAssembly. Every hook has a default that does nothing, so a
/// plugin implements the ones its manifest lists. Hooks are called from request tasks,
/// concurrently: keep them short and never block on I/O.
pub trait Plugin: Send + Sync {
    fn on_request(&self, _call: &RequestCall) -> Result<Verdict, String> {
        Ok(Verdict::Continue)
    }
    fn on_route(&self, _call: &RouteCall) -> Result<RouteAdvice, String> {
        Ok(RouteAdvice::default())
    }
    fn on_response(&self, _call: &ResponseCall) -> Result<ResponseEdit, String> {
        Ok(ResponseEdit::default())
    }
    fn on_chunk(&self, _call: &ChunkCall) -> Result<Option<Value>, String> {
        Ok(None)
    }
    fn on_event(&self, _event: &NodeEvent) -> Result<(), String> {
        Ok(())
    }
    /// After the answer's last byte (native plugins: the audit log).
    fn on_done(&self, _done: &Done) {}
    /// What the plugin reports of itself in `/admin/plugins` (hits, drops, ...).
    fn stats(&self) -> Value {
        Value::Null
    }
}

#[cfg(test)]
mod tests;
