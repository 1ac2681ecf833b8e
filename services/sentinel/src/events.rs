//! Sentinel's event messages (published on channels named after the event, e.g.
//! `+switch-master`) parsed into typed values.
//!
//! Payload formats (Redis 7 `sentinelEvent`):
//! - instance events: `<type> <name> <ip> <port> @ <master-name> <master-ip> <master-port> [extra]`,
//!   for a master: `master <name> <ip> <port> [extra]` (e.g. `+odown ... #quorum 2/2`);
//! - `+new-epoch <epoch>`, `+vote-for-leader <runid> <epoch>`;
//! - `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`;
//! - `+tilt` / `-tilt`: free text.

use std::fmt;

use redis_ha_common::addr::is_valid_host;
use redis_ha_common::HostPort;

/// The event kind, from the channel name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    Sdown,
    SdownCleared,
    Odown,
    OdownCleared,
    NewEpoch,
    VoteForLeader,
    TryFailover,
    ElectedLeader,
    /// `+failover-state-<state>`: `select-slave`, `send-slaveof-noone`, `wait-promotion`,
    /// `reconf-slaves`, ...
    FailoverState(String),
    SelectedSlave,
    PromotedSlave,
    SlaveReconfSent,
    SlaveReconfInprog,
    SlaveReconfDone,
    FailoverEnd,
    FailoverEndForTimeout,
    SwitchMaster,
    /// `-failover-abort-<reason>`, e.g. `not-elected`, `no-good-slave`.
    FailoverAbort(String),
    ConvertToSlave,
    Slave,
    Sentinel,
    Reboot,
    FixSlaveConfig,
    ConfigUpdateFrom,
    Tilt,
    TiltCleared,
    /// `__sentinel__:hello`: Sentinels' gossip, not an event.
    Hello,
    /// Anything else Sentinel publishes (`+monitor`, `+reset-master`, `-dup-sentinel`, ...).
    Other(String),
}

/// What an event does to the failover-in-progress state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverEffect {
    Starts,
    Ends,
    None,
}

impl EventKind {
    pub fn from_channel(channel: &str) -> Self {
        match channel {
            "+sdown" => Self::Sdown,
            "-sdown" => Self::SdownCleared,
            "+odown" => Self::Odown,
            "-odown" => Self::OdownCleared,
            "+new-epoch" => Self::NewEpoch,
            "+vote-for-leader" => Self::VoteForLeader,
            "+try-failover" => Self::TryFailover,
            "+elected-leader" => Self::ElectedLeader,
            "+selected-slave" => Self::SelectedSlave,
            "+promoted-slave" => Self::PromotedSlave,
            "+slave-reconf-sent" => Self::SlaveReconfSent,
            "+slave-reconf-inprog" => Self::SlaveReconfInprog,
            "+slave-reconf-done" => Self::SlaveReconfDone,
            "+failover-end" => Self::FailoverEnd,
            "+failover-end-for-timeout" => Self::FailoverEndForTimeout,
            "+switch-master" => Self::SwitchMaster,
            "+convert-to-slave" => Self::ConvertToSlave,
            "+slave" => Self::Slave,
            "+sentinel" => Self::Sentinel,
            "+reboot" => Self::Reboot,
            "+fix-slave-config" => Self::FixSlaveConfig,
            "+config-update-from" => Self::ConfigUpdateFrom,
            "+tilt" => Self::Tilt,
            "-tilt" => Self::TiltCleared,
            "__sentinel__:hello" => Self::Hello,
            other => {
                if let Some(state) = other.strip_prefix("+failover-state-") {
                    Self::FailoverState(state.to_owned())
                } else if let Some(reason) = other.strip_prefix("-failover-abort-") {
                    Self::FailoverAbort(reason.to_owned())
                } else {
                    Self::Other(other.to_owned())
                }
            }
        }
    }

