//! A Sentinel's config file, rebuilt at every start: the shared template rendered again (so a
//! changed setting applies), the password lines, and exactly the state lines this Sentinel saved
//! for the group last time (its id, the epochs, the known replicas and Sentinels). The hashed
//! password Sentinel writes into its file is not carried over.

use std::fmt;

use redis_ha_common::{HostPort, Secret};
use redis_ha_sentinel::NamedMaster;

pub use redis_ha_common::template::Unfilled as TemplateError;

/// The template with every `@NAME@` of `values` replaced; fails on any `@NAME@` (upper-case
/// letters and `_`) left unfilled (the rule is `redis_ha_common::template`'s).
pub fn render_template(template: &str, values: &[(&str, String)]) -> Result<String, TemplateError> {
    redis_ha_common::template::fill(template, values)
}

/// The master this Sentinel monitored when it last rewrote its file (`sentinel monitor GROUP
/// HOST PORT QUORUM`, the last such line).
pub fn saved_monitor(saved: &str, group: &str) -> Option<HostPort> {
    saved.lines().rev().find_map(|line| {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["sentinel", "monitor", g, host, port, _quorum] if *g == group => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
                Some(HostPort::new(*host, port))
            }
            _ => None,
        }
    })
}

/// The state lines to carry over: `myid` and `current-epoch`, and this group's `config-epoch`,
/// `leader-epoch`, `known-replica` and `known-sentinel`. Nothing else (settings come from the
/// template, the password from the secret).
pub fn saved_state<'a>(saved: &'a str, group: &str) -> Vec<&'a str> {
    saved
        .lines()
        .filter(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["sentinel", "myid" | "current-epoch", ..] => true,
                ["sentinel", "config-epoch" | "leader-epoch" | "known-replica" | "known-sentinel", g, ..] => {
                    *g == group
                }
                _ => false,
            }
        })
        .collect()
}

/// Why a Sentinel monitors the master it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorReason {
    /// The one it followed when it last rewrote its file.
    Saved,
    /// A quorum of its peers follows it (a new Sentinel joining a running group).
    Peers { config_epoch: u64, votes: usize },
    /// A new Sentinel whose peers name no master by quorum: the initial master.
    Initial,
}

impl fmt::Display for MonitorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Saved => f.write_str("the master it followed before its restart"),
            Self::Peers {
                config_epoch,
                votes,
            } => write!(
                f,
                "new Sentinel: {votes} peer(s), at least the quorum, follow it at config epoch {config_epoch}"
            ),
            Self::Initial => {
                f.write_str("new Sentinel, no quorum of peers names a master: the initial master")
            }
        }
    }
}

/// The master to monitor: the one it followed last time, else the one a quorum of its peers
/// names, else the initial master.
pub fn choose_monitor(
    saved: Option<HostPort>,
    peers: Option<NamedMaster>,
    initial: &HostPort,
) -> (HostPort, MonitorReason) {
    if let Some(m) = saved {
        return (m, MonitorReason::Saved);
    }
    if let Some(n) = peers {
        return (
            n.master,
            MonitorReason::Peers {
                config_epoch: n.config_epoch,
                votes: n.votes,
            },
        );
    }
    (initial.clone(), MonitorReason::Initial)
}

/// A Sentinel's two secrets: its own password, and the Redis `sentinel` user's.
pub struct SentinelAuth<'a> {
    pub server: &'a Secret,
    pub redis_user: &'a Secret,
}

