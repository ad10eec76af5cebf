//! The one step from the merged TOML table to a typed, checked [`NodeConfig`].
//!
//! Serde checks shapes and unknown keys (with the key path); this module checks ranges,
//! addresses, paths and cross-field rules, and collects every error instead of stopping at the
//! first one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::layers::{Provenance, Source};
use crate::node_config::*;

mod cluster;
mod deployment;
mod gguf;
mod observe;
mod onnx;
mod placement;
mod plugins;
mod reliability;
mod remote;

pub use deployment::validate_deployment;
use gguf::gguf_params;
pub use observe::filter_problem;
use onnx::onnx_params;
use remote::{openai_params, triton_params};

/// One invalid value: where it is, what is wrong, and which layer set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted key path, e.g. `models.minilm.max_batch_size`.
    pub path: String,
    pub message: String,
    /// The layer that set the value, when known.
    pub source: Option<String>,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " (set by {source})")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    http: RawHttp,
    runtime: RawRuntime,
    supervision: RawSupervision,
    debug: RawDebug,
    cluster: cluster::RawCluster,
    reliability: reliability::RawReliability,
    auth: RawAuth,
    log: observe::RawLog,
    telemetry: observe::RawTelemetry,
    placement: placement::RawPlacement,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    routes: BTreeMap<String, reliability::RawRoute>,
    #[serde(default)]
    plugins: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    data_dir: String,
    assets_dir: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Unset: `<data_dir>/plugins`.
    #[serde(default)]
    plugin_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    addr: String,
    max_body_bytes: i64,
    request_timeout_ms: i64,
    shutdown_grace_ms: i64,
    retry_after_s: i64,
    admin_from_anywhere: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    onnxruntime_path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervision {
    restart_backoff_initial_ms: i64,
    restart_backoff_max_ms: i64,
    max_restarts: i64,
    restart_window_s: i64,
    breaker_cooldown_s: i64,
    hang_timeout_s: i64,
    max_hung_workers: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebug {
    fault_injection: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    provider: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_max_batch_size")]
    max_batch_size: i64,
    #[serde(default = "default_max_queue_delay_us")]
    max_queue_delay_us: i64,
    #[serde(default = "default_queue_capacity")]
    queue_capacity: i64,
    #[serde(default)]
    params: toml::Table,
}

fn default_max_batch_size() -> i64 {
    32
}
fn default_max_queue_delay_us() -> i64 {
    2000
}
fn default_queue_capacity() -> i64 {
    1024
}

/// Collects errors while converting raw values.
pub(super) struct Checker<'a> {
    provenance: &'a Provenance,
    home: Option<&'a Path>,
    errors: Vec<FieldError>,
    /// Relative paths hang off the assets dir whatever layer set them (a run-time deployment).
    relative_to_assets: bool,
}

impl Checker<'_> {
    pub(super) fn fail(&mut self, path: &str, message: impl Into<String>) {
        let source = self.source_of(path).map(|s| s.to_string());
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
            source,
        });
    }

    fn source_of(&self, path: &str) -> Option<&Source> {
        // A value that is not a leaf (a table) takes the source of its first leaf.
        self.provenance.get(path).or_else(|| {
            let prefix = format!("{path}.");
            self.provenance
                .iter()
                .find(|(k, _)| k.starts_with(&prefix))
                .map(|(_, s)| s)
        })
    }

    pub(super) fn range(&mut self, path: &str, value: i64, min: i64, max: i64) -> Option<i64> {
        if value < min || value > max {
            self.fail(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
            None
        } else {
            Some(value)
        }
    }

    pub(super) fn millis(
        &mut self,
        path: &str,
        value: i64,
        min: i64,
        max: i64,
    ) -> Option<Duration> {
        self.range(path, value, min, max)
            .map(|v| Duration::from_millis(v as u64))
    }

    /// An http(s) base URL, without a trailing slash.
    pub(super) fn base_url(&mut self, path: &str, value: &str, example: &str) -> String {
        let url = value.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            self.fail(
                path,
                format!("must be an http:// or https:// base URL like {example}, got {value:?}"),
            );
        }
        url
    }

    pub(super) fn socket_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.fail(
                    path,
                    format!("must be an IP address and port like 127.0.0.1:8080, got {value:?}"),
                );
                None
            }
        }
    }

    /// A path: `~/` expands to HOME; a relative path is resolved against the folder of the file
    /// that set it, against `assets_dir` for defaults, and against the working directory for
    /// the environment and flags.
    pub(super) fn path(&mut self, path: &str, value: &str, assets_dir: &Path) -> Option<PathBuf> {
        if value.trim().is_empty() {
            self.fail(path, "must not be empty");
            return None;
        }
        let expanded = if let Some(rest) = value.strip_prefix("~/") {
            match self.home {
                Some(home) => home.join(rest),
                None => {
                    self.fail(
                        path,
                        format!("starts with ~/ but HOME is not set, got {value:?}"),
                    );
                    return None;
                }
            }
        } else {
            PathBuf::from(value)
        };
        if expanded.is_absolute() {
            return Some(expanded);
        }
        let base = match self.source_of(path) {
            _ if self.relative_to_assets => Some(assets_dir.to_path_buf()),
            Some(Source::File(file)) => file.parent().map(Path::to_path_buf),
            Some(Source::Default) => Some(assets_dir.to_path_buf()),
            _ => std::env::current_dir().ok(),
        };
        Some(base.unwrap_or_default().join(expanded))
    }
}

