//! Parsers for Sentinel's answers: `SENTINEL MASTER`, `SENTINEL REPLICAS`, `SENTINEL SENTINELS`.
//! Each instance is a flat key/value array (RESP2) or a map (RESP3).

use std::collections::HashMap;

use redis::Value;
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{SentinelReplicaView, SentinelStatus};

use crate::redis_parse::{join_addr, ParseError};

/// One instance as Sentinel describes it: field name → value.
pub type InstanceMap = HashMap<String, String>;

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Parses one instance map (flat `[k1, v1, k2, v2, ...]` or a RESP3 map).
pub fn parse_instance_map(v: &Value) -> Result<InstanceMap, ParseError> {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(ParseError::Shape(format!(
                    "key/value array of odd length {}",
                    items.len()
                )));
            }
            items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect()
        }
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => {
            return Err(ParseError::Shape(format!(
                "expected a key/value array, got {other:?}"
            )))
        }
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let key = text(k).ok_or_else(|| ParseError::Shape(format!("key {k:?}")))?;
            let value = text(v).unwrap_or_default();
            Ok((key, value))
        })
        .collect()
}

/// Parses a list of instance maps (`SENTINEL REPLICAS` / `SENTINEL SENTINELS`).
pub fn parse_instance_list(v: &Value) -> Result<Vec<InstanceMap>, ParseError> {
    match v {
        Value::Array(items) => items.iter().map(parse_instance_map).collect(),
        Value::Set(items) => items.iter().map(parse_instance_map).collect(),
        other => Err(ParseError::Shape(format!(
            "expected a list of instances, got {other:?}"
        ))),
    }
}

fn field<'a>(m: &'a InstanceMap, key: &str) -> Result<&'a str, ParseError> {
    m.get(key)
        .map(String::as_str)
        .ok_or_else(|| ParseError::Missing(key.to_owned()))
}

fn number<T: std::str::FromStr>(m: &InstanceMap, key: &str) -> Result<T, ParseError> {
    let raw = field(m, key)?;
    raw.trim()
        .parse()
        .map_err(|_| ParseError::invalid(key, raw))
}

/// `ip` + `port` of an instance as a `host:port` string.
pub fn instance_addr(m: &InstanceMap) -> Result<HostPort, ParseError> {
    let ip = field(m, "ip")?;
    if ip.is_empty() {
        return Err(ParseError::invalid("ip", ip));
    }
    let port: u16 = number(m, "port")?;
    if port == 0 {
        return Err(ParseError::invalid("port", "0"));
    }
    Ok(HostPort::new(ip, port))
}

fn flags(m: &InstanceMap) -> Vec<String> {
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
}

impl SentinelMaster {
    /// True when this Sentinel runs a failover of the group right now.
    pub fn failover_in_progress(&self) -> bool {
        self.flags.iter().any(|f| f == "failover_in_progress")
    }
}

/// Parses the `SENTINEL MASTER <group>` reply.
pub fn parse_master(v: &Value) -> Result<SentinelMaster, ParseError> {
    let m = parse_instance_map(v)?;
    Ok(SentinelMaster {
        address: instance_addr(&m)?,
        flags: flags(&m),
        config_epoch: number(&m, "config-epoch")?,
        quorum: number(&m, "quorum")?,
        other_sentinels: number(&m, "num-other-sentinels")?,
    })
}

/// Parses the `SENTINEL REPLICAS <group>` reply.
pub fn parse_replicas(v: &Value) -> Result<Vec<SentinelReplicaView>, ParseError> {
    parse_instance_list(v)?
        .iter()
        .map(|m| {
            let addr = instance_addr(m)?;
            let offset = match m.get("slave-repl-offset") {
                Some(raw) => raw
                    .trim()
                    .parse::<i64>()
                    .map(|i| u64::try_from(i).unwrap_or(0))
                    .map_err(|_| ParseError::invalid("slave-repl-offset", raw.as_str()))?,
                None => 0,
            };
            Ok(SentinelReplicaView {
                address: join_addr(&addr.host, addr.port),
                flags: flags(m),
                master_link_status: m.get("master-link-status").cloned().unwrap_or_default(),
                offset,
            })
        })
        .collect()
}

/// Parses the `SENTINEL SENTINELS <group>` reply into `host:port` strings.
pub fn parse_sentinels(v: &Value) -> Result<Vec<String>, ParseError> {
    parse_instance_list(v)?
        .iter()
        .map(|m| instance_addr(m).map(|a| a.to_string()))
        .collect()
}

/// Everything one poll of the Sentinel saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelObservation {
    pub master: SentinelMaster,
    pub replicas: Vec<SentinelReplicaView>,
    pub peers: Vec<String>,
}

