//! `[plugins.NAME]` tables (one per plugin instance) and `node.plugin_dir`. The host's keys are
//! checked here; the plugin's own keys when it loads, against the schema it declares.

use std::time::Duration;

use super::Checker;
use crate::node_config::{PluginConfig, BUILTIN_PLUGINS};

/// The keys the node reads; every other key of the table is the plugin's.
const HOST_KEYS: [&str; 8] = [
    "kind",
    "enabled",
    "failure_policy",
    "order",
    "capabilities",
    "fuel",
    "memory_mib",
    "timeout_ms",
];

/// Plugin names: a `.wasm` file's stem, a URL segment.
pub(super) fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

pub(super) fn plugin_section(
    name: &str,
    table: toml::Table,
    c: &mut Checker<'_>,
) -> Option<PluginConfig> {
    let prefix = format!("plugins.{name}");
    if !valid_plugin_name(name) {
        c.fail(
            &prefix,
            format!(
                "plugin names use letters, digits, '-' and '_' (1 to 64 characters), got {name:?}"
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut fail = |c: &mut Checker<'_>, key: &str, message: String| {
        c.fail(&format!("{prefix}.{key}"), message);
        ok = false;
    };
    let kind = match table.get("kind") {
        None if BUILTIN_PLUGINS.contains(&name) => Some(name.to_string()),
        None => None,
        Some(toml::Value::String(k)) if BUILTIN_PLUGINS.contains(&k.as_str()) => Some(k.clone()),
        Some(other) => {
            fail(
                c,
                "kind",
                format!(
                    "must be a built-in plugin ({}), got {other}",
                    BUILTIN_PLUGINS.join(", ")
                ),
            );
            None
        }
    };
    let enabled = match table.get("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            fail(c, "enabled", format!("must be true or false, got {other}"));
            true
        }
    };
    let fail_closed = match table.get("failure_policy").map(|v| v.as_str()) {
        None | Some(Some("open")) => false,
        Some(Some("closed")) => true,
        Some(_) => {
            let got = table["failure_policy"].to_string();
            fail(
                c,
                "failure_policy",
                format!("must be \"open\" or \"closed\", got {got}"),
            );
            false
        }
    };
    let mut int =
        |c: &mut Checker<'_>, key: &str, default: i64, min: i64, max: i64| match table.get(key) {
            None => default,
            Some(toml::Value::Integer(v)) if (min..=max).contains(v) => *v,
            Some(other) => {
                fail(
                    c,
                    key,
                    format!("must be a whole number from {min} to {max}, got {other}"),
                );
                default
            }
        };
    let order = int(c, "order", 0, -1_000_000, 1_000_000);
    let fuel = int(c, "fuel", 100_000_000, 1_000, 100_000_000_000) as u64;
    let memory_mib = int(c, "memory_mib", 32, 1, 4096) as u64;
    let timeout_ms = int(c, "timeout_ms", 100, 1, 60_000) as u64;
    let capabilities = match table.get("capabilities") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => {
            let mut caps = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(cap @ ("log" | "clock")) => caps.push(cap.to_string()),
                    _ => fail(
                        c,
                        &format!("capabilities[{i}]"),
                        format!("must be \"log\" or \"clock\" (the only capabilities), got {item}"),
                    ),
                }
            }
            caps
        }
        Some(other) => {
            fail(
                c,
                "capabilities",
                format!("must be a list like [\"log\"], got {other}"),
            );
            Vec::new()
        }
    };
    let mut settings = serde_json::Map::new();
    for (key, value) in table {
        if HOST_KEYS.contains(&key.as_str()) {
            continue;
        }
        match serde_json::to_value(&value) {
            Ok(v) => {
                settings.insert(key, v);
            }
            Err(e) => fail(c, &key, format!("cannot be read: {e}")),
        }
    }
    ok.then_some(PluginConfig {
        kind,
        enabled,
        fail_closed,
        order,
        capabilities,
        fuel,
        memory_bytes: memory_mib << 20,
        timeout: Duration::from_millis(timeout_ms),
        settings,
    })
}

#[cfg(test)]
mod tests {
    use crate::{load, CliOverride, ConfigInputs};

    fn with(sets: &[(&str, &str)]) -> Result<crate::LoadedConfig, String> {
        load(&ConfigInputs {
            env: [("HOME".to_string(), "/home/test".to_string())].into(),
            cli: sets
                .iter()
                .map(|(k, v)| CliOverride::new(*k, *v, "--set"))
                .collect(),
            ..Default::default()
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn plugin_tables_split_host_keys_from_the_plugins_own() {
        let loaded = with(&[
            ("plugins.prompt-guard.deny", r#"["x"]"#),
            ("plugins.guard.word", "\"kumquat\""),
            ("plugins.guard.capabilities", r#"["log"]"#),
            ("plugins.guard.failure_policy", "\"closed\""),
            ("plugins.guard.memory_mib", "8"),
            ("plugins.pii.kind", "\"prompt-guard\""),
            ("plugins.pii.deny", r#"["\\d+"]"#),
        ])
        .unwrap();
        let p = &loaded.config.plugins;
        assert_eq!(p["prompt-guard"].kind.as_deref(), Some("prompt-guard"));
        assert_eq!(p["pii"].kind.as_deref(), Some("prompt-guard"));
        let guard = &p["guard"];
        assert_eq!(guard.kind, None);
        assert!(guard.fail_closed);
        assert_eq!(guard.capabilities, ["log"]);
        assert_eq!(guard.memory_bytes, 8 << 20);
        assert_eq!(guard.settings.keys().collect::<Vec<_>>(), ["word"]);
        assert!(loaded.config.node.plugin_dir.ends_with("plugins"));
    }

    #[test]
    fn bad_host_keys_are_named() {
        let err = with(&[
            ("plugins.guard.capabilities", r#"["net"]"#),
            ("plugins.guard.failure_policy", "\"sometimes\""),
            ("plugins.guard.fuel", "0"),
            ("plugins.x.kind", "\"no-such-kind\""),
            ("plugins.bad/name.enabled", "true"),
        ])
        .unwrap_err();
        for part in [
            "plugins.guard.capabilities[0]: must be \"log\" or \"clock\"",
            "plugins.guard.failure_policy: must be \"open\" or \"closed\"",
            "plugins.guard.fuel: must be a whole number",
            "plugins.x.kind: must be a built-in plugin",
            "plugins.bad/name: plugin names use",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }
}
