//! Parsers for what a Redis node answers: `ROLE`, `INFO replication`, `INFO server`.
//! Pure functions over the reply, so they are tested with fixtures.

use std::collections::HashMap;

use redis::Value;
use redis_ha_common::addr::is_valid_host;
pub use redis_ha_common::redis_client::ReplyError;
use redis_ha_common::redis_client::{info_fields, text};
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{LinkState, RedisStatus, ReplicaLink, Role};

/// `host:port` as Sentinel and Redis show it (IPv6 hosts in brackets, like [`HostPort`]).
pub fn join_addr(host: &str, port: u16) -> String {
    HostPort::new(host, port).to_string()
}

/// One replica in a master's `ROLE` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReplica {
    pub address: String,
    pub offset: u64,
}

/// The `ROLE` reply of a Redis node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleReply {
    Master {
        offset: u64,
        replicas: Vec<RoleReplica>,
    },
    Replica {
        master_address: String,
        /// `connect`, `connecting`, `sync`, `connected` (link up) or `handshake`.
        state: String,
        /// `-1` before the first sync: reported as 0.
        offset: u64,
    },
}

impl RoleReply {
    pub fn role(&self) -> Role {
        match self {
            RoleReply::Master { .. } => Role::Master,
            RoleReply::Replica { .. } => Role::Replica,
        }
    }

    /// Writes what `ROLE` tells into `status`, keeping what only `INFO` knows (lag, link
    /// details) when the role did not change.
    pub fn merge_into(&self, status: &mut RedisStatus) {
        let role_changed = status.role() != self.role();
        status.set_role(self.role());
        match self {
            RoleReply::Master { offset, replicas } => {
                status.repl_offset = *offset;
                status.master_address.clear();
                status.set_link(LinkState::Unspecified);
                status.sync_in_progress = false;
                let same_set = !role_changed
                    && status.replicas.len() == replicas.len()
                    && replicas
                        .iter()
                        .all(|r| status.replicas.iter().any(|s| s.address == r.address));
                if same_set {
                    for link in &mut status.replicas {
                        if let Some(r) = replicas.iter().find(|r| r.address == link.address) {
                            link.offset = r.offset;
                        }
                    }
                } else {
                    status.replicas = replicas
                        .iter()
                        .map(|r| ReplicaLink {
                            address: r.address.clone(),
                            state: String::new(),
                            offset: r.offset,
                            lag_seconds: 0,
                        })
                        .collect();
                }
            }
            RoleReply::Replica {
                master_address,
                state,
                offset,
            } => {
                status.repl_offset = *offset;
                status.master_address.clone_from(master_address);
                status.set_link(if state == "connected" {
                    LinkState::Up
                } else {
                    LinkState::Down
                });
                status.replicas.clear();
            }
        }
    }
}

fn int(v: &Value, field: &str) -> Result<i64, ReplyError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => {
            let t = text(other).ok_or_else(|| ReplyError::invalid(field, format!("{other:?}")))?;
            t.trim()
                .parse()
                .map_err(|_| ReplyError::invalid(field, t.clone()))
        }
    }
}

fn port(v: &Value, field: &str) -> Result<u16, ReplyError> {
    let p = int(v, field)?;
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ReplyError::invalid(field, p.to_string()))
}

fn non_negative(i: i64) -> u64 {
    u64::try_from(i).unwrap_or(0)
}

/// Item `i` of a reply array, or `Missing(name)`.
fn item<'a>(items: &'a [Value], i: usize, name: &str) -> Result<&'a Value, ReplyError> {
    items.get(i).ok_or_else(|| ReplyError::Missing(name.into()))
}

/// Item `i` as text, or `Missing(name)`.
fn text_item(items: &[Value], i: usize, name: &str) -> Result<String, ReplyError> {
    items
        .get(i)
        .and_then(text)
        .ok_or_else(|| ReplyError::Missing(name.into()))
}

