//! Node start-up for redis-ha: what a Redis or Sentinel container does before its server
//! starts. The decisions are pure functions ([`role`], [`redis_conf`], [`sentinel_conf`],
//! [`durability`]); [`probe`] asks the Sentinels and the peers, [`files`] reads the secret and
//! writes the config; [`handover`] is a stopping master's switchover (`redis-run`).

pub mod acl;
pub mod durability;
pub mod files;
pub mod handover;
pub mod kernel;
pub mod probe;
pub mod redis_conf;
pub mod role;
pub mod rotate;
pub mod sentinel_conf;

/// A Sentinel master name Sentinel and the config files accept as one word.
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_names() {
        assert!(super::valid_group("redis-cluster.v2_a"));
        for bad in ["", "a b", "a\"b", "a\nb", "é"] {
            assert!(!super::valid_group(bad), "{bad:?}");
        }
    }
}