impl SentinelObservation {
    /// The report form (`address` is the Sentinel's own address; `current_epoch` is
    /// filled in by whoever tracks the events).
    pub fn to_status(&self, sentinel_addr: &HostPort) -> SentinelStatus {
        SentinelStatus {
            address: sentinel_addr.to_string(),
            reachable: true,
            error: String::new(),
            master_address: self.master.address.to_string(),
            config_epoch: self.master.config_epoch,
            master_flags: self.master.flags.clone(),
            quorum: self.master.quorum,
            other_sentinels: self.master.other_sentinels,
            replicas: self.replicas.clone(),
            peers: self.peers.clone(),
            current_epoch: self.master.config_epoch,
        }
    }
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

    fn master_fixture() -> Value {
        flat(&[
            ("name", "redis-cluster"),
            ("ip", "10.0.0.1"),
            ("port", "9001"),
            ("runid", "4d2b0bb0b2f9a2b0b8b6c3d7e1f0a9b8c7d6e5f4"),
            ("flags", "master"),
            ("link-pending-commands", "0"),
            ("link-refcount", "1"),
            ("last-ping-sent", "0"),
            ("last-ok-ping-reply", "412"),
            ("last-ping-reply", "412"),
            ("down-after-milliseconds", "5000"),
            ("info-refresh", "4190"),
            ("role-reported", "master"),
            ("role-reported-time", "1520300"),
            ("config-epoch", "3"),
            ("num-slaves", "2"),
            ("num-other-sentinels", "2"),
            ("quorum", "2"),
            ("failover-timeout", "10000"),
            ("parallel-syncs", "1"),
        ])
    }

    #[test]
    fn master_flat_array() {
        let m = parse_master(&master_fixture()).unwrap();
        assert_eq!(m.address, HostPort::new("10.0.0.1", 9001));
        assert_eq!(m.flags, vec!["master"]);
        assert_eq!(m.config_epoch, 3);
        assert_eq!(m.quorum, 2);
        assert_eq!(m.other_sentinels, 2);
        assert!(!m.failover_in_progress());
    }

    #[test]
    fn master_flags_and_resp3_map() {
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
        ]);
        let m = parse_master(&v).unwrap();
        assert_eq!(m.address.to_string(), "redis-1:9001");
        assert_eq!(
            m.flags,
            vec!["master", "s_down", "o_down", "failover_in_progress"]
        );
        assert!(m.failover_in_progress());
        assert_eq!(m.config_epoch, 7);
    }

    #[test]
    fn master_garbage() {
        assert!(parse_master(&bulk("ERR")).is_err());
        assert!(
            parse_master(&Value::Array(vec![bulk("ip")])).is_err(),
            "odd length"
        );
        assert_eq!(
            parse_master(&flat(&[("ip", "h"), ("port", "1")])),
            Err(ParseError::Missing("config-epoch".into()))
        );
        assert!(parse_master(&flat(&[
            ("ip", "h"),
            ("port", "x"),
            ("config-epoch", "1"),
            ("quorum", "2"),
            ("num-other-sentinels", "2")
        ]))
        .is_err());
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
            ]),
            flat(&[
                ("name", "10.0.0.3:9003"),
                ("ip", "10.0.0.3"),
                ("port", "9003"),
                ("flags", "s_down,slave,disconnected"),
                ("master-link-status", "err"),
                ("slave-repl-offset", "0"),
            ]),
        ]);
        let r = parse_replicas(&v).unwrap();
        assert_eq!(
            r,
            vec![
                SentinelReplicaView {
                    address: "10.0.0.2:9002".into(),
                    flags: vec!["slave".into()],
                    master_link_status: "ok".into(),
                    offset: 12345
                },
                SentinelReplicaView {
                    address: "10.0.0.3:9003".into(),
                    flags: vec!["s_down".into(), "slave".into(), "disconnected".into()],
                    master_link_status: "err".into(),
                    offset: 0
                },
            ]
        );
        assert_eq!(parse_replicas(&Value::Array(vec![])).unwrap(), vec![]);
        assert!(parse_replicas(&bulk("nope")).is_err());
    }

    #[test]
    fn sentinels_list() {
        let v = Value::Array(vec![
            flat(&[
                ("name", "abc"),
                ("ip", "10.0.0.2"),
                ("port", "19002"),
                ("flags", "sentinel"),
            ]),
            flat(&[
                ("name", "def"),
                ("ip", "10.0.0.3"),
                ("port", "19003"),
                ("flags", "sentinel"),
            ]),
        ]);
        assert_eq!(
            parse_sentinels(&v).unwrap(),
            vec!["10.0.0.2:19002", "10.0.0.3:19003"]
        );
        assert!(parse_sentinels(&Value::Array(vec![flat(&[("name", "x")])])).is_err());
    }

    #[test]
    fn observation_to_status() {
        let obs = SentinelObservation {
            master: parse_master(&master_fixture()).unwrap(),
            replicas: vec![],
            peers: vec!["10.0.0.2:19002".into()],
        };
        let s = obs.to_status(&HostPort::new("127.0.0.1", 19001));
        assert!(s.reachable);
        assert_eq!(s.address, "127.0.0.1:19001");
        assert_eq!(s.master_address, "10.0.0.1:9001");
        assert_eq!(s.config_epoch, 3);
        assert_eq!(s.peers, vec!["10.0.0.2:19002"]);
    }
}
