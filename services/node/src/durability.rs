//! `min-replicas-max-lag` from Sentinel's down-after: the one rule for how long a master cut off
//! from its replicas keeps acknowledging writes (`redis-ha-node redis-config` writes it into the
//! stack's node config, `redis-ha-node min-replicas-max-lag` prints it for `deploy/up.sh --local`
//! and the test kit).
//!
//! **The guarantee:** a master cut off from every replica (and from the Sentinels) stops
//! acknowledging writes before another node can be promoted, so it never acknowledges a write
//! beside a new master (such a write is lost when the old master rejoins as a replica).
//!
//! **When a cut-off master stops** (Redis 7.0, `replication.c`). Each replica sends
//! `REPLCONF ACK` once a second from its `replicationCron`; the master stores the arrival as
//! `repl_ack_time`, its cached clock in whole seconds. `refreshGoodSlavesCount`, run once a
//! second from the master's `replicationCron`, counts a replica as good while
//! `unixtime - repl_ack_time <= max-lag`; with `min-replicas-to-write 1` a write is refused
//! (`NOREPLICAS`) while that count is 0. Let the last ack that got through arrive at `a`, before
//! the cut at `c`. Every refresh from `floor(a) + max_lag + 1` on sees a lag of at least
//! `max_lag + 1`, and one comes within the next second, so the master acknowledges no write
//! after `floor(a) + max_lag + 2 <= c + max_lag + 2` seconds: the bound is **max-lag + 2 s
//! after the cut** (reached when the last ack landed just after a second boundary, right
//! before the cut).
//!
//! **When a new master can be promoted at the earliest.** A Sentinel judges the master down
//! when its oldest unanswered PING is older than down-after (`sentinelCheckSubjectivelyDown`);
//! that PING was sent no earlier than one round trip before the cut (its answer would have
//! come through otherwise). The quorum's agreement, the leader election and the promoted
//! replica's `REPLICAOF NO ONE` all come after that, so no promotion happens before
//! down-after after the cut (less a loopback or LAN round trip, far below the failover's own
//! steps).
//!
//! **The rule:** the guarantee holds when `max_lag + 2 s <= down-after`. The longest such lag
//! is chosen (the least `NOREPLICAS` when an ack is late on a loaded machine):
//! `max_lag = floor(down-after / 1 s) - 2`, at least 1 (0 would switch the check off:
//! Redis skips it for max-lag 0). So it holds from a down-after of 3000 ms; below that the
//! lag is 1 s, the shortest Redis counts, and a cut-off master may still acknowledge writes
//! up to 3 s after the cut while a new master can be promoted after down-after. The cost in
//! every case: the writes a cut-off master acknowledges before it stops (at most
//! max-lag + 2 s of them) never reached a replica and are lost by a failover.

use std::fmt;

/// Redis counts replication lag in whole seconds; replicas ack and the master recounts its good
/// replicas once per this period.
pub const ACK_PERIOD_MS: u64 = 1000;

/// How many ack periods after the cut a master still acknowledges writes beyond max-lag: the
/// whole-second rounding of the last ack, and the wait for the next recount.
pub const SLACK_PERIODS: u64 = 2;

/// The largest down-after the rule serves: Sentinel reads `down-after-milliseconds` into a C
/// `int`, and Redis's `min-replicas-max-lag` is one too.
pub const MAX_DOWN_AFTER_MS: u64 = i32::MAX as u64;

/// The smallest down-after for which the guarantee holds (max-lag 1).
pub const GUARANTEED_FROM_MS: u64 = (1 + SLACK_PERIODS) * ACK_PERIOD_MS;

/// `min-replicas-max-lag` for one down-after, and what it guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxLag {
    /// Sentinel's `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `min-replicas-max-lag`, in seconds (at least 1).
    pub max_lag_s: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaxLagError {
    #[error("down-after must be at least 1 ms (Sentinel refuses 0)")]
    Zero,
    #[error(
        "down-after {0} ms is above {MAX_DOWN_AFTER_MS} ms, the largest Sentinel and Redis can \
         take (a C int)"
    )]
    TooLong(u64),
}

/// The rule (see the module documentation): the longest lag that still stops a cut-off master
/// in time, never below 1 s.
pub fn min_replicas_max_lag(down_after_ms: u64) -> Result<MaxLag, MaxLagError> {
    if down_after_ms == 0 {
        return Err(MaxLagError::Zero);
    }
    if down_after_ms > MAX_DOWN_AFTER_MS {
        return Err(MaxLagError::TooLong(down_after_ms));
    }
    let whole_periods = down_after_ms / ACK_PERIOD_MS;
    let lag = whole_periods.saturating_sub(SLACK_PERIODS).max(1);
    // down_after_ms <= i32::MAX, so lag < i32::MAX.
    let max_lag_s = u32::try_from(lag).unwrap_or(u32::MAX);
    Ok(MaxLag {
        down_after_ms,
        max_lag_s,
    })
}

