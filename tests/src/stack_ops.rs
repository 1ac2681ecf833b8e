//! What the stack benchmarks and tests do to a deployed [`Stack`] beyond its faults: the
//! operator's CLI from the host, the state at rest (the one every planned move starts from),
//! and the read endpoint (HAProxy's base + 10) as a client sees it.

use std::process::Stdio;
use std::time::Duration;

use redis_ha_chaos::chaos::docker::NodeNum;
use redis_ha_testkit::client;
use tokio::process::Command;

use crate::haproxy::{WriteMode, Writer};
use crate::stack::{binaries_dir, operator_tls_args, poll, tls_dir, Stack};

/// Fresh connections through the master port per check at rest: a reloader that has not
/// switched every HAProxy server yet shows in one of them.
const ROUTE_PROBES: usize = 3;

/// The node number of a coordinator address (`redis-2:9002`), if it is one of the stack's.
pub fn node_of_address(addr: &str) -> Option<u8> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.parse::<NodeNum>().ok().map(NodeNum::get)
}

/// What `check_at_rest` needs to know of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRole {
    /// `master` / `slave` (ROLE's first word).
    pub role: String,
    /// A replica's link state (`connected`, `connect`, `sync` ...); empty for a master.
    pub link: String,
}

/// The stack is at rest around the Sentinels' master `sentinel_master` when that node says
/// master, the two others are replicas with their link `connected`, and the coordinator's
/// status confirms the same master with 2 linked replicas and no failover under way (a
/// switchover refuses to start during one). `roles[i]` is node i + 1's.
pub fn check_at_rest(
    sentinel_master: u8,
    roles: &[NodeRole],
    status: &serde_json::Value,
) -> Result<(), String> {
    for (i, r) in roles.iter().enumerate() {
        let n = i + 1;
        let ok = if n == usize::from(sentinel_master) {
            r.role == "master"
        } else {
            r.role == "slave" && r.link == "connected"
        };
        if !ok {
            return Err(format!(
                "redis-{n}: role {} link {:?} (the Sentinels' master is redis-{sentinel_master})",
                r.role, r.link
            ));
        }
    }
    let addr = status["master"]["address"].as_str().unwrap_or_default();
    let confirmed = status["summary"]["master_confirmed"] == serde_json::Value::Bool(true);
    let linked = status["summary"]["replicas_link_up"].as_u64().unwrap_or(0);
    if status["failover_in_progress"] != serde_json::Value::Bool(false) {
        return Err(format!(
            "coordinator: failover in progress {}",
            status["failover_in_progress"]
        ));
    }
    if confirmed && node_of_address(addr) == Some(sentinel_master) && linked >= 2 {
        Ok(())
    } else {
        Err(format!(
            "coordinator: master {addr:?} confirmed {confirmed}, {linked} replicas linked \
             (the Sentinels' master is redis-{sentinel_master})"
        ))
    }
}

/// The pause the first `switchover done` event at or after `since_ms` reports (`redis-ha
/// events --json`, oldest first): a graceful stop's handover, which no command of ours
/// answers. `None`: no switchover was done since.
pub fn switchover_done_since(events: &[serde_json::Value], since_ms: i64) -> Option<Duration> {
    events
        .iter()
        .filter(|e| e["kind"] == "switchover" && e["at_ms"].as_i64().unwrap_or(0) >= since_ms)
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("switchover done"))
        .find_map(|m| {
            let rest = m.split("writes paused ").nth(1)?;
            let ms: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(Duration::from_millis(ms))
        })
}

/// The message of the first `switchover` event (done, refused, aborted ...) at or after
/// `since_ms`: what became of a graceful stop's handover.
pub fn switchover_event_since(events: &[serde_json::Value], since_ms: i64) -> Option<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "switchover" && e["at_ms"].as_i64().unwrap_or(0) >= since_ms)
        .find_map(|e| e["message"].as_str().map(str::to_owned))
}

