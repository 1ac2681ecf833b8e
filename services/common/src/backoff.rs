//! Capped exponential backoff between reconnection attempts: the first delay, doubled after
//! each failure up to a cap, back to the first delay after a success. One copy for every
//! sidecar (and the simulator's clients, which add jitter: [`Backoff::jittered`]).

use std::time::{Duration, Instant};

use rand::Rng;

/// Capped exponential backoff (factor 2). Two ways to use it: [`Backoff::fail`] returns the
/// delay to sleep; [`Backoff::failed`] / [`Backoff::ready`] / [`Backoff::next_attempt`] keep
/// the instant of the next attempt for a loop that also does other work meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    delay: Duration,
    next: Option<Instant>,
}

impl Backoff {
    /// Waits `first` after the first failure, doubling up to `cap` (`cap` below `first`
    /// counts as `first`).
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap: cap.max(first),
            delay: first,
            next: None,
        }
    }

    /// The delay the next failure waits.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// A failure: returns the delay to wait now and doubles the next one (up to the cap).
    pub fn fail(&mut self) -> Duration {
        let d = self.delay;
        self.delay = self.delay.saturating_mul(2).min(self.cap);
        d
    }

    /// A failure at `now`: the next attempt is due after the current delay.
    pub fn failed(&mut self, now: Instant) {
        let d = self.fail();
        self.next = Some(now + d);
    }

    /// A success: the next failure waits the first delay again, and an attempt is due at once.
    pub fn reset(&mut self) {
        self.delay = self.first;
        self.next = None;
    }

    /// True when an attempt may be made at `now` (no failure pending, or its delay is over).
    pub fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// When the next attempt is due; `None` when no failure is pending.
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next
    }

    /// The delay of retry number `attempt` (0 = the first) with "equal jitter": the ceiling
    /// `min(cap, first * 2^attempt)`, half of it fixed and half random, so clients retrying
    /// together spread out but never retry at once. Stateless: for many clients sharing one
    /// policy.
    pub fn jittered(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .first
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.random_range(0..=jitter_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(MS * 100, MS * 700);
        let delays: Vec<Duration> = (0..5).map(|_| b.fail()).collect();
        assert_eq!(delays, [MS * 100, MS * 200, MS * 400, MS * 700, MS * 700]);
        b.reset();
        assert_eq!(b.delay(), MS * 100);
        assert_eq!(b.fail(), MS * 100);
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut b = Backoff::new(MS * 100, MS);
        assert_eq!((b.fail(), b.fail()), (MS * 100, MS * 100));
    }

    #[test]
    fn next_attempt_follows_the_failures() {
        let t0 = Instant::now();
        let mut b = Backoff::new(MS * 50, Duration::from_secs(1));
        assert!(b.ready(t0));
        assert_eq!(b.next_attempt(), None);
        b.failed(t0);
        assert_eq!(b.next_attempt(), Some(t0 + MS * 50));
        assert!(!b.ready(t0 + MS * 49));
        assert!(b.ready(t0 + MS * 50));
        b.failed(t0 + MS * 50);
        assert_eq!(b.next_attempt(), Some(t0 + MS * 150));
        b.reset();
        assert!(b.ready(t0));
        assert_eq!(b.next_attempt(), None);
        b.failed(t0);
        assert_eq!(
            b.next_attempt(),
            Some(t0 + MS * 50),
            "reset to the first delay"
        );
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let b = Backoff::new(MS * 100, Duration::from_secs(1));
        let mut rng = rand::rng();
        for _ in 0..200 {
            let d0 = b.jittered(0, &mut rng);
            assert!(d0 >= MS * 50 && d0 <= MS * 100, "{d0:?}");
            let d2 = b.jittered(2, &mut rng);
            assert!(d2 >= MS * 200 && d2 <= MS * 400, "{d2:?}");
            let d9 = b.jittered(9, &mut rng);
            assert!(d9 >= MS * 500 && d9 <= Duration::from_secs(1), "{d9:?}");
            assert!(b.jittered(u32::MAX, &mut rng) <= Duration::from_secs(1));
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| b.jittered(5, &mut rng)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
