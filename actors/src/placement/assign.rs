//! The placement function: from the same view, every node computes the same assignment of
//! replicas to nodes, so no node coordinates.
//!
//! Each deployment ranks the nodes it may run on by weighted rendezvous (highest random
//! weight) hashing of (node, deployment): `weight / -ln(u)` with `u` the pair's hash in (0, 1)
//! and `weight` the node's capacity (memory, or GPU memory for a deployment that offloads to a
//! GPU). It takes the best-ranked nodes that fit: the node matches the label selector, can
//! run the provider, and has room for the model (its bytes times a factor) beside what this
//! assignment already put there. A node leaving moves only its own replicas; a node joining
//! takes about 1/N of them. Live load is not an input: load moves requests, not replicas.

use std::collections::{BTreeMap, BTreeSet};

use golek_protocol::deploy::Replicas;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Provider kinds it can run (`None`: it did not say; any).
    pub providers: Option<BTreeSet<String>>,
    /// Memory for models (bytes).
    pub memory_bytes: u64,
    /// GPU memory, all GPUs together (bytes; 0 without a GPU this build can use).
    pub gpu_bytes: u64,
}

/// What one deployment asks of placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub name: String,
    pub replicas: Replicas,
    pub labels: BTreeMap<String, String>,
    pub provider: String,
    /// Memory one replica needs (bytes; 0 for a remote provider).
    pub need_bytes: u64,
    /// It offloads layers to a GPU: GPU memory is what must fit.
    pub gpu: bool,
}

