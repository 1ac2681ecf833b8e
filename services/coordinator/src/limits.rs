//! The coordinator's bounds on what its callers can make it hold (issue #11 item 8): how many
//! groups and agents, how big a held report, how big each group's event history. Pure rules;
//! the service applies them before a report reaches the topology, so the decision code never
//! sees an unbounded input.

use prost::Message;
use redis_ha_proto::v1::AgentReport;

/// Longest accepted group name, agent id or address (bytes).
pub const MAX_NAME_LEN: usize = 256;
/// Longest free text kept from a report (an error, a crash watch's evidence, an event's
/// payload): longer ones are cut. Sentinel's payloads are under 200 bytes.
pub const MAX_TEXT_LEN: usize = 1024;
/// Longest event kind kept (Sentinel's channel names are under 40 bytes).
pub const MAX_KIND_LEN: usize = 64;
/// Sentinel events taken from one report; older ones beyond are dropped (an agent reports
/// every heartbeat, so a real one never has that many).
pub const MAX_EVENTS_PER_REPORT: usize = 256;
/// The most one history event can take: the texts above (an event names at most two
/// addresses, a node and one cut text) plus its fixed fields and allocation overhead.
pub const EVENT_MAX_BYTES: usize = 4096;

/// The configured bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Groups at most (the configured one included).
    pub max_groups: usize,
    /// Distinct agents per group at most, when no node list is configured.
    pub max_agents_per_group: usize,
    /// Largest report held per agent (encoded, without its events), bytes.
    pub max_report_bytes: usize,
    /// The configured node ids (`[[nodes]]`); empty: any agent id, up to the maximum.
    pub node_ids: Vec<String>,
    /// The configured group: with a node list, the only one (the list is its nodes).
    pub master_group: String,
}

/// Why a report is refused; the service turns it into a gRPC status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// INVALID_ARGUMENT.
    #[error("{field} is required")]
    Missing { field: String },
    /// INVALID_ARGUMENT.
    #[error("{field} is longer than {max} bytes ({len})")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
    /// OUT_OF_RANGE.
    #[error("report of {len} bytes (without its events) is larger than max_report_bytes = {max}")]
    ReportTooLarge { len: usize, max: usize },
    /// NOT_FOUND: a node list is configured and this agent is not on it.
    #[error("agent {agent:?} is not a configured node of group {group:?} (configured: {known}); refused")]
    UnknownNode {
        agent: String,
        group: String,
        known: String,
    },
    /// NOT_FOUND: a node list is configured, and it is the configured group's.
    #[error("unknown master group {group:?}: this coordinator serves {configured:?} only (a node list is configured)")]
    UnknownGroup { group: String, configured: String },
    /// RESOURCE_EXHAUSTED.
    #[error("too many master groups (max_groups = {max}); refusing new group {group:?}")]
    TooManyGroups { group: String, max: usize },
    /// RESOURCE_EXHAUSTED.
    #[error("too many agents in group {group:?} (max_agents_per_group = {max}); refusing new agent {agent:?}")]
    TooManyAgents {
        group: String,
        agent: String,
        max: usize,
    },
}

impl Refusal {
    pub fn status(&self) -> tonic::Status {
        let text = self.to_string();
        match self {
            Self::Missing { .. } | Self::TooLong { .. } => tonic::Status::invalid_argument(text),
            Self::ReportTooLarge { .. } => tonic::Status::out_of_range(text),
            Self::UnknownNode { .. } | Self::UnknownGroup { .. } => tonic::Status::not_found(text),
            Self::TooManyGroups { .. } | Self::TooManyAgents { .. } => {
                tonic::Status::resource_exhausted(text)
            }
        }
    }
}

