//! Parsers of Sentinel's replies. Each instance is a flat key/value array (RESP2) or a map
//! (RESP3).

use std::collections::HashMap;

use redis::Value;
use redis_ha_common::addr::is_valid_host;
pub use redis_ha_common::redis_client::{text, ReplyError};
use redis_ha_common::HostPort;

/// One instance as Sentinel describes it: field name → value.
pub type InstanceMap = HashMap<String, String>;

/// Parses one instance map (flat `[k1, v1, k2, v2, ...]` or a RESP3 map).
pub fn parse_instance_map(v: &Value) -> Result<InstanceMap, ReplyError> {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(ReplyError::Shape(format!(
                    "key/value array of odd length {}",
                    items.len()
                )));
            }
            items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect()
        }
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => {
            return Err(ReplyError::Shape(format!(
                "expected a key/value array, got {other:?}"
            )))
        }
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let key = text(k).ok_or_else(|| ReplyError::Shape(format!("key {k:?}")))?;
            Ok((key, text(v).unwrap_or_default()))
        })
        .collect()
}

/// Parses a list of instance maps (`SENTINEL REPLICAS` / `SENTINEL SENTINELS`).
pub fn parse_instance_list(v: &Value) -> Result<Vec<InstanceMap>, ReplyError> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().map(parse_instance_map).collect(),
        other => Err(ReplyError::Shape(format!(
            "expected a list of instances, got {other:?}"
        ))),
    }
}

/// The value of `key`.
pub fn field<'a>(m: &'a InstanceMap, key: &str) -> Result<&'a str, ReplyError> {
    m.get(key)
        .map(String::as_str)
        .ok_or_else(|| ReplyError::Missing(key.to_owned()))
}

/// The value of `key` as a number.
pub fn number<T: std::str::FromStr>(m: &InstanceMap, key: &str) -> Result<T, ReplyError> {
    let raw = field(m, key)?;
    raw.trim()
        .parse()
        .map_err(|_| ReplyError::invalid(key, raw))
}

/// `ip` + `port` of an instance.
pub fn instance_addr(m: &InstanceMap) -> Result<HostPort, ReplyError> {
    let ip = field(m, "ip")?;
    if !is_valid_host(ip) {
        return Err(ReplyError::invalid("ip", ip));
    }
    let port: u16 = number(m, "port")?;
    if port == 0 {
        return Err(ReplyError::invalid("port", "0"));
    }
    Ok(HostPort::new(ip, port))
}

/// The comma-separated `flags` field.
pub fn flags(m: &InstanceMap) -> Vec<String> {
    m.get("flags")
        .map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// What `SENTINEL MASTER <group>` says about the group's master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelMaster {
    pub address: HostPort,
    pub flags: Vec<String>,
    pub config_epoch: u64,
    pub quorum: u32,
    pub other_sentinels: u32,
    /// `num-slaves`: the replicas this Sentinel knows (it remembers them across restarts).
    pub known_replicas: u32,
    /// `down-after-milliseconds`; 0 when the reply leaves it out.
    pub down_after_ms: u64,
    /// `failover-timeout`; 0 when the reply leaves it out.
    pub failover_timeout_ms: u64,
}

/// The flag of a master whose failover this Sentinel runs right now.
pub const FLAG_FAILOVER_IN_PROGRESS: &str = "failover_in_progress";

impl SentinelMaster {
    /// True when this Sentinel runs a failover of the group right now.
    pub fn failover_in_progress(&self) -> bool {
        self.flags.iter().any(|f| f == FLAG_FAILOVER_IN_PROGRESS)
    }

    /// This answer as a vote for [`crate::named_master`].
    pub fn view(&self, sentinel: HostPort) -> crate::MasterView {
        crate::MasterView {
            sentinel,
            master: self.address.clone(),
            config_epoch: self.config_epoch,
            settled: !self.failover_in_progress(),
        }
    }
}

/// One replica as `SENTINEL REPLICAS <group>` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelReplica {
    pub address: HostPort,
    pub flags: Vec<String>,
    /// `master-link-status` (`ok`, `err`), empty when not given.
    pub master_link_status: String,
    /// `slave-repl-offset`, 0 when not given (or negative).
    pub offset: u64,
    /// `slave-priority` as this Sentinel last read it from the replica's INFO (0: never
    /// promoted), `None` when not given.
    pub priority: Option<u32>,
}

