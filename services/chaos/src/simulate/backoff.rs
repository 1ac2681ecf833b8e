//! Capped, jittered exponential backoff between reconnection attempts (the older project's
//! "throttled retry"): clients hammering a proxy that has no master yet would only slow the
//! failover down, and clients retrying in lockstep would arrive together.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling of the first retry.
    pub base: Duration,
    /// Delay ceiling of every later retry.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = the first retry after a failure):
    /// the ceiling `min(cap, base * 2^attempt)`, half of it fixed and half random ("equal
    /// jitter"), so retries spread out but never collapse to zero.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
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

    #[test]
    fn grows_then_stays_under_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut rng = rand::rng();
        for _ in 0..200 {
            let d0 = b.delay(0, &mut rng);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = b.delay(2, &mut rng);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = b.delay(9, &mut rng);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_secs(1));
            // Large attempt numbers neither overflow nor exceed the cap.
            assert!(b.delay(u32::MAX, &mut rng) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let b = Backoff::default();
        let mut rng = rand::rng();
        let delays: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| b.delay(5, &mut rng)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
