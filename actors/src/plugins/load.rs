//! Turning a plugin source (a built-in kind or a `.wasm` file) and its configuration into a
//! checked manifest and a ready instance. Runs off the request path (on a blocking thread for
//! WebAssembly: compiling takes milliseconds).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use golek_config::PluginConfig;
use serde_json::Value;

use super::wasm::{self, WasmPlugin};
use super::{builtin, FailurePolicy, Manifest, Plugin};

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Native { kind: String },
    Wasm { path: PathBuf },
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Native { .. } => "native",
            Source::Wasm { .. } => "wasm",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Native { kind } => kind.clone(),
            Source::Wasm { path } => path.display().to_string(),
        }
    }
}

/// A plugin the node should run: its source and its table (defaults when it has none).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub name: String,
    pub source: Source,
    pub config: PluginConfig,
}

/// The host settings of a plugin with no `[plugins.NAME]` table.
pub fn default_config() -> PluginConfig {
    PluginConfig {
        kind: None,
        enabled: true,
        fail_closed: false,
        order: 0,
        capabilities: Vec::new(),
        fuel: 100_000_000,
        memory_bytes: 32 << 20,
        timeout: Duration::from_millis(100),
        settings: Default::default(),
    }
}

/// The plugins the configuration and the plugin folder name: every enabled table, and every
/// `.wasm` file without one. Disabled tables are left out (their files too).
pub fn wanted(
    plugins: &std::collections::BTreeMap<String, PluginConfig>,
    dir: &Path,
) -> Vec<Wanted> {
    let mut out = Vec::new();
    for (name, config) in plugins {
        if !config.enabled {
            continue;
        }
        let source = match &config.kind {
            Some(kind) => Source::Native { kind: kind.clone() },
            None => Source::Wasm {
                path: dir.join(format!("{name}.wasm")),
            },
        };
        out.push(Wanted {
            name: name.clone(),
            source,
            config: config.clone(),
        });
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if plugins.contains_key(name) {
                continue;
            }
            out.push(Wanted {
                name: name.to_string(),
                source: Source::Wasm { path: path.clone() },
                config: default_config(),
            });
        }
    }
    out
}

/// What identifies one version of a plugin: its code and its configuration.
pub fn fingerprint(w: &Wanted) -> Result<[u8; 32], String> {
    let mut h = blake3::Hasher::new();
    match &w.source {
        Source::Native { kind } => {
            h.update(b"native\0");
            h.update(kind.as_bytes());
        }
        Source::Wasm { path } => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            h.update(b"wasm\0");
            h.update(&bytes);
        }
    }
    h.update(format!("{:?}", w.config).as_bytes());
    Ok(*h.finalize().as_bytes())
}

/// A plugin ready to start.
pub struct Candidate {
    pub manifest: Manifest,
    pub plugin: Arc<dyn Plugin>,
    pub policy: FailurePolicy,
}

/// Reads, checks and initialises `w`: the manifest, the configuration against its schema
/// (errors name the key, `plugins.NAME.key`), then a first instance.
pub fn load(w: &Wanted, data_dir: &Path) -> Result<Candidate, String> {
    let settings = Value::Object(w.config.settings.clone());
    let policy = if w.config.fail_closed {
        FailurePolicy::Closed
    } else {
        FailurePolicy::Open
    };
    match &w.source {
        Source::Native { kind } => {
            let manifest = builtin::manifest(kind, &w.name)
                .ok_or_else(|| format!("there is no built-in plugin {kind:?}"))?;
            check_settings(&w.name, &manifest, &settings)?;
            let ctx = builtin::Context {
                data_dir: data_dir.to_path_buf(),
            };
            let plugin = builtin::build(kind, &settings, &ctx)
                .map_err(|e| format!("plugins.{}: {e}", w.name))?;
            Ok(Candidate {
                manifest,
                plugin,
                policy,
            })
        }
        Source::Wasm { path } => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let limits = wasm::Limits {
                fuel: w.config.fuel,
                memory_bytes: usize::try_from(w.config.memory_bytes).unwrap_or(usize::MAX),
                timeout: w.config.timeout,
                log: w.config.capabilities.iter().any(|c| c == "log"),
                clock: w.config.capabilities.iter().any(|c| c == "clock"),
            };
            let (plugin, manifest) = WasmPlugin::load(&w.name, &bytes, limits, &settings)?;
            check_settings(&w.name, &manifest, &settings)?;
            plugin.warm()?;
            Ok(Candidate {
                manifest,
                plugin: Arc::new(plugin),
                policy,
            })
        }
    }
}

/// The plugin's own keys against the schema it declares; with no schema it takes none.
fn check_settings(name: &str, manifest: &Manifest, settings: &Value) -> Result<(), String> {
    let Some(schema) = &manifest.config_schema else {
        return match settings.as_object().and_then(|o| o.keys().next()) {
            Some(key) => Err(format!(
                "plugins.{name}.{key}: the plugin declares no configuration, so it takes no keys"
            )),
            None => Ok(()),
        };
    };
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("its config schema is not a valid JSON Schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(settings)
        .map(|e| {
            let at = e.instance_path().as_str().replace('/', ".");
            format!("plugins.{name}{at}: {e}")
        })
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(name: &str, kind: &str, settings: serde_json::Value) -> Wanted {
        let mut config = default_config();
        config.kind = Some(kind.into());
        config.settings = settings.as_object().cloned().unwrap_or_default();
        Wanted {
            name: name.into(),
            source: Source::Native { kind: kind.into() },
            config,
        }
    }

    #[test]
    fn a_plugins_own_keys_are_checked_against_its_schema_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            &native("pg", "prompt-guard", serde_json::json!({})),
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(err.contains("plugins.pg") && err.contains("deny"), "{err}");
        let err = load(
            &native(
                "pg",
                "prompt-guard",
                serde_json::json!({"deny": ["x"], "denny": 1}),
            ),
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(err.contains("denny"), "{err}");
        let err = load(
            &native(
                "cache",
                "response-cache",
                serde_json::json!({"ttl_s": "soon"}),
            ),
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(err.starts_with("plugins.cache.ttl_s:"), "{err}");
        let ok = load(
            &native("pg", "prompt-guard", serde_json::json!({"deny": ["x"]})),
            dir.path(),
        )
        .unwrap();
        assert_eq!(ok.manifest.name, "pg");
    }
}