    /// The channel name again.
    pub fn channel(&self) -> String {
        match self {
            Self::Sdown => "+sdown".into(),
            Self::SdownCleared => "-sdown".into(),
            Self::Odown => "+odown".into(),
            Self::OdownCleared => "-odown".into(),
            Self::NewEpoch => "+new-epoch".into(),
            Self::VoteForLeader => "+vote-for-leader".into(),
            Self::TryFailover => "+try-failover".into(),
            Self::ElectedLeader => "+elected-leader".into(),
            Self::FailoverState(s) => format!("+failover-state-{s}"),
            Self::SelectedSlave => "+selected-slave".into(),
            Self::PromotedSlave => "+promoted-slave".into(),
            Self::SlaveReconfSent => "+slave-reconf-sent".into(),
            Self::SlaveReconfInprog => "+slave-reconf-inprog".into(),
            Self::SlaveReconfDone => "+slave-reconf-done".into(),
            Self::FailoverEnd => "+failover-end".into(),
            Self::FailoverEndForTimeout => "+failover-end-for-timeout".into(),
            Self::SwitchMaster => "+switch-master".into(),
            Self::FailoverAbort(r) => format!("-failover-abort-{r}"),
            Self::ConvertToSlave => "+convert-to-slave".into(),
            Self::Slave => "+slave".into(),
            Self::Sentinel => "+sentinel".into(),
            Self::Reboot => "+reboot".into(),
            Self::FixSlaveConfig => "+fix-slave-config".into(),
            Self::ConfigUpdateFrom => "+config-update-from".into(),
            Self::Tilt => "+tilt".into(),
            Self::TiltCleared => "-tilt".into(),
            Self::Hello => "__sentinel__:hello".into(),
            Self::Other(s) => s.clone(),
        }
    }

    pub fn failover_effect(&self) -> FailoverEffect {
        match self {
            Self::Odown
            | Self::NewEpoch
            | Self::TryFailover
            | Self::VoteForLeader
            | Self::ElectedLeader
            | Self::FailoverState(_)
            | Self::SelectedSlave
            | Self::PromotedSlave => FailoverEffect::Starts,
            Self::FailoverEnd
            | Self::FailoverEndForTimeout
            | Self::SwitchMaster
            | Self::FailoverAbort(_)
            | Self::OdownCleared => FailoverEffect::Ends,
            _ => FailoverEffect::None,
        }
    }

    /// Kinds whose payload is `<type> <name> <ip> <port> [@ ...]`.
    fn has_instance_payload(&self) -> bool {
        !matches!(
            self,
            Self::NewEpoch
                | Self::VoteForLeader
                | Self::SwitchMaster
                | Self::Tilt
                | Self::TiltCleared
                | Self::Hello
                | Self::Other(_)
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.channel())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceType {
    Master,
    Slave,
    Sentinel,
}

/// The master an instance belongs to (`@ <name> <ip> <port>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRef {
    pub name: String,
    pub addr: HostPort,
}

/// The instance an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub kind: InstanceType,
    /// Master: the group name; replica: `ip:port`; Sentinel: its run id.
    pub name: String,
    pub addr: HostPort,
    /// `None` for a master.
    pub master: Option<MasterRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Instance {
        instance: InstanceRef,
        /// Whatever follows the instance, e.g. `#quorum 2/2`.
        extra: String,
    },
    NewEpoch(u64),
    Vote {
        leader: String,
        epoch: u64,
    },
    SwitchMaster {
        group: String,
        old: HostPort,
        new: HostPort,
    },
    /// Free text (`+tilt`, hello messages, unknown kinds).
    Text(String),
}

/// One parsed Sentinel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub kind: EventKind,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Sentinel event {kind} with unexpected payload {payload:?}: {reason}")]
pub struct EventParseError {
    pub kind: String,
    pub payload: String,
    pub reason: String,
}

impl ParsedEvent {
    /// The master group the event belongs to; `None` for group-less events (epochs, tilt).
    pub fn master_group(&self) -> Option<&str> {
        match &self.payload {
            Payload::Instance { instance, .. } => Some(match &instance.master {
                Some(m) => m.name.as_str(),
                None => instance.name.as_str(),
            }),
            Payload::SwitchMaster { group, .. } => Some(group),
            _ => None,
        }
    }

    /// The epoch the payload carries (`+new-epoch`, `+vote-for-leader`).
    pub fn epoch(&self) -> Option<u64> {
        match &self.payload {
            Payload::NewEpoch(e) | Payload::Vote { epoch: e, .. } => Some(*e),
            _ => None,
        }
    }