/// Parses the `SENTINEL REPLICAS <group>` reply.
pub fn parse_replicas(v: &Value) -> Result<Vec<SentinelReplica>, ReplyError> {
    parse_instance_list(v)?
        .iter()
        .map(|m| {
            let offset = match m.get("slave-repl-offset") {
                Some(raw) => raw
                    .trim()
                    .parse::<i64>()
                    .map(|i| u64::try_from(i).unwrap_or(0))
                    .map_err(|_| ReplyError::invalid("slave-repl-offset", raw.as_str()))?,
                None => 0,
            };
            Ok(SentinelReplica {
                address: instance_addr(m)?,
                flags: flags(m),
                master_link_status: m.get("master-link-status").cloned().unwrap_or_default(),
                offset,
                priority: m.get("slave-priority").and_then(|p| p.trim().parse().ok()),
            })
        })
        .collect()
}

/// Parses the `SENTINEL SENTINELS <group>` reply: the other Sentinels' addresses.
pub fn parse_sentinels(v: &Value) -> Result<Vec<HostPort>, ReplyError> {
    parse_instance_list(v)?.iter().map(instance_addr).collect()
}

/// Parses the `SENTINEL GET-MASTER-ADDR-BY-NAME <group>` reply: `[ip, port]`, or nil for a
/// group the Sentinel does not monitor.
pub fn parse_master_addr(v: &Value) -> Result<Option<HostPort>, ReplyError> {
    match v {
        Value::Nil => Ok(None),
        Value::Array(items) => match items.as_slice() {
            [] => Ok(None),
            [ip, port] => {
                let ip = text(ip)
                    .filter(|s| is_valid_host(s))
                    .ok_or_else(|| ReplyError::invalid("ip", format!("{ip:?}")))?;
                let raw = text(port).unwrap_or_default();
                let port: u16 = raw
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ReplyError::invalid("port", raw.as_str()))?;
                Ok(Some(HostPort::new(ip, port)))
            }
            other => Err(ReplyError::Shape(format!(
                "expected [ip, port], got {} items",
                other.len()
            ))),
        },
        other => Err(ReplyError::Shape(format!(
            "expected [ip, port], got {other:?}"
        ))),
    }
}

/// Parses the `SENTINEL MASTER <group>` reply.
pub fn parse_master(v: &Value) -> Result<SentinelMaster, ReplyError> {
    let m = parse_instance_map(v)?;
    Ok(SentinelMaster {
        address: instance_addr(&m)?,
        flags: flags(&m),
        config_epoch: number(&m, "config-epoch")?,
        quorum: number(&m, "quorum")?,
        other_sentinels: number(&m, "num-other-sentinels")?,
        known_replicas: number(&m, "num-slaves")?,
        down_after_ms: match m.get("down-after-milliseconds") {
            Some(_) => number(&m, "down-after-milliseconds")?,
            None => 0,
        },
        failover_timeout_ms: match m.get("failover-timeout") {
            Some(_) => number(&m, "failover-timeout")?,
            None => 0,
        },
    })
}

/// A Sentinel's vote in a failover election, as `SENTINEL IS-MASTER-DOWN-BY-ADDR` answers it:
/// `[down, leader, leader_epoch]`. Asked with epoch 0 it only reads the last vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The Sentinel flags the master `s_down` (and is not in TILT).
    pub down: bool,
    /// The run id it last voted for; `None` for `*` (never voted, or the master is unknown).
    pub leader: Option<String>,
    /// The epoch of that vote.
    pub leader_epoch: u64,
}

