//! The rolling upgrade's decisions (`redis-ha upgrade plan|wait`, which `deploy/up.sh` runs on
//! a stack that is already up): which Redis and Sentinel services change, and in which order
//! they are replaced given the current roles; and when a replaced node counts as back.
//!
//! The order: every other service first (agents, coordinator, reloader, HAProxy: the normal
//! stack deploy, with the node services held at their running versions), then the replicas'
//! Redis one at a time (each linked and caught up before the next), then the Sentinels one at
//! a time (each back and naming the master, so two of three are always up), then a switchover
//! away from the master, then the old master's Redis, then a last deploy of everything (nothing
//! left to change by then). A group that is not healthy is refused: replacing a node while
//! another is down could leave no replica to fail over to, or no Sentinel quorum.
//!
//! Input of `plan` (one line per node service, from `docker service inspect`, `-` when the
//! service does not exist): `SERVICE CURRENT_IMAGE CURRENT_CONFIG DESIRED_IMAGE DESIRED_CONFIG
//! [CURRENT_SETTINGS DESIRED_SETTINGS]`, e.g. `redis-1 redis-ha/redis:ab12 st_redis_conf_77aa
//! redis-ha/redis:cd34 st_redis_conf_77aa 5f0c 5f0c`; the settings are a hash of the service's
//! env file (`--maxmemory`, `--down-after-ms`, quorum, failover-timeout: deploy/swarm/upgrade.sh).
//! Output: [`Plan::render`], one line each: `master N`, `change SERVICE WHAT`, `step ...`
//! (`# ...` at the end of a line is a comment for people).

use std::fmt;

use crate::model::{HealthJson, LinkJson, RoleJson, StatusJson};

/// The stack's nodes (deploy/stack/redis-ha.yml: redis-1..3, sentinel-1..3).
pub const NODES: [u8; 3] = [1, 2, 3];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Redis,
    Sentinel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Sentinel => "sentinel",
        }
    }
}

/// What a service runs: its image, its config object's name and its settings' hash (`-`:
/// not given, never a change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub image: String,
    pub config: String,
    pub settings: String,
}

/// One node service: what runs now (`None`: no such service) and what the deploy wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub kind: Kind,
    pub node: u8,
    pub current: Option<Version>,
    pub desired: Version,
}

impl ServiceState {
    pub fn name(&self) -> String {
        format!("{}-{}", self.kind.as_str(), self.node)
    }

    /// What differs between the running and the wanted version.
    pub fn changes(&self) -> Vec<Change> {
        let Some(cur) = &self.current else {
            return vec![Change::Missing];
        };
        let mut out = Vec::new();
        if strip_digest(&cur.image) != strip_digest(&self.desired.image) {
            out.push(Change::Image);
        }
        if cur.config != self.desired.config {
            out.push(Change::Config);
        }
        if cur.settings != "-"
            && self.desired.settings != "-"
            && cur.settings != self.desired.settings
        {
            out.push(Change::Settings);
        }
        out
    }
}

/// An image reference without its `@sha256:...` pin: the swarm adds the digest when it
/// resolves a registry image, which is no change of image.
fn strip_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Image,
    Config,
    /// Its env file's settings (`--maxmemory`, `--down-after-ms` ...).
    Settings,
    /// The service does not exist in the running stack.
    Missing,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Config => "config",
            Self::Settings => "settings",
            Self::Missing => "missing",
        }
    }
}