impl Stack {
    /// A writer through HAProxy's master port (one held connection, a new one after each
    /// failure; `pause` between writes), returned once it has `acked` acknowledged writes.
    pub async fn writing(
        &self,
        name: &str,
        pause: Duration,
        acked: usize,
    ) -> Result<Writer, String> {
        let writer = Writer::start_with_password(
            self.proxy_port(),
            Some(self.password().to_owned()),
            name,
            WriteMode::Persistent,
            pause,
        );
        poll(Duration::from_secs(90), || async {
            match writer.count(|r| r.acked) {
                n if n >= acked => Ok(()),
                n => Err(format!("the writer has {n} acknowledged writes")),
            }
        })
        .await
        .map_err(|e| format!("the writer through HAProxy: {e}"))?;
        Ok(writer)
    }

    /// A rolling replacement of node `n`'s Redis task (`docker service update --force`): the
    /// swarm takes the task's name out of DNS, sends SIGTERM (the graceful stop: a master hands
    /// over first) and starts a new task once the old one is gone. Returns at once.
    pub async fn replace_task(&self, n: u8) -> Result<(), String> {
        let service = format!("{}_redis-{n}", self.opts.name);
        crate::stack::docker(&[
            "service",
            "update",
            "--force",
            "--detach",
            "--no-resolve-image",
            "--quiet",
            &service,
        ])
        .await
        .map(|_| ())
    }