/// Items `i` (host) and `i + 1` (port) as `host:port`.
fn addr_items(
    items: &[Value],
    i: usize,
    host: &str,
    port_name: &str,
) -> Result<String, ReplyError> {
    let h = text_item(items, i, host)?;
    if !is_valid_host(&h) {
        return Err(ReplyError::invalid(host, h));
    }
    let p = port(item(items, i + 1, port_name)?, port_name)?;
    Ok(join_addr(&h, p))
}

/// Item `i` as an offset: 0 when absent or negative (`-1` before the first sync).
fn offset_item(items: &[Value], i: usize, name: &str) -> Result<u64, ReplyError> {
    items
        .get(i)
        .map_or(Ok(0), |o| int(o, name).map(non_negative))
}

/// Parses the `ROLE` reply. A Sentinel's `ROLE` (`sentinel`) is an error: wrong port.
pub fn parse_role(v: &Value) -> Result<RoleReply, ReplyError> {
    let items = match v {
        Value::Array(items) => items,
        other => {
            return Err(ReplyError::Shape(format!(
                "ROLE: expected an array, got {other:?}"
            )))
        }
    };
    let kind = text_item(items, 0, "role")?;
    match kind.as_str() {
        "master" => {
            let offset = non_negative(int(item(items, 1, "offset")?, "offset")?);
            let mut replicas = Vec::new();
            match items.get(2) {
                Some(Value::Array(list)) => {
                    for r in list {
                        let Value::Array(fields) = r else {
                            return Err(ReplyError::Shape(format!("ROLE replica entry {r:?}")));
                        };
                        replicas.push(RoleReplica {
                            address: addr_items(fields, 0, "replica ip", "replica port")?,
                            offset: offset_item(fields, 2, "replica offset")?,
                        });
                    }
                }
                None | Some(Value::Nil) => {}
                Some(other) => {
                    return Err(ReplyError::Shape(format!("ROLE replicas: {other:?}")));
                }
            }
            Ok(RoleReply::Master { offset, replicas })
        }
        "slave" | "replica" => Ok(RoleReply::Replica {
            master_address: addr_items(items, 1, "master host", "master port")?,
            state: text_item(items, 3, "state")?,
            offset: offset_item(items, 4, "offset")?,
        }),
        "sentinel" => Err(ReplyError::invalid(
            "role",
            "sentinel (this is a Sentinel, not a Redis node)",
        )),
        other => Err(ReplyError::invalid("role", other)),
    }
}

/// What `INFO replication` tells about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationInfo {
    pub role: Role,
    /// Replica only: `master_host:master_port`.
    pub master_address: String,
    /// Replica only: `master_link_status`.
    pub link: LinkState,
    /// `master_repl_offset` for a master, `slave_repl_offset` for a replica.
    pub repl_offset: u64,
    /// Master only: the `slaveN:` lines.
    pub replicas: Vec<ReplicaLink>,
    /// Replica only: `master_sync_in_progress:1`.
    pub sync_in_progress: bool,
    /// `master_replid`: the replication history this node is in (a replica: its master's).
    pub replid: String,
    /// `master_replid2`: the history it continued from (a promoted replica: its old master's);
    /// all zeros when none.
    pub replid2: String,
}

/// `master_replid2` when a node has no earlier history.
const NO_REPLID: &str = "0000000000000000000000000000000000000000";

impl ReplicationInfo {
    /// True when `promoted` is a master that continues this node's replication history: it was
    /// promoted from the stream this node follows (its `master_replid2` is this node's
    /// `master_replid`), so following it is a partial resync of the same data.
    pub fn continued_by(&self, promoted: &ReplicationInfo) -> bool {
        promoted.role == Role::Master
            && !self.replid.is_empty()
            && self.replid != NO_REPLID
            && promoted.replid2 == self.replid
    }

    /// Writes these fields into `status`.
    pub fn apply_to(&self, status: &mut RedisStatus) {
        status.set_role(self.role);
        status.master_address.clone_from(&self.master_address);
        status.set_link(self.link);
        status.repl_offset = self.repl_offset;
        status.replicas.clone_from(&self.replicas);
        status.sync_in_progress = self.sync_in_progress;
    }
}