/// One thing the shell does, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Deploy the stack with every node service held at its running version: the other
    /// services (agents, coordinator, reloader, HAProxy) take their new specs; wait healthy.
    Others,
    /// Replace node N's Redis (a replica at that moment); wait until it is linked to the
    /// master and caught up.
    Redis { node: u8, old_master: bool },
    /// Replace node N's Sentinel; wait until it is back, names the master and knows its peers.
    Sentinel { node: u8 },
    /// `redis-ha switchover --to node-TO` away from the master FROM; wait until TO is the
    /// confirmed master with both replicas linked.
    Switchover { from: u8, to: u8 },
    /// Deploy the whole stack at its new versions (`--prune`); wait healthy.
    Final,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Others => write!(
                f,
                "step others  # agents, coordinator, reloader, HAProxy: stack deploy, node services held"
            ),
            Self::Redis {
                node,
                old_master: false,
            } => write!(
                f,
                "step redis {node}  # replica: replace, wait linked and caught up"
            ),
            Self::Redis {
                node,
                old_master: true,
            } => write!(
                f,
                "step redis {node}  # the old master, a replica now: replace, wait linked and caught up"
            ),
            Self::Sentinel { node } => write!(
                f,
                "step sentinel {node}  # replace, wait back with the master and its peers"
            ),
            Self::Switchover { from, to } => write!(
                f,
                "step switchover {from} {to}  # redis-ha switchover --to node-{to}: the master leaves node-{from}"
            ),
            Self::Final => write!(
                f,
                "step final  # stack deploy of everything (--prune), wait healthy"
            ),
        }
    }
}

/// The decision: what changes, the master now, the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The confirmed master's node (only known, and only needed, when a node service changes).
    pub master: Option<u8>,
    /// Every node service that changes, with what changes.
    pub changes: Vec<(String, Vec<Change>)>,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The machine-readable lines the shell reads (`# ...`: for people).
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self.master {
            Some(m) => out.push_str(&format!("master {m}  # node-{m} is the master now\n")),
            None => out.push_str("master -  # not needed: no Redis or Sentinel service changes\n"),
        }
        for (service, what) in &self.changes {
            let what: Vec<&str> = what.iter().map(|c| c.as_str()).collect();
            out.push_str(&format!("change {service} {}\n", what.join(",")));
        }
        for s in &self.steps {
            out.push_str(&format!("{s}\n"));
        }
        out
    }
}