    /// `redis-ha ARGS` from the host against the published gRPC port, with the operator's
    /// certificate: its stdout; an error with its exit status and stderr.
    pub async fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(binaries_dir().join("redis-ha"))
            .args(operator_tls_args(&tls_dir(&self.opts.name)))
            .args([
                "--coordinator",
                &format!("https://127.0.0.1:{}", self.opts.grpc_port),
                "--group",
                &self.opts.group,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run redis-ha: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "redis-ha {}: {} {stdout} {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Node `n`'s ROLE on its published port: its first word and, for a replica, the link.
    pub async fn node_role(&self, n: u8) -> Result<NodeRole, String> {
        let v: Vec<redis::Value> = client::query(
            self.redis_port(n),
            Some(self.password()),
            &redis::cmd("ROLE"),
        )
        .await
        .map_err(|e| format!("ROLE on redis-{n}: {e}"))?;
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        let role = text(v.first());
        let link = if role == "slave" {
            text(v.get(3))
        } else {
            String::new()
        };
        Ok(NodeRole { role, link })
    }

    /// A fresh connection through HAProxy's master port reaches redis-`m` (its `CONFIG GET
    /// port`) and a SET there is acknowledged.
    pub async fn proxy_routes_to(&self, m: u8) -> Result<(), String> {
        let port = self.proxy_port();
        let mut con = client::connect(port, Some(self.password()))
            .await
            .map_err(|e| format!("no session through :{port}: {e}"))?;
        let reached = client::config_port(&mut con, port).await?;
        if reached != 9000 + u16::from(m) {
            return Err(format!(":{port} routes to :{reached}, not redis-{m}"));
        }
        client::run::<String>(&mut con, port, redis::cmd("SET").arg("stack:probe").arg(1))
            .await
            .map(drop)
            .map_err(|e| format!("SET through :{port} answered {e}"))
    }

    /// One look at the stack: at rest ([`check_at_rest`]) and HAProxy's master port routing
    /// fresh connections to the master. Returns the master.
    pub async fn at_rest(&self) -> Result<u8, String> {
        let m = self.sentinel_master().await?;
        let mut roles = Vec::new();
        for n in 1..=3u8 {
            roles.push(self.node_role(n).await?);
        }
        check_at_rest(m, &roles, &self.status_json().await?)?;
        for _ in 0..ROUTE_PROBES {
            self.proxy_routes_to(m).await?;
        }
        Ok(m)
    }

    /// Waits until the stack is at rest ([`Stack::at_rest`]); returns the master.
    pub async fn wait_at_rest(&self, timeout: Duration) -> Result<u8, String> {
        poll(timeout, || self.at_rest()).await
    }

    /// HAProxy's read port (base + 10).
    pub fn read_port(&self) -> u16 {
        self.opts.base_port + 10
    }

    /// The node a fresh connection through the read port reaches (`CONFIG GET port`); `None`
    /// when it reaches none (refused, closed, or a port that is no node's).
    pub async fn read_routed_node(&self) -> Option<u8> {
        let port = client::routed_port(self.read_port(), Some(self.password())).await?;
        port.checked_sub(9000)
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| (1..=3).contains(n))
    }

    /// The replicas `redis-ha status` names as readers, as node numbers in its order.
    pub async fn status_readers(&self) -> Result<Vec<u8>, String> {
        let j = self.status_json().await?;
        let readers = j["readers"]
            .as_array()
            .ok_or_else(|| format!("status without readers: {j}"))?;
        readers
            .iter()
            .map(|r| {
                let a = r.as_str().unwrap_or_default();
                node_of_address(a).ok_or_else(|| format!("a reader that is no node: {a:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(role: &str, link: &str) -> NodeRole {
        NodeRole {
            role: role.into(),
            link: link.into(),
        }
    }

    #[test]
    fn node_numbers_of_addresses() {
        assert_eq!(node_of_address("redis-2:9002"), Some(2));
        assert_eq!(node_of_address("redis-3"), Some(3));
        assert_eq!(node_of_address("10.0.0.7:9001"), None);
        assert_eq!(node_of_address("redis-4:9004"), None);
        assert_eq!(node_of_address(""), None);
    }

    #[test]
    fn at_rest_needs_the_master_two_linked_replicas_and_the_coordinators_word() {
        let status = |addr: &str, confirmed: bool, linked: u64| {
            serde_json::json!({
                "master": {"address": addr},
                "failover_in_progress": false,
                "summary": {"master_confirmed": confirmed, "replicas_link_up": linked},
            })
        };
        let roles = [
            role("slave", "connected"),
            role("master", ""),
            role("slave", "connected"),
        ];
        assert_eq!(
            check_at_rest(2, &roles, &status("redis-2:9002", true, 2)),
            Ok(())
        );
        // The coordinator names another master, has not confirmed it, or sees a link down.
        assert!(check_at_rest(2, &roles, &status("redis-1:9001", true, 2)).is_err());
        assert!(check_at_rest(2, &roles, &status("redis-2:9002", false, 2)).is_err());
        assert!(check_at_rest(2, &roles, &status("redis-2:9002", true, 1)).is_err());
        assert!(check_at_rest(2, &roles, &serde_json::json!({})).is_err());
        let mut failing_over = status("redis-2:9002", true, 2);
        failing_over["failover_in_progress"] = serde_json::Value::Bool(true);
        assert!(check_at_rest(2, &roles, &failing_over).is_err());
        // A replica still syncing, or the Sentinels' master not (yet) master.
        let syncing = [
            role("slave", "sync"),
            role("master", ""),
            role("slave", "connected"),
        ];
        assert!(check_at_rest(2, &syncing, &status("redis-2:9002", true, 2)).is_err());
        assert!(check_at_rest(1, &roles, &status("redis-1:9001", true, 2)).is_err());
    }

    #[test]
    fn the_pause_of_the_first_switchover_done_since() {
        let ev = |at: i64, kind: &str, msg: &str| serde_json::json!({"at_ms": at, "kind": kind, "message": msg});
        let events = [
            ev(100, "switchover", "switchover done: a is master (epoch 3), b its replica; writes paused 150 ms"),
            ev(200, "sentinel", "+switch-master redis-cluster redis-1 9001 redis-2 9002"),
            ev(300, "switchover", "switchover aborted: the target is behind; the master redis-2:9002 was unpaused after 400 ms and stays master"),
            ev(400, "switchover", "switchover done: b is master (epoch 4), a its replica; writes paused 212 ms (longer than --max-pause 100 ms: ...)"),
        ];
        assert_eq!(
            switchover_done_since(&events, 0),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            switchover_done_since(&events, 101),
            Some(Duration::from_millis(212))
        );
        assert_eq!(switchover_done_since(&events, 401), None);
        assert!(switchover_event_since(&events, 101)
            .is_some_and(|m| m.starts_with("switchover aborted")));
        assert_eq!(switchover_event_since(&events, 401), None);
        assert_eq!(switchover_done_since(&events[1..3], 0), None);
    }
}