/// A stable 64-bit hash of `(node, deployment)`: FNV-1a, then a SplitMix64 finaliser (the
/// same on every node and build).
fn pair_hash(node: &str, deployment: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(deployment.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The node's rank for a deployment: higher is better.
fn score(node: &str, deployment: &str, weight: u64) -> f64 {
    // u in (0, 1): 53 bits of the hash, never 0.
    let u = ((pair_hash(node, deployment) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    // Capacity in MiB (at least 1): the weight, so a node twice as big gets about twice as many.
    let w = (weight >> 20).max(1) as f64;
    w / -u.ln()
}

fn eligible(c: &Candidate, d: &Demand) -> bool {
    d.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
        && c.providers.as_ref().is_none_or(|p| p.contains(&d.provider))
        && (!d.gpu || c.gpu_bytes > 0)
}

/// The nodes each deployment's replicas go to, best-ranked first. Deployments are placed in
/// name order; capacity is shared across them.
pub fn assign(candidates: &[Candidate], demands: &[Demand]) -> BTreeMap<String, Vec<String>> {
    let mut used: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut order: Vec<&Demand> = demands.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = BTreeMap::new();
    for d in order {
        let capacity = |c: &Candidate| if d.gpu { c.gpu_bytes } else { c.memory_bytes };
        let mut ranked: Vec<(f64, &Candidate)> = candidates
            .iter()
            .filter(|c| eligible(c, d))
            .map(|c| (score(&c.id, &d.name, capacity(c)), c))
            .collect();
        // Ties (never in practice) fall to the node id, so the order is total.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let want = match d.replicas {
            Replicas::Count(n) => n as usize,
            Replicas::All => ranked.len(),
        };
        let mut chosen = Vec::new();
        for (_, c) in ranked {
            if chosen.len() >= want {
                break;
            }
            let taken = used.entry(c.id.as_str()).or_default();
            let slot = if d.gpu { &mut taken.1 } else { &mut taken.0 };
            let Some(after) = slot.checked_add(d.need_bytes) else {
                continue;
            };
            if after > capacity(c) {
                continue;
            }
            *slot = after;
            chosen.push(c.id.clone());
        }
        out.insert(d.name.clone(), chosen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node(id: &str, gib: u64) -> Candidate {
        Candidate {
            id: id.into(),
            labels: BTreeMap::new(),
            providers: None,
            memory_bytes: gib * GIB,
            gpu_bytes: 0,
        }
    }

    fn demand(name: &str, replicas: u32) -> Demand {
        Demand {
            name: name.into(),
            replicas: Replicas::Count(replicas),
            labels: BTreeMap::new(),
            provider: "gguf".into(),
            need_bytes: 10 << 20,
            gpu: false,
        }
    }

    fn nodes(n: usize) -> Vec<Candidate> {
        (0..n).map(|i| node(&format!("node-{i}"), 16)).collect()
    }

    fn demands(n: usize, replicas: u32) -> Vec<Demand> {
        (0..n)
            .map(|i| demand(&format!("model-{i}"), replicas))
            .collect()
    }

    #[test]
    fn the_same_view_gives_the_same_assignment_in_any_order() {
        let mut ns = nodes(5);
        let ds = demands(20, 2);
        let a = assign(&ns, &ds);
        ns.reverse();
        let mut ds2 = ds.clone();
        ds2.reverse();
        assert_eq!(a, assign(&ns, &ds2));
    }

    #[test]
    fn equal_nodes_share_replicas_evenly_and_never_twice() {
        let ns = nodes(4);
        let a = assign(&ns, &demands(400, 2));
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for chosen in a.values() {
            assert_eq!(chosen.len(), 2);
            let distinct: BTreeSet<&String> = chosen.iter().collect();
            assert_eq!(distinct.len(), 2, "two replicas on one node: {chosen:?}");
            for n in chosen {
                *per_node.entry(n).or_default() += 1;
            }
        }
        // 800 replicas on 4 nodes: 200 each, within 20%.
        for (n, count) in per_node {
            assert!((160..=240).contains(&count), "{n}: {count}");
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_replicas_and_one_joining_takes_about_a_share() {
        let ds = demands(500, 1);
        let five = nodes(5);
        let before = assign(&five, &ds);
        let four: Vec<Candidate> = five.iter().filter(|c| c.id != "node-2").cloned().collect();
        let after = assign(&four, &ds);
        for (name, chosen) in &before {
            if chosen[0] != "node-2" {
                assert_eq!(after[name], *chosen, "{name} moved though its node stayed");
            }
        }
        let six = nodes(6);
        let joined = assign(&six, &ds);
        let moved = ds
            .iter()
            .filter(|d| joined[&d.name] != before[&d.name])
            .count();
        // About 1/6 of 500 (83) move to the new node, and only to it.
        assert!((50..=120).contains(&moved), "{moved} moved");
        for d in &ds {
            if joined[&d.name] != before[&d.name] {
                assert_eq!(joined[&d.name], vec!["node-5".to_string()]);
            }
        }
    }

    #[test]
    fn labels_providers_gpus_and_capacity_limit_where_replicas_go() {
        let mut ns = nodes(4);
        ns[0].labels.insert("zone".into(), "a".into());
        ns[1].labels.insert("zone".into(), "a".into());
        ns[2].providers = Some(["onnx".to_string()].into());
        ns[3].gpu_bytes = 24 * GIB;
        let mut zoned = demand("zoned", 3);
        zoned.labels.insert("zone".into(), "a".into());
        let a = assign(&ns, &[zoned]);
        let got: BTreeSet<&str> = a["zoned"].iter().map(String::as_str).collect();
        assert_eq!(got, ["node-0", "node-1"].into(), "only two nodes match");
        let all = Demand {
            replicas: Replicas::All,
            ..demand("everywhere", 1)
        };
        let a = assign(&ns, &[all]);
        assert_eq!(a["everywhere"].len(), 3, "node-2 cannot run gguf: {a:?}");
        assert!(!a["everywhere"].contains(&"node-2".to_string()));
        let gpu = Demand {
            gpu: true,
            ..demand("gpu", 2)
        };
        assert_eq!(assign(&ns, &[gpu])["gpu"], vec!["node-3".to_string()]);
        // 16 GiB nodes: three 6 GiB models fit two per node.
        let big: Vec<Demand> = (0..3)
            .map(|i| Demand {
                need_bytes: 6 * GIB,
                ..demand(&format!("big-{i}"), 1)
            })
            .collect();
        let one = [node("small", 16)];
        let a = assign(&one, &big);
        let placed = a.values().filter(|c| !c.is_empty()).count();
        assert_eq!(placed, 2, "{a:?}");
        let huge = Demand {
            need_bytes: 64 * GIB,
            ..demand("huge", 1)
        };
        assert!(assign(&nodes(3), &[huge])["huge"].is_empty());
    }

    #[test]
    fn a_bigger_node_takes_more() {
        let ns = vec![node("big", 64), node("small", 16)];
        let a = assign(&ns, &demands(500, 1));
        let on_big = a.values().filter(|c| c[0] == "big").count();
        // Weight 4:1: about 400 of 500.
        assert!((340..=460).contains(&on_big), "{on_big}");
    }
}