/// Why no rolling upgrade is planned. Each names the node and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("input line {line}: {reason}")]
    BadInput { line: usize, reason: String },
    #[error("no line for {0} in the input")]
    MissingLine(String),
    #[error("{0} does not exist in the running stack: a rolling upgrade needs every node; deploy/up.sh --all-at-once creates it")]
    MissingService(String),
    #[error("no master: the coordinator names none (fix the group first; deploy/up.sh --all-at-once replaces everything at once)")]
    NoMaster,
    #[error(
        "master {0} is not confirmed (redis-ha status says why): wait, or fix the group first"
    )]
    Unconfirmed(String),
    #[error("the master {0} is not one of node-1..node-3")]
    UnknownMaster(String),
    #[error("a failover is under way: wait until it is over")]
    FailoverInProgress,
    #[error("split brain reported ({0}): fix the group first")]
    SplitBrain(String),
    #[error("node-{0} is not in the coordinator's topology (role unknown): fix it first, or deploy/up.sh --all-at-once")]
    NodeUnknown(u8),
    #[error("node-{node} is {health}: replacing another node now could leave no replica to fail over to; fix node-{node} first, or deploy/up.sh --all-at-once")]
    NodeDown { node: u8, health: &'static str },
    #[error("node-{node}'s role is {role}, expected a replica of the master: fix it first, or deploy/up.sh --all-at-once")]
    NotReplica { node: u8, role: &'static str },
    #[error("node-{0} is a replica whose link to the master is down: fix it first, or deploy/up.sh --all-at-once")]
    LinkDown(u8),
    #[error("sentinel of node-{node} is {health}: replacing another Sentinel would break the quorum; fix it first, or deploy/up.sh --all-at-once")]
    SentinelDown { node: u8, health: &'static str },
}

/// Parses the `plan` input (blank lines and `#` comments skipped); every node service once.
pub fn parse_services(text: &str) -> Result<Vec<ServiceState>, PlanError> {
    let mut out: Vec<ServiceState> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| PlanError::BadInput {
            line: i + 1,
            reason,
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        let (service, cur_image, cur_conf, new_image, new_conf, cur_set, new_set) = match w[..] {
            [a, b, c, d, e] => (a, b, c, d, e, "-", "-"),
            [a, b, c, d, e, f, g] => (a, b, c, d, e, f, g),
            _ => {
                return Err(bad(format!(
                    "expected SERVICE CURRENT_IMAGE CURRENT_CONFIG DESIRED_IMAGE DESIRED_CONFIG [CURRENT_SETTINGS DESIRED_SETTINGS], got {line:?}"
                )))
            }
        };
        let (kind, node) = parse_service(service).ok_or_else(|| {
            bad(format!(
                "unknown service {service:?} (redis-N or sentinel-N, N 1-3)"
            ))
        })?;
        if new_image == "-" || new_conf == "-" {
            return Err(bad(format!("{service}: no desired image or config")));
        }
        let current = match (cur_image, cur_conf) {
            ("-", "-") => None,
            ("-", _) | (_, "-") => {
                return Err(bad(format!(
                    "{service}: the running service has no image or no config"
                )))
            }
            (image, config) => Some(Version {
                image: image.to_owned(),
                config: config.to_owned(),
                settings: cur_set.to_owned(),
            }),
        };
        if out.iter().any(|s| s.kind == kind && s.node == node) {
            return Err(bad(format!("{service} given twice")));
        }
        out.push(ServiceState {
            kind,
            node,
            current,
            desired: Version {
                image: new_image.to_owned(),
                config: new_conf.to_owned(),
                settings: new_set.to_owned(),
            },
        });
    }
    for kind in [Kind::Redis, Kind::Sentinel] {
        for n in NODES {
            if !out.iter().any(|s| s.kind == kind && s.node == n) {
                return Err(PlanError::MissingLine(format!("{}-{n}", kind.as_str())));
            }
        }
    }
    out.sort_by_key(|s| (s.kind, s.node));
    Ok(out)
}

fn parse_service(s: &str) -> Option<(Kind, u8)> {
    let (kind, n) = s.rsplit_once('-')?;
    let kind = match kind {
        "redis" => Kind::Redis,
        "sentinel" => Kind::Sentinel,
        _ => return None,
    };
    let n: u8 = n.parse().ok()?;
    NODES.contains(&n).then_some((kind, n))
}

/// An address compared as the coordinator compares them (host case and IPv6 brackets aside).
fn addr_key(addr: &str) -> String {
    let addr = addr.trim();
    match addr.rsplit_once(':') {
        Some((host, port)) => format!(
            "{}:{port}",
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        ),
        None => addr.to_ascii_lowercase(),
    }
}

/// `node-N` → N (1-3).
pub fn node_number(id: &str) -> Option<u8> {
    let n: u8 = id.strip_prefix("node-")?.parse().ok()?;
    NODES.contains(&n).then_some(n)
}

/// The confirmed master's node, or why there is none.
fn confirmed_master(status: &StatusJson) -> Result<u8, PlanError> {
    let m = status.master.as_ref().ok_or(PlanError::NoMaster)?;
    if !status.summary.master_confirmed || !m.confirmed {
        return Err(PlanError::Unconfirmed(m.address.clone()));
    }
    let id = m.node.as_deref().unwrap_or(&m.address);
    node_number(id).ok_or_else(|| PlanError::UnknownMaster(id.to_owned()))
}

/// Refuses a group in which replacing one node could cost availability or data: the master
/// confirmed, every other node a replica with its link up, every Sentinel up.
fn check_group(status: &StatusJson) -> Result<u8, PlanError> {
    if status.failover_in_progress {
        return Err(PlanError::FailoverInProgress);
    }
    if !status.split_brain.is_empty() {
        return Err(PlanError::SplitBrain(status.split_brain.join(", ")));
    }
    let master = confirmed_master(status)?;
    for n in NODES {
        let node = status
            .nodes
            .iter()
            .find(|x| node_number(&x.node) == Some(n))
            .ok_or(PlanError::NodeUnknown(n))?;
        if node.health != HealthJson::Up {
            return Err(PlanError::NodeDown {
                node: n,
                health: node.health.as_str(),
            });
        }
        if n == master {
            continue;
        }
        if node.role != RoleJson::Replica {
            return Err(PlanError::NotReplica {
                node: n,
                role: node.role.as_str(),
            });
        }
        if node.link != Some(LinkJson::Up) {
            return Err(PlanError::LinkDown(n));
        }
    }
    for n in NODES {
        let health = status
            .sentinels
            .iter()
            .find(|s| node_number(&s.node) == Some(n))
            .map_or(HealthJson::Unknown, |s| s.health);
        if health != HealthJson::Up {
            return Err(PlanError::SentinelDown {
                node: n,
                health: health.as_str(),
            });
        }
    }
    Ok(master)
}

/// The plan for `services` given the group's `status` (see the module docs for the order).
/// Nothing of Redis or Sentinel changing is the plain deploy (`Final` only), whatever the
/// group's state; otherwise an unhealthy group is refused.
pub fn plan(services: &[ServiceState], status: &StatusJson) -> Result<Plan, PlanError> {
    let changes: Vec<(String, Vec<Change>)> = services
        .iter()
        .map(|s| (s.name(), s.changes()))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if changes.is_empty() {
        return Ok(Plan {
            master: None,
            changes,
            steps: vec![Step::Final],
        });
    }
    if let Some(s) = services.iter().find(|s| s.current.is_none()) {
        return Err(PlanError::MissingService(s.name()));
    }
    let master = check_group(status)?;
    let changed = |kind: Kind, node: u8| {
        services
            .iter()
            .any(|s| s.kind == kind && s.node == node && !s.changes().is_empty())
    };
    let mut steps = vec![Step::Others];
    let replicas: Vec<u8> = NODES.into_iter().filter(|&n| n != master).collect();
    steps.extend(
        replicas
            .iter()
            .filter(|&&n| changed(Kind::Redis, n))
            .map(|&node| Step::Redis {
                node,
                old_master: false,
            }),
    );
    steps.extend(
        NODES
            .into_iter()
            .filter(|&n| changed(Kind::Sentinel, n))
            .map(|node| Step::Sentinel { node }),
    );
    if changed(Kind::Redis, master) {
        // The lowest-numbered replica: both are linked (checked above) and, when they changed,
        // replaced and caught up before this step.
        let to = replicas[0];
        steps.push(Step::Switchover { from: master, to });
        steps.push(Step::Redis {
            node: master,
            old_master: true,
        });
    }
    steps.push(Step::Final);
    Ok(Plan {
        master: Some(master),
        changes,
        steps,
    })
}

/// What `upgrade wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaited {
    /// Node N a replica of the confirmed master, link up, at most `max_lag_bytes` behind, and
    /// both replicas linked.
    Replica { node: u8, max_lag_bytes: u64 },
    /// Node N the confirmed master, both replicas linked.
    Master { node: u8 },
    /// Node N's Sentinel up and naming the confirmed master, all three Sentinels up.
    Sentinel { node: u8 },
}

/// Why the awaited state is not there yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no confirmed master")]
    NoMaster,
    #[error("the master is node-{0}")]
    MasterIs(u8),
    #[error("node-{0} is not in the topology")]
    NodeUnknown(u8),
    #[error("node-{node} is {what}")]
    Node { node: u8, what: String },
    #[error("{linked} of 2 replicas linked to the master")]
    Replicas { linked: usize },
    #[error("sentinel of node-{node} is {what}")]
    Sentinel { node: u8, what: String },
}

