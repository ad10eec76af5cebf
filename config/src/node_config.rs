//! The typed node configuration that the rest of the node reads.
//!
//! Built only by [`crate::load`]: every value here has passed validation, paths are absolute,
//! durations are `Duration`s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub http: HttpConfig,
    pub runtime: RuntimeConfig,
    pub supervision: SupervisionConfig,
    pub debug: DebugConfig,
    pub cluster: ClusterConfig,
    pub reliability: ReliabilityConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub placement: PlacementConfig,
    /// Deployments by served model name; disabled ones are dropped.
    pub models: BTreeMap<String, ModelConfig>,
    /// Fallback chains by served name.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Plugin instances by name (`[plugins.NAME]`).
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// The built-in plugin kinds (`[plugins.NAME]` with NAME one of these, or `kind = "..."`).
pub const BUILTIN_PLUGINS: [&str; 3] = ["audit-log", "prompt-guard", "response-cache"];

/// One plugin instance: the host's keys, and the plugin's own (checked against its schema when
/// it loads).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginConfig {
    /// A built-in kind; `None`: the WebAssembly plugin `<node.plugin_dir>/<NAME>.wasm`.
    pub kind: Option<String>,
    pub enabled: bool,
    /// A failing call lets the request go on (`open`) or refuses it (`closed`).
    pub fail_closed: bool,
    /// Plugins run by their dependencies first, then by this (lower first), then by name.
    pub order: i64,
    /// WebAssembly: `log` and `clock`, the only capabilities a plugin can be granted.
    pub capabilities: Vec<String>,
    /// WebAssembly: fuel per call (about one unit per instruction).
    pub fuel: u64,
    /// WebAssembly: the memory cap of an instance.
    pub memory_bytes: u64,
    /// WebAssembly: the wall-clock limit of one call.
    pub timeout: Duration,
    /// The plugin's own keys, as JSON.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// How requests survive failing targets: outcome breakers, retries, stream continuation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityConfig {
    /// Times one stream may move to another replica after its node failed mid-stream.
    pub max_continuations: u32,
    /// Failed requests within `breaker_window` that open a target's breaker.
    pub breaker_failures: u32,
    pub breaker_window: Duration,
    /// How long an open breaker skips its target before one probe request.
    pub breaker_cooldown: Duration,
    /// Retries allowed as a share of recent requests (so a sick cluster is not hammered)...
    pub retry_budget_ratio: f64,
    /// ...and at least this many a second.
    pub retry_budget_min_per_s: u32,
}

/// Where run-time deployments' replicas run, and when they move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacementConfig {
    /// A node dead this long loses its replicas to the next nodes in the hash order.
    pub move_after: Duration,
    /// A node back from the dead takes replicas again only after it has been alive this long.
    pub return_after: Duration,
    /// A replica needs its model file's size times this in memory.
    pub memory_factor: f64,
    /// How long an undeployed name is remembered (so a node that was away learns of it).
    pub tombstone_ttl: Duration,
    /// How long a replica being stopped may finish its requests.
    pub drain_timeout: Duration,
}

/// A fallback chain: the served name's requests go to the first of `targets` that can take
/// them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSection {
    /// Holds the node's state: the registry store and its identity.
    pub data_dir: PathBuf,
    /// Where the setup script put the runtime library and the default models.
    pub assets_dir: PathBuf,
    /// What deployments' label selectors match; gossiped.
    pub labels: BTreeMap<String, String>,
    /// WebAssembly plugins (`*.wasm`), watched while the node runs.
    pub plugin_dir: PathBuf,
}

/// Membership in a cluster: on when `tls_dir` holds this node's certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// The node id; in a cluster it must be the one the certificate names.
    pub node_id: Option<String>,
    /// What `golek cluster issue` wrote for this node (node.pem, node.key, ca.pem).
    pub tls_dir: Option<PathBuf>,
    /// The UDP address of the node's QUIC endpoint (gossip, peers, QUIC clients).
    pub quic_addr: SocketAddr,
    /// The address peers reach `quic_addr` at, when it is bound to 0.0.0.0.
    pub advertise_addr: Option<SocketAddr>,
    /// `host:port` of nodes to join through.
    pub seeds: Vec<String>,
    /// Nodes only gossip with nodes of the same cluster id.
    pub cluster_id: String,
    pub gossip_interval: Duration,
    /// The failure detector's threshold: higher notices deaths later, with fewer false alarms.
    pub phi_threshold: f64,
    /// How long a dead node stays listed (as dead) before it is forgotten.
    pub dead_grace: Duration,
    /// A CA folder with its key: this node then admits nodes that hold a join token.
    pub ca_dir: Option<PathBuf>,
    /// A token from `golek cluster token`: with no certificate in `tls_dir` yet, the node asks
    /// a seed for one.
    #[serde(skip_serializing)]
    pub join_token: Option<String>,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.tls_dir.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_grace: Duration,
    /// The `Retry-After` sent with 429 answers.
    pub retry_after_s: u32,
    /// Admin routes answer clients other than loopback (without auth on).
    pub admin_from_anywhere: bool,
}

/// The node's log: what is written and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    /// Which events are logged: a level (`info`) or `target=level` directives, comma-separated
    /// (`info,golek_actors::cluster=debug`), as `RUST_LOG` takes them.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable text on a terminal, JSON lines otherwise.
    Auto,
    Text,
    Json,
}

/// Traces: spans exported over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryConfig {
    /// The collector's traces URL (`http://host:4318/v1/traces`); unset: no export.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded (0 to 1); a request that arrives with a sampled parent
    /// is recorded whatever this says.
    pub sampling_ratio: f64,
    /// Finished spans held for export; beyond it spans are dropped (and counted), never waited
    /// for.
    pub queue_spans: usize,
    /// Most spans one export carries.
    pub batch_spans: usize,
    /// How often the queue is exported when it holds fewer than a batch.
    pub export_interval: Duration,
}