fn text_field(fields: &HashMap<&str, &str>, key: &str) -> String {
    fields
        .get(key)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn num_field(fields: &HashMap<&str, &str>, key: &str) -> Result<u64, ReplyError> {
    let raw = fields
        .get(key)
        .ok_or_else(|| ReplyError::Missing(key.to_owned()))?;
    let i: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ReplyError::invalid(key, *raw))?;
    Ok(non_negative(i))
}

/// Parses one `slaveN:ip=...,port=...,state=...,offset=...,lag=...` value.
fn parse_replica_line(key: &str, value: &str) -> Result<ReplicaLink, ReplyError> {
    let kv: HashMap<&str, &str> = value.split(',').filter_map(|p| p.split_once('=')).collect();
    let ip = kv
        .get("ip")
        .ok_or_else(|| ReplyError::Missing(format!("{key}.ip")))?;
    if !is_valid_host(ip) {
        return Err(ReplyError::invalid(&format!("{key}.ip"), *ip));
    }
    let port: u16 = kv
        .get("port")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ReplyError::invalid(&format!("{key}.port"), value))?;
    let number = |name: &str| -> Result<u64, ReplyError> {
        match kv.get(name) {
            None => Ok(0),
            Some(v) => v
                .parse::<i64>()
                .map(non_negative)
                .map_err(|_| ReplyError::invalid(&format!("{key}.{name}"), *v)),
        }
    };
    Ok(ReplicaLink {
        address: join_addr(ip, port),
        state: kv.get("state").copied().unwrap_or_default().to_owned(),
        offset: number("offset")?,
        lag_seconds: number("lag")?,
    })
}

/// Parses `INFO replication` (the whole `INFO` text works too).
pub fn parse_info_replication(info: &str) -> Result<ReplicationInfo, ReplyError> {
    let fields = info_fields(info);
    let role_raw = fields
        .get("role")
        .ok_or_else(|| ReplyError::Missing("role".into()))?;
    match *role_raw {
        "master" => {
            let mut replicas = Vec::new();
            let mut keys: Vec<(u32, &str, &str)> = fields
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("slave")
                        .and_then(|n| n.parse::<u32>().ok())
                        .map(|n| (n, *k, *v))
                })
                .collect();
            keys.sort_unstable();
            for (_, k, v) in keys {
                replicas.push(parse_replica_line(k, v)?);
            }
            Ok(ReplicationInfo {
                role: Role::Master,
                master_address: String::new(),
                link: LinkState::Unspecified,
                repl_offset: num_field(&fields, "master_repl_offset")?,
                replicas,
                sync_in_progress: false,
                replid: text_field(&fields, "master_replid"),
                replid2: text_field(&fields, "master_replid2"),
            })
        }
        "slave" => {
            let host = fields
                .get("master_host")
                .ok_or_else(|| ReplyError::Missing("master_host".into()))?;
            if !is_valid_host(host) {
                return Err(ReplyError::invalid("master_host", *host));
            }
            let port: u16 = fields
                .get("master_port")
                .and_then(|p| p.trim().parse().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    ReplyError::invalid(
                        "master_port",
                        fields.get("master_port").copied().unwrap_or_default(),
                    )
                })?;
            let link = match fields.get("master_link_status").copied() {
                Some("up") => LinkState::Up,
                Some("down") => LinkState::Down,
                Some(other) => return Err(ReplyError::invalid("master_link_status", other)),
                None => return Err(ReplyError::Missing("master_link_status".into())),
            };
            let sync_in_progress = match fields.get("master_sync_in_progress").copied() {
                Some("1") => true,
                Some("0") | None => false,
                Some(other) => return Err(ReplyError::invalid("master_sync_in_progress", other)),
            };
            Ok(ReplicationInfo {
                role: Role::Replica,
                master_address: join_addr(host, port),
                link,
                repl_offset: num_field(&fields, "slave_repl_offset")?,
                replicas: Vec::new(),
                sync_in_progress,
                replid: text_field(&fields, "master_replid"),
                replid2: text_field(&fields, "master_replid2"),
            })
        }
        other => Err(ReplyError::invalid("role", other)),
    }
}

