//! Parsers of Sentinel's replies. Each instance is a flat key/value array (RESP2) or a map
//! (RESP3).

use std::collections::HashMap;

use redis::Value;
use redis_ha_common::HostPort;

/// A reply that does not have the shape Sentinel gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("unexpected reply shape: {0}")]
    Shape(String),
    #[error("missing field {0:?}")]
    Missing(String),
    #[error("field {field:?} has an invalid value {value:?}")]
    Invalid { field: String, value: String },
}

impl ReplyError {
    pub fn invalid(field: &str, value: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            value: value.into(),
        }
    }
}

/// One instance as Sentinel describes it: field name → value.
pub type InstanceMap = HashMap<String, String>;

/// A scalar reply as text.
pub fn text(v: &Value) -> Option<String> {
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
    if ip.is_empty() {
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

/// Parses the `SENTINEL MASTER <group>` reply.
pub fn parse_master(v: &Value) -> Result<SentinelMaster, ReplyError> {
    let m = parse_instance_map(v)?;
    Ok(SentinelMaster {
        address: instance_addr(&m)?,
        flags: flags(&m),
        config_epoch: number(&m, "config-epoch")?,
        quorum: number(&m, "quorum")?,
        other_sentinels: number(&m, "num-other-sentinels")?,
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
        ];
        let m = parse_master(&flat(&fields)).expect("parses");
        assert_eq!(m.address, HostPort::new("redis-2", 9002));
        assert_eq!((m.config_epoch, m.quorum, m.other_sentinels), (7, 2, 2));
        assert!(m.failover_in_progress());
        let v = m.view(HostPort::new("sentinel-1", 19001));
        assert!(!v.settled);

        let map = Value::Map(fields.iter().map(|(k, v)| (bulk(k), bulk(v))).collect());
        assert_eq!(parse_master(&map).expect("parses"), m);
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
}
