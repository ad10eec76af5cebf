//! `[reliability]` (breakers, retries, continuations) and `[routes.NAME]` (fallback chains).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{valid_model_name, Checker};
use crate::node_config::{ModelConfig, ReliabilityConfig, RouteConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReliability {
    max_continuations: i64,
    breaker_failures: i64,
    breaker_window_ms: i64,
    breaker_cooldown_ms: i64,
    retry_budget_ratio: f64,
    retry_budget_min_per_s: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    targets: Vec<String>,
}

/// Targets one route may list.
const MAX_ROUTE_TARGETS: usize = 16;

pub(super) fn reliability_section(
    r: RawReliability,
    c: &mut Checker<'_>,
) -> Option<ReliabilityConfig> {
    let max_continuations = c.range("reliability.max_continuations", r.max_continuations, 0, 16);
    let failures = c.range(
        "reliability.breaker_failures",
        r.breaker_failures,
        1,
        10_000,
    );
    let window = c.millis(
        "reliability.breaker_window_ms",
        r.breaker_window_ms,
        1,
        86_400_000,
    );
    let cooldown = c.millis(
        "reliability.breaker_cooldown_ms",
        r.breaker_cooldown_ms,
        1,
        86_400_000,
    );
    let ratio = r.retry_budget_ratio;
    if !(ratio.is_finite() && (0.0..=1.0).contains(&ratio)) {
        c.fail(
            "reliability.retry_budget_ratio",
            format!("must be a fraction between 0 and 1, got {ratio}"),
        );
    }
    let min_per_s = c.range(
        "reliability.retry_budget_min_per_s",
        r.retry_budget_min_per_s,
        0,
        100_000,
    );
    Some(ReliabilityConfig {
        max_continuations: max_continuations? as u32,
        breaker_failures: failures? as u32,
        breaker_window: window?,
        breaker_cooldown: cooldown?,
        retry_budget_ratio: ratio,
        retry_budget_min_per_s: min_per_s? as u32,
    })
}

/// Fallback chains: a served name mapped to deployed model names, tried in order. A route may
/// not shadow a model this config deploys, list itself, another route, or a target twice.
pub(super) fn routes_section(
    raw: BTreeMap<String, RawRoute>,
    models: &BTreeMap<String, ModelConfig>,
    c: &mut Checker<'_>,
) -> BTreeMap<String, RouteConfig> {
    let mut routes = BTreeMap::new();
    for (name, route) in &raw {
        let path = format!("routes.{name}");
        if !valid_model_name(name) {
            c.fail(
                &path,
                format!("route names follow model names: letters, digits, '-', '_', '.', ':' (1 to 128 characters), got {name:?}"),
            );
            continue;
        }
        if models.contains_key(name) {
            c.fail(
                &path,
                format!("{name:?} is also a model deployed here; a route needs a name of its own"),
            );
            continue;
        }
        let targets_path = format!("{path}.targets");
        if route.targets.is_empty() || route.targets.len() > MAX_ROUTE_TARGETS {
            c.fail(
                &targets_path,
                format!(
                    "must list 1 to {MAX_ROUTE_TARGETS} model names, got {}",
                    route.targets.len()
                ),
            );
            continue;
        }
        let mut ok = true;
        for (i, target) in route.targets.iter().enumerate() {
            let at = format!("{targets_path}[{i}]");
            let problem = if !valid_model_name(target) {
                Some(format!("not a model name: {target:?}"))
            } else if target == name {
                Some("a route cannot list itself".to_string())
            } else if raw.contains_key(target) {
                Some(format!("{target:?} is a route; targets are models"))
            } else if route.targets[..i].contains(target) {
                Some(format!("{target:?} is listed twice"))
            } else {
                None
            };
            if let Some(problem) = problem {
                c.fail(&at, problem);
                ok = false;
            }
        }
        if ok {
            routes.insert(
                name.clone(),
                RouteConfig {
                    targets: route.targets.clone(),
                },
            );
        }
    }
    routes
}
