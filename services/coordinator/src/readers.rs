//! Which replicas serve the read endpoint (HAProxy's read port): the one rule, [`verdict`].
//!
//! Pure: the topology derivation gathers one [`ReadCandidate`] per node and publishes the nodes
//! whose verdict is [`ReadNote::Serves`] in `Topology.readers` (and `NodeView.serves_reads`);
//! the reloader only carries that list out, falling back to the master when it is empty.
//!
//! A replica serves reads when every one of these holds:
//! - it is a configured node, reported by its own agent, fresh and answering, `role:replica`;
//! - the published master is known and confirmed (its own fresh report gives the offset the
//!   lag is measured against) and the replica replicates from it, link up, not syncing;
//! - the master lists it as an `online` replica (the master's own view of the link);
//! - its lag is within the limits: bytes (master offset - replica offset, from the two agents'
//!   latest reports) and seconds since its last acknowledgement (`lag=` of the master's `INFO
//!   replication`; replicas acknowledge every second).
//!
//! Hysteresis, so that a replica hovering at a limit does not flap in and out of HAProxy (each
//! flap would be a topology version, a `maint` and cut sessions): a replica that serves keeps
//! serving up to the limits; one that does not must come back within half of them.

/// The lag limits of the read endpoint (coordinator configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Bytes behind the master's offset at most.
    pub max_lag_bytes: u64,
    /// Seconds since the replica's last acknowledgement, as the master reports it, at most.
    pub max_lag_seconds: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_lag_bytes: 1024 * 1024,
            max_lag_seconds: 5,
        }
    }
}

impl ReadLimits {
    /// The limits a replica must be within: the full ones to keep serving, half of them (rounded
    /// up) to start.
    fn for_state(self, serving: bool) -> (u64, u64) {
        if serving {
            (self.max_lag_bytes, self.max_lag_seconds)
        } else {
            (
                self.max_lag_bytes.div_ceil(2),
                self.max_lag_seconds.div_ceil(2),
            )
        }
    }
}

/// What the master's own report says of one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterSees {
    /// Its state is `online` (not `wait_bgsave`, `send_bulk`, ...).
    pub online: bool,
    /// Seconds since its last acknowledgement.
    pub ack_lag_seconds: u64,
}

/// The facts of the rule for one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCandidate {
    /// A configured node (or no list), its report from its own agent.
    pub configured: bool,
    /// Its agent's report is fresh and the node answers.
    pub up: bool,
    /// It says `role:replica`.
    pub replica: bool,
    /// The published master is confirmed and its fresh report gives its offset.
    pub master_known: bool,
    /// It replicates from the published master.
    pub of_master: bool,
    pub link_up: bool,
    pub syncing: bool,
    /// The master's view of it; `None`: the master does not list it.
    pub master_sees: Option<MasterSees>,
    /// Master offset - its offset.
    pub lag_bytes: u64,
    /// It serves reads in the topology published before this one.
    pub serving: bool,
}

/// Why a node does (not) serve reads; [`ReadNote::as_str`] is `NodeView.read_note`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadNote {
    Serves,
    NotConfigured,
    Down,
    NotReplica,
    NoMaster,
    OtherMaster,
    LinkDown,
    Syncing,
    NotSeenByMaster,
    LagBytes,
    LagSeconds,
}

impl ReadNote {
    /// A stable word (no number: a moving lag must not make a new topology version).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serves => "",
            Self::NotConfigured => "not-configured",
            Self::Down => "down",
            Self::NotReplica => "not-replica",
            Self::NoMaster => "no-master",
            Self::OtherMaster => "other-master",
            Self::LinkDown => "link-down",
            Self::Syncing => "syncing",
            Self::NotSeenByMaster => "not-seen-by-master",
            Self::LagBytes => "lag-bytes",
            Self::LagSeconds => "lag-seconds",
        }
    }
}