/// `run_id` from `INFO server`.
pub fn parse_run_id(info: &str) -> Result<String, ReplyError> {
    info_fields(info)
        .get("run_id")
        .map(|s| (*s).to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReplyError::Missing("run_id".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    const MASTER_INFO: &str = "# Replication\r\n\
        role:master\r\n\
        connected_slaves:2\r\n\
        slave0:ip=10.0.0.2,port=9002,state=online,offset=5000,lag=0\r\n\
        slave1:ip=10.0.0.3,port=9003,state=wait_bgsave,offset=0,lag=3\r\n\
        master_failover_state:no-failover\r\n\
        master_replid:8a3d4c1f0e5b6a7980123456789abcdef0123456\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n\
        master_repl_offset:5012\r\n\
        second_repl_offset:-1\r\n\
        repl_backlog_active:1\r\n\
        repl_backlog_size:1048576\r\n\
        repl_backlog_first_byte_offset:1\r\n\
        repl_backlog_histlen:5012\r\n";

    const REPLICA_UP_INFO: &str = "# Replication\r\n\
        role:slave\r\n\
        master_host:10.0.0.1\r\n\
        master_port:9001\r\n\
        master_link_status:up\r\n\
        master_last_io_seconds_ago:1\r\n\
        master_sync_in_progress:0\r\n\
        slave_read_repl_offset:4990\r\n\
        slave_repl_offset:4990\r\n\
        slave_priority:100\r\n\
        slave_read_only:1\r\n\
        replica_announced:1\r\n\
        connected_slaves:0\r\n\
        master_failover_state:no-failover\r\n\
        master_repl_offset:4990\r\n";

    const REPLICA_DOWN_INFO: &str = "# Replication\r\n\
        role:slave\r\n\
        master_host:redis-1\r\n\
        master_port:9001\r\n\
        master_link_status:down\r\n\
        master_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:1\r\n\
        slave_read_repl_offset:-1\r\n\
        slave_repl_offset:-1\r\n\
        master_link_down_since_seconds:-1\r\n\
        slave_priority:100\r\n\
        connected_slaves:0\r\n\
        master_repl_offset:0\r\n";

    #[test]
    fn info_master_with_two_replicas() {
        let r = parse_info_replication(MASTER_INFO).unwrap();
        assert_eq!(r.role, Role::Master);
        assert_eq!(r.repl_offset, 5012);
        assert_eq!(r.master_address, "");
        assert_eq!(r.link, LinkState::Unspecified);
        assert_eq!(
            r.replicas,
            vec![
                ReplicaLink {
                    address: "10.0.0.2:9002".into(),
                    state: "online".into(),
                    offset: 5000,
                    lag_seconds: 0
                },
                ReplicaLink {
                    address: "10.0.0.3:9003".into(),
                    state: "wait_bgsave".into(),
                    offset: 0,
                    lag_seconds: 3
                },
            ]
        );
        assert!(!r.sync_in_progress);
    }

    #[test]
    fn info_replica_link_up() {
        let r = parse_info_replication(REPLICA_UP_INFO).unwrap();
        assert_eq!(r.role, Role::Replica);
        assert_eq!(r.master_address, "10.0.0.1:9001");
        assert_eq!(r.link, LinkState::Up);
        assert_eq!(r.repl_offset, 4990);
        assert!(r.replicas.is_empty());
        assert!(!r.sync_in_progress);
    }

    #[test]
    fn info_replica_link_down_and_syncing() {
        let r = parse_info_replication(REPLICA_DOWN_INFO).unwrap();
        assert_eq!(r.master_address, "redis-1:9001");
        assert_eq!(r.link, LinkState::Down);
        assert_eq!(r.repl_offset, 0, "-1 before the first sync reads as 0");
        assert!(r.sync_in_progress);
    }

    #[test]
    fn info_garbage_is_an_error() {
        assert_eq!(
            parse_info_replication("HTTP/1.1 400 Bad Request\r\n\r\n"),
            Err(ReplyError::Missing("role".into()))
        );
        assert!(matches!(
            parse_info_replication("role:leader\r\n"),
            Err(ReplyError::Invalid { .. })
        ));
        assert!(
            parse_info_replication("role:master\r\n").is_err(),
            "no offset"
        );
        assert!(parse_info_replication(
            "role:master\r\nmaster_repl_offset:1\r\nslave0:ip=a,port=x\r\n"
        )
        .is_err());
        assert!(parse_info_replication(
            "role:slave\r\nmaster_host:h\r\nmaster_port:0\r\nmaster_link_status:up\r\nslave_repl_offset:1\r\n"
        )
        .is_err());
        assert!(parse_info_replication(
            "role:slave\r\nmaster_host:h\r\nmaster_port:1\r\nmaster_link_status:maybe\r\nslave_repl_offset:1\r\n"
        )
        .is_err());
    }

    /// `info` (a fixture) parsed and written into `status`.
    fn apply_info(status: &mut RedisStatus, info: &str) {
        parse_info_replication(info).unwrap().apply_to(status);
    }

    #[test]
    fn info_applies_to_status() {
        let mut s = RedisStatus::default();
        apply_info(&mut s, MASTER_INFO);
        assert_eq!(s.role(), Role::Master);
        assert_eq!(s.replicas.len(), 2);
        apply_info(&mut s, REPLICA_UP_INFO);
        assert_eq!(s.role(), Role::Replica);
        assert_eq!(s.link(), LinkState::Up);
        assert!(s.replicas.is_empty());
    }

    #[test]
    fn run_id_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:9001\r\n";
        assert_eq!(parse_run_id(info).unwrap(), "abc123");
        assert!(parse_run_id("# Server\r\n").is_err());
    }

    #[test]
    fn role_master() {
        let v = Value::Array(vec![
            bulk("master"),
            Value::Int(3129659),
            Value::Array(vec![
                Value::Array(vec![bulk("127.0.0.1"), bulk("9001"), bulk("3129242")]),
                Value::Array(vec![bulk("127.0.0.1"), bulk("9002"), bulk("3129543")]),
            ]),
        ]);
        let r = parse_role(&v).unwrap();
        assert_eq!(r.role(), Role::Master);
        assert_eq!(
            r,
            RoleReply::Master {
                offset: 3129659,
                replicas: vec![
                    RoleReplica {
                        address: "127.0.0.1:9001".into(),
                        offset: 3129242
                    },
                    RoleReplica {
                        address: "127.0.0.1:9002".into(),
                        offset: 3129543
                    },
                ]
            }
        );
        let lonely = Value::Array(vec![bulk("master"), Value::Int(0), Value::Array(vec![])]);
        assert_eq!(
            parse_role(&lonely).unwrap(),
            RoleReply::Master {
                offset: 0,
                replicas: vec![]
            }
        );
    }

    #[test]
    fn role_replica() {
        let v = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(9000),
            bulk("connected"),
            Value::Int(3167038),
        ]);
        assert_eq!(
            parse_role(&v).unwrap(),
            RoleReply::Replica {
                master_address: "127.0.0.1:9000".into(),
                state: "connected".into(),
                offset: 3167038
            }
        );
        let connecting = Value::Array(vec![
            bulk("slave"),
            bulk("redis-1"),
            Value::Int(9001),
            bulk("connect"),
            Value::Int(-1),
        ]);
        let r = parse_role(&connecting).unwrap();
        let mut s = RedisStatus::default();
        r.merge_into(&mut s);
        assert_eq!(s.role(), Role::Replica);
        assert_eq!(s.link(), LinkState::Down);
        assert_eq!(s.repl_offset, 0);
        assert_eq!(s.master_address, "redis-1:9001");
    }

    #[test]
    fn role_garbage_and_sentinel_are_errors() {
        assert!(parse_role(&bulk("OK")).is_err());
        assert!(parse_role(&Value::Array(vec![])).is_err());
        assert!(parse_role(&Value::Array(vec![bulk("leader")])).is_err());
        assert!(parse_role(&Value::Array(vec![bulk("master"), bulk("x")])).is_err());
        assert!(parse_role(&Value::Array(vec![
            bulk("slave"),
            bulk("h"),
            Value::Int(70000),
            bulk("connected"),
            Value::Int(1)
        ]))
        .is_err());
        let sentinel = Value::Array(vec![bulk("sentinel"), Value::Array(vec![bulk("mymaster")])]);
        let e = parse_role(&sentinel).unwrap_err().to_string();
        assert!(e.contains("Sentinel"), "{e}");
    }

    #[test]
    fn role_merge_keeps_info_details_while_role_is_unchanged() {
        let mut s = RedisStatus::default();
        apply_info(&mut s, MASTER_INFO);
        let role = RoleReply::Master {
            offset: 6000,
            replicas: vec![
                RoleReplica {
                    address: "10.0.0.2:9002".into(),
                    offset: 5990,
                },
                RoleReplica {
                    address: "10.0.0.3:9003".into(),
                    offset: 10,
                },
            ],
        };
        role.merge_into(&mut s);
        assert_eq!(s.repl_offset, 6000);
        assert_eq!(s.replicas[0].state, "online");
        assert_eq!(s.replicas[0].offset, 5990);
        assert_eq!(s.replicas[1].lag_seconds, 3);

        // Promotion seen by ROLE alone: the replica fields go away.
        let mut r = RedisStatus::default();
        apply_info(&mut r, REPLICA_UP_INFO);
        role.merge_into(&mut r);
        assert_eq!(r.role(), Role::Master);
        assert_eq!(r.master_address, "");
        assert_eq!(r.link(), LinkState::Unspecified);
        assert_eq!(r.replicas.len(), 2);
    }

    #[test]
    fn a_promoted_sibling_continues_the_replica_s_history() {
        let replica = parse_info_replication(
            "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:9001\r\nmaster_link_status:down\r\n\
             slave_repl_offset:100\r\nmaster_replid:aaaa\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n",
        )
        .unwrap();
        let promoted = parse_info_replication(
            "role:master\r\nmaster_repl_offset:100\r\nmaster_replid:bbbb\r\nmaster_replid2:aaaa\r\n",
        )
        .unwrap();
        assert!(replica.continued_by(&promoted));
        // A master with a history of its own (a restarted old master, a stray) does not.
        let stray = parse_info_replication(
            "role:master\r\nmaster_repl_offset:5\r\nmaster_replid:cccc\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n",
        )
        .unwrap();
        assert!(!replica.continued_by(&stray));
        // Nor does a replica, nor anything for a node with no history.
        assert!(!replica.continued_by(&replica));
        let fresh = ReplicationInfo {
            replid: String::new(),
            ..replica.clone()
        };
        assert!(!fresh.continued_by(&promoted));
    }

    /// Fuzz finding (info_replication target): a replica line whose ip holds a NUL byte was
    /// taken as an address that is no `host:port`. Hosts that no name or IP can be (empty,
    /// whitespace, control characters) are refused in `INFO` and in `ROLE`.
    #[test]
    fn hosts_no_address_can_have_are_refused() {
        let info = "role:master\r\nmaster_repl_offset:1\r\nslave0:ip=::\0s1,port=9003,state=online,offset=1,lag=0\r\n";
        assert_eq!(
            parse_info_replication(info),
            Err(ReplyError::invalid("slave0.ip", "::\0s1"))
        );
        // A bracketed ip was taken verbatim: "[[::1]:9003" (a second fuzz finding).
        let info = "role:master\r\nmaster_repl_offset:1\r\nslave0:ip=[::1,port=9003\r\n";
        assert_eq!(
            parse_info_replication(info),
            Err(ReplyError::invalid("slave0.ip", "[::1"))
        );
        for host in ["", " ", "a b", "x\ty", "[::1]"] {
            let info = format!(
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:9001\r\nmaster_link_status:up\r\nslave_repl_offset:1\r\n"
            );
            assert!(parse_info_replication(&info).is_err(), "{host:?}");
            let role = Value::Array(vec![
                bulk("slave"),
                bulk(host),
                Value::Int(9001),
                bulk("connected"),
                Value::Int(1),
            ]);
            assert!(parse_role(&role).is_err(), "{host:?}");
        }
    }
}
