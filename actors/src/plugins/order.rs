//! The start order of plugins: each after the plugins it depends on, the rest by their `order`
//! key, then by name. A missing dependency, a version that does not meet the requirement and a
//! cycle refuse the plugins concerned (with the names); so do the plugins that need a refused one.

use std::collections::{BTreeMap, BTreeSet};

use super::Manifest;

/// The plugins to start, in order, and the refused ones with the reason.
#[derive(Debug, Default, PartialEq)]
pub struct Ordered {
    pub order: Vec<String>,
    pub refused: BTreeMap<String, String>,
}

/// Orders `plugins` (name -> manifest and order key).
pub fn order(plugins: &BTreeMap<String, (Manifest, i64)>) -> Ordered {
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    // Requirements first: every dependency must be there in a matching version.
    for (name, (manifest, _)) in plugins {
        for (dep, req) in &manifest.depends {
            let Some((found, _)) = plugins.get(dep) else {
                refused.insert(
                    name.clone(),
                    format!("it depends on plugin {dep:?} ({req}), which is not loaded"),
                );
                break;
            };
            let fits = semver::VersionReq::parse(req)
                .ok()
                .zip(semver::Version::parse(&found.version).ok())
                .is_some_and(|(r, v)| r.matches(&v));
            if !fits {
                refused.insert(
                    name.clone(),
                    format!(
                        "it depends on plugin {dep:?} {req}, and {dep:?} is version {}",
                        found.version
                    ),
                );
                break;
            }
        }
    }
    // Kahn's algorithm; what is left at the end is in a cycle (or needs something that is).
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = plugins
        .iter()
        .filter(|(n, _)| !refused.contains_key(*n))
        .map(|(n, (m, _))| (n.as_str(), m.depends.keys().map(String::as_str).collect()))
        .collect();
    let key = |n: &str| (plugins[n].1, n.to_string());
    let mut out = Vec::new();
    loop {
        let ready: Option<&str> = waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(n, _)| *n)
            .min_by_key(|n| key(n));
        let Some(next) = ready else { break };
        waiting.remove(next);
        for deps in waiting.values_mut() {
            deps.remove(next);
        }
        out.push(next.to_string());
    }
    // A dependency refused above keeps its dependents waiting: they are refused for it.
    let reasons: Vec<(String, String)> = waiting
        .iter()
        .map(|(name, deps)| {
            let reason = match deps.iter().find(|d| refused.contains_key(**d)) {
                Some(d) => format!("it depends on plugin {d:?}, which was refused"),
                None => format!("a dependency cycle: {}", cycle_from(name, &waiting)),
            };
            (name.to_string(), reason)
        })
        .collect();
    refused.extend(reasons);
    Ordered {
        order: out,
        refused,
    }
}

/// `a -> b -> a`: the cycle reached by following dependencies from `start`.
fn cycle_from(start: &str, waiting: &BTreeMap<&str, BTreeSet<&str>>) -> String {
    let mut path = vec![start];
    let mut at = start;
    for _ in 0..=waiting.len() {
        let Some(next) = waiting.get(at).and_then(|d| d.iter().next()) else {
            break;
        };
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<&str> = path[i..].to_vec();
            cycle.push(next);
            return cycle.join(" -> ");
        }
        path.push(next);
        at = next;
    }
    path.join(" -> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str, deps: &[(&str, &str)]) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            api: super::super::PLUGIN_API_VERSION,
            hooks: vec![],
            depends: deps
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            config_schema: None,
        }
    }

    fn set(list: Vec<(Manifest, i64)>) -> BTreeMap<String, (Manifest, i64)> {
        list.into_iter()
            .map(|(m, o)| (m.name.clone(), (m, o)))
            .collect()
    }

    #[test]
    fn dependencies_start_first_then_order_then_name() {
        let got = order(&set(vec![
            (m("auth", "1.0.0", &[("base", "^1")]), 0),
            (m("base", "1.2.0", &[]), 5),
            (m("zeta", "0.1.0", &[]), -1),
            (m("alpha", "0.1.0", &[]), 0),
        ]));
        assert_eq!(got.order, ["zeta", "alpha", "base", "auth"]);
        assert!(got.refused.is_empty());
    }

    #[test]
    fn missing_wrong_version_and_cycles_are_refused_by_name() {
        let got = order(&set(vec![
            (m("a", "1.0.0", &[("b", "^1")]), 0),
            (m("b", "1.0.0", &[("a", "^1")]), 0),
            (m("c", "1.0.0", &[("ghost", "^1")]), 0),
            (m("d", "1.0.0", &[("e", ">=2")]), 0),
            (m("e", "1.5.0", &[]), 0),
            (m("f", "1.0.0", &[("c", "*")]), 0),
        ]));
        assert_eq!(got.order, ["e"]);
        assert!(
            got.refused["a"].contains("a -> b -> a"),
            "{:?}",
            got.refused
        );
        assert!(got.refused["b"].contains("cycle"));
        assert!(got.refused["c"].contains("\"ghost\""));
        assert!(got.refused["d"].contains("\"e\" is version 1.5.0"));
        assert!(got.refused["f"].contains("\"c\", which was refused"));
    }
}
