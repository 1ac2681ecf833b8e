//! Which master do these Sentinel views name: the one rule, used by the agent (fencing), the
//! coordinator (topology), the reloader (its fallback when the coordinator is away) and the node
//! start-up (which master a starting Redis follows).
//!
//! Sentinel elects a leader per failover epoch and propagates the new master configuration with
//! that epoch, so the highest config epoch wins. But a single Sentinel can be wrong (partitioned,
//! stale, buggy), so a configuration counts only when at least `quorum` distinct Sentinels hold it.
//!
//! The rule, in order:
//! 1. one vote per Sentinel: a Sentinel listed more than once counts with its newest view (highest
//!    epoch; at equal epochs the smallest master address), so repeating a view never adds weight;
//! 2. the candidates are the (config epoch, master) pairs held by at least `quorum` Sentinels
//!    (`quorum` 0 counts as 1); masters are compared by port and case-insensitive host, since
//!    Sentinel may print a name in another case than the configuration;
//! 3. the candidate with the highest config epoch wins;
//! 4. tie-break at the same epoch (two masters at one epoch, seen while a failover settles): more
//!    votes, then more *settled* votes (a Sentinel running a failover is not settled: the leader's
//!    epoch moves at `+promoted-slave` while it still names the old master), then the smallest
//!    address, so the answer never depends on the order of the views.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use redis_ha_common::HostPort;

/// One Sentinel's answer to `SENTINEL MASTER <group>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterView {
    /// The Sentinel that answered (its identity for the vote count).
    pub sentinel: HostPort,
    /// The master it names.
    pub master: HostPort,
    /// The config epoch of that configuration.
    pub config_epoch: u64,
    /// False while this Sentinel runs a failover of the group (`failover_in_progress` flag).
    pub settled: bool,
}

/// The master a quorum of Sentinels names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedMaster {
    pub master: HostPort,
    pub config_epoch: u64,
    /// How many distinct Sentinels name it at that epoch.
    pub votes: usize,
    /// How many of those are settled (no failover in progress).
    pub settled_votes: usize,
}

/// The key masters are compared by: port and lower-case host.
fn node_key(a: &HostPort) -> (String, u16) {
    (a.host.to_ascii_lowercase(), a.port)
}

/// True when `a` and `b` name the same node (port and case-insensitive host).
pub fn same_node(a: &HostPort, b: &HostPort) -> bool {
    a.port == b.port && a.host.eq_ignore_ascii_case(&b.host)
}

/// Orders two views of one Sentinel: the newer one is greater.
fn newer(a: &MasterView, b: &MasterView) -> Ordering {
    a.config_epoch
        .cmp(&b.config_epoch)
        .then_with(|| node_key(&b.master).cmp(&node_key(&a.master)))
        .then_with(|| b.settled.cmp(&a.settled))
        .then_with(|| b.master.cmp(&a.master))
}

