//! The order in which peers are tried for a model: least loaded first, by queued plus
//! in-flight work relative to capacity, equals in a random order (so entry nodes that see the
//! same loads do not all pick the same peer: better than two random choices when loads are
//! known, as good when they tie). Load figures come from gossip, so nothing here trusts them:
//! the arithmetic saturates and never panics or wraps, whatever a peer claims.

use super::peer::PeerAddr;
use super::Member;

/// A peer's load in thousandths of its capacity (saturating; zero capacity counts as one).
pub fn load_permille(queued: u64, in_flight: u64, capacity: u64) -> u64 {
    queued.saturating_add(in_flight).saturating_mul(1000) / capacity.max(1)
}

/// `members` least loaded first; equals shuffled.
pub fn order<'a>(members: impl Iterator<Item = &'a Member>) -> Vec<PeerAddr> {
    order_with(members, &mut fastrand::Rng::new())
}

/// [`order`] with the random source given (tests pin it).
pub fn order_with<'a>(
    members: impl Iterator<Item = &'a Member>,
    rng: &mut fastrand::Rng,
) -> Vec<PeerAddr> {
    let mut out: Vec<(u64, u64, PeerAddr)> = members
        .map(|m| {
            let ratio = load_permille(m.load.queued, m.load.in_flight, m.load.capacity);
            let addr = PeerAddr {
                node_id: m.node_id.clone(),
                quic_addr: m.quic_addr.clone().unwrap_or_default(),
            };
            (ratio, rng.u64(..), addr)
        })
        .collect();
    out.sort_by_key(|(ratio, tie, _)| (*ratio, *tie));
    out.into_iter().map(|(_, _, addr)| addr).collect()
}

/// `ordered` with the peers whose breaker is open moved last, each part in its order: with
/// every breaker open the order stands (their breakers still decide each attempt).
pub fn open_last(ordered: Vec<PeerAddr>, is_open: impl Fn(&str) -> bool) -> Vec<PeerAddr> {
    let (closed, open): (Vec<_>, Vec<_>) = ordered.into_iter().partition(|p| !is_open(&p.node_id));
    closed.into_iter().chain(open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::cluster::LoadAdvert;

    fn member(id: &str, queued: u64, in_flight: u64, capacity: u64) -> Member {
        Member {
            labels: Default::default(),
            files: Vec::new(),
            fetching: Vec::new(),
            draining: false,
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

    fn ids(peers: Vec<PeerAddr>) -> Vec<String> {
        peers.into_iter().map(|p| p.node_id).collect()
    }

    #[test]
    fn open_breakers_go_last_and_all_open_keeps_the_order() {
        let members = [
            member("a", 0, 0, 1),
            member("b", 1, 0, 1),
            member("c", 2, 0, 1),
        ];
        let ordered = order(members.iter());
        assert_eq!(ids(ordered.clone()), ["a", "b", "c"]);
        assert_eq!(
            ids(open_last(ordered.clone(), |id| id == "a")),
            ["b", "c", "a"]
        );
        assert_eq!(ids(open_last(ordered.clone(), |_| true)), ["a", "b", "c"]);
        assert_eq!(ids(open_last(ordered, |_| false)), ["a", "b", "c"]);
        assert!(open_last(Vec::new(), |_| true).is_empty());
    }

    #[test]
    fn equals_take_turns_first_and_load_still_decides() {
        let members = [
            member("a", 1, 0, 4),
            member("b", 1, 0, 4),
            member("c", 0, 0, 4),
            member("d", 9, 0, 4),
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut second = std::collections::BTreeMap::new();
        for _ in 0..200 {
            let ids: Vec<String> = order_with(members.iter(), &mut rng)
                .into_iter()
                .map(|p| p.node_id)
                .collect();
            assert_eq!(ids[0], "c", "the least loaded first");
            assert_eq!(ids[3], "d", "the most loaded last");
            *second.entry(ids[1].clone()).or_insert(0) += 1;
        }
        // a and b tie: each comes second about half the time.
        assert!(second["a"] > 60 && second["b"] > 60, "{second:?}");
    }
}
