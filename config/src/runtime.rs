//! Changes while the node runs: the run-time layer (the top one), built again whole and
//! validated against the full configuration before anything of it applies.
//!
//! A change is a partial document (`{"models": {"x": {"queue_capacity": 8}}}` or the same in
//! TOML) or one `KEY VALUE` pair. Its keys match the configuration's loosely (case, `-` and `_`
//! alike), as environment overrides do, and are stored as resolved. What the running node does
//! with a valid change is for its subscribers: hot keys ([`crate::hot`]) apply at once, the
//! others are reported as pending until the next start.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::layers::{self, Layer, Source};
use crate::{build, ConfigError, FieldError, LoadedConfig};

/// One effective value, as `golek config show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub key: String,
    /// The value as TOML (secrets as `"<redacted>"`).
    pub value: String,
    /// The layer it came from.
    pub source: String,
    /// Applies without a restart.
    pub hot: bool,
}

/// A restart-only key whose value differs from the one the node started with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub key: String,
    /// What the node runs with (`None`: the key was not set).
    pub running: Option<String>,
    /// What the next start will use.
    pub next: Option<String>,
}

const REDACTED: &str = "\"<redacted>\"";

fn shown(key: &str, value: &toml::Value) -> String {
    if crate::hot::is_secret(key) {
        REDACTED.to_string()
    } else {
        value.to_string()
    }
}

/// A change document: TOML, or JSON when it starts with `{`.
pub fn parse_document(text: &str) -> Result<toml::Table, ConfigError> {
    let bad = |message: String| ConfigError::BadOverride {
        source_name: "the change document".into(),
        message,
    };
    if text.trim_start().starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        match toml::Value::try_from(json) {
            Ok(toml::Value::Table(table)) => Ok(table),
            Ok(_) => Err(bad("must be an object of keys".into())),
            Err(e) => Err(bad(format!(
                "cannot be a configuration (null values are not allowed): {e}"
            ))),
        }
    } else {
        toml::from_str(text).map_err(|e| bad(format!("not valid TOML: {e}")))
    }
}

/// `KEY VALUE` as a document: `models.x.queue_capacity` and `8` give `[models.x]
/// queue_capacity = 8`. The value is a TOML literal when it parses as one, else a string.
pub fn pair_document(key: &str, value: &str) -> Result<toml::Table, ConfigError> {
    let segments: Vec<String> = key.split('.').map(str::to_string).collect();
    if segments.iter().any(|s| s.trim().is_empty()) {
        return Err(ConfigError::BadOverride {
            source_name: format!("the key {key:?}"),
            message: "a key is a dotted path like models.NAME.queue_capacity".into(),
        });
    }
    let mut table = toml::Table::new();
    layers::insert_path(&mut table, &segments, layers::parse_scalar(value)).map_err(|message| {
        ConfigError::BadOverride {
            source_name: format!("the key {key:?}"),
            message,
        }
    })?;
    Ok(table)
}

impl LoadedConfig {
    /// The run-time layer as it stands (resolved keys).
    pub fn runtime_layer(&self) -> &toml::Table {
        &self.inputs.runtime
    }

    /// The configuration with `document` merged into the run-time layer, validated whole.
    pub fn with_change(&self, document: &toml::Table) -> Result<LoadedConfig, ConfigError> {
        let leaves = layers::leaves(document);
        let refused: Vec<FieldError> = leaves
            .iter()
            .filter_map(|(key, _)| {
                let resolved = self.resolve(key);
                crate::hot::fixed_reason(&resolved).map(|why| FieldError {
                    path: resolved,
                    message: format!("cannot be changed at run time: {why}"),
                    source: Some(Source::Runtime.to_string()),
                })
            })
            .collect();
        if !refused.is_empty() {
            return Err(ConfigError::Invalid(refused));
        }
        let pairs = leaves.into_iter().map(|(key, value)| {
            let segments = key.split('.').map(str::to_string).collect();
            (segments, value, Source::Runtime)
        });
        let change = Layer::override_values(&self.merged, pairs)?;
        let (runtime, _) = layers::merge(vec![
            Layer::uniform(self.inputs.runtime.clone(), Source::Runtime),
            change,
        ]);
        self.with_runtime_layer(runtime)
    }