/// The whole file: the rendered template, the password lines ([`crate::acl::render_sentinel`]),
/// the saved state.
pub fn build(
    rendered: &str,
    group: &str,
    auth: Option<&SentinelAuth<'_>>,
    saved: Option<&str>,
) -> String {
    let mut out = rendered.trim_end_matches('\n').to_owned();
    out.push('\n');
    if let Some(a) = auth {
        out.push_str(&crate::acl::render_sentinel(group, a.server, a.redis_user));
    }
    if let Some(saved) = saved.filter(|s| !s.trim().is_empty()) {
        out.push_str("# State saved by this Sentinel before its restart.\n");
        for line in saved_state(saved, group) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The template's placeholders and their values.
pub struct TemplateValues<'a> {
    pub group: &'a str,
    pub master: &'a HostPort,
    pub quorum: usize,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub port: u16,
    pub announce_host: &'a str,
    pub data_dir: &'a str,
}

impl TemplateValues<'_> {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GROUP", self.group.to_owned()),
            ("MASTER_HOST", self.master.host.clone()),
            ("MASTER_PORT", self.master.port.to_string()),
            ("QUORUM", self.quorum.to_string()),
            ("DOWN_AFTER_MS", self.down_after_ms.to_string()),
            ("FAILOVER_TIMEOUT_MS", self.failover_timeout_ms.to_string()),
            ("PORT", self.port.to_string()),
            ("ANNOUNCE_HOST", self.announce_host.to_owned()),
            ("DATA_DIR", self.data_dir.to_owned()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template the stack ships.
    const SHIPPED: &str = include_str!("../../../deploy/stack/config/sentinel.conf");

    /// What Sentinel 7 writes back into its file (with announce-hostnames), and lines of
    /// another group and settings that must not be carried.
    const SAVED: &str = "\
port 19001
sentinel monitor redis-cluster redis-1 9001 2
sentinel monitor other x 1 2
sentinel monitor redis-cluster redis-2 9002 2
sentinel myid 0123456789abcdef0123456789abcdef01234567
sentinel config-epoch redis-cluster 3
sentinel leader-epoch redis-cluster 3
sentinel current-epoch 3
sentinel known-replica redis-cluster redis-1 9001
sentinel known-replica redis-cluster redis-3 9003
sentinel known-sentinel redis-cluster sentinel-2 19002 89abcdef0123456789abcdef0123456789abcdef
sentinel known-replica other y 2
sentinel config-epoch other 9
sentinel down-after-milliseconds redis-cluster 999
user default on sanitize-payload #5e88489 ~* &* +@all
requirepass \"old\"
";

    fn values(master: &HostPort) -> Vec<(&'static str, String)> {
        TemplateValues {
            group: "redis-cluster",
            master,
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 10000,
            port: 19001,
            announce_host: "sentinel-1",
            data_dir: "/data",
        }
        .pairs()
    }

    #[test]
    fn renders_the_shipped_template_and_fails_on_a_missing_value() {
        let m = HostPort::new("redis-1", 9001);
        let text = render_template(SHIPPED, &values(&m)).expect("renders");
        for want in [
            "port 19001\n",
            "dir \"/data\"\n",
            "sentinel announce-ip sentinel-1\n",
            "sentinel announce-port 19001\n",
            "sentinel monitor redis-cluster redis-1 9001 2\n",
            "sentinel down-after-milliseconds redis-cluster 5000\n",
            "sentinel failover-timeout redis-cluster 10000\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(!text.contains('@'));
        let mut missing = values(&m);
        missing.retain(|(k, _)| *k != "QUORUM");
        assert_eq!(
            render_template(SHIPPED, &missing),
            Err(TemplateError {
                names: ["QUORUM".to_owned()].into()
            })
        );
        assert_eq!(
            render_template("a @NEW_KEY@ b", &[]),
            Err(TemplateError {
                names: ["NEW_KEY".to_owned()].into()
            })
        );
        // An e-mail address or a lone '@' is no placeholder.
        assert!(render_template("# ops@example.org, @ x\n", &[]).is_ok());
        assert!(render_template("# a@b c@D@", &[]).is_err());
    }

    #[test]
    fn the_saved_monitor_is_the_last_of_the_group() {
        assert_eq!(
            saved_monitor(SAVED, "redis-cluster"),
            Some(HostPort::new("redis-2", 9002))
        );
        assert_eq!(saved_monitor(SAVED, "other"), Some(HostPort::new("x", 1)));
        assert_eq!(saved_monitor(SAVED, "none"), None);
        assert_eq!(saved_monitor("sentinel monitor g h port 2\n", "g"), None);
        assert_eq!(saved_monitor("sentinel monitor g h 1\n", "g"), None);
    }

    #[test]
    fn carries_exactly_the_state_lines_of_the_group() {
        assert_eq!(
            saved_state(SAVED, "redis-cluster"),
            vec![
                "sentinel myid 0123456789abcdef0123456789abcdef01234567",
                "sentinel config-epoch redis-cluster 3",
                "sentinel leader-epoch redis-cluster 3",
                "sentinel current-epoch 3",
                "sentinel known-replica redis-cluster redis-1 9001",
                "sentinel known-replica redis-cluster redis-3 9003",
                "sentinel known-sentinel redis-cluster sentinel-2 19002 89abcdef0123456789abcdef0123456789abcdef",
            ]
        );
    }

    #[test]
    fn chooses_saved_then_peers_then_initial() {
        let initial = HostPort::new("redis-1", 9001);
        let peers = NamedMaster {
            master: HostPort::new("redis-3", 9003),
            config_epoch: 4,
            votes: 2,
            settled_votes: 2,
        };
        let saved = Some(HostPort::new("redis-2", 9002));
        assert_eq!(
            choose_monitor(saved.clone(), Some(peers.clone()), &initial),
            (HostPort::new("redis-2", 9002), MonitorReason::Saved)
        );
        assert_eq!(
            choose_monitor(None, Some(peers), &initial),
            (
                HostPort::new("redis-3", 9003),
                MonitorReason::Peers {
                    config_epoch: 4,
                    votes: 2
                }
            )
        );
        assert_eq!(
            choose_monitor(None, None, &initial),
            (initial.clone(), MonitorReason::Initial)
        );
    }

    #[test]
    fn builds_the_file_with_auth_and_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").expect("write");
        let pw = Secret::from_file("pw", &p).expect("secret");
        std::fs::write(&p, "us3r\n").expect("write");
        let user = Secret::from_file("pw", &p).expect("secret");
        let m = saved_monitor(SAVED, "redis-cluster").expect("saved");
        let rendered = render_template(SHIPPED, &values(&m)).expect("renders");
        let auth = SentinelAuth {
            server: &pw,
            redis_user: &user,
        };
        let text = build(&rendered, "redis-cluster", Some(&auth), Some(SAVED));
        assert!(text.starts_with(&rendered));
        for want in [
            "sentinel monitor redis-cluster redis-2 9002 2\n",
            "sentinel auth-user redis-cluster sentinel\n",
            "sentinel auth-pass redis-cluster \"us3r\"\n",
            "requirepass \"s3cret\"\n",
            "sentinel sentinel-pass \"s3cret\"\n",
            "sentinel current-epoch 3\n",
            "sentinel known-sentinel redis-cluster sentinel-2 19002",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        for gone in ["\"old\"", "#5e88489", "other", "999"] {
            assert!(!text.contains(gone), "{gone:?} carried over:\n{text}");
        }
        // Without a password or saved state: the template alone.
        assert_eq!(build(&rendered, "redis-cluster", None, None), rendered);
        assert_eq!(
            build(&rendered, "redis-cluster", None, Some("\n")),
            rendered
        );
    }
}
