//! From "who should get the traffic" and "what HAProxy does now" to the ordered runtime API
//! commands that get there. Pure: no I/O, so every case is a unit test.
//!
//! Order of the commands: every server that must not take traffic is put in `maint` and its
//! sessions are shut first, then addresses change, and the master is readied last. So there is
//! never a moment with two servers ready, and clients of a demoted master reconnect (and get
//! the new one) instead of getting `-READONLY` forever.
//!
//! With no master known (failover in progress, coordinator unsure) the ready server is left as
//! it is rather than cutting all traffic: the dead master refuses connections by itself, and a
//! live one keeps serving until a decision names another. The exception: if several servers are
//! ready, which the reloader never does itself, all go to `maint`, since at most one can be right.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::runtime::{Command, Observation};

/// A node the decision talks about, its address already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTarget {
    /// The agent / node id (e.g. "node-1") when the source knows it (the coordinator does,
    /// the Sentinels do not).
    pub node: Option<String>,
    pub addr: SocketAddr,
}

/// The decision to apply, addresses resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The one node that gets traffic; `None`: no master known.
    pub master: Option<NodeTarget>,
    /// Every node known, master included, for server addresses.
    pub nodes: Vec<NodeTarget>,
    /// The replicas the read backend spreads reads over; empty: the master serves reads.
    pub readers: Vec<NodeTarget>,
}

impl Wanted {
    /// The nodes `node-1`, `node-2`, ... at these addresses, in order (the ids the shipped
    /// deployment gives its nodes, which [`ServerNames`] maps to `redis-1`, `redis-2`, ...),
    /// and as master the one at index `master`.
    ///
    /// # Panics
    /// When `master` is not an index into `addrs`.
    pub fn numbered(addrs: impl IntoIterator<Item = SocketAddr>, master: Option<usize>) -> Self {
        let nodes: Vec<NodeTarget> = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| NodeTarget {
                node: Some(format!("node-{}", i + 1)),
                addr,
            })
            .collect();
        Self {
            master: master.map(|i| nodes[i].clone()),
            nodes,
            readers: Vec::new(),
        }
    }
}

/// Maps node ids to HAProxy server names: an explicit entry, else `node-N` → `redis-N`, else
/// the node id itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerNames {
    explicit: BTreeMap<String, String>,
}

impl ServerNames {
    pub fn new(explicit: BTreeMap<String, String>) -> Self {
        Self { explicit }
    }

    pub fn for_node(&self, node: &str) -> String {
        if let Some(s) = self.explicit.get(node) {
            return s.clone();
        }
        match node.strip_prefix("node-") {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("redis-{n}")
            }
            _ => node.to_owned(),
        }
    }
}

/// What HAProxy should look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The only server that may be ready; `None`: keep the ready server (see module doc).
    pub master: Option<String>,
    /// Wanted address per server.
    pub addresses: BTreeMap<String, SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no HAProxy server for the master {addr} (node {node:?}): not mapped by name, and no server has that address")]
    NoServerForMaster {
        node: Option<String>,
        addr: SocketAddr,
    },
    #[error("server {0} is not in the backend")]
    UnknownServer(String),
}

/// Finds the backend server for a node: by name mapping first, then by the node list (address
/// → node id), then by the address HAProxy already has.
fn place(
    target: &NodeTarget,
    wanted: &Wanted,
    names: &ServerNames,
    observed: &Observation,
) -> Option<String> {
    let by_name = |node: &str| {
        let name = names.for_node(node);
        observed.server(&name).map(|_| name)
    };
    if let Some(s) = target.node.as_deref().and_then(by_name) {
        return Some(s);
    }
    if let Some(s) = wanted
        .nodes
        .iter()
        .filter(|n| n.addr == target.addr)
        .find_map(|n| n.node.as_deref().and_then(by_name))
    {
        return Some(s);
    }
    observed
        .servers
        .iter()
        .find(|s| s.socket_addr() == Some(target.addr))
        .map(|s| s.srv_name.clone())
}

