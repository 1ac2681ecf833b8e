//! Whether a failover is in progress, as this agent learns it from its Sentinel.
//!
//! Set by the events that open a failover (`+odown`, `+new-epoch`, `+try-failover`, ...) or
//! the Sentinel master flag `failover_in_progress`; cleared by the events that close one
//! (`+failover-end`, `+switch-master`, `-failover-abort-*`, `-odown`) or, when no end event
//! arrives (missed while reconnecting, or this Sentinel is not the leader), after a timeout
//! counted from the last sign of the failover.

use std::time::{Duration, Instant};

use redis_ha_sentinel::{EventKind, FailoverEffect};

#[derive(Debug, Clone)]
pub struct FailoverTracker {
    timeout: Duration,
    /// The last moment a failover was seen going on; `None` at rest.
    last_seen: Option<Instant>,
    /// When the last end event arrived: a poll that started before it cannot reopen the
    /// failover it closed (its flag is older news than the event).
    ended_at: Option<Instant>,
}

impl FailoverTracker {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last_seen: None,
            ended_at: None,
        }
    }

    /// Applies an event; returns true when the in-progress state flipped.
    pub fn on_event(&mut self, kind: &EventKind, now: Instant) -> bool {
        let before = self.in_progress(now);
        match kind.failover_effect() {
            FailoverEffect::Starts => self.last_seen = Some(now),
            FailoverEffect::Ends => {
                self.last_seen = None;
                self.ended_at = Some(now);
            }
            FailoverEffect::None => {}
        }
        before != self.in_progress(now)
    }

    /// Applies the Sentinel master flag `failover_in_progress` seen by a poll that started at
    /// `polled_at`. Its absence clears nothing: only the leader Sentinel sets the flag. A flag
    /// from a poll that started before the last end event is ignored: that failover is over.
    pub fn on_master_flag(&mut self, failover_in_progress: bool, polled_at: Instant) -> bool {
        let now = polled_at;
        let before = self.in_progress(now);
        let outdated = self.ended_at.is_some_and(|ended| ended >= polled_at);
        if failover_in_progress && !outdated {
            self.last_seen = Some(now);
        }
        before != self.in_progress(now)
    }

    /// True while a failover is in progress; clears itself after the timeout.
    pub fn in_progress(&mut self, now: Instant) -> bool {
        match self.last_seen {
            Some(t) if now.saturating_duration_since(t) < self.timeout => true,
            Some(_) => {
                self.last_seen = None;
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_older_than_the_end_event_does_not_reopen_the_failover() {
        let t0 = Instant::now();
        let mut f = FailoverTracker::new(Duration::from_secs(20));
        let started = t0;
        assert!(f.on_event(&k("+try-failover"), started));
        // A SENTINEL MASTER poll starts, the failover ends meanwhile, the poll's answer (still
        // flagged failover_in_progress) is applied after the end event.
        let poll_started = t0 + Duration::from_millis(10);
        assert!(f.on_event(&k("+switch-master"), t0 + Duration::from_millis(20)));
        assert!(!f.on_master_flag(true, poll_started));
        assert!(!f.in_progress(t0 + Duration::from_millis(30)));
        // A poll started after the end that still sees the flag is a new failover.
        assert!(f.on_master_flag(true, t0 + Duration::from_millis(40)));
    }

    fn k(ch: &str) -> EventKind {
        EventKind::from_channel(ch)
    }

    #[test]
    fn a_whole_failover_as_the_leader_sees_it() {
        let t0 = Instant::now();
        let mut f = FailoverTracker::new(Duration::from_secs(20));
        assert!(!f.in_progress(t0));
        assert!(!f.on_event(&k("+sdown"), t0), "+sdown alone is no failover");
        assert!(f.on_event(&k("+odown"), t0));
        for (i, ch) in [
            "+new-epoch",
            "+try-failover",
            "+vote-for-leader",
            "+elected-leader",
            "+failover-state-select-slave",
            "+selected-slave",
            "+failover-state-send-slaveof-noone",
            "+failover-state-wait-promotion",
            "+promoted-slave",
            "+failover-state-reconf-slaves",
            "+slave-reconf-sent",
            "+slave-reconf-done",
        ]
        .iter()
        .enumerate()
        {
            let now = t0 + Duration::from_millis(100 * (i as u64 + 1));
            assert!(!f.on_event(&k(ch), now), "{ch} keeps it going");
            assert!(f.in_progress(now), "{ch}");
        }
        let end = t0 + Duration::from_secs(2);
        assert!(f.on_event(&k("+failover-end"), end));
        assert!(!f.in_progress(end));
        assert!(!f.on_event(&k("+switch-master"), end), "already over");
    }

    #[test]
    fn every_end_kind_ends_it() {
        for end in [
            "+failover-end",
            "+switch-master",
            "-failover-abort-not-elected",
            "-failover-abort-no-good-slave",
            "-odown",
        ] {
            let now = Instant::now();
            let mut f = FailoverTracker::new(Duration::from_secs(20));
            f.on_event(&k("+odown"), now);
            assert!(f.on_event(&k(end), now), "{end}");
            assert!(!f.in_progress(now), "{end}");
        }
    }

    #[test]
    fn times_out_counted_from_the_last_sign() {
        let t0 = Instant::now();
        let mut f = FailoverTracker::new(Duration::from_secs(10));
        f.on_event(&k("+new-epoch"), t0);
        f.on_event(&k("+selected-slave"), t0 + Duration::from_secs(5));
        assert!(f.in_progress(t0 + Duration::from_secs(14)));
        assert!(!f.in_progress(t0 + Duration::from_secs(15)));
        assert!(
            !f.in_progress(t0 + Duration::from_secs(16)),
            "stays cleared"
        );
    }

    #[test]
    fn master_flag_sets_but_never_clears() {
        let t0 = Instant::now();
        let mut f = FailoverTracker::new(Duration::from_secs(10));
        assert!(!f.on_master_flag(false, t0));
        assert!(f.on_master_flag(true, t0));
        assert!(!f.on_master_flag(false, t0 + Duration::from_secs(1)));
        assert!(f.in_progress(t0 + Duration::from_secs(1)));
        assert!(f.on_event(&k("+switch-master"), t0 + Duration::from_secs(2)));
    }
}