/// The master that at least `quorum` distinct Sentinels name, at the highest such config epoch
/// (see the module documentation for the whole rule and its tie-break). `None` when no
/// configuration has `quorum` votes.
pub fn named_master(views: &[MasterView], quorum: usize) -> Option<NamedMaster> {
    let quorum = quorum.max(1);
    // 1. one vote per Sentinel.
    let mut latest: BTreeMap<(String, u16), &MasterView> = BTreeMap::new();
    for v in views {
        latest
            .entry(node_key(&v.sentinel))
            .and_modify(|cur| {
                if newer(v, cur) == Ordering::Greater {
                    *cur = v;
                }
            })
            .or_insert(v);
    }
    // 2. count them per (epoch, master); keep the smallest spelling of each master.
    let mut tally: BTreeMap<(u64, (String, u16)), NamedMaster> = BTreeMap::new();
    for v in latest.values() {
        let entry = tally
            .entry((v.config_epoch, node_key(&v.master)))
            .or_insert_with(|| NamedMaster {
                master: v.master.clone(),
                config_epoch: v.config_epoch,
                votes: 0,
                settled_votes: 0,
            });
        entry.votes += 1;
        entry.settled_votes += usize::from(v.settled);
        if v.master < entry.master {
            entry.master = v.master.clone();
        }
    }
    // 3. and 4.: highest epoch, more votes, more settled votes, smallest address.
    tally
        .into_iter()
        .filter(|(_, n)| n.votes >= quorum)
        .max_by(|((ea, ka), a), ((eb, kb), b)| {
            ea.cmp(eb)
                .then(a.votes.cmp(&b.votes))
                .then(a.settled_votes.cmp(&b.settled_votes))
                .then(kb.cmp(ka))
        })
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(sentinel: u16, master: &str, epoch: u64) -> MasterView {
        MasterView {
            sentinel: HostPort::new("s", sentinel),
            master: HostPort::new(master, 9001),
            config_epoch: epoch,
            settled: true,
        }
    }

    #[test]
    fn highest_epoch_with_quorum_wins() {
        let views = [view(1, "a", 1), view(2, "b", 2), view(3, "b", 2)];
        let n = named_master(&views, 2).expect("a quorum");
        assert_eq!(n.master.host, "b");
        assert_eq!((n.config_epoch, n.votes), (2, 2));
    }

    #[test]
    fn a_lone_newer_view_loses_to_the_quorum() {
        // One Sentinel at a (much) higher epoch is a minority: it does not win with quorum 2.
        let views = [view(1, "a", 1), view(2, "a", 1), view(3, "x", 1000)];
        let n = named_master(&views, 2).expect("a quorum");
        assert_eq!((n.master.host.as_str(), n.config_epoch), ("a", 1));
        // With quorum 1 (one's own Sentinel is enough), the highest epoch wins.
        let n = named_master(&views, 1).expect("any view");
        assert_eq!((n.master.host.as_str(), n.config_epoch), ("x", 1000));
    }

    #[test]
    fn no_quorum_no_master() {
        let views = [view(1, "a", 1), view(2, "b", 1), view(3, "c", 2)];
        assert_eq!(named_master(&views, 2), None);
        assert_eq!(named_master(&[], 1), None);
        // One master at two epochs is two configurations: they do not add up.
        let views = [view(1, "a", 1), view(2, "a", 2)];
        assert_eq!(named_master(&views, 2), None);
    }

    #[test]
    fn a_repeated_sentinel_votes_once() {
        let views = [
            view(1, "x", 5),
            view(1, "x", 5),
            view(2, "a", 1),
            view(3, "a", 1),
        ];
        let n = named_master(&views, 2).expect("a quorum");
        assert_eq!(n.master.host, "a");
        // Its newest view is the one that counts.
        let views = [view(1, "a", 1), view(1, "b", 2), view(2, "b", 2)];
        let n = named_master(&views, 2).expect("a quorum");
        assert_eq!((n.master.host.as_str(), n.votes), ("b", 2));
    }

    #[test]
    fn host_case_does_not_split_the_vote() {
        let views = [view(1, "Redis-1", 3), view(2, "redis-1", 3)];
        let n = named_master(&views, 2).expect("same node");
        assert_eq!(n.votes, 2);
        assert!(same_node(&n.master, &HostPort::new("REDIS-1", 9001)));
    }

    #[test]
    fn tie_at_one_epoch_more_votes_then_settled_then_smallest() {
        let views = [view(1, "b", 4), view(2, "b", 4), view(3, "a", 4)];
        assert_eq!(
            named_master(&views, 1).map(|n| n.master.host),
            Some("b".into())
        );

        let mut leader = view(1, "a", 4);
        leader.settled = false;
        let views = [leader, view(2, "b", 4)];
        assert_eq!(
            named_master(&views, 1).map(|n| n.master.host),
            Some("b".into())
        );

        let views = [view(1, "b", 4), view(2, "a", 4)];
        assert_eq!(
            named_master(&views, 1).map(|n| n.master.host),
            Some("a".into())
        );
    }

    fn arb_view() -> impl Strategy<Value = MasterView> {
        (
            1u16..6,
            prop::sample::select(vec!["a", "b", "c", "A"]),
            0u64..4,
            any::<bool>(),
        )
            .prop_map(|(s, m, e, settled)| MasterView {
                settled,
                ..view(s, m, e)
            })
    }

    proptest! {
        #[test]
        fn order_of_the_views_does_not_matter(
            views in prop::collection::vec(arb_view(), 0..12),
            quorum in 0usize..4,
            seed in any::<u64>(),
        ) {
            let mut shuffled = views.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            let mut x = seed | 1;
            for i in (1..n).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(named_master(&views, quorum), named_master(&shuffled, quorum));
        }

        #[test]
        fn a_minority_never_wins(
            views in prop::collection::vec(arb_view(), 0..12),
            quorum in 1usize..4,
        ) {
            if let Some(n) = named_master(&views, quorum) {
                // Count the distinct Sentinels whose newest view names the winner.
                let mut sentinels: Vec<&HostPort> = views.iter().map(|v| &v.sentinel).collect();
                sentinels.sort();
                sentinels.dedup();
                let holders = sentinels.iter().filter(|s| {
                    views.iter().filter(|v| &v.sentinel == **s)
                        .max_by(|a, b| newer(a, b))
                        .is_some_and(|v| v.config_epoch == n.config_epoch && same_node(&v.master, &n.master))
                }).count();
                prop_assert!(holders >= quorum, "{holders} holders < quorum {quorum}");
                prop_assert_eq!(holders, n.votes);
                // Nothing with a quorum has a higher epoch.
                for v in &views {
                    if v.config_epoch > n.config_epoch {
                        let m = named_master(
                            &views.iter().filter(|w| w.config_epoch == v.config_epoch).cloned().collect::<Vec<_>>(),
                            quorum,
                        );
                        // Views at that epoch alone may reach quorum only if they are not
                        // any Sentinel's newest view; the winner's epoch is the highest that does.
                        if let Some(m) = m {
                            let newest_holders = sentinels.iter().filter(|s| {
                                views.iter().filter(|w| &w.sentinel == **s)
                                    .max_by(|a, b| newer(a, b))
                                    .is_some_and(|w| w.config_epoch == m.config_epoch && same_node(&w.master, &m.master))
                            }).count();
                            prop_assert!(newest_holders < quorum);
                        }
                    }
                }
            } else {
                // No master: no (epoch, master) is the newest view of `quorum` Sentinels.
                let mut sentinels: Vec<&HostPort> = views.iter().map(|v| &v.sentinel).collect();
                sentinels.sort();
                sentinels.dedup();
                let newest: Vec<&MasterView> = sentinels.iter().filter_map(|s| {
                    views.iter().filter(|v| &v.sentinel == *s).max_by(|a, b| newer(a, b))
                }).collect();
                for v in &newest {
                    let c = newest.iter().filter(|w| w.config_epoch == v.config_epoch && same_node(&w.master, &v.master)).count();
                    prop_assert!(c < quorum);
                }
            }
        }
    }
}