/// Deserializes `value` into `T`, reporting a failure with the full key path.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
    checker: &mut Checker<'_>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let inner = err.path().to_string();
            let path = match (prefix.is_empty(), inner.as_str()) {
                (true, _) => inner.clone(),
                (false, ".") => prefix.to_string(),
                (false, _) => format!("{prefix}.{inner}"),
            };
            checker.fail(&path, err.into_inner().message().to_string());
            None
        }
    }
}

pub(super) fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

pub(crate) fn build_and_validate(
    merged: &toml::Table,
    provenance: &Provenance,
    home: Option<&Path>,
) -> Result<NodeConfig, Vec<FieldError>> {
    let mut c = Checker {
        provenance,
        home,
        errors: Vec::new(),
        relative_to_assets: false,
    };
    let raw: RawConfig = match typed(toml::Value::Table(merged.clone()), "", &mut c) {
        Some(raw) => raw,
        None => return Err(c.errors),
    };

    // assets_dir first: the defaults' relative paths hang off it.
    let cwd = std::env::current_dir().unwrap_or_default();
    let assets_dir = c
        .path("node.assets_dir", &raw.node.assets_dir, &cwd)
        .unwrap_or_default();
    let data_dir = c.path("node.data_dir", &raw.node.data_dir, &assets_dir);
    let plugin_dir = match &raw.node.plugin_dir {
        Some(dir) => c.path("node.plugin_dir", dir, &assets_dir),
        None => data_dir.as_ref().map(|d| d.join("plugins")),
    };

    let addr = c.socket_addr("http.addr", &raw.http.addr);
    let max_body_bytes = c.range(
        "http.max_body_bytes",
        raw.http.max_body_bytes,
        1024,
        1 << 30,
    );
    let request_timeout = c.millis(
        "http.request_timeout_ms",
        raw.http.request_timeout_ms,
        1,
        3_600_000,
    );
    let shutdown_grace = c.millis(
        "http.shutdown_grace_ms",
        raw.http.shutdown_grace_ms,
        0,
        600_000,
    );
    let retry_after_s = c.range("http.retry_after_s", raw.http.retry_after_s, 1, 3600);

    let onnxruntime_path = c.path(
        "runtime.onnxruntime_path",
        &raw.runtime.onnxruntime_path,
        &assets_dir,
    );

    let s = &raw.supervision;
    let backoff_initial = c.millis(
        "supervision.restart_backoff_initial_ms",
        s.restart_backoff_initial_ms,
        1,
        600_000,
    );
    let backoff_max = c.millis(
        "supervision.restart_backoff_max_ms",
        s.restart_backoff_max_ms,
        1,
        3_600_000,
    );
    if let (Some(initial), Some(max)) = (backoff_initial, backoff_max) {
        if max < initial {
            c.fail(
                "supervision.restart_backoff_max_ms",
                format!(
                    "must be at least supervision.restart_backoff_initial_ms ({} ms), got {} ms",
                    initial.as_millis(),
                    max.as_millis()
                ),
            );
        }
    }
    let max_restarts = c.range("supervision.max_restarts", s.max_restarts, 0, 1000);
    let restart_window = c
        .range(
            "supervision.restart_window_s",
            s.restart_window_s,
            1,
            86_400,
        )
        .map(|v| Duration::from_secs(v as u64));
    let breaker_cooldown = c
        .range(
            "supervision.breaker_cooldown_s",
            s.breaker_cooldown_s,
            1,
            86_400,
        )
        .map(|v| Duration::from_secs(v as u64));

    let hang_timeout = c
        .range("supervision.hang_timeout_s", s.hang_timeout_s, 1, 86_400)
        .map(|v| Duration::from_secs(v as u64));
    let max_hung_workers = c.range("supervision.max_hung_workers", s.max_hung_workers, 0, 1000);

    let cluster = cluster::cluster_section(raw.cluster, &assets_dir, &mut c);
    let reliability = reliability::reliability_section(raw.reliability, &mut c);
    let placement = placement::placement_section(raw.placement, &mut c);
    let labels = placement::labels(raw.node.labels, &mut c);
    let log = observe::log_section(raw.log, &mut c);
    let telemetry = observe::telemetry_section(raw.telemetry, &mut c);

    let mut models = BTreeMap::new();
    for (name, model) in raw.models {
        let prefix = format!("models.{name}");
        if !valid_model_name(&name) {
            c.fail(
                &prefix,
                format!(
                    "model names use letters, digits, '-', '_', '.', ':' (1 to 128 characters), got {name:?}"
                ),
            );
            continue;
        }
        if let Some(m) = build_model(&name, model, &assets_dir, &mut c) {
            models.insert(name, m);
        }
    }

    let routes = reliability::routes_section(raw.routes, &models, &mut c);
    let mut plugins = BTreeMap::new();
    for (name, table) in raw.plugins {
        if let Some(p) = plugins::plugin_section(&name, table, &mut c) {
            plugins.insert(name, p);
        }
    }

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    // Every Option below is Some when no error was recorded.
    let config = (|| {
        Some(NodeConfig {
            node: NodeSection {
                data_dir: data_dir?,
                assets_dir,
                labels,
                plugin_dir: plugin_dir?,
            },
            http: HttpConfig {
                addr: addr?,
                max_body_bytes: max_body_bytes? as usize,
                request_timeout: request_timeout?,
                shutdown_grace: shutdown_grace?,
                retry_after_s: retry_after_s? as u32,
                admin_from_anywhere: raw.http.admin_from_anywhere,
            },
            runtime: RuntimeConfig {
                onnxruntime_path: onnxruntime_path?,
            },
            supervision: SupervisionConfig {
                restart_backoff_initial: backoff_initial?,
                restart_backoff_max: backoff_max?,
                max_restarts: max_restarts? as u32,
                restart_window: restart_window?,
                breaker_cooldown: breaker_cooldown?,
                hang_timeout: hang_timeout?,
                max_hung_workers: max_hung_workers? as u32,
            },
            debug: DebugConfig {
                fault_injection: raw.debug.fault_injection,
            },
            cluster: cluster?,
            reliability: reliability?,
            placement: placement?,
            auth: AuthConfig {
                required: raw.auth.required,
            },
            log: log?,
            telemetry: telemetry?,
            models,
            routes,
            plugins,
        })
    })();
    config.ok_or_else(|| {
        vec![FieldError {
            path: "(config)".into(),
            message: "a value failed validation without a recorded error".into(),
            source: None,
        }]
    })
}

