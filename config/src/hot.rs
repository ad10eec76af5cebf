//! Which keys change while the node runs (hot) and which take effect at the next start: the one
//! place that says so. `config/examples/node.toml` documents each key the same way.

use crate::NodeConfig;

/// Keys whose change applies at once, as dotted paths where `*` stands for one segment (a
/// model's or a route's name, or any key of a section). Every other key is restart-only.
pub const HOT_KEYS: &[&str] = &[
    "log.filter",
    "http.max_body_bytes",
    "http.request_timeout_ms",
    "http.shutdown_grace_ms",
    "http.retry_after_s",
    "models.*.queue_capacity",
    "models.*.max_queue_delay_us",
    "supervision.*",
    "reliability.*",
    "routes.*.targets",
    "telemetry.sampling_ratio",
    // A plugin's table reloads that plugin (its own keys are any depth).
    "plugins.**",
];

/// Keys a run-time change may not touch at all, with the reason.
pub const FIXED_KEYS: &[(&str, &str)] = &[(
    "node.data_dir",
    "it holds the store the run-time changes are kept in; change it in the file or with --data-dir",
)];

/// True when a change of the leaf at `path` applies without a restart.
pub fn is_hot(path: &str) -> bool {
    HOT_KEYS.iter().any(|pattern| matches(pattern, path))
}

/// Why `path` cannot be changed at run time, when it cannot.
pub fn fixed_reason(path: &str) -> Option<&'static str> {
    FIXED_KEYS
        .iter()
        .find(|(key, _)| matches(key, path))
        .map(|(_, why)| *why)
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut path = path.split('.');
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some("**"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// What the node runs with after a change: `started` with the hot values of `next` (restart-only
/// values stay as they were until the next start). Mirrors [`HOT_KEYS`].
pub fn running(started: &NodeConfig, next: &NodeConfig) -> NodeConfig {
    let mut out = started.clone();
    out.log.filter = next.log.filter.clone();
    out.http.max_body_bytes = next.http.max_body_bytes;
    out.http.request_timeout = next.http.request_timeout;
    out.http.shutdown_grace = next.http.shutdown_grace;
    out.http.retry_after_s = next.http.retry_after_s;
    for (name, model) in &mut out.models {
        if let Some(new) = next.models.get(name) {
            model.queue_capacity = new.queue_capacity;
            model.max_queue_delay = new.max_queue_delay;
        }
    }
    out.supervision = next.supervision.clone();
    out.reliability = next.reliability.clone();
    out.routes = next.routes.clone();
    out.telemetry.sampling_ratio = next.telemetry.sampling_ratio;
    out.plugins = next.plugins.clone();
    out
}

/// Leaves whose values may hold a secret: shown and logged as `<redacted>`.
pub fn is_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(
        last,
        "join_token" | "api_key" | "password" | "secret" | "token"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_and_restart_only_keys() {
        assert!(is_hot("log.filter"));
        assert!(is_hot("models.all-minilm-l6-v2.queue_capacity"));
        assert!(is_hot("supervision.max_restarts"));
        assert!(is_hot("routes.chat.targets"));
        assert!(is_hot("telemetry.sampling_ratio"));
        assert!(is_hot("plugins.prompt-guard.deny"));
        assert!(is_hot("plugins.x.nested.key"));
        assert!(!is_hot("plugins"));
        assert!(!is_hot("node.plugin_dir"));
        assert!(!is_hot("telemetry.otlp_endpoint"));
        assert!(!is_hot("log.format"));
        assert!(!is_hot("http.addr"));
        assert!(!is_hot("models.x.params.n_ctx"));
        assert!(!is_hot("models.x.provider"));
        assert!(!is_hot("cluster.seeds"));
        assert!(fixed_reason("node.data_dir").is_some());
        assert!(fixed_reason("node.assets_dir").is_none());
        assert!(is_secret("cluster.join_token"));
        assert!(!is_secret("models.x.params.api_key_env"));
    }

    #[test]
    fn the_running_configuration_takes_hot_values_only() {
        let env = [("HOME".to_string(), "/h".to_string())].into();
        let started = crate::load(&crate::ConfigInputs {
            env,
            ..Default::default()
        })
        .unwrap();
        let hot = "log.filter = \"debug\"\nhttp.retry_after_s = 4\nhttp.max_body_bytes = 4096\n\
                   http.request_timeout_ms = 9000\nhttp.shutdown_grace_ms = 5\n\
                   supervision.max_restarts = 9\nreliability.breaker_failures = 2\n\
                   telemetry.sampling_ratio = 0.5\n\
                   models.all-minilm-l6-v2.queue_capacity = 3\n\
                   models.all-minilm-l6-v2.max_queue_delay_us = 7\n\
                   routes.r.targets = [\"all-minilm-l6-v2\"]\n\
                   http.addr = \"127.0.0.1:1\"\nlog.format = \"json\"\n\
                   models.all-minilm-l6-v2.max_batch_size = 2\n";
        let next = started
            .with_change(&crate::runtime::parse_document(hot).unwrap())
            .unwrap();
        let running = running(&started.config, &next.config);
        // Every hot change is in; every restart-only one is not.
        let mut expected = next.config.clone();
        expected.http.addr = started.config.http.addr;
        expected.log.format = started.config.log.format;
        expected
            .models
            .get_mut("all-minilm-l6-v2")
            .unwrap()
            .max_batch_size = 32;
        assert_eq!(running, expected);
        assert_eq!(next.pending(&started).len(), 3);
    }
}