impl MaxLag {
    /// The latest moment after the cut at which a cut-off master still acknowledges writes.
    pub fn stop_writes_bound_ms(&self) -> u64 {
        (u64::from(self.max_lag_s) + SLACK_PERIODS) * ACK_PERIOD_MS
    }

    /// True when a cut-off master stops acknowledging writes before a new master can be
    /// promoted (no later than down-after after the cut).
    pub fn guarantee_holds(&self) -> bool {
        self.stop_writes_bound_ms() <= self.down_after_ms
    }

    /// What a user must know when the guarantee does not hold; `None` when it does.
    pub fn warning(&self) -> Option<String> {
        (!self.guarantee_holds()).then(|| {
            format!(
                "down-after {} ms is below {GUARANTEED_FROM_MS} ms: with min-replicas-max-lag {} \
                 (Redis's shortest) a master cut off from its replicas may acknowledge writes for \
                 up to {} ms after the cut, while the Sentinels can promote another node after \
                 {} ms; writes acknowledged beside the new master are lost. Use a down-after of \
                 at least {GUARANTEED_FROM_MS} ms to rule that out.",
                self.down_after_ms,
                self.max_lag_s,
                self.stop_writes_bound_ms(),
                self.down_after_ms,
            )
        })
    }
}

impl fmt::Display for MaxLag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min-replicas-max-lag {} for down-after {} ms: a cut-off master stops acknowledging \
             writes within {} ms of the cut ({})",
            self.max_lag_s,
            self.down_after_ms,
            self.stop_writes_bound_ms(),
            if self.guarantee_holds() {
                "before a new master can be promoted"
            } else {
                "possibly after a new master was promoted"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lag(ms: u64) -> u32 {
        min_replicas_max_lag(ms).expect("served").max_lag_s
    }

    #[test]
    fn known_values() {
        // The shipped default (5000) keeps the lag the project always had.
        assert_eq!(lag(5000), 3);
        assert_eq!(lag(3000), 1);
        assert_eq!(lag(3999), 1);
        assert_eq!(lag(4000), 2);
        assert_eq!(lag(60_000), 58);
        for ms in [1, 100, 999, 1000, 2000, 2999] {
            assert_eq!(lag(ms), 1, "{ms}");
        }
    }

    #[test]
    fn the_guarantee_holds_from_3000_ms() {
        for ms in [100, 1000, 2999] {
            let m = min_replicas_max_lag(ms).expect("served");
            assert!(!m.guarantee_holds(), "{ms}");
            let w = m.warning().expect("a warning");
            assert!(w.contains(&format!("down-after {ms} ms")), "{w}");
            assert!(w.contains("3000 ms"), "{w}");
            assert!(w.contains("lost"), "{w}");
        }
        for ms in [3000, 5000, 86_400_000] {
            let m = min_replicas_max_lag(ms).expect("served");
            assert!(m.guarantee_holds(), "{ms}");
            assert_eq!(m.warning(), None);
        }
        assert_eq!(
            min_replicas_max_lag(1000)
                .expect("1000")
                .stop_writes_bound_ms(),
            3000
        );
    }

    #[test]
    fn values_it_cannot_serve_are_refused() {
        assert_eq!(min_replicas_max_lag(0), Err(MaxLagError::Zero));
        assert_eq!(
            min_replicas_max_lag(MAX_DOWN_AFTER_MS + 1),
            Err(MaxLagError::TooLong(MAX_DOWN_AFTER_MS + 1))
        );
        let top = min_replicas_max_lag(MAX_DOWN_AFTER_MS).expect("the largest is served");
        assert!(i32::try_from(top.max_lag_s).is_ok());
        assert!(MaxLagError::Zero.to_string().contains("at least 1 ms"));
    }

    proptest! {
        #[test]
        fn stops_before_a_promotion_whenever_it_says_so(ms in 1..=MAX_DOWN_AFTER_MS) {
            let m = min_replicas_max_lag(ms).expect("served");
            prop_assert!(m.max_lag_s >= 1, "0 would switch the check off");
            prop_assert_eq!(m.guarantee_holds(), ms >= GUARANTEED_FROM_MS);
            if m.guarantee_holds() {
                prop_assert!(m.stop_writes_bound_ms() <= ms);
                // The longest lag that holds: one more second would not.
                let longer = MaxLag { max_lag_s: m.max_lag_s + 1, ..m };
                prop_assert!(!longer.guarantee_holds());
            } else {
                prop_assert_eq!(m.max_lag_s, 1);
                prop_assert!(m.warning().is_some());
            }
        }

        #[test]
        fn a_longer_down_after_never_shortens_the_lag(a in 1..=MAX_DOWN_AFTER_MS, b in 1..=MAX_DOWN_AFTER_MS) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(lag(lo) <= lag(hi));
        }
    }
}
