//! The JSON the CLI prints (`status --json`, `watch --json`, `events --json`).
//!
//! This shape is a stable interface for scripts, independent of the protobuf types:
//! new fields may be added, existing ones keep their name and meaning.
//!
//! `status --json` (and every line of `watch --json`, compact):
//! ```text
//! {
//!   "group": "redis-cluster", "version": 12, "updated_at_ms": 1764073865123, "config_epoch": 1,
//!   "master": {"address": "127.0.0.1:9001", "node": "node-1", "confirmed": true,
//!              "unconfirmed": null|"own-agent"|"agents-lost",
//!              "source": "sentinel-quorum"} | null,
//!   "failover_in_progress": false,
//!   "split_brain": ["node-3"],
//!   "summary": {"master_confirmed": true, "nodes_total": 3, "nodes_up": 3, "replicas": 2,
//!               "replicas_link_up": 2, "sentinels_total": 3, "sentinels_up": 3},
//!   "nodes": [{"node": "node-2", "address": "127.0.0.1:9002", "health": "up"|"down"|"unknown",
//!              "agent_health": "up"|"down"|"unknown", "role": "master"|"replica"|"unknown",
//!              "is_master": false, "link": "up"|"down"|null, "lag_bytes": 0|null,
//!              "repl_offset": 1234, "master_address": "127.0.0.1:9001"|null, "ping_micros": 180,
//!              "report_age_ms": 420, "split_brain": false, "error": null|"..."}],
//!   "sentinels": [{"node": "node-1", "address": "127.0.0.1:19001", "health": "up",
//!                  "master_address": "127.0.0.1:9001"|null, "config_epoch": 1,
//!                  "master_flags": ["master"], "error": null}]
//! }
//! ```
//! `link` and `lag_bytes` are null unless the node is a replica. The `summary` lines are one
//! `"key": number` per line in the pretty form, so shell scripts can read them with `sed`.
//!
//! `events --json`: an array of
//! `{"at_ms": 1764073865123, "at": "2025-11-25T12:31:05.123Z", "kind": "master-changed",
//!   "node": "node-2"|null, "message": "...", "topology_version": 13, "switch_lag_ms": 85|null}`.

use redis_ha_proto::v1::{Event, Health, LinkState, NodeView, Role, SentinelView, Topology};
use serde::Serialize;