/// Whether `status` shows `awaited`; `Ok` with a line for the log.
pub fn ready(status: &StatusJson, awaited: Awaited) -> Result<String, NotReady> {
    let master = confirmed_master(status).map_err(|_| NotReady::NoMaster)?;
    let both_linked = || {
        let linked = status.summary.replicas_link_up;
        if linked >= 2 {
            Ok(())
        } else {
            Err(NotReady::Replicas { linked })
        }
    };
    match awaited {
        Awaited::Replica {
            node,
            max_lag_bytes,
        } => {
            if master == node {
                return Err(NotReady::MasterIs(node));
            }
            let n = status
                .nodes
                .iter()
                .find(|x| node_number(&x.node) == Some(node))
                .ok_or(NotReady::NodeUnknown(node))?;
            let what = |what: String| NotReady::Node { node, what };
            if n.health != HealthJson::Up {
                return Err(what(n.health.as_str().to_owned()));
            }
            if n.role != RoleJson::Replica {
                return Err(what(format!("{} (not a replica yet)", n.role.as_str())));
            }
            if n.link != Some(LinkJson::Up) {
                return Err(what("a replica with its link down".to_owned()));
            }
            let lag = n.lag_bytes.unwrap_or(u64::MAX);
            if lag > max_lag_bytes {
                return Err(what(format!(
                    "{lag} bytes behind the master (at most {max_lag_bytes})"
                )));
            }
            both_linked()?;
            Ok(format!(
                "node-{node} linked to the master node-{master}, {lag} bytes behind"
            ))
        }
        Awaited::Master { node } => {
            if master != node {
                return Err(NotReady::MasterIs(master));
            }
            both_linked()?;
            Ok(format!(
                "node-{node} is the confirmed master, 2 replicas linked"
            ))
        }
        Awaited::Sentinel { node } => {
            let master_address = status
                .master
                .as_ref()
                .map(|m| m.address.as_str())
                .unwrap_or_default();
            for n in NODES {
                let s = status
                    .sentinels
                    .iter()
                    .find(|s| node_number(&s.node) == Some(n));
                let Some(s) = s else {
                    return Err(NotReady::Sentinel {
                        node: n,
                        what: "not in the topology".into(),
                    });
                };
                if s.health != HealthJson::Up {
                    return Err(NotReady::Sentinel {
                        node: n,
                        what: s.health.as_str().into(),
                    });
                }
                if n == node
                    && s.master_address.as_deref().map(addr_key) != Some(addr_key(master_address))
                {
                    return Err(NotReady::Sentinel {
                        node: n,
                        what: format!(
                            "naming {} as master, not {master_address}",
                            s.master_address.as_deref().unwrap_or("nothing")
                        ),
                    });
                }
            }
            Ok(format!(
                "sentinel of node-{node} up, naming the master node-{master}; 3 Sentinels up"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::{
        Health, LinkState, MasterSource, NodeView, Role, SentinelView, Topology,
    };

    /// A healthy stack-like group with `master` as the master.
    fn topology(master: u8) -> Topology {
        let addr = |i: u8| format!("redis-{i}:900{i}");
        let node = |i: u8| {
            let is_master = i == master;
            NodeView {
                node: format!("node-{i}"),
                address: addr(i),
                health: Health::Up as i32,
                agent_health: Health::Up as i32,
                role: if is_master {
                    Role::Master
                } else {
                    Role::Replica
                } as i32,
                is_master,
                link: if is_master {
                    LinkState::Unspecified
                } else {
                    LinkState::Up
                } as i32,
                master_address: if is_master {
                    String::new()
                } else {
                    addr(master)
                },
                ..Default::default()
            }
        };
        let sentinel = |i: u8| SentinelView {
            node: format!("node-{i}"),
            address: format!("sentinel-{i}:1900{i}"),
            health: Health::Up as i32,
            master_address: addr(master),
            config_epoch: 1,
            ..Default::default()
        };
        Topology {
            master_group: "redis-cluster".into(),
            version: 7,
            master_address: addr(master),
            master_node: format!("node-{master}"),
            master_confirmed: true,
            master_source: MasterSource::SentinelQuorum as i32,
            nodes: NODES.into_iter().map(node).collect(),
            sentinels: NODES.into_iter().map(sentinel).collect(),
            ..Default::default()
        }
    }

    fn status(t: &Topology) -> StatusJson {
        StatusJson::from(t)
    }

    const OLD_R: &str = "redis-ha/redis:old";
    const NEW_R: &str = "redis-ha/redis:new";
    const OLD_S: &str = "redis-ha/sentinel:old";
    const NEW_S: &str = "redis-ha/sentinel:new";

    /// Input lines: each Redis from `redis` (image, config) to new, each Sentinel likewise.
    fn input(redis: [(&str, &str); 3], sentinel: [(&str, &str); 3]) -> String {
        let mut s = String::new();
        for (i, (img, conf)) in redis.iter().enumerate() {
            s.push_str(&format!(
                "redis-{} {img} {conf} {NEW_R} st_redis_conf_b\n",
                i + 1
            ));
        }
        for (i, (img, conf)) in sentinel.iter().enumerate() {
            s.push_str(&format!(
                "sentinel-{} {img} {conf} {NEW_S} st_sentinel_conf_b\n",
                i + 1
            ));
        }
        s
    }

    const R_OLD: (&str, &str) = (OLD_R, "st_redis_conf_b");
    const R_NEW: (&str, &str) = (NEW_R, "st_redis_conf_b");
    const S_OLD: (&str, &str) = (OLD_S, "st_sentinel_conf_b");
    const S_NEW: (&str, &str) = (NEW_S, "st_sentinel_conf_b");

    fn plan_of(text: &str, master: u8) -> Result<Plan, PlanError> {
        plan(&parse_services(text).unwrap(), &status(&topology(master)))
    }

    fn redis(node: u8) -> Step {
        Step::Redis {
            node,
            old_master: false,
        }
    }

    fn old_master(node: u8) -> Step {
        Step::Redis {
            node,
            old_master: true,
        }
    }

    fn sentinel(node: u8) -> Step {
        Step::Sentinel { node }
    }

    #[test]
    fn replicas_first_then_sentinels_then_the_master_after_a_switchover() {
        let all_old = input([R_OLD; 3], [S_OLD; 3]);
        let p = plan_of(&all_old, 1).unwrap();
        assert_eq!(p.master, Some(1));
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                redis(2),
                redis(3),
                sentinel(1),
                sentinel(2),
                sentinel(3),
                Step::Switchover { from: 1, to: 2 },
                old_master(1),
                Step::Final
            ]
        );
        assert_eq!(p.changes.len(), 6);
        assert_eq!(p.changes[0], ("redis-1".to_owned(), vec![Change::Image]));

        let p = plan_of(&all_old, 2).unwrap();
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                redis(1),
                redis(3),
                sentinel(1),
                sentinel(2),
                sentinel(3),
                Step::Switchover { from: 2, to: 1 },
                old_master(2),
                Step::Final
            ]
        );

        let p = plan_of(&all_old, 3).unwrap();
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                redis(1),
                redis(2),
                sentinel(1),
                sentinel(2),
                sentinel(3),
                Step::Switchover { from: 3, to: 1 },
                old_master(3),
                Step::Final
            ]
        );
        let text = p.render();
        assert!(text.starts_with("master 3"), "{text}");
        assert!(text.contains("\nchange redis-1 image\n"), "{text}");
        assert!(text.contains("\nstep switchover 3 1  #"), "{text}");
        assert!(
            text.ends_with("step final  # stack deploy of everything (--prune), wait healthy\n")
        );
    }

    #[test]
    fn only_a_config_change_rolls_the_nodes_too() {
        let conf_old = input([(NEW_R, "st_redis_conf_a"); 3], [S_NEW; 3]);
        let p = plan_of(&conf_old, 2).unwrap();
        assert_eq!(
            p.changes,
            vec![
                ("redis-1".to_owned(), vec![Change::Config]),
                ("redis-2".to_owned(), vec![Change::Config]),
                ("redis-3".to_owned(), vec![Change::Config]),
            ]
        );
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                redis(1),
                redis(3),
                Step::Switchover { from: 2, to: 1 },
                old_master(2),
                Step::Final
            ]
        );
    }

    #[test]
    fn only_a_settings_change_rolls_the_nodes_too() {
        // `--maxmemory` on the running stack: the Redis services' env files differ, nothing else.
        let mut text = String::new();
        for n in 1..=3 {
            text.push_str(&format!(
                "redis-{n} {NEW_R} st_redis_conf_b {NEW_R} st_redis_conf_b 5f0c 77aa\n"
            ));
            text.push_str(&format!(
                "sentinel-{n} {NEW_S} st_sentinel_conf_b {NEW_S} st_sentinel_conf_b 1b2c 1b2c\n"
            ));
        }
        let p = plan_of(&text, 3).unwrap();
        assert_eq!(
            p.changes,
            vec![
                ("redis-1".to_owned(), vec![Change::Settings]),
                ("redis-2".to_owned(), vec![Change::Settings]),
                ("redis-3".to_owned(), vec![Change::Settings]),
            ]
        );
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                redis(1),
                redis(2),
                Step::Switchover { from: 3, to: 1 },
                old_master(3),
                Step::Final
            ]
        );
        assert!(p.render().contains("\nchange redis-1 settings\n"));
        // The same settings, or none given (an older caller's five columns): no change.
        let same = text.replace(" 5f0c 77aa", " 77aa 77aa");
        assert!(plan_of(&same, 3).unwrap().changes.is_empty());
        let five = input([R_NEW; 3], [S_NEW; 3]);
        assert!(plan_of(&five, 3).unwrap().changes.is_empty());
        // Six columns are no shape of the input.
        let six = text.replace(" 5f0c 77aa", " 5f0c");
        assert!(matches!(
            parse_services(&six),
            Err(PlanError::BadInput { .. })
        ));
    }

    #[test]
    fn only_sentinels_change_no_switchover() {
        let p = plan_of(&input([R_NEW; 3], [S_OLD, S_NEW, S_OLD]), 1).unwrap();
        assert_eq!(
            p.steps,
            vec![Step::Others, sentinel(1), sentinel(3), Step::Final]
        );
        assert_eq!(p.master, Some(1));
    }

    #[test]
    fn only_a_replica_changes_the_master_stays() {
        let p = plan_of(&input([R_NEW, R_NEW, R_OLD], [S_NEW; 3]), 1).unwrap();
        assert_eq!(p.steps, vec![Step::Others, redis(3), Step::Final]);
        // Only the master: switchover and its Redis.
        let p = plan_of(&input([R_NEW, R_NEW, R_OLD], [S_NEW; 3]), 3).unwrap();
        assert_eq!(
            p.steps,
            vec![
                Step::Others,
                Step::Switchover { from: 3, to: 1 },
                old_master(3),
                Step::Final
            ]
        );
    }

    #[test]
    fn nothing_changed_is_the_plain_deploy_whatever_the_group() {
        let same = input([R_NEW; 3], [S_NEW; 3]);
        let p = plan_of(&same, 1).unwrap();
        assert_eq!(p.steps, vec![Step::Final]);
        assert_eq!(p.master, None);
        assert!(p.changes.is_empty());
        // A digest the swarm added is no change.
        let pinned = same.replace(
            "redis-1 redis-ha/redis:new st",
            "redis-1 redis-ha/redis:new@sha256:0123 st",
        );
        assert_eq!(plan_of(&pinned, 1).unwrap().steps, vec![Step::Final]);
        // Even with a node down: nothing is replaced.
        let mut t = topology(1);
        t.nodes[1].health = Health::Down as i32;
        let p = plan(&parse_services(&same).unwrap(), &status(&t)).unwrap();
        assert_eq!(p.steps, vec![Step::Final]);
    }

    #[test]
    fn an_unhealthy_group_is_refused_naming_the_node() {
        let text = input([R_OLD; 3], [S_NEW; 3]);
        let services = parse_services(&text).unwrap();
        let refuse = |f: &dyn Fn(&mut Topology)| {
            let mut t = topology(1);
            f(&mut t);
            plan(&services, &status(&t)).unwrap_err()
        };
        let e = refuse(&|t| t.nodes[2].health = Health::Down as i32);
        assert_eq!(
            e,
            PlanError::NodeDown {
                node: 3,
                health: "down"
            }
        );
        assert!(e.to_string().starts_with("node-3 is down"), "{e}");
        assert_eq!(
            refuse(&|t| t.nodes[1].role = Role::Unspecified as i32),
            PlanError::NotReplica {
                node: 2,
                role: "unknown"
            }
        );
        assert_eq!(
            refuse(&|t| t.nodes[1].link = LinkState::Down as i32),
            PlanError::LinkDown(2)
        );
        assert_eq!(
            refuse(&|t| {
                t.nodes.remove(2);
            }),
            PlanError::NodeUnknown(3)
        );
        assert_eq!(
            refuse(&|t| t.sentinels[0].health = Health::Down as i32),
            PlanError::SentinelDown {
                node: 1,
                health: "down"
            }
        );
        assert_eq!(
            refuse(&|t| {
                t.master_address.clear();
                t.master_confirmed = false;
            }),
            PlanError::NoMaster
        );
        assert_eq!(
            refuse(&|t| t.master_confirmed = false),
            PlanError::Unconfirmed("redis-1:9001".into())
        );
        assert_eq!(
            refuse(&|t| t.failover_in_progress = true),
            PlanError::FailoverInProgress
        );
        assert_eq!(
            refuse(&|t| t.master_node = "node-7".into()),
            PlanError::UnknownMaster("node-7".into())
        );
    }

    #[test]
    fn a_missing_service_or_bad_input_is_refused() {
        let text: String = input([R_OLD; 3], [S_NEW; 3])
            .lines()
            .map(|l| {
                if l.starts_with("sentinel-2 ") {
                    format!("sentinel-2 - - {NEW_S} st_sentinel_conf_b\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let services = parse_services(&text).unwrap();
        assert_eq!(
            plan(&services, &status(&topology(1))).unwrap_err(),
            PlanError::MissingService("sentinel-2".into())
        );
        assert!(matches!(
            parse_services("redis-1 a b c\n"),
            Err(PlanError::BadInput { line: 1, .. })
        ));
        assert!(matches!(
            parse_services("redis-4 a b c d\n"),
            Err(PlanError::BadInput { line: 1, .. })
        ));
        assert!(matches!(
            parse_services("haproxy a b c d\n"),
            Err(PlanError::BadInput { line: 1, .. })
        ));
        assert_eq!(
            parse_services("# only a comment\nredis-1 a b c d\n").unwrap_err(),
            PlanError::MissingLine("redis-2".into())
        );
        let twice = format!("{}redis-1 a b c d\n", input([R_OLD; 3], [S_OLD; 3]));
        assert!(matches!(
            parse_services(&twice),
            Err(PlanError::BadInput { line: 7, .. })
        ));
    }

    #[test]
    fn a_replaced_replica_is_ready_once_linked_and_caught_up() {
        let mut t = topology(1);
        let awaited = Awaited::Replica {
            node: 2,
            max_lag_bytes: 1000,
        };
        assert!(ready(&status(&t), awaited).is_ok());
        t.nodes[1].lag_bytes = 1001;
        assert!(matches!(
            ready(&status(&t), awaited),
            Err(NotReady::Node { node: 2, .. })
        ));
        t.nodes[1].lag_bytes = 0;
        t.nodes[2].link = LinkState::Down as i32;
        assert_eq!(
            ready(&status(&t), awaited),
            Err(NotReady::Replicas { linked: 1 })
        );
        t.nodes[1].health = Health::Down as i32;
        assert!(matches!(
            ready(&status(&t), awaited),
            Err(NotReady::Node { node: 2, .. })
        ));
        assert_eq!(
            ready(
                &status(&topology(2)),
                Awaited::Replica {
                    node: 2,
                    max_lag_bytes: 1000
                }
            ),
            Err(NotReady::MasterIs(2))
        );
    }

    #[test]
    fn a_switchover_is_over_when_the_target_is_the_confirmed_master() {
        assert_eq!(
            ready(&status(&topology(1)), Awaited::Master { node: 2 }),
            Err(NotReady::MasterIs(1))
        );
        assert!(ready(&status(&topology(2)), Awaited::Master { node: 2 }).is_ok());
        let mut t = topology(2);
        t.master_confirmed = false;
        assert_eq!(
            ready(&status(&t), Awaited::Master { node: 2 }),
            Err(NotReady::NoMaster)
        );
    }

    #[test]
    fn a_replaced_sentinel_is_ready_naming_the_master_with_its_peers_up() {
        let mut t = topology(1);
        assert!(ready(&status(&t), Awaited::Sentinel { node: 3 }).is_ok());
        t.sentinels[2].master_address = "redis-2:9002".into();
        assert!(matches!(
            ready(&status(&t), Awaited::Sentinel { node: 3 }),
            Err(NotReady::Sentinel { node: 3, .. })
        ));
        t.sentinels[2].master_address = "REDIS-1:9001".into();
        assert!(ready(&status(&t), Awaited::Sentinel { node: 3 }).is_ok());
        t.sentinels[0].health = Health::Down as i32;
        assert!(matches!(
            ready(&status(&t), Awaited::Sentinel { node: 3 }),
            Err(NotReady::Sentinel { node: 1, .. })
        ));
    }
}
