//! Sentinel's own timers that must follow down-after (`SENTINEL DEBUG`, Redis 7.0 and later).
//!
//! Sentinel paces every reconnection of a link by its ping-period (1 s by default), and after
//! `+switch-master` it closes its link to the group's master and makes a new one to the promoted
//! node. If the last reconnection attempt of that link (to the dead master, tried every second)
//! was less than a second before, the new link waits for the rest of that second before its
//! first PING. At down-after 1000 that wait can reach down-after: seen on the stack, a Sentinel
//! flagged the live promoted master `+sdown` 1.02 s after its `+switch-master`, `-sdown` 59 ms
//! later, and meanwhile started a second failover of it (`+odown`, a new epoch). The rule keeps
//! the pace at most half of down-after, so a new link answers its first PING well within it.
//! At down-after 2000 and above it is Sentinel's default. The value is not kept in the Sentinel's
//! configuration file: whoever holds a connection to the Sentinel sets it again after a restart
//! (the health agent, `services/health-agent`).

use redis::Value;

use crate::reply::{number, parse_instance_map, ReplyError};

/// Sentinel's default ping-period.
pub const DEFAULT_PING_PERIOD_MS: u64 = 1000;
/// The least ping-period set: Sentinel's timer runs ten times a second anyway.
pub const MIN_PING_PERIOD_MS: u64 = 100;

/// The ping-period for a group watched with `down_after_ms`: half of it, within
/// [`MIN_PING_PERIOD_MS`] and [`DEFAULT_PING_PERIOD_MS`].
pub fn ping_period_ms(down_after_ms: u64) -> u64 {
    (down_after_ms / 2).clamp(MIN_PING_PERIOD_MS, DEFAULT_PING_PERIOD_MS)
}

/// The `PING-PERIOD` of a `SENTINEL DEBUG` reply (its parameters, name and value).
pub fn parse_ping_period(v: &Value) -> Result<u64, ReplyError> {
    let m: crate::reply::InstanceMap = parse_instance_map(v)?
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    number(&m, "ping-period")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ping_period_is_half_of_down_after_and_never_above_the_default() {
        assert_eq!(ping_period_ms(100), MIN_PING_PERIOD_MS);
        assert_eq!(ping_period_ms(0), MIN_PING_PERIOD_MS);
        assert_eq!(ping_period_ms(1000), 500);
        assert_eq!(ping_period_ms(1500), 750);
        assert_eq!(ping_period_ms(2000), DEFAULT_PING_PERIOD_MS);
        assert_eq!(ping_period_ms(5000), DEFAULT_PING_PERIOD_MS);
        assert_eq!(ping_period_ms(u64::MAX), DEFAULT_PING_PERIOD_MS);
        // A new link is made within the pace plus one timer tick (100 ms): before down-after.
        for d in [100, 250, 500, 1000, 1999, 5000, 60_000] {
            assert!(ping_period_ms(d) < d.max(MIN_PING_PERIOD_MS * 2), "{d}");
        }
    }

    #[test]
    fn the_debug_reply_is_read_in_either_case() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let v = Value::Array(vec![
            bulk("INFO-PERIOD"),
            bulk("10000"),
            bulk("PING-PERIOD"),
            bulk("250"),
        ]);
        assert_eq!(parse_ping_period(&v), Ok(250));
        let lower = Value::Map(vec![(bulk("ping-period"), bulk("1000"))]);
        assert_eq!(parse_ping_period(&lower), Ok(1000));
        assert!(parse_ping_period(&Value::Array(vec![bulk("INFO-PERIOD"), bulk("1")])).is_err());
        assert!(parse_ping_period(&Value::Array(vec![bulk("PING-PERIOD"), bulk("x")])).is_err());
    }
}