    /// The configuration without the run-time values of `keys` (a table's key drops all its
    /// leaves): each falls back to the layer below.
    pub fn without(&self, keys: &[String]) -> Result<LoadedConfig, ConfigError> {
        let mut runtime = self.inputs.runtime.clone();
        for key in keys {
            let resolved = self.resolve(key);
            let segments: Vec<&str> = resolved.split('.').collect();
            if !remove_path(&mut runtime, &segments) {
                return Err(ConfigError::BadOverride {
                    source_name: format!("the key {key:?}"),
                    message: "has no run-time value to remove".into(),
                });
            }
        }
        self.with_runtime_layer(runtime)
    }

    /// The same inputs with `runtime` as the run-time layer (as read from the store at start).
    pub fn with_runtime_layer(&self, runtime: toml::Table) -> Result<LoadedConfig, ConfigError> {
        let mut inputs = self.inputs.clone();
        inputs.runtime = runtime;
        let file = self.inputs.file.as_deref().zip(self.file_text.as_deref());
        build(&inputs, file)
    }

    /// The same layers with the configuration file read again.
    pub fn reload_file(&self) -> Result<LoadedConfig, ConfigError> {
        crate::load(&self.inputs)
    }

    /// The file the configuration was read from, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.inputs.file.as_deref()
    }

    /// Leaves whose values differ between `self` and `other`, in key order.
    pub fn changed_keys(&self, other: &LoadedConfig) -> Vec<String> {
        let mine: BTreeMap<_, _> = layers::leaves(&self.merged).into_iter().collect();
        let theirs: BTreeMap<_, _> = layers::leaves(&other.merged).into_iter().collect();
        let mut keys: Vec<String> = mine
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(theirs.keys().filter(|k| !mine.contains_key(*k)).cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Restart-only keys whose value now differs from the one in `started` (what the node runs
    /// with).
    pub fn pending(&self, started: &LoadedConfig) -> Vec<Pending> {
        let running: BTreeMap<_, _> = layers::leaves(&started.merged).into_iter().collect();
        let next: BTreeMap<_, _> = layers::leaves(&self.merged).into_iter().collect();
        let shown_at = |values: &BTreeMap<String, toml::Value>, key: &str| {
            values.get(key).map(|v| shown(key, v))
        };
        self.changed_keys(started)
            .into_iter()
            .filter(|key| !crate::hot::is_hot(key))
            .map(|key| Pending {
                running: shown_at(&running, &key),
                next: shown_at(&next, &key),
                key,
            })
            .collect()
    }

    /// Every effective value with the layer it came from, secrets redacted.
    pub fn entries(&self) -> Vec<Entry> {
        layers::leaves(&self.merged)
            .into_iter()
            .map(|(key, value)| Entry {
                value: shown(&key, &value),
                source: self
                    .provenance
                    .get(&key)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "default".to_string()),
                hot: crate::hot::is_hot(&key),
                key,
            })
            .collect()
    }

    /// `key` with its segments matched loosely against the configuration's own keys.
    fn resolve(&self, key: &str) -> String {
        let pairs = [(
            key.split('.').map(str::to_string).collect(),
            toml::Value::Boolean(true),
            Source::Runtime,
        )];
        Layer::override_values(&self.merged, pairs)
            .ok()
            .and_then(|layer| layer.sources.into_keys().next())
            .unwrap_or_else(|| key.to_string())
    }
}

/// Removes the leaf or table at `path`, and tables left empty above it.
fn remove_path(table: &mut toml::Table, path: &[&str]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(*last).is_some(),
        [first, rest @ ..] => {
            let Some(toml::Value::Table(inner)) = table.get_mut(*first) else {
                return false;
            };
            let removed = remove_path(inner, rest);
            if inner.is_empty() {
                table.remove(*first);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests;
