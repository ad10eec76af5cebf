//! Configuration layers and their merge: defaults < file < environment < command line.
//!
//! Each layer is a TOML table. Merging is deep (tables merge key by key, any other value
//! replaces), and every leaf remembers the layer it came from, for `golek config show` and for
//! resolving relative paths against the right base.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::ConfigError;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as the user wrote it.
    Cli(String),
    /// A change made while the node ran (`golek config set`, `PUT /admin/config`), kept in the
    /// node's store.
    Runtime,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Cli(flag) => write!(f, "flag {flag}"),
            Source::Runtime => f.write_str("run-time change"),
        }
    }
}

/// The source of each leaf value, keyed by its dotted path (`http.addr`).
pub type Provenance = BTreeMap<String, Source>;

/// One layer: a table of values and the source of all of them.
#[derive(Debug, Clone)]
pub struct Layer {
    pub table: toml::Table,
    /// The source of each leaf; for file and default layers every leaf shares one source.
    pub sources: Provenance,
}

impl Layer {
    /// A layer whose every leaf comes from one source (the defaults, a file).
    pub fn uniform(table: toml::Table, source: Source) -> Self {
        let sources = leaves(&table)
            .into_iter()
            .map(|(path, _)| (path, source.clone()))
            .collect();
        Layer { table, sources }
    }

    /// A layer of single overrides (`path = value` pairs), as from the environment or flags.
    /// Path segments match existing keys of `base` ignoring case and treating `-` and `_` alike,
    /// so `GOLEK_MODELS__ALL_MINILM_L6_V2__MAX_BATCH_SIZE` reaches `models.all-minilm-l6-v2`.
    pub fn overrides(
        base: &toml::Table,
        pairs: impl IntoIterator<Item = (Vec<String>, String, Source)>,
    ) -> Result<Self, ConfigError> {
        Self::override_values(
            base,
            pairs
                .into_iter()
                .map(|(segments, raw, source)| (segments, parse_scalar(&raw), source)),
        )
    }

    /// [`Layer::overrides`] with values already typed (a run-time change's document).
    pub fn override_values(
        base: &toml::Table,
        pairs: impl IntoIterator<Item = (Vec<String>, toml::Value, Source)>,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        let mut sources = Provenance::new();
        for (segments, value, source) in pairs {
            if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
                return Err(ConfigError::BadOverride {
                    source_name: source.to_string(),
                    message: "the key path is empty or has an empty segment".into(),
                });
            }
            let mut resolved = Vec::with_capacity(segments.len());
            let mut base_cursor = Some(base);
            for segment in &segments {
                let key = base_cursor
                    .and_then(|t| t.keys().find(|k| same_key(k, segment)).cloned())
                    .unwrap_or_else(|| segment.to_ascii_lowercase());
                base_cursor = base_cursor
                    .and_then(|t| t.get(&key))
                    .and_then(|v| v.as_table());
                resolved.push(key);
            }
            insert_path(&mut table, &resolved, value).map_err(|message| {
                ConfigError::BadOverride {
                    source_name: source.to_string(),
                    message,
                }
            })?;
            sources.insert(resolved.join("."), source);
        }
        Ok(Layer { table, sources })
    }
}

fn same_key(existing: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    norm(existing) == norm(wanted)
}

/// A value given as a string on the command line or in the environment: a TOML literal when it
/// parses as one (`8`, `true`, `"x"`, `[1, 2]`), else the string itself.
pub(crate) fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

pub(crate) fn insert_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key path")?;
    let mut cursor = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = cursor
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry
            .as_table_mut()
            .ok_or_else(|| format!("{} is a value, not a table", path[..=i].join(".")))?;
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// Merges `upper` into `lower`, deep for tables; returns the merged table and provenance.
pub fn merge(layers: Vec<Layer>) -> (toml::Table, Provenance) {
    let mut merged = toml::Table::new();
    let mut provenance = Provenance::new();
    for layer in layers {
        merge_table(&mut merged, layer.table, "", &mut provenance);
        for (path, source) in layer.sources {
            provenance.insert(path, source);
        }
    }
    (merged, provenance)
}

fn merge_table(into: &mut toml::Table, from: toml::Table, prefix: &str, prov: &mut Provenance) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge_table(existing, incoming, &path, prov);
            }
            (_, value) => {
                // A replaced subtree forgets the sources of its old leaves.
                let stale = format!("{path}.");
                prov.retain(|p, _| !p.starts_with(&stale));
                into.insert(key, value);
            }
        }
    }
}

/// Flattens a table into `(dotted path, value)` leaves, in key order.
pub fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) if !inner.is_empty() => walk(inner, &path, out),
                other => out.push((path, other.clone())),
            }
        }
    }
    walk(table, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn upper_layers_win_and_tables_merge_deeply() {
        let defaults = Layer::uniform(table("[a]\nx = 1\ny = 2\n"), Source::Default);
        let file = Layer::uniform(table("[a]\ny = 3\n"), Source::File("f.toml".into()));
        let (merged, prov) = merge(vec![defaults, file]);
        assert_eq!(merged["a"]["x"].as_integer(), Some(1));
        assert_eq!(merged["a"]["y"].as_integer(), Some(3));
        assert_eq!(prov["a.x"], Source::Default);
        assert_eq!(prov["a.y"], Source::File("f.toml".into()));
    }

    #[test]
    fn overrides_match_existing_keys_loosely_and_parse_literals() {
        let base = table("[models.all-minilm-l6-v2]\nmax_batch_size = 4\n");
        let layer = Layer::overrides(
            &base,
            vec![(
                vec![
                    "MODELS".into(),
                    "ALL_MINILM_L6_V2".into(),
                    "MAX_BATCH_SIZE".into(),
                ],
                "8".into(),
                Source::Env("GOLEK_MODELS__ALL_MINILM_L6_V2__MAX_BATCH_SIZE".into()),
            )],
        )
        .unwrap();
        assert_eq!(
            layer.table["models"]["all-minilm-l6-v2"]["max_batch_size"].as_integer(),
            Some(8)
        );
        assert_eq!(
            parse_scalar("127.0.0.1:80"),
            toml::Value::String("127.0.0.1:80".into())
        );
        assert_eq!(parse_scalar("true"), toml::Value::Boolean(true));
    }
}