/// The rule (see the module documentation): the first condition a node fails, or
/// [`ReadNote::Serves`].
pub fn verdict(c: &ReadCandidate, limits: ReadLimits) -> ReadNote {
    let (max_bytes, max_seconds) = limits.for_state(c.serving);
    if !c.configured {
        ReadNote::NotConfigured
    } else if !c.up {
        ReadNote::Down
    } else if !c.replica {
        ReadNote::NotReplica
    } else if !c.master_known {
        ReadNote::NoMaster
    } else if !c.of_master {
        ReadNote::OtherMaster
    } else if !c.link_up {
        ReadNote::LinkDown
    } else if c.syncing {
        ReadNote::Syncing
    } else {
        match c.master_sees {
            None | Some(MasterSees { online: false, .. }) => ReadNote::NotSeenByMaster,
            Some(_) if c.lag_bytes > max_bytes => ReadNote::LagBytes,
            Some(s) if s.ack_lag_seconds > max_seconds => ReadNote::LagSeconds,
            Some(_) => ReadNote::Serves,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ReadLimits = ReadLimits {
        max_lag_bytes: 1000,
        max_lag_seconds: 4,
    };

    fn healthy() -> ReadCandidate {
        ReadCandidate {
            configured: true,
            up: true,
            replica: true,
            master_known: true,
            of_master: true,
            link_up: true,
            syncing: false,
            master_sees: Some(MasterSees {
                online: true,
                ack_lag_seconds: 0,
            }),
            lag_bytes: 0,
            serving: false,
        }
    }

    #[test]
    fn a_healthy_linked_replica_serves() {
        assert_eq!(verdict(&healthy(), LIMITS), ReadNote::Serves);
    }

    #[test]
    fn each_failed_condition_names_itself() {
        type Change = fn(&mut ReadCandidate);
        let cases: [(Change, ReadNote); 10] = [
            (|c| c.configured = false, ReadNote::NotConfigured),
            (|c| c.up = false, ReadNote::Down),
            (|c| c.replica = false, ReadNote::NotReplica),
            (|c| c.master_known = false, ReadNote::NoMaster),
            (|c| c.of_master = false, ReadNote::OtherMaster),
            (|c| c.link_up = false, ReadNote::LinkDown),
            (|c| c.syncing = true, ReadNote::Syncing),
            (|c| c.master_sees = None, ReadNote::NotSeenByMaster),
            (
                |c| {
                    c.master_sees = Some(MasterSees {
                        online: false,
                        ack_lag_seconds: 0,
                    })
                },
                ReadNote::NotSeenByMaster,
            ),
            (|c| c.lag_bytes = 1001, ReadNote::LagBytes),
        ];
        for (change, note) in cases {
            let mut c = healthy();
            c.serving = true;
            change(&mut c);
            assert_eq!(verdict(&c, LIMITS), note, "{c:?}");
        }
        let mut c = healthy();
        c.serving = true;
        c.master_sees = Some(MasterSees {
            online: true,
            ack_lag_seconds: 5,
        });
        assert_eq!(verdict(&c, LIMITS), ReadNote::LagSeconds);
    }

    #[test]
    fn limits_are_inclusive_and_entering_needs_half_of_them() {
        let mut c = healthy();
        c.lag_bytes = 1000;
        c.serving = true;
        assert_eq!(
            verdict(&c, LIMITS),
            ReadNote::Serves,
            "at the limit, serving"
        );
        c.serving = false;
        assert_eq!(verdict(&c, LIMITS), ReadNote::LagBytes, "at the limit, out");
        c.lag_bytes = 500;
        assert_eq!(verdict(&c, LIMITS), ReadNote::Serves, "half the limit");
        c.master_sees = Some(MasterSees {
            online: true,
            ack_lag_seconds: 3,
        });
        assert_eq!(verdict(&c, LIMITS), ReadNote::LagSeconds);
        c.serving = true;
        assert_eq!(verdict(&c, LIMITS), ReadNote::Serves);
        // A limit of 1 s still lets a replica in at 1 s (rounded up).
        let one = ReadLimits {
            max_lag_bytes: 0,
            max_lag_seconds: 1,
        };
        c.serving = false;
        c.lag_bytes = 0;
        c.master_sees = Some(MasterSees {
            online: true,
            ack_lag_seconds: 1,
        });
        assert_eq!(verdict(&c, one), ReadNote::Serves);
    }

    fn candidate() -> impl Strategy<Value = ReadCandidate> {
        (
            any::<[bool; 8]>(),
            proptest::option::of((any::<bool>(), 0u64..20)),
            0u64..5000,
        )
            .prop_map(|(b, sees, lag_bytes)| ReadCandidate {
                configured: b[0],
                up: b[1],
                replica: b[2],
                master_known: b[3],
                of_master: b[4],
                link_up: b[5],
                syncing: b[6],
                serving: b[7],
                master_sees: sees.map(|(online, ack_lag_seconds)| MasterSees {
                    online,
                    ack_lag_seconds,
                }),
                lag_bytes,
            })
    }

    fn limits() -> impl Strategy<Value = ReadLimits> {
        (0u64..5000, 0u64..20).prop_map(|(max_lag_bytes, max_lag_seconds)| ReadLimits {
            max_lag_bytes,
            max_lag_seconds,
        })
    }

    proptest! {
        /// Serving implies every condition and both limits.
        #[test]
        fn serves_only_when_everything_holds(c in candidate(), l in limits()) {
            if verdict(&c, l) == ReadNote::Serves {
                let sees = c.master_sees.unwrap();
                prop_assert!(c.configured && c.up && c.replica && c.master_known && c.of_master
                    && c.link_up && !c.syncing && sees.online);
                prop_assert!(c.lag_bytes <= l.max_lag_bytes);
                prop_assert!(sees.ack_lag_seconds <= l.max_lag_seconds);
            }
        }

        /// Less lag never takes a replica out, and a serving one is kept at least as long as
        /// it would be let in (the hysteresis only ever holds it).
        #[test]
        fn monotone_in_lag_and_in_serving(c in candidate(), l in limits(), less in 0u64..5000, less_s in 0u64..20) {
            if verdict(&c, l) == ReadNote::Serves {
                let mut better = c;
                better.lag_bytes = c.lag_bytes.saturating_sub(less);
                better.master_sees = c.master_sees.map(|s| MasterSees {
                    ack_lag_seconds: s.ack_lag_seconds.saturating_sub(less_s),
                    ..s
                });
                prop_assert_eq!(verdict(&better, l), ReadNote::Serves);
                let mut kept = c;
                kept.serving = true;
                prop_assert_eq!(verdict(&kept, l), ReadNote::Serves);
            }
        }
    }
}