/// API keys and tenants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthConfig {
    /// Every request needs a valid key.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeConfig {
    pub onnxruntime_path: PathBuf,
}

/// How the provider supervisor restarts failed workers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupervisionConfig {
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// More restarts than this within `restart_window` open the model's breaker.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// How long an open breaker waits before one more restart is tried.
    pub breaker_cooldown: Duration,
    /// A worker that holds work and shows no progress for this long is hung.
    pub hang_timeout: Duration,
    /// Hung workers abandoned (their threads cannot be killed) before the node reports itself
    /// unhealthy, so that its process supervisor restarts it.
    pub max_hung_workers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DebugConfig {
    /// Enables `POST /admin/debug/crash/{model}` (a worker panics), `.../hang/{model}` (a
    /// worker blocks) and `.../panic/publisher` (the cluster's gossip round panics), for tests.
    pub fault_injection: bool,
}

/// The provider kinds this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Onnx,
    Gguf,
    Triton,
    Openai,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Onnx,
        ProviderKind::Gguf,
        ProviderKind::Triton,
        ProviderKind::Openai,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Onnx => "onnx",
            ProviderKind::Gguf => "gguf",
            ProviderKind::Triton => "triton",
            ProviderKind::Openai => "openai",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn known_names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One deployed model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub name: String,
    /// Most rows (inputs) one batch may hold.
    pub max_batch_size: usize,
    /// How long the worker waits for more requests to fill a batch.
    pub max_queue_delay: Duration,
    /// Requests that may wait for the worker; beyond it the model answers "overloaded".
    pub queue_capacity: usize,
    pub params: ProviderParams,
}

impl ModelConfig {
    pub fn kind(&self) -> ProviderKind {
        match self.params {
            ProviderParams::Onnx(_) => ProviderKind::Onnx,
            ProviderParams::Gguf(_) => ProviderKind::Gguf,
            ProviderParams::Triton(_) => ProviderKind::Triton,
            ProviderParams::Openai(_) => ProviderKind::Openai,
        }
    }
}

/// The typed parameters of each provider kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderParams {
    Onnx(OnnxParams),
    Gguf(GgufParams),
    Triton(TritonParams),
    Openai(OpenaiParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnnxPipeline {
    /// Text in, one pooled, normalised vector out (MiniLM and other sentence encoders).
    SentenceEmbedding,
    /// Named tensors in, named tensors out.
    Tensor,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnnxParams {
    pub pipeline: OnnxPipeline,
    pub model_path: PathBuf,
    /// Required by the sentence-embedding pipeline.
    pub tokenizer_path: Option<PathBuf>,
    /// Longer inputs are truncated to this many tokens (special tokens included).
    pub max_input_tokens: usize,
    pub intra_threads: usize,
    pub normalize: bool,
}

/// A llama.cpp deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufParams {
    pub model_path: PathBuf,
    /// The whole KV cache in tokens; each slot gets `n_ctx / slots`.
    pub n_ctx: u32,
    /// Sequences decoded together (continuous batching).
    pub slots: u32,
    /// Decode threads; 0 means one per available core.
    pub threads: u32,
    /// Most tokens in one decode call (prompt chunks included).
    pub batch_size: u32,
    /// Layers offloaded to the GPU (GPU builds only; 0 on CPU).
    pub n_gpu_layers: u32,
    /// A llama.cpp template name (`chatml`, `llama2`, ...) or template text; when unset, the
    /// template in the GGUF metadata, else `chatml`.
    pub chat_template: Option<String>,
    /// Serve embeddings (mean-pooled, normalised) instead of text generation.
    pub embeddings: bool,
    /// The system message a chat gets when the client sends none (else the template's own
    /// default, if it has one).
    pub system_prompt: Option<String>,
    /// Keep each slot's KV cache after its sequence ends and reuse it for a prompt that starts
    /// the same way (multi-turn chats prefill only the new turn).
    pub prompt_cache: bool,
    /// The shortest shared prefix worth reusing a slot's cache for.
    pub prompt_cache_min_tokens: u32,
}

/// A model served by a remote KServe v2 server (NVIDIA Triton, MLServer, another Golek).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TritonParams {
    /// The server's base URL, e.g. `http://10.0.0.5:8000`.
    pub url: String,
    /// The model's name on the remote (defaults to the deployment's name).
    pub remote_model: Option<String>,
    /// The remote version; unset means the server's default.
    pub remote_version: Option<String>,
    pub connection: RemoteConnection,
}

/// How a node talks to a remote, the same for every remote provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteConnection {
    /// Per request, connection included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Requests in flight to the remote at once.
    pub max_in_flight: u32,
    pub tls: RemoteTls,
}

/// TLS towards a remote (`https://` URLs). The system's web roots are always trusted; `ca_path`
/// adds a private CA, a client certificate and key give mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RemoteTls {
    /// PEM file of extra CA certificates to trust.
    pub ca_path: Option<PathBuf>,
    /// PEM certificate (chain) and PEM private key presented to the remote.
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    /// Accept any server certificate (testing only; logged as a warning at load).
    pub insecure_skip_verify: bool,
}

/// A model served by a remote OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenaiParams {
    /// The API's base URL including `/v1`, e.g. `http://10.0.0.7:8000/v1`.
    pub base_url: String,
    /// The model's name upstream (defaults to the deployment's name).
    pub remote_model: Option<String>,
    /// Where the API key comes from: an environment variable's name, or a file. Never logged.
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub connection: RemoteConnection,
}