    /// The node this event names as the (future) master: the replica chosen by
    /// `+selected-slave` / `+promoted-slave`, the new master of `+switch-master`.
    pub fn named_master(&self) -> Option<&HostPort> {
        match (&self.kind, &self.payload) {
            (
                EventKind::SelectedSlave | EventKind::PromotedSlave | EventKind::FailoverState(_),
                Payload::Instance { instance, .. },
            ) if instance.kind == InstanceType::Slave => Some(&instance.addr),
            (EventKind::SwitchMaster, Payload::SwitchMaster { new, .. }) => Some(new),
            _ => None,
        }
    }
}

fn host_port(host: &str, port: &str) -> Result<HostPort, String> {
    let p: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {port:?}"))?;
    if host.is_empty() {
        return Err("empty host".into());
    }
    if !is_valid_host(host) {
        return Err(format!("invalid host {host:?}"));
    }
    Ok(HostPort::new(host, p))
}

fn parse_instance(payload: &str) -> Result<(InstanceRef, String), String> {
    let t: Vec<&str> = payload.split_whitespace().collect();
    if t.len() < 4 {
        return Err("expected `<type> <name> <ip> <port>`".into());
    }
    let kind = match t[0] {
        "master" => InstanceType::Master,
        "slave" | "replica" => InstanceType::Slave,
        "sentinel" => InstanceType::Sentinel,
        other => return Err(format!("unknown instance type {other:?}")),
    };
    let addr = host_port(t[2], t[3])?;
    let (master, rest) = if t.get(4) == Some(&"@") {
        if t.len() < 8 {
            return Err("expected `@ <master-name> <master-ip> <master-port>`".into());
        }
        (
            Some(MasterRef {
                name: t[5].to_owned(),
                addr: host_port(t[6], t[7])?,
            }),
            &t[8..],
        )
    } else {
        if kind != InstanceType::Master {
            return Err("a replica or Sentinel event must name its master after `@`".into());
        }
        (None, &t[4..])
    };
    Ok((
        InstanceRef {
            kind,
            name: t[1].to_owned(),
            addr,
            master,
        },
        rest.join(" "),
    ))
}