use crate::timefmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleJson {
    Master,
    Replica,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthJson {
    Up,
    Down,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkJson {
    Up,
    Down,
}

impl RoleJson {
    pub fn from_proto(raw: i32) -> Self {
        match Role::try_from(raw) {
            Ok(Role::Master) => Self::Master,
            Ok(Role::Replica) => Self::Replica,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Replica => "replica",
            Self::Unknown => "unknown",
        }
    }
}

impl HealthJson {
    pub fn from_proto(raw: i32) -> Self {
        match Health::try_from(raw) {
            Ok(Health::Up) => Self::Up,
            Ok(Health::Down) => Self::Down,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }
}

impl LinkJson {
    pub fn from_proto(raw: i32) -> Option<Self> {
        match LinkState::try_from(raw) {
            Ok(LinkState::Up) => Some(Self::Up),
            Ok(LinkState::Down) => Some(Self::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusJson {
    pub group: String,
    pub version: u64,
    pub updated_at_ms: i64,
    pub config_epoch: u64,
    pub master: Option<MasterJson>,
    pub failover_in_progress: bool,
    pub split_brain: Vec<String>,
    /// The replicas that serve the read endpoint (HAProxy's read port); empty: the master does.
    pub readers: Vec<String>,
    pub summary: SummaryJson,
    pub nodes: Vec<NodeJson>,
    pub sentinels: Vec<SentinelJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MasterJson {
    pub address: String,
    pub node: Option<String>,
    pub confirmed: bool,
    /// Why not confirmed (`Topology.master_unconfirmed`); null when confirmed.
    pub unconfirmed: Option<String>,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SummaryJson {
    pub master_confirmed: bool,
    pub nodes_total: usize,
    pub nodes_up: usize,
    pub replicas: usize,
    pub replicas_link_up: usize,
    pub sentinels_total: usize,
    pub sentinels_up: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeJson {
    pub node: String,
    pub address: String,
    pub health: HealthJson,
    pub agent_health: HealthJson,
    pub role: RoleJson,
    pub is_master: bool,
    pub link: Option<LinkJson>,
    pub lag_bytes: Option<u64>,
    pub repl_offset: u64,
    pub master_address: Option<String>,
    pub ping_micros: u64,
    pub report_age_ms: u64,
    pub split_brain: bool,
    pub error: Option<String>,
    /// Serves the read endpoint.
    pub serves_reads: bool,
    /// Replica: seconds since its last acknowledgement, as the master reports it.
    pub ack_lag_seconds: Option<u64>,
    /// Why it does not serve reads (`lag-bytes`, `down`, ...); none for the master.
    pub read_note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentinelJson {
    pub node: String,
    pub address: String,
    pub health: HealthJson,
    pub master_address: Option<String>,
    pub config_epoch: u64,
    pub master_flags: Vec<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventJson {
    pub at_ms: i64,
    pub at: String,
    pub kind: String,
    pub node: Option<String>,
    pub message: String,
    pub topology_version: u64,
    pub switch_lag_ms: Option<u64>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl From<&NodeView> for NodeJson {
    fn from(n: &NodeView) -> Self {
        let role = RoleJson::from_proto(n.role);
        let replica = role == RoleJson::Replica;
        Self {
            node: n.node.clone(),
            address: n.address.clone(),
            health: HealthJson::from_proto(n.health),
            agent_health: HealthJson::from_proto(n.agent_health),
            role,
            is_master: n.is_master,
            link: if replica {
                LinkJson::from_proto(n.link)
            } else {
                None
            },
            lag_bytes: replica.then_some(n.lag_bytes),
            repl_offset: n.repl_offset,
            master_address: non_empty(&n.master_address),
            ping_micros: n.ping_micros,
            report_age_ms: n.report_age_ms,
            split_brain: n.split_brain,
            error: non_empty(&n.error),
            serves_reads: n.serves_reads,
            ack_lag_seconds: replica.then_some(n.ack_lag_seconds),
            read_note: non_empty(&n.read_note),
        }
    }
}

impl From<&SentinelView> for SentinelJson {
    fn from(s: &SentinelView) -> Self {
        Self {
            node: s.node.clone(),
            address: s.address.clone(),
            health: HealthJson::from_proto(s.health),
            master_address: non_empty(&s.master_address),
            config_epoch: s.config_epoch,
            master_flags: s.master_flags.clone(),
            error: non_empty(&s.error),
        }
    }
}

impl From<&Topology> for StatusJson {
    fn from(t: &Topology) -> Self {
        let nodes: Vec<NodeJson> = t.nodes.iter().map(NodeJson::from).collect();
        let sentinels: Vec<SentinelJson> = t.sentinels.iter().map(SentinelJson::from).collect();
        let summary = SummaryJson {
            master_confirmed: !t.master_address.is_empty() && t.master_confirmed,
            nodes_total: nodes.len(),
            nodes_up: nodes.iter().filter(|n| n.health == HealthJson::Up).count(),
            replicas: nodes.iter().filter(|n| n.role == RoleJson::Replica).count(),
            replicas_link_up: nodes
                .iter()
                .filter(|n| n.role == RoleJson::Replica && n.link == Some(LinkJson::Up))
                .count(),
            sentinels_total: sentinels.len(),
            sentinels_up: sentinels
                .iter()
                .filter(|s| s.health == HealthJson::Up)
                .count(),
        };
        Self {
            group: t.master_group.clone(),
            version: t.version,
            updated_at_ms: t.updated_at_ms,
            config_epoch: t.config_epoch,
            master: non_empty(&t.master_address).map(|address| MasterJson {
                address,
                node: non_empty(&t.master_node),
                confirmed: t.master_confirmed,
                unconfirmed: (!t.master_confirmed)
                    .then(|| non_empty(&t.master_unconfirmed))
                    .flatten(),
                source: t.master_source().label().to_owned(),
            }),
            failover_in_progress: t.failover_in_progress,
            split_brain: t.split_brain.clone(),
            readers: t.readers.clone(),
            summary,
            nodes,
            sentinels,
        }
    }
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        Self {
            at_ms: e.at_ms,
            at: timefmt::iso_utc(e.at_ms),
            kind: e.kind.clone(),
            node: non_empty(&e.node),
            message: e.message.clone(),
            topology_version: e.topology_version,
            switch_lag_ms: (e.switch_lag_ms > 0).then_some(e.switch_lag_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample_topology;

    #[test]
    fn status_json_shape_is_stable() {
        let v = serde_json::to_value(StatusJson::from(&sample_topology())).unwrap();
        assert_eq!(v["group"], "redis-cluster");
        assert_eq!(v["master"]["address"], "127.0.0.1:9001");
        assert_eq!(v["master"]["confirmed"], true);
        assert_eq!(v["summary"]["replicas_link_up"], 2);
        assert_eq!(v["summary"]["sentinels_up"], 3);
        assert_eq!(v["nodes"][0]["role"], "master");
        assert_eq!(v["nodes"][0]["link"], serde_json::Value::Null);
        assert_eq!(v["nodes"][0]["lag_bytes"], serde_json::Value::Null);
        assert_eq!(v["nodes"][1]["role"], "replica");
        assert_eq!(v["nodes"][1]["link"], "up");
        assert_eq!(v["nodes"][1]["health"], "up");
        assert_eq!(v["nodes"][1]["lag_bytes"], 0);
        assert_eq!(v["sentinels"][0]["master_flags"][0], "master");
    }

    #[test]
    fn summary_lines_are_sed_friendly() {
        let text = serde_json::to_string_pretty(&StatusJson::from(&sample_topology())).unwrap();
        assert!(text.contains("\n    \"replicas_link_up\": 2,\n"), "{text}");
        assert!(
            text.contains("\n    \"master_confirmed\": true,\n"),
            "{text}"
        );
    }

    #[test]
    fn no_master_is_null() {
        let mut t = sample_topology();
        t.master_address.clear();
        let v = serde_json::to_value(StatusJson::from(&t)).unwrap();
        assert!(v["master"].is_null());
        assert_eq!(v["summary"]["master_confirmed"], false);
    }

    #[test]
    fn event_json_has_iso_time_and_null_lag() {
        let e = Event {
            at_ms: 0,
            kind: "sentinel".into(),
            node: String::new(),
            message: "+sdown".into(),
            topology_version: 3,
            switch_lag_ms: 0,
        };
        let v = serde_json::to_value(EventJson::from(&e)).unwrap();
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
        assert!(v["node"].is_null());
        assert!(v["switch_lag_ms"].is_null());
    }
}
