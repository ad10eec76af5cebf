//! `[placement]` (where run-time deployments' replicas go, and when they move) and the node's
//! `[node] labels` (what deployments' label selectors match).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Checker;
use crate::node_config::PlacementConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    move_after_s: i64,
    return_after_s: i64,
    memory_factor: f64,
    tombstone_ttl_s: i64,
    drain_timeout_s: i64,
}

pub(super) fn placement_section(r: RawPlacement, c: &mut Checker<'_>) -> Option<PlacementConfig> {
    let secs = |c: &mut Checker<'_>, key: &str, v: i64, min: i64, max: i64| {
        c.range(&format!("placement.{key}"), v, min, max)
            .map(|s| std::time::Duration::from_secs(s as u64))
    };
    let move_after = secs(c, "move_after_s", r.move_after_s, 1, 86_400);
    let return_after = secs(c, "return_after_s", r.return_after_s, 0, 86_400);
    let tombstone_ttl = secs(c, "tombstone_ttl_s", r.tombstone_ttl_s, 60, 365 * 86_400);
    let drain_timeout = secs(c, "drain_timeout_s", r.drain_timeout_s, 0, 3_600);
    let factor = r.memory_factor;
    if !(factor.is_finite() && (0.0..=100.0).contains(&factor)) {
        c.fail(
            "placement.memory_factor",
            format!("must be a number from 0 to 100, got {factor}"),
        );
    }
    Some(PlacementConfig {
        move_after: move_after?,
        return_after: return_after?,
        memory_factor: factor,
        tombstone_ttl: tombstone_ttl?,
        drain_timeout: drain_timeout?,
    })
}

/// Label names and values: 1 to 63 (names) or 0 to 63 (values) letters, digits, `-`, `_`, `.`.
pub(super) fn labels(
    raw: BTreeMap<String, String>,
    c: &mut Checker<'_>,
) -> BTreeMap<String, String> {
    let ok = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        if k.is_empty() || !ok(&k) || !ok(&v) {
            c.fail(
                &format!("node.labels.{k}"),
                format!(
                    "label names (1 to 63) and values (up to 63) are letters, digits, '-', '_' or '.', got {k:?} = {v:?}"
                ),
            );
            continue;
        }
        out.insert(k, v);
    }
    out
}
