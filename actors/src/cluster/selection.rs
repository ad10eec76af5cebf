//! The order in which peers are tried for a model: least loaded first, by queued plus
//! in-flight work relative to capacity. Load figures come from gossip, so nothing here trusts
//! them: the arithmetic saturates and never panics or wraps, whatever a peer claims.

use super::peer::PeerAddr;
use super::Member;

/// A peer's load in thousandths of its capacity (saturating; zero capacity counts as one).
pub fn load_permille(queued: u64, in_flight: u64, capacity: u64) -> u64 {
    queued.saturating_add(in_flight).saturating_mul(1000) / capacity.max(1)
}

/// `members` least loaded first; ties by node id, so every node orders them alike.
pub fn order<'a>(members: impl Iterator<Item = &'a Member>) -> Vec<PeerAddr> {
    let mut out: Vec<(u64, PeerAddr)> = members
        .map(|m| {
            let ratio = load_permille(m.load.queued, m.load.in_flight, m.load.capacity);
            let addr = PeerAddr {
                node_id: m.node_id.clone(),
                quic_addr: m.quic_addr.clone().unwrap_or_default(),
            };
            (ratio, addr)
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.node_id).cmp(&(b.0, &b.1.node_id)));
    out.into_iter().map(|(_, addr)| addr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::cluster::LoadAdvert;

    fn member(id: &str, queued: u64, in_flight: u64, capacity: u64) -> Member {
        Member {
            node_id: id.into(),
            alive: true,
            is_self: false,
            gossip_addr: String::new(),
            http_addr: None,
            quic_addr: Some(format!("{id}:1")),
            version: None,
            models: Vec::new(),
            load: LoadAdvert {
                queued,
                in_flight,
                capacity,
            },
            resources: Default::default(),
        }
    }

    #[test]
    fn huge_gossiped_load_saturates_and_sorts_last() {
        assert_eq!(load_permille(u64::MAX, u64::MAX, 0), u64::MAX);
        assert_eq!(load_permille(1, 1, 4), 500);
        let members = [
            member("b", u64::MAX, u64::MAX, 1),
            member("a", 3, 0, 4),
            member("c", 0, 0, 0),
            member("d", u64::MAX / 999, 0, u64::MAX),
        ];
        let order: Vec<String> = order(members.iter())
            .into_iter()
            .map(|p| p.node_id)
            .collect();
        assert_eq!(order, ["c", "d", "a", "b"]);
    }
}