/// Parses the `SENTINEL IS-MASTER-DOWN-BY-ADDR` reply.
pub fn parse_vote(v: &Value) -> Result<Vote, ReplyError> {
    let Value::Array(items) = v else {
        return Err(ReplyError::Shape(format!(
            "expected [down, leader, epoch], got {v:?}"
        )));
    };
    let [down, leader, epoch] = items.as_slice() else {
        return Err(ReplyError::Shape(format!(
            "expected [down, leader, epoch], got {} items",
            items.len()
        )));
    };
    let int = |field: &str, v: &Value| -> Result<i64, ReplyError> {
        match v {
            Value::Int(i) => Ok(*i),
            other => text(other)
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| ReplyError::invalid(field, format!("{other:?}"))),
        }
    };
    let down = match int("down", down)? {
        0 => false,
        1 => true,
        other => return Err(ReplyError::invalid("down", other.to_string())),
    };
    let leader =
        text(leader).ok_or_else(|| ReplyError::invalid("leader", format!("{leader:?}")))?;
    let raw_epoch = int("leader_epoch", epoch)?;
    let leader_epoch = u64::try_from(raw_epoch)
        .map_err(|_| ReplyError::invalid("leader_epoch", raw_epoch.to_string()))?;
    Ok(Vote {
        down,
        leader: (!leader.is_empty() && leader != "*").then_some(leader),
        leader_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    #[test]
    fn master_reply_resp2_and_resp3() {
        let fields = [
            ("name", "redis-cluster"),
            ("ip", "redis-2"),
            ("port", "9002"),
            ("flags", "master,failover_in_progress"),
            ("config-epoch", "7"),
            ("quorum", "2"),
            ("num-other-sentinels", "2"),
            ("num-slaves", "1"),
        ];
        let m = parse_master(&flat(&fields)).expect("parses");
        assert_eq!(m.address, HostPort::new("redis-2", 9002));
        assert_eq!(
            (
                m.config_epoch,
                m.quorum,
                m.other_sentinels,
                m.known_replicas
            ),
            (7, 2, 2, 1)
        );
        assert!(m.failover_in_progress());
        let v = m.view(HostPort::new("sentinel-1", 19001));
        assert!(!v.settled);

        let map = Value::Map(fields.iter().map(|(k, v)| (bulk(k), bulk(v))).collect());
        assert_eq!(parse_master(&map).expect("parses"), m);
    }

    #[test]
    fn master_reply_of_a_real_sentinel() {
        let v = flat(&[
            ("name", "redis-cluster"),
            ("ip", "10.0.0.1"),
            ("port", "9001"),
            ("runid", "4d2b0bb0b2f9a2b0b8b6c3d7e1f0a9b8c7d6e5f4"),
            ("flags", "master"),
            ("link-pending-commands", "0"),
            ("last-ok-ping-reply", "412"),
            ("down-after-milliseconds", "5000"),
            ("role-reported", "master"),
            ("config-epoch", "3"),
            ("num-slaves", "2"),
            ("num-other-sentinels", "2"),
            ("quorum", "2"),
            ("failover-timeout", "10000"),
        ]);
        let m = parse_master(&v).expect("parses");
        assert_eq!(m.address, HostPort::new("10.0.0.1", 9001));
        assert_eq!(m.flags, vec!["master"]);
        assert_eq!(
            (
                m.config_epoch,
                m.quorum,
                m.other_sentinels,
                m.known_replicas
            ),
            (3, 2, 2, 2)
        );
        assert!(!m.failover_in_progress());
        assert!(m.view(HostPort::new("s", 1)).settled);
        // RESP3 with integer values.
        let v = Value::Map(vec![
            (bulk("ip"), bulk("redis-1")),
            (bulk("port"), Value::Int(9001)),
            (
                bulk("flags"),
                bulk("master,s_down,o_down,failover_in_progress"),
            ),
            (bulk("config-epoch"), Value::Int(7)),
            (bulk("quorum"), Value::Int(2)),
            (bulk("num-other-sentinels"), Value::Int(1)),
            (bulk("num-slaves"), Value::Int(0)),
        ]);
        let m = parse_master(&v).expect("parses");
        assert_eq!(
            m.flags,
            vec!["master", "s_down", "o_down", "failover_in_progress"]
        );
        assert_eq!(m.config_epoch, 7);
    }

    #[test]
    fn replicas_list() {
        let v = Value::Array(vec![
            flat(&[
                ("name", "10.0.0.2:9002"),
                ("ip", "10.0.0.2"),
                ("port", "9002"),
                ("flags", "slave"),
                ("master-link-status", "ok"),
                ("slave-repl-offset", "12345"),
                ("slave-priority", "0"),
            ]),
            flat(&[
                ("name", "10.0.0.3:9003"),
                ("ip", "10.0.0.3"),
                ("port", "9003"),
                ("flags", "s_down,slave,disconnected"),
                ("master-link-status", "err"),
                ("slave-repl-offset", "-1"),
            ]),
        ]);
        assert_eq!(
            parse_replicas(&v).expect("parses"),
            vec![
                SentinelReplica {
                    address: HostPort::new("10.0.0.2", 9002),
                    flags: vec!["slave".into()],
                    master_link_status: "ok".into(),
                    offset: 12345,
                    priority: Some(0),
                },
                SentinelReplica {
                    address: HostPort::new("10.0.0.3", 9003),
                    flags: vec!["s_down".into(), "slave".into(), "disconnected".into()],
                    master_link_status: "err".into(),
                    offset: 0,
                    priority: None,
                },
            ]
        );
        assert_eq!(parse_replicas(&Value::Array(vec![])), Ok(vec![]));
        assert!(parse_replicas(&bulk("nope")).is_err());
        assert_eq!(
            parse_replicas(&Value::Array(vec![flat(&[
                ("ip", "h"),
                ("port", "1"),
                ("slave-repl-offset", "x")
            ])])),
            Err(ReplyError::invalid("slave-repl-offset", "x"))
        );
    }

    #[test]
    fn sentinels_list() {
        let v = Value::Array(vec![
            flat(&[("name", "abc"), ("ip", "10.0.0.2"), ("port", "19002")]),
            flat(&[("name", "def"), ("ip", "10.0.0.3"), ("port", "19003")]),
        ]);
        assert_eq!(
            parse_sentinels(&v).expect("parses"),
            vec![
                HostPort::new("10.0.0.2", 19002),
                HostPort::new("10.0.0.3", 19003)
            ]
        );
        assert!(parse_sentinels(&Value::Array(vec![flat(&[("name", "x")])])).is_err());
    }

    #[test]
    fn master_addr_by_name() {
        let v = Value::Array(vec![bulk("10.0.0.1"), bulk("9001")]);
        assert_eq!(
            parse_master_addr(&v),
            Ok(Some(HostPort::new("10.0.0.1", 9001)))
        );
        assert_eq!(parse_master_addr(&Value::Nil), Ok(None));
        assert_eq!(
            parse_master_addr(&Value::Array(vec![bulk("h"), bulk("0")])),
            Err(ReplyError::invalid("port", "0"))
        );
        assert!(parse_master_addr(&Value::Array(vec![bulk("h")])).is_err());
        assert!(parse_master_addr(&Value::Int(1)).is_err());
    }

    #[test]
    fn hosts_with_control_characters_or_brackets_are_refused() {
        // Such a host never names a real node and would not print back as the same text.
        for bad in ["10.0.0.1\r", "a\u{0}b", "[::1", "a b"] {
            assert!(
                parse_master_addr(&Value::Array(vec![bulk(bad), bulk("9001")])).is_err(),
                "{bad:?}"
            );
            assert_eq!(
                parse_master(&flat(&[("ip", bad), ("port", "9001")])),
                Err(ReplyError::invalid("ip", bad)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_master_replies_name_what_is_wrong() {
        assert_eq!(
            parse_master(&flat(&[("ip", "a"), ("port", "x")])),
            Err(ReplyError::invalid("port", "x"))
        );
        assert_eq!(
            parse_master(&flat(&[("ip", "a"), ("port", "1")])),
            Err(ReplyError::Missing("config-epoch".into()))
        );
        assert!(matches!(
            parse_master(&Value::Array(vec![bulk("odd")])),
            Err(ReplyError::Shape(_))
        ));
        assert!(matches!(
            parse_master(&Value::Nil),
            Err(ReplyError::Shape(_))
        ));
    }
    #[test]
    fn vote_replies() {
        let v = Value::Array(vec![Value::Int(1), bulk("abc123"), Value::Int(7)]);
        assert_eq!(
            parse_vote(&v).expect("parses"),
            Vote {
                down: true,
                leader: Some("abc123".into()),
                leader_epoch: 7
            }
        );
        let none = Value::Array(vec![Value::Int(0), bulk("*"), Value::Int(0)]);
        assert_eq!(parse_vote(&none).expect("parses").leader, None);
        for bad in [
            Value::Array(vec![Value::Int(0), bulk("*")]),
            Value::Array(vec![Value::Int(2), bulk("*"), Value::Int(0)]),
            Value::Array(vec![Value::Int(0), bulk("*"), Value::Int(-1)]),
            Value::Array(vec![Value::Int(0), Value::Nil, Value::Int(0)]),
            Value::Nil,
        ] {
            assert!(parse_vote(&bad).is_err(), "{bad:?}");
        }
    }
}