/// Parses one message: `channel` is the event kind, `payload` the message.
pub fn parse_event(channel: &str, payload: &str) -> Result<ParsedEvent, EventParseError> {
    let kind = EventKind::from_channel(channel);
    let fail = |reason: String| EventParseError {
        kind: channel.to_owned(),
        payload: payload.to_owned(),
        reason,
    };
    let t: Vec<&str> = payload.split_whitespace().collect();
    let parsed = match &kind {
        EventKind::NewEpoch => {
            let e = t
                .first()
                .and_then(|e| e.parse().ok())
                .ok_or_else(|| fail("expected `<epoch>`".into()))?;
            Payload::NewEpoch(e)
        }
        EventKind::VoteForLeader => match t.as_slice() {
            [leader, epoch, ..] => Payload::Vote {
                leader: (*leader).to_owned(),
                epoch: epoch
                    .parse()
                    .map_err(|_| fail(format!("invalid epoch {epoch:?}")))?,
            },
            _ => return Err(fail("expected `<runid> <epoch>`".into())),
        },
        EventKind::SwitchMaster => match t.as_slice() {
            [group, old_ip, old_port, new_ip, new_port, ..] => Payload::SwitchMaster {
                group: (*group).to_owned(),
                old: host_port(old_ip, old_port).map_err(fail)?,
                new: host_port(new_ip, new_port).map_err(fail)?,
            },
            _ => {
                return Err(fail(
                    "expected `<name> <old-ip> <old-port> <new-ip> <new-port>`".into(),
                ))
            }
        },
        k if k.has_instance_payload() => {
            let (instance, extra) = parse_instance(payload).map_err(fail)?;
            Payload::Instance { instance, extra }
        }
        EventKind::Other(_) => match parse_instance(payload) {
            Ok((instance, extra)) => Payload::Instance { instance, extra },
            Err(_) => Payload::Text(payload.to_owned()),
        },
        _ => Payload::Text(payload.to_owned()),
    };
    Ok(ParsedEvent {
        kind,
        payload: parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLAVE: &str = "slave 10.0.0.2:9002 10.0.0.2 9002 @ redis-cluster 10.0.0.1 9001";
    const MASTER: &str = "master redis-cluster 10.0.0.1 9001";
    const SENTINEL: &str =
        "sentinel 5c1a3b2d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b 10.0.0.3 19003 @ redis-cluster 10.0.0.1 9001";

    fn master_ref() -> MasterRef {
        MasterRef {
            name: "redis-cluster".into(),
            addr: HostPort::new("10.0.0.1", 9001),
        }
    }

    fn instance(channel: &str, payload: &str) -> (InstanceRef, String) {
        match parse_event(channel, payload).unwrap().payload {
            Payload::Instance { instance, extra } => (instance, extra),
            other => panic!("{channel}: {other:?}"),
        }
    }

    #[test]
    fn master_instance_events() {
        for ch in [
            "+sdown",
            "-sdown",
            "-odown",
            "+try-failover",
            "+elected-leader",
            "+failover-state-select-slave",
            "+failover-state-reconf-slaves",
            "+failover-end",
            "+failover-end-for-timeout",
            "-failover-abort-not-elected",
            "-failover-abort-no-good-slave",
            "+reboot",
        ] {
            let (i, extra) = instance(ch, MASTER);
            assert_eq!(i.kind, InstanceType::Master, "{ch}");
            assert_eq!(i.name, "redis-cluster");
            assert_eq!(i.addr, HostPort::new("10.0.0.1", 9001));
            assert_eq!(i.master, None);
            assert_eq!(extra, "");
            let ev = parse_event(ch, MASTER).unwrap();
            assert_eq!(ev.master_group(), Some("redis-cluster"));
            assert_eq!(ev.kind.channel(), ch);
        }
    }

    #[test]
    fn hosts_with_control_characters_or_brackets_are_refused() {
        for bad in ["10.0.0.1\u{7}", "[10.0.0.1", "a\u{0}"] {
            let payload = format!("master redis-cluster {bad} 9001");
            assert!(parse_event("+sdown", &payload).is_err(), "{bad:?}");
            let switch = format!("redis-cluster 10.0.0.1 9001 {bad} 9002");
            assert!(parse_event("+switch-master", &switch).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn odown_keeps_the_quorum_note() {
        let (i, extra) = instance("+odown", "master redis-cluster 10.0.0.1 9001 #quorum 2/2");
        assert_eq!(i.kind, InstanceType::Master);
        assert_eq!(extra, "#quorum 2/2");
    }

    #[test]
    fn replica_instance_events() {
        for ch in [
            "+sdown",
            "-sdown",
            "+selected-slave",
            "+failover-state-send-slaveof-noone",
            "+failover-state-wait-promotion",
            "+promoted-slave",
            "+slave-reconf-sent",
            "+slave-reconf-inprog",
            "+slave-reconf-done",
            "+convert-to-slave",
            "+slave",
            "+reboot",
            "+fix-slave-config",
        ] {
            let (i, _) = instance(ch, SLAVE);
            assert_eq!(i.kind, InstanceType::Slave, "{ch}");
            assert_eq!(i.name, "10.0.0.2:9002");
            assert_eq!(i.addr, HostPort::new("10.0.0.2", 9002));
            assert_eq!(i.master, Some(master_ref()));
            assert_eq!(
                parse_event(ch, SLAVE).unwrap().master_group(),
                Some("redis-cluster")
            );
        }
    }

    #[test]
    fn sentinel_instance_events() {
        for ch in ["+sentinel", "+config-update-from", "+sdown", "-sdown"] {
            let (i, _) = instance(ch, SENTINEL);
            assert_eq!(i.kind, InstanceType::Sentinel, "{ch}");
            assert_eq!(i.addr, HostPort::new("10.0.0.3", 19003));
            assert_eq!(i.master, Some(master_ref()));
        }
    }

    #[test]
    fn named_master_of_selection_and_switch() {
        let sel = parse_event("+selected-slave", SLAVE).unwrap();
        assert_eq!(sel.named_master(), Some(&HostPort::new("10.0.0.2", 9002)));
        let noone = parse_event("+failover-state-send-slaveof-noone", SLAVE).unwrap();
        assert_eq!(noone.named_master(), Some(&HostPort::new("10.0.0.2", 9002)));
        let sw = parse_event(
            "+switch-master",
            "redis-cluster 10.0.0.1 9001 10.0.0.2 9002",
        )
        .unwrap();
        assert_eq!(sw.named_master(), Some(&HostPort::new("10.0.0.2", 9002)));
        assert_eq!(sw.master_group(), Some("redis-cluster"));
        assert_eq!(
            sw.payload,
            Payload::SwitchMaster {
                group: "redis-cluster".into(),
                old: HostPort::new("10.0.0.1", 9001),
                new: HostPort::new("10.0.0.2", 9002)
            }
        );
        assert_eq!(parse_event("+sdown", SLAVE).unwrap().named_master(), None);
        assert_eq!(
            parse_event("+failover-end", MASTER).unwrap().named_master(),
            None
        );
    }

    #[test]
    fn epochs() {
        let e = parse_event("+new-epoch", "7").unwrap();
        assert_eq!(e.payload, Payload::NewEpoch(7));
        assert_eq!(e.epoch(), Some(7));
        assert_eq!(e.master_group(), None);
        let v = parse_event("+vote-for-leader", "5c1a3b2d9e8f 8").unwrap();
        assert_eq!(
            v.payload,
            Payload::Vote {
                leader: "5c1a3b2d9e8f".into(),
                epoch: 8
            }
        );
        assert_eq!(v.epoch(), Some(8));
        assert!(parse_event("+new-epoch", "soon").is_err());
        assert!(parse_event("+vote-for-leader", "abc").is_err());
        assert!(parse_event("+vote-for-leader", "abc x").is_err());
    }

    #[test]
    fn tilt_and_hello_are_text() {
        let t = parse_event("+tilt", "#tilt mode entered").unwrap();
        assert_eq!(t.kind, EventKind::Tilt);
        assert_eq!(t.payload, Payload::Text("#tilt mode entered".into()));
        let t = parse_event("-tilt", "#tilt mode exited").unwrap();
        assert_eq!(t.kind, EventKind::TiltCleared);
        let h = parse_event(
            "__sentinel__:hello",
            "10.0.0.3,19003,5c1a,1,redis-cluster,10.0.0.1,9001,1",
        )
        .unwrap();
        assert_eq!(h.kind, EventKind::Hello);
        assert_eq!(h.master_group(), None);
    }

    #[test]
    fn unknown_kinds_are_kept() {
        let m = parse_event("+monitor", "master other 10.0.0.9 6379 quorum 2").unwrap();
        assert_eq!(m.kind, EventKind::Other("+monitor".into()));
        assert_eq!(m.master_group(), Some("other"));
        let x = parse_event("+something", "free text").unwrap();
        assert_eq!(x.payload, Payload::Text("free text".into()));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for (ch, p) in [
            ("+sdown", ""),
            ("+sdown", "master redis-cluster 10.0.0.1"),
            ("+sdown", "master redis-cluster 10.0.0.1 port"),
            ("+selected-slave", "slave 10.0.0.2:9002 10.0.0.2 9002"),
            (
                "+selected-slave",
                "slave 10.0.0.2:9002 10.0.0.2 9002 @ redis-cluster 10.0.0.1",
            ),
            ("+promoted-slave", "thing a b 1"),
            ("+switch-master", "redis-cluster 10.0.0.1 9001 10.0.0.2"),
            ("+switch-master", "redis-cluster 10.0.0.1 9001 10.0.0.2 0"),
            ("+failover-end", "\u{0}\u{1}garbage"),
        ] {
            let e = parse_event(ch, p).unwrap_err();
            assert_eq!(e.kind, ch);
            assert!(e.to_string().contains(ch), "{e}");
        }
    }

    #[test]
    fn failover_effects() {
        let starts = [
            "+odown",
            "+new-epoch",
            "+try-failover",
            "+vote-for-leader",
            "+elected-leader",
            "+failover-state-select-slave",
            "+failover-state-send-slaveof-noone",
            "+failover-state-wait-promotion",
            "+failover-state-reconf-slaves",
            "+selected-slave",
            "+promoted-slave",
        ];
        let ends = [
            "+failover-end",
            "+switch-master",
            "-failover-abort-not-elected",
            "-failover-abort-no-good-slave",
            "-odown",
        ];
        let none = [
            "+sdown",
            "-sdown",
            "+slave",
            "+tilt",
            "+convert-to-slave",
            "+reboot",
        ];
        for (channels, effect) in [
            (&starts[..], FailoverEffect::Starts),
            (&ends[..], FailoverEffect::Ends),
            (&none[..], FailoverEffect::None),
        ] {
            for ch in channels {
                assert_eq!(
                    EventKind::from_channel(ch).failover_effect(),
                    effect,
                    "{ch}"
                );
            }
        }
    }
}