pub(super) fn build_model(
    name: &str,
    model: RawModel,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<ModelConfig> {
    let prefix = format!("models.{name}");
    let kind = ProviderKind::parse(&model.provider);
    if kind.is_none() {
        c.fail(
            &format!("{prefix}.provider"),
            format!(
                "unknown provider kind {:?}; known kinds: {}",
                model.provider,
                ProviderKind::known_names()
            ),
        );
    }
    let max_batch_size = c.range(
        &format!("{prefix}.max_batch_size"),
        model.max_batch_size,
        1,
        1024,
    );
    let max_queue_delay = c
        .range(
            &format!("{prefix}.max_queue_delay_us"),
            model.max_queue_delay_us,
            0,
            1_000_000,
        )
        .map(|us| Duration::from_micros(us as u64));
    let queue_capacity = c.range(
        &format!("{prefix}.queue_capacity"),
        model.queue_capacity,
        1,
        1_000_000,
    );
    let params = match kind? {
        ProviderKind::Onnx => {
            onnx_params(&prefix, model.params, assets_dir, c).map(ProviderParams::Onnx)
        }
        ProviderKind::Gguf => {
            gguf_params(&prefix, model.params, assets_dir, c).map(ProviderParams::Gguf)
        }
        ProviderKind::Triton => {
            triton_params(&prefix, model.params, assets_dir, c).map(ProviderParams::Triton)
        }
        ProviderKind::Openai => {
            openai_params(&prefix, model.params, assets_dir, c).map(ProviderParams::Openai)
        }
    };
    if !model.enabled {
        return None;
    }
    Some(ModelConfig {
        name: name.to_string(),
        max_batch_size: max_batch_size? as usize,
        max_queue_delay: max_queue_delay?,
        queue_capacity: queue_capacity? as usize,
        params: params?,
    })
}
