//! Golek's node configuration: typed, layered, validated.
//!
//! Layers, lowest first: built-in defaults (`defaults.toml`), a TOML file (`--config PATH`),
//! the environment (`GOLEK_SECTION__KEY=value`, segments joined by `__`), command-line flags,
//! and the changes made while the node ran (kept in its store; see [`runtime`]). Which keys
//! change without a restart is said once, in [`hot`].
//! Unknown keys are errors. [`load`] merges the layers, remembers where each value came from,
//! and validates everything in one pass, reporting every bad field with its key path, the value
//! and the reason.
//!
//! The environment map is passed in, never read here, so tests do not touch the process
//! environment.

pub mod hot;
mod layers;
mod node_config;
pub mod runtime;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use layers::{Provenance, Source};
pub use node_config::{
    AuthConfig, ClusterConfig, DebugConfig, GgufParams, HttpConfig, LogConfig, LogFormat,
    ModelConfig, NodeConfig, NodeSection, OnnxParams, OnnxPipeline, OpenaiParams, PlacementConfig,
    PluginConfig, ProviderKind, ProviderParams, ReliabilityConfig, RemoteConnection, RemoteTls,
    RouteConfig, RuntimeConfig, SupervisionConfig, TelemetryConfig, TritonParams, BUILTIN_PLUGINS,
};
pub use validate::{filter_problem, validate_deployment, FieldError};

use layers::Layer;

/// The prefix of environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "GOLEK_";

const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("bad override from {source_name}: {message}")]
    BadOverride {
        source_name: String,
        message: String,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The field errors, when validation failed.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

/// Everything the layers come from.
#[derive(Debug, Clone, Default)]
pub struct ConfigInputs {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// The environment (only `GOLEK_*` variables are read, plus `HOME` for `~`).
    pub env: BTreeMap<String, String>,
    /// Command-line overrides: the dotted key path, the value, and the flag as written.
    pub cli: Vec<CliOverride>,
    /// The run-time changes (the top layer), as kept in the node's store.
    pub runtime: toml::Table,
}

#[derive(Debug, Clone)]
pub struct CliOverride {
    pub key: String,
    pub value: String,
    pub flag: String,
}

impl CliOverride {
    pub fn new(key: impl Into<String>, value: impl Into<String>, flag: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            flag: flag.into(),
        }
    }
}

/// The validated configuration plus what is needed to explain it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: NodeConfig,
    pub provenance: Provenance,
    merged: toml::Table,
    /// What it was built from, to build it again with a change.
    inputs: ConfigInputs,
    /// The file's text as last read.
    file_text: Option<String>,
}

impl LoadedConfig {
    /// Every `[models.NAME]` table, enabled or not.
    pub fn model_names(&self) -> Vec<String> {
        self.merged
            .get("models")
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The effective configuration, one `key = value  # source` line per value.
    pub fn show(&self) -> String {
        let mut out = String::new();
        for entry in self.entries() {
            out.push_str(&format!(
                "{} = {}  # {}\n",
                entry.key, entry.value, entry.source
            ));
        }
        out
    }
}

/// Where the ONNX Runtime library and the default models are: `PREFIX/share/golek` beside an
/// installed `PREFIX/bin/golek` (the .deb's `/usr/share/golek`), else the checkout's `.golek`
/// folder, where `scripts/setup.sh` puts them.
pub fn default_assets_dir() -> PathBuf {
    if let Some(installed) = installed_assets_dir() {
        return installed;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join(".golek")
}

fn installed_assets_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let share = bin.parent()?.join("share/golek");
    share.join("models").is_dir().then_some(share)
}

/// Builds the configuration from its layers and validates it.
pub fn load(inputs: &ConfigInputs) -> Result<LoadedConfig, ConfigError> {
    let file = match &inputs.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            Some((path.as_path(), text))
        }
        None => None,
    };
    build(
        inputs,
        file.as_ref().map(|(path, text)| (*path, text.as_str())),
    )
}

/// Is the environment variable `name` configuration? `GOLEK_SECTION__KEY` is; a `GOLEK_*`
/// name without `__` (`GOLEK_HOME`, `GOLEK_API_KEY`) is not and is left alone.
fn env_key(name: &str) -> Option<&str> {
    name.strip_prefix(ENV_PREFIX)
        .filter(|rest| rest.contains("__"))
}

/// [`load`] with the file layer given as text instead of read: `path` names it in errors and
/// provenance and is not opened. The environment and flags come from `inputs` (its `file` is
/// not used). Pure: no file or process environment is read.
pub fn load_str(
    text: &str,
    path: &Path,
    inputs: &ConfigInputs,
) -> Result<LoadedConfig, ConfigError> {
    build(inputs, Some((path, text)))
}

fn build(inputs: &ConfigInputs, file: Option<(&Path, &str)>) -> Result<LoadedConfig, ConfigError> {
    let mut defaults: toml::Table =
        toml::from_str(DEFAULTS).expect("built-in defaults.toml is valid TOML");
    if let Some(node) = defaults.get_mut("node").and_then(|v| v.as_table_mut()) {
        node.insert(
            "assets_dir".into(),
            toml::Value::String(default_assets_dir().display().to_string()),
        );
    }
    let mut layers = vec![Layer::uniform(defaults, Source::Default)];

    if let Some((path, text)) = file {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        layers.push(Layer::uniform(table, Source::File(abs)));
    }

    let (so_far, _) = layers::merge(layers.clone());
    let env_pairs = inputs.env.iter().filter_map(|(name, value)| {
        let rest = env_key(name)?;
        let segments = rest.split("__").map(str::to_string).collect();
        Some((segments, value.clone(), Source::Env(name.clone())))
    });
    let env_layer = Layer::overrides(&so_far, env_pairs)?;
    layers.push(env_layer);

    let (so_far, _) = layers::merge(layers.clone());
    let cli_pairs = inputs.cli.iter().map(|o| {
        let segments = o.key.split('.').map(str::to_string).collect();
        (segments, o.value.clone(), Source::Cli(o.flag.clone()))
    });
    let cli_layer = Layer::overrides(&so_far, cli_pairs)?;
    layers.push(cli_layer);

    if !inputs.runtime.is_empty() {
        layers.push(Layer::uniform(inputs.runtime.clone(), Source::Runtime));
    }

    let (merged, provenance) = layers::merge(layers);
    let home = inputs.env.get("HOME").map(PathBuf::from);
    let config = validate::build_and_validate(&merged, &provenance, home.as_deref())
        .map_err(ConfigError::Invalid)?;
    let mut inputs = inputs.clone();
    if let Some((path, _)) = file {
        inputs.file = Some(path.to_path_buf());
    }
    Ok(LoadedConfig {
        config,
        provenance,
        merged,
        inputs,
        file_text: file.map(|(_, text)| text.to_string()),
    })
}

#[cfg(test)]
mod tests;