/// Maps the decision onto the backend's servers.
pub fn desired(
    wanted: &Wanted,
    names: &ServerNames,
    observed: &Observation,
) -> Result<Desired, PlanError> {
    let mut d = Desired::default();
    if let Some(m) = &wanted.master {
        let server = place(m, wanted, names, observed).ok_or(PlanError::NoServerForMaster {
            node: m.node.clone(),
            addr: m.addr,
        })?;
        d.addresses.insert(server.clone(), m.addr);
        d.master = Some(server);
    }
    for n in &wanted.nodes {
        if let Some(server) = place(n, wanted, names, observed) {
            // The master's address wins; otherwise the first node placed on a server keeps it.
            d.addresses.entry(server).or_insert(n.addr);
        }
    }
    Ok(d)
}

/// The commands that take `observed` to `desired`, in a safe order; empty when converged.
pub fn plan(
    backend: &str,
    desired: &Desired,
    observed: &Observation,
) -> Result<Vec<Command>, PlanError> {
    let mut fence = Vec::new();
    let mut addrs = Vec::new();
    let mut ready = None;

    let addr_differs = |name: &str| {
        desired.addresses.get(name).is_some_and(|a| {
            observed
                .server(name)
                .is_some_and(|s| s.socket_addr() != Some(*a))
        })
    };
    let fence_server = |fence: &mut Vec<Command>, name: &str| {
        fence.push(Command::maint(backend, name));
        fence.push(Command::shutdown_sessions(backend, name));
    };

    match &desired.master {
        Some(master) => {
            let m = observed
                .server(master)
                .ok_or_else(|| PlanError::UnknownServer(master.clone()))?;
            for s in observed.servers.iter().filter(|s| &s.srv_name != master) {
                if !s.srv_admin_state.forced_maint() {
                    fence_server(&mut fence, &s.srv_name);
                } else if observed.sessions_of(&s.srv_name) > 0 {
                    fence.push(Command::shutdown_sessions(backend, &s.srv_name));
                }
            }
            let moving = addr_differs(master);
            if moving && m.admin_ready() {
                // Its clients talk to the old address: cut them before moving it.
                fence_server(&mut fence, master);
            }
            if moving || !m.admin_ready() {
                ready = Some(Command::ready(backend, master));
            }
        }
        None => {
            let ready_now: Vec<&str> = observed
                .ready_servers()
                .map(|s| s.srv_name.as_str())
                .collect();
            let several = ready_now.len() > 1;
            for s in &observed.servers {
                let name = s.srv_name.as_str();
                if s.admin_ready() {
                    if several {
                        fence_server(&mut fence, name);
                    }
                } else if !s.srv_admin_state.forced_maint() {
                    // In maintenance for another reason (address resolution): make it ours.
                    fence.push(Command::maint(backend, name));
                } else if observed.sessions_of(name) > 0 {
                    fence.push(Command::shutdown_sessions(backend, name));
                }
            }
        }
    }

    for (name, addr) in &desired.addresses {
        let Some(s) = observed.server(name) else {
            continue;
        };
        if s.socket_addr() == Some(*addr) {
            continue;
        }
        let keeps_serving =
            desired.master.is_none() && s.admin_ready() && observed.ready_servers().count() == 1;
        if keeps_serving {
            // No master known: the server that serves now is not moved under its clients.
            continue;
        }
        addrs.push(Command::set_addr(backend, name, *addr));
    }

    fence.extend(addrs);
    fence.extend(ready);
    Ok(fence)
}

/// What the read backend should look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadDesired {
    /// The servers that must be ready, every other one in maint; `None`: no reader and no
    /// master known, keep the ready servers (as the master backend does).
    pub ready: Option<BTreeSet<String>>,
    /// Wanted address per server.
    pub addresses: BTreeMap<String, SocketAddr>,
    /// The master serves reads: no replica qualifies (or the readers are unknown).
    pub fallback: bool,
}

