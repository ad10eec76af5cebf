//! `[log]` (the log filter and format) and `[telemetry]` (trace export).

use serde::Deserialize;

use super::Checker;
use crate::node_config::{LogConfig, LogFormat, TelemetryConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    filter: String,
    format: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp_endpoint: String,
    sampling_ratio: f64,
    queue_spans: i64,
    batch_spans: i64,
    export_interval_ms: i64,
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a filter the way `RUST_LOG` is read: comma-separated directives, each a level, a
/// target, or `target=level` (a target may carry a `[span{field}]` part). Returns what is wrong.
pub fn filter_problem(filter: &str) -> Option<String> {
    if filter.trim().is_empty() {
        return Some("must name a level (info) or target=level directives, got \"\"".into());
    }
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let (target, level) = match directive.rsplit_once('=') {
            Some((t, l)) if !t.contains(']') || t.ends_with(']') => (t, Some(l)),
            _ => (directive, None),
        };
        if let Some(level) = level {
            if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                return Some(format!(
                    "{directive:?}: the level must be one of {}, got {level:?}",
                    LEVELS.join(", ")
                ));
            }
        }
        let name = target.split('[').next().unwrap_or_default();
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
        if !plain || (name.is_empty() && level.is_some() && !target.starts_with('[')) {
            return Some(format!(
                "{directive:?}: a target is a module path like golek_actors::cluster"
            ));
        }
    }
    None
}

pub(super) fn log_section(raw: RawLog, c: &mut Checker<'_>) -> Option<LogConfig> {
    let filter_ok = match filter_problem(&raw.filter) {
        Some(problem) => {
            c.fail("log.filter", problem);
            false
        }
        None => true,
    };
    let format = match raw.format.as_str() {
        "auto" => Some(LogFormat::Auto),
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            c.fail(
                "log.format",
                format!("must be auto, text or json, got {other:?}"),
            );
            None
        }
    };
    filter_ok.then_some(())?;
    Some(LogConfig {
        filter: raw.filter,
        format: format?,
    })
}

pub(super) fn telemetry_section(raw: RawTelemetry, c: &mut Checker<'_>) -> Option<TelemetryConfig> {
    let endpoint = match raw.otlp_endpoint.trim() {
        "" => None,
        url => Some(c.base_url(
            "telemetry.otlp_endpoint",
            url,
            "http://127.0.0.1:4318/v1/traces",
        )),
    };
    let ratio = raw.sampling_ratio;
    let ratio_ok = ratio.is_finite() && (0.0..=1.0).contains(&ratio);
    if !ratio_ok {
        c.fail(
            "telemetry.sampling_ratio",
            format!("must be a fraction between 0 and 1, got {ratio}"),
        );
    }
    let queue = c.range("telemetry.queue_spans", raw.queue_spans, 1, 1_000_000);
    let batch = c.range("telemetry.batch_spans", raw.batch_spans, 1, 100_000);
    if let (Some(q), Some(b)) = (queue, batch) {
        if b > q {
            c.fail(
                "telemetry.batch_spans",
                format!("must be at most telemetry.queue_spans ({q}), got {b}"),
            );
        }
    }
    let interval = c.millis(
        "telemetry.export_interval_ms",
        raw.export_interval_ms,
        10,
        600_000,
    );
    ratio_ok.then_some(())?;
    Some(TelemetryConfig {
        otlp_endpoint: endpoint,
        sampling_ratio: ratio,
        queue_spans: queue? as usize,
        batch_spans: batch? as usize,
        export_interval: interval?,
    })
}

#[cfg(test)]
mod tests {
    use super::filter_problem;

    #[test]
    fn filters_as_rust_log_reads_them() {
        for good in [
            "info",
            "debug",
            "info,golek_actors::cluster=debug",
            "warn,golek_node=trace",
            "golek_actors",
            "[request]=debug",
            "golek_node[request{model}]=info",
        ] {
            assert_eq!(filter_problem(good), None, "{good}");
        }
        for bad in ["", " ", "golek=shout", "gol ek=info", "a,b=verbose"] {
            assert!(filter_problem(bad).is_some(), "{bad}");
        }
    }
}