/// A name or address field: required or not, at most [`MAX_NAME_LEN`] bytes.
pub fn check_name(field: &str, value: &str, required: bool) -> Result<(), Refusal> {
    if required && value.trim().is_empty() {
        return Err(Refusal::Missing {
            field: field.to_owned(),
        });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Refusal::TooLong {
            field: field.to_owned(),
            len: value.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Limits {
    /// Checks a report and cuts what may be cut (free texts, events beyond the maximum),
    /// before the group or the agent is looked up. Every address the topology may copy into
    /// an event is checked here, so an event stays within [`EVENT_MAX_BYTES`].
    pub fn admit(&self, report: &mut AgentReport) -> Result<(), Refusal> {
        check_name("master_group", &report.master_group, true)?;
        check_name("agent_id", &report.agent_id, true)?;
        check_name("reason", &report.reason, false)?;
        if !self.node_ids.is_empty() {
            if report.master_group != self.master_group {
                return Err(Refusal::UnknownGroup {
                    group: report.master_group.clone(),
                    configured: self.master_group.clone(),
                });
            }
            if !self.node_ids.contains(&report.agent_id) {
                return Err(Refusal::UnknownNode {
                    agent: report.agent_id.clone(),
                    group: report.master_group.clone(),
                    known: self.node_ids.join(", "),
                });
            }
        }
        if let Some(r) = report.redis.as_mut() {
            check_name("redis.address", &r.address, false)?;
            check_name("redis.master_address", &r.master_address, false)?;
            check_name("redis.run_id", &r.run_id, false)?;
            for l in &r.replicas {
                check_name("redis.replicas.address", &l.address, false)?;
            }
            cut(&mut r.error, MAX_TEXT_LEN);
        }
        if let Some(s) = report.sentinel.as_mut() {
            check_name("sentinel.address", &s.address, false)?;
            check_name("sentinel.master_address", &s.master_address, false)?;
            for p in &s.peers {
                check_name("sentinel.peers", p, false)?;
            }
            for v in &s.replicas {
                check_name("sentinel.replicas.address", &v.address, false)?;
            }
            cut(&mut s.error, MAX_TEXT_LEN);
        }
        if let Some(w) = report.master_watch.as_mut() {
            check_name("master_watch.address", &w.address, false)?;
            cut(&mut w.evidence, MAX_TEXT_LEN);
        }
        if report.events.len() > MAX_EVENTS_PER_REPORT {
            let extra = report.events.len() - MAX_EVENTS_PER_REPORT;
            report.events.drain(..extra);
        }
        for e in &mut report.events {
            cut(&mut e.kind, MAX_KIND_LEN);
            cut(&mut e.payload, MAX_TEXT_LEN);
            cut(&mut e.sentinel, MAX_NAME_LEN);
        }
        // What the group holds of it: the events go to the history, not into the held report.
        let len = report.encoded_len() - events_len(report);
        if len > self.max_report_bytes {
            return Err(Refusal::ReportTooLarge {
                len,
                max: self.max_report_bytes,
            });
        }
        Ok(())
    }

    /// Whether a new group may be created next to `existing` groups.
    pub fn new_group(&self, group: &str, existing: usize) -> Result<(), Refusal> {
        if existing >= self.max_groups {
            return Err(Refusal::TooManyGroups {
                group: group.to_owned(),
                max: self.max_groups,
            });
        }
        Ok(())
    }

    /// Whether a new agent may join a group holding `existing` agents. With a node list the
    /// list itself is the bound ([`Limits::admit`]).
    pub fn new_agent(&self, group: &str, agent: &str, existing: usize) -> Result<(), Refusal> {
        if self.node_ids.is_empty() && existing >= self.max_agents_per_group {
            return Err(Refusal::TooManyAgents {
                group: group.to_owned(),
                agent: agent.to_owned(),
                max: self.max_agents_per_group,
            });
        }
        Ok(())
    }
}

/// The encoded size of a report's events field.
fn events_len(report: &AgentReport) -> usize {
    report
        .events
        .iter()
        .map(|e| {
            let n = e.encoded_len();
            // tag (1 byte) + length prefix + message
            1 + prost::length_delimiter_len(n) + n
        })
        .sum()
}

/// How many events a group's history holds: `event_history`, and no more than fit in
/// `event_history_bytes` at [`EVENT_MAX_BYTES`] each (at least one).
pub fn history_len(event_history: usize, event_history_bytes: usize) -> usize {
    event_history
        .min(event_history_bytes / EVENT_MAX_BYTES)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::{MasterWatch, RedisStatus, SentinelEvent, SentinelStatus};

    fn limits() -> Limits {
        Limits {
            max_groups: 2,
            max_agents_per_group: 3,
            max_report_bytes: 4096,
            node_ids: Vec::new(),
            master_group: "g".into(),
        }
    }

    fn report() -> AgentReport {
        AgentReport {
            agent_id: "node-1".into(),
            master_group: "g".into(),
            sequence: 1,
            reason: "heartbeat".into(),
            redis: Some(RedisStatus {
                address: "127.0.0.1:9001".into(),
                ..Default::default()
            }),
            sentinel: Some(SentinelStatus {
                address: "127.0.0.1:19001".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_normal_report_is_admitted_unchanged() {
        let mut r = report();
        limits().admit(&mut r).unwrap();
        assert_eq!(r, report());
    }

    #[test]
    fn names_and_addresses_are_bounded() {
        type Change = fn(&mut AgentReport, String);
        let cases: [(&str, Change); 7] = [
            ("agent_id", |r, v| r.agent_id = v),
            ("master_group", |r, v| r.master_group = v),
            ("redis.address", |r, v| {
                if let Some(s) = r.redis.as_mut() {
                    s.address = v;
                }
            }),
            ("redis.master_address", |r, v| {
                if let Some(s) = r.redis.as_mut() {
                    s.master_address = v;
                }
            }),
            ("sentinel.master_address", |r, v| {
                if let Some(s) = r.sentinel.as_mut() {
                    s.master_address = v;
                }
            }),
            ("sentinel.peers", |r, v| {
                if let Some(s) = r.sentinel.as_mut() {
                    s.peers = vec![v];
                }
            }),
            ("master_watch.address", |r, v| {
                r.master_watch = Some(MasterWatch {
                    address: v,
                    ..Default::default()
                });
            }),
        ];
        for (field, change) in cases {
            let mut r = report();
            change(&mut r, "x".repeat(MAX_NAME_LEN));
            assert_eq!(limits().admit(&mut r), Ok(()), "{field} at the bound");
            let mut r = report();
            change(&mut r, "x".repeat(MAX_NAME_LEN + 1));
            let e = limits().admit(&mut r).unwrap_err();
            assert_eq!(
                e,
                Refusal::TooLong {
                    field: field.into(),
                    len: MAX_NAME_LEN + 1,
                    max: MAX_NAME_LEN
                }
            );
            assert_eq!(e.status().code(), tonic::Code::InvalidArgument);
            assert!(e.status().message().contains(field));
        }
        let mut r = report();
        r.agent_id = " ".into();
        assert_eq!(
            limits().admit(&mut r),
            Err(Refusal::Missing {
                field: "agent_id".into()
            })
        );
    }

    #[test]
    fn texts_and_events_are_cut_not_refused() {
        let mut r = report();
        r.redis.as_mut().unwrap().error = "é".repeat(MAX_TEXT_LEN); // 2 bytes each
        r.events = (0..MAX_EVENTS_PER_REPORT + 10)
            .map(|i| SentinelEvent {
                kind: format!("+sdown{}", "k".repeat(100)),
                payload: format!("{i} {}", "p".repeat(5000)),
                ..Default::default()
            })
            .collect();
        limits().admit(&mut r).unwrap();
        let error = &r.redis.as_ref().unwrap().error;
        assert_eq!(error.len(), MAX_TEXT_LEN);
        assert!(error.chars().all(|c| c == 'é'));
        // The newest kept, oldest first.
        assert_eq!(r.events.len(), MAX_EVENTS_PER_REPORT);
        assert!(r.events[0].payload.starts_with("10 "));
        assert!(r.events.iter().all(|e| e.payload.len() == MAX_TEXT_LEN));
        assert!(r.events.iter().all(|e| e.kind.len() == MAX_KIND_LEN));
    }

    #[test]
    fn the_held_report_is_bounded_in_bytes() {
        let mut r = report();
        r.sentinel.as_mut().unwrap().master_flags = vec!["s_down".into(); 1000];
        let e = limits().admit(&mut r).unwrap_err();
        assert!(
            matches!(e, Refusal::ReportTooLarge { max: 4096, .. }),
            "{e}"
        );
        assert_eq!(e.status().code(), tonic::Code::OutOfRange);
        // Events do not count: they go to the history, each cut.
        let mut r = report();
        r.events = vec![
            SentinelEvent {
                payload: "p".repeat(MAX_TEXT_LEN),
                ..Default::default()
            };
            MAX_EVENTS_PER_REPORT
        ];
        limits().admit(&mut r).unwrap();
    }

    #[test]
    fn with_a_node_list_only_its_nodes_and_group_report() {
        let l = Limits {
            node_ids: vec!["node-1".into(), "node-2".into()],
            ..limits()
        };
        let mut r = report();
        l.admit(&mut r).unwrap();
        let mut r = report();
        r.agent_id = "rogue".into();
        let e = l.admit(&mut r).unwrap_err();
        assert_eq!(e.status().code(), tonic::Code::NotFound);
        assert!(e.to_string().contains("\"rogue\"") && e.to_string().contains("node-1, node-2"));
        let mut r = report();
        r.master_group = "other".into();
        let e = l.admit(&mut r).unwrap_err();
        assert_eq!(e.status().code(), tonic::Code::NotFound);
        assert!(e.to_string().contains("\"other\""), "{e}");
        // The list is the bound on agents.
        assert_eq!(l.new_agent("g", "node-2", 100), Ok(()));
    }

    #[test]
    fn groups_and_agents_are_counted() {
        let l = limits();
        assert_eq!(l.new_group("a", 1), Ok(()));
        let e = l.new_group("b", 2).unwrap_err();
        assert_eq!(e.status().code(), tonic::Code::ResourceExhausted);
        assert!(e.to_string().contains("max_groups = 2"));
        assert_eq!(l.new_agent("g", "x", 2), Ok(()));
        let e = l.new_agent("g", "x", 3).unwrap_err();
        assert_eq!(e.status().code(), tonic::Code::ResourceExhausted);
        assert!(e.to_string().contains("max_agents_per_group = 3"));
    }

    #[test]
    fn history_length_follows_both_bounds() {
        assert_eq!(history_len(256, 1024 * 1024), 256);
        assert_eq!(history_len(256, 64 * 1024), 16);
        assert_eq!(history_len(10, usize::MAX), 10);
        assert_eq!(history_len(10, 0), 1);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        let mut s = "aé".to_owned(); // 3 bytes
        cut(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_owned();
        cut(&mut s, 5);
        assert_eq!(s, "abc");
    }
}