/// Maps the read decision onto the read backend's servers (the same server names as the
/// master backend): the readers, or the master when there are none. A reader that cannot be
/// placed is left out (the others still serve); an unplaceable master is an error, as for the
/// master backend.
pub fn read_desired(
    wanted: &Wanted,
    names: &ServerNames,
    observed: &Observation,
) -> Result<ReadDesired, PlanError> {
    let mut d = ReadDesired::default();
    for n in &wanted.nodes {
        if let Some(server) = place(n, wanted, names, observed) {
            d.addresses.entry(server).or_insert(n.addr);
        }
    }
    let readers: BTreeSet<String> = wanted
        .readers
        .iter()
        .filter_map(|r| {
            let server = place(r, wanted, names, observed)?;
            d.addresses.insert(server.clone(), r.addr);
            Some(server)
        })
        .collect();
    if !readers.is_empty() {
        d.ready = Some(readers);
    } else if let Some(m) = &wanted.master {
        let server = place(m, wanted, names, observed).ok_or(PlanError::NoServerForMaster {
            node: m.node.clone(),
            addr: m.addr,
        })?;
        d.addresses.insert(server.clone(), m.addr);
        d.ready = Some(BTreeSet::from([server]));
        d.fallback = true;
    }
    Ok(d)
}

/// The commands that take the read backend from `observed` to `desired`; empty when converged.
///
/// Unlike the master backend, several servers may be ready, and readying comes first: the
/// servers that must serve are readied (a moved one fenced, moved, readied), then the others are
/// put in maint and their sessions shut (a reader taken out must not keep serving stale reads),
/// so the backend never has a moment without a server.
pub fn plan_read(
    backend: &str,
    desired: &ReadDesired,
    observed: &Observation,
) -> Result<Vec<Command>, PlanError> {
    let mut first = Vec::new();
    let mut then = Vec::new();
    let differs = |name: &str| {
        desired.addresses.get(name).copied().filter(|a| {
            observed
                .server(name)
                .is_some_and(|s| s.socket_addr() != Some(*a))
        })
    };
    if let Some(ready) = &desired.ready {
        for name in ready {
            let s = observed
                .server(name)
                .ok_or_else(|| PlanError::UnknownServer(name.clone()))?;
            let moving = differs(name);
            if let Some(addr) = moving {
                if s.admin_ready() {
                    first.push(Command::maint(backend, name));
                    first.push(Command::shutdown_sessions(backend, name));
                }
                first.push(Command::set_addr(backend, name, addr));
            }
            if moving.is_some() || !s.admin_ready() {
                first.push(Command::ready(backend, name));
            }
        }
    }
    for s in &observed.servers {
        let name = s.srv_name.as_str();
        let wanted_ready = desired.ready.as_ref().is_none_or(|r| r.contains(name));
        if wanted_ready && (desired.ready.is_some() || s.admin_ready()) {
            // Readied above, or kept as it is (nothing known).
            continue;
        }
        if s.admin_ready() {
            then.push(Command::maint(backend, name));
            then.push(Command::shutdown_sessions(backend, name));
        } else if !s.srv_admin_state.forced_maint() {
            // In maintenance for another reason (address resolution): make it ours.
            then.push(Command::maint(backend, name));
        } else if observed.sessions_of(name) > 0 {
            then.push(Command::shutdown_sessions(backend, name));
        }
        if let Some(addr) = differs(name) {
            then.push(Command::set_addr(backend, name, addr));
        }
    }
    first.extend(then);
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{AdminState, OpState, ServerState};

    const MAINT: u32 = 5; // FMAINT | CMAINT, as configured ("disabled")
    const READY: u32 = 4; // CMAINT only, after `state ready`

    fn srv(id: u32, addr: &str, admin: u32) -> ServerState {
        let a: SocketAddr = addr.parse().unwrap();
        ServerState {
            be_id: 3,
            be_name: "redis".into(),
            srv_id: id,
            srv_name: format!("redis-{id}"),
            srv_addr: Some(a.ip()),
            srv_op_state: if admin & 1 == 0 {
                OpState::Running
            } else {
                OpState::Stopped
            },
            srv_admin_state: AdminState(admin),
            srv_uweight: 1,
            srv_time_since_last_change: 0,
            srv_check_result: 0,
            srv_check_state: 14,
            srv_fqdn: None,
            srv_port: a.port(),
        }
    }

    fn obs(servers: Vec<ServerState>) -> Observation {
        Observation {
            servers,
            sessions: BTreeMap::new(),
        }
    }

    fn three(admin: [u32; 3]) -> Observation {
        obs(vec![
            srv(1, "10.0.0.1:9001", admin[0]),
            srv(2, "10.0.0.2:9002", admin[1]),
            srv(3, "10.0.0.3:9003", admin[2]),
        ])
    }

    fn node(n: u32) -> NodeTarget {
        NodeTarget {
            node: Some(format!("node-{n}")),
            addr: format!("10.0.0.{n}:900{n}").parse().unwrap(),
        }
    }

    fn wanted(master: Option<u32>) -> Wanted {
        Wanted {
            master: master.map(node),
            nodes: (1..=3).map(node).collect(),
            readers: Vec::new(),
        }
    }

    /// A master named by its address only (as the Sentinels name it), and these nodes.
    fn address_only(master: &str, nodes: Vec<NodeTarget>) -> Wanted {
        Wanted {
            master: Some(NodeTarget {
                node: None,
                addr: master.parse().unwrap(),
            }),
            nodes,
            readers: Vec::new(),
        }
    }

    fn lines(cmds: &[Command]) -> Vec<String> {
        cmds.iter().map(ToString::to_string).collect()
    }

    fn run(w: &Wanted, o: &Observation) -> Vec<String> {
        let d = desired(w, &ServerNames::default(), o).unwrap();
        lines(&plan("redis", &d, o).unwrap())
    }

    #[test]
    fn numbered_nodes_in_order_and_the_master_by_index() {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let w = Wanted::numbered([at(7001), at(7002)], Some(1));
        let ids: Vec<_> = w
            .nodes
            .iter()
            .map(|n| (n.node.as_deref(), n.addr))
            .collect();
        assert_eq!(
            ids,
            [(Some("node-1"), at(7001)), (Some("node-2"), at(7002))]
        );
        assert_eq!(w.master.as_ref(), Some(&w.nodes[1]));
        assert_eq!(Wanted::numbered([at(7001)], None).master, None);
    }

    #[test]
    fn names_default_and_explicit() {
        let n = ServerNames::new([("db-a".to_owned(), "srv-a".to_owned())].into());
        assert_eq!(n.for_node("node-2"), "redis-2");
        assert_eq!(n.for_node("db-a"), "srv-a");
        assert_eq!(n.for_node("node-x"), "node-x");
        assert_eq!(n.for_node("redis-9"), "redis-9");
    }

    #[test]
    fn fresh_start_readies_only_the_master() {
        let o = three([MAINT, MAINT, MAINT]);
        assert_eq!(
            run(&wanted(Some(1)), &o),
            ["set server redis/redis-1 state ready"]
        );
    }

    #[test]
    fn failover_fences_old_master_before_readying_new() {
        let o = three([READY, MAINT, MAINT]);
        assert_eq!(
            run(&wanted(Some(2)), &o),
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
                "set server redis/redis-2 state ready",
            ]
        );
    }

    #[test]
    fn split_brain_only_the_topology_master_is_ready() {
        // Both 1 and 3 got ready somehow (e.g. by hand); the decision says 3.
        let o = three([READY, MAINT, READY]);
        assert_eq!(
            run(&wanted(Some(3)), &o),
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
            ]
        );
    }

    #[test]
    fn no_master_keeps_the_ready_server() {
        let o = three([READY, MAINT, MAINT]);
        assert!(run(&wanted(None), &o).is_empty());
        // Even when its node has moved: it is not moved under its clients.
        let mut w = wanted(None);
        w.nodes[0].addr = "10.0.0.9:9001".parse().unwrap();
        assert!(run(&w, &o).is_empty());
        // A server in maint does get its new address.
        w.nodes[1].addr = "10.0.0.8:9002".parse().unwrap();
        assert_eq!(
            run(&w, &o),
            ["set server redis/redis-2 addr 10.0.0.8 port 9002"]
        );
    }

    #[test]
    fn no_master_and_two_ready_cuts_both() {
        let o = three([READY, READY, MAINT]);
        assert_eq!(
            run(&wanted(None), &o),
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
                "set server redis/redis-2 state maint",
                "shutdown sessions server redis/redis-2",
            ]
        );
    }

    #[test]
    fn converged_means_no_commands() {
        let o = three([MAINT, READY, MAINT]);
        assert!(run(&wanted(Some(2)), &o).is_empty());
    }

    #[test]
    fn lingering_sessions_on_a_maint_server_are_shut() {
        let mut o = three([MAINT, READY, MAINT]);
        o.sessions.insert("redis-3".into(), 2);
        o.sessions.insert("redis-2".into(), 7);
        assert_eq!(
            run(&wanted(Some(2)), &o),
            ["shutdown sessions server redis/redis-3"]
        );
    }

    #[test]
    fn addresses_before_ready_and_drain_counts_as_not_ready() {
        // HAProxy restarted with placeholders; redis-2 drained by hand.
        let o = obs(vec![
            srv(1, "192.0.2.1:9001", MAINT),
            srv(2, "192.0.2.1:9002", READY | AdminState::FDRAIN),
            srv(3, "192.0.2.1:9003", MAINT),
        ]);
        assert_eq!(
            run(&wanted(Some(2)), &o),
            [
                "set server redis/redis-1 addr 10.0.0.1 port 9001",
                "set server redis/redis-2 addr 10.0.0.2 port 9002",
                "set server redis/redis-3 addr 10.0.0.3 port 9003",
                "set server redis/redis-2 state ready",
            ]
        );
    }

    #[test]
    fn ready_master_that_moved_is_fenced_then_moved_then_readied() {
        let o = three([READY, MAINT, MAINT]);
        let mut w = wanted(Some(1));
        let moved: SocketAddr = "10.0.0.7:9001".parse().unwrap();
        w.master.as_mut().unwrap().addr = moved;
        w.nodes[0].addr = moved;
        assert_eq!(
            run(&w, &o),
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
                "set server redis/redis-1 addr 10.0.0.7 port 9001",
                "set server redis/redis-1 state ready",
            ]
        );
    }

    #[test]
    fn sentinel_decision_is_placed_by_address() {
        // The Sentinels give an address only.
        let o = three([READY, MAINT, MAINT]);
        let w = address_only("10.0.0.3:9003", vec![]);
        assert_eq!(
            run(&w, &o),
            [
                "set server redis/redis-1 state maint",
                "shutdown sessions server redis/redis-1",
                "set server redis/redis-3 state ready",
            ]
        );
    }

    #[test]
    fn address_only_master_found_through_the_node_list() {
        // HAProxy lost the addresses (restart with placeholders); the node list knows them.
        let o = obs(vec![
            srv(1, "192.0.2.1:9001", MAINT),
            srv(2, "192.0.2.1:9002", MAINT),
        ]);
        let w = address_only("10.0.0.2:9002", vec![node(1), node(2)]);
        assert_eq!(
            run(&w, &o),
            [
                "set server redis/redis-1 addr 10.0.0.1 port 9001",
                "set server redis/redis-2 addr 10.0.0.2 port 9002",
                "set server redis/redis-2 state ready",
            ]
        );
    }

    #[test]
    fn unplaceable_master_is_an_error() {
        let o = three([READY, MAINT, MAINT]);
        let w = address_only("10.9.9.9:9009", vec![]);
        let e = desired(&w, &ServerNames::default(), &o).unwrap_err();
        assert!(matches!(e, PlanError::NoServerForMaster { .. }), "{e}");
        let d = Desired {
            master: Some("redis-9".into()),
            addresses: BTreeMap::new(),
        };
        assert_eq!(
            plan("redis", &d, &o),
            Err(PlanError::UnknownServer("redis-9".into()))
        );
    }

    #[test]
    fn server_without_address_gets_one() {
        let mut o = three([MAINT, MAINT, MAINT]);
        o.servers[0].srv_addr = None;
        o.servers[0].srv_admin_state = AdminState(0x25);
        assert_eq!(
            run(&wanted(Some(1)), &o),
            [
                "set server redis/redis-1 addr 10.0.0.1 port 9001",
                "set server redis/redis-1 state ready",
            ]
        );
    }

    fn reading(master: Option<u32>, readers: &[u32]) -> Wanted {
        Wanted {
            readers: readers.iter().copied().map(node).collect(),
            ..wanted(master)
        }
    }

    fn run_read(w: &Wanted, o: &Observation) -> Vec<String> {
        let d = read_desired(w, &ServerNames::default(), o).unwrap();
        lines(&plan_read("redis_read", &d, o).unwrap())
    }

    #[test]
    fn read_start_readies_every_reader() {
        let o = three([MAINT, MAINT, MAINT]);
        assert_eq!(
            run_read(&reading(Some(1), &[2, 3]), &o),
            [
                "set server redis_read/redis-2 state ready",
                "set server redis_read/redis-3 state ready",
            ]
        );
        assert!(run_read(&reading(Some(1), &[2, 3]), &three([MAINT, READY, READY])).is_empty());
    }

    #[test]
    fn a_reader_taken_out_goes_to_maint_with_its_sessions_cut_after_the_others_are_ready() {
        let o = three([MAINT, READY, READY]);
        assert_eq!(
            run_read(&reading(Some(1), &[2]), &o),
            [
                "set server redis_read/redis-3 state maint",
                "shutdown sessions server redis_read/redis-3",
            ]
        );
        // Put back.
        let o = three([MAINT, READY, MAINT]);
        assert_eq!(
            run_read(&reading(Some(1), &[2, 3]), &o),
            ["set server redis_read/redis-3 state ready"]
        );
    }

    #[test]
    fn no_reader_falls_back_to_the_master_readied_before_the_replicas_leave() {
        let o = three([MAINT, READY, READY]);
        let w = reading(Some(1), &[]);
        let d = read_desired(&w, &ServerNames::default(), &o).unwrap();
        assert!(d.fallback);
        assert_eq!(
            lines(&plan_read("redis_read", &d, &o).unwrap()),
            [
                "set server redis_read/redis-1 state ready",
                "set server redis_read/redis-2 state maint",
                "shutdown sessions server redis_read/redis-2",
                "set server redis_read/redis-3 state maint",
                "shutdown sessions server redis_read/redis-3",
            ]
        );
        // And back to the replicas once one qualifies.
        let o = three([READY, MAINT, MAINT]);
        assert_eq!(
            run_read(&reading(Some(1), &[3]), &o),
            [
                "set server redis_read/redis-3 state ready",
                "set server redis_read/redis-1 state maint",
                "shutdown sessions server redis_read/redis-1",
            ]
        );
    }

    #[test]
    fn read_backend_with_nothing_known_keeps_its_ready_servers() {
        let o = three([MAINT, READY, READY]);
        let w = reading(None, &[]);
        let d = read_desired(&w, &ServerNames::default(), &o).unwrap();
        assert_eq!(d.ready, None);
        assert!(!d.fallback);
        assert!(lines(&plan_read("redis_read", &d, &o).unwrap()).is_empty());
    }

    #[test]
    fn a_moved_reader_is_fenced_moved_and_readied_and_maint_servers_get_addresses() {
        let o = obs(vec![
            srv(1, "192.0.2.1:9001", MAINT),
            srv(2, "10.0.0.2:9002", READY),
            srv(3, "192.0.2.1:9003", MAINT),
        ]);
        let mut w = reading(Some(1), &[2]);
        let moved: SocketAddr = "10.0.0.7:9002".parse().unwrap();
        w.readers[0].addr = moved;
        w.nodes[1].addr = moved;
        assert_eq!(
            run_read(&w, &o),
            [
                "set server redis_read/redis-2 state maint",
                "shutdown sessions server redis_read/redis-2",
                "set server redis_read/redis-2 addr 10.0.0.7 port 9002",
                "set server redis_read/redis-2 state ready",
                "set server redis_read/redis-1 addr 10.0.0.1 port 9001",
                "set server redis_read/redis-3 addr 10.0.0.3 port 9003",
            ]
        );
    }

    #[test]
    fn lingering_read_sessions_on_a_maint_server_are_shut() {
        let mut o = three([MAINT, READY, READY]);
        o.sessions.insert("redis-1".into(), 3);
        assert_eq!(
            run_read(&reading(Some(1), &[2, 3]), &o),
            ["shutdown sessions server redis_read/redis-1"]
        );
    }
}
