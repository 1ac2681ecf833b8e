//! The reloader's Prometheus metrics (prefix `redis_ha_reloader_`), served at `/metrics` on
//! `metrics_addr`. One instance per reloader, never global.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use redis_ha_common::metrics::{registered, GrpcRequests};

use crate::runtime::{AdminTarget, Command, RuntimeError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForeignLabels {
    /// `coordinator` or `sentinel`.
    pub source: &'static str,
    /// `master` (the decision was ignored) or `node` (the node was left out).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HaproxyLabels {
    pub haproxy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub haproxy: String,
    pub server: String,
}

/// `command` label of a read-back (`show servers state` + `show stat`).
pub const READ_BACK: &str = "read_back";

#[derive(Debug)]
pub struct ReloaderMetrics {
    pub runtime_commands: Family<CommandLabels, Counter>,
    pub runtime_errors: Family<ErrorLabels, Counter>,
    pub converges: Family<ResultLabels, Counter>,
    pub master_switches: Counter,
    pub switch_lag: Histogram,
    pub topology_version: Gauge,
    pub config_epoch: Gauge,
    pub decisions: Family<SourceLabels, Counter>,
    pub haproxy_converged: Family<HaproxyLabels, Gauge>,
    pub instance_panics: Family<HaproxyLabels, Counter>,
    pub coordinator_connected: Gauge,
    pub grpc_requests: GrpcRequests,
    pub foreign_addresses: Family<ForeignLabels, Counter>,
    pub read_servers: Family<HaproxyLabels, Gauge>,
    pub read_fallback: Family<HaproxyLabels, Gauge>,
    pub read_server_ready: Family<ServerLabels, Gauge>,
    /// (HAProxy, server) pairs ever set in `read_server_ready`.
    read_seen: Mutex<BTreeSet<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves a set of names: still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ReloaderMetrics {
    /// The metrics, registered in a new registry.
    pub fn new() -> (Self, Registry) {
        let mut r = Registry::with_prefix("redis_ha_reloader");
        let m = Self {
            runtime_commands: registered(
                &mut r,
                "runtime_commands",
                "HAProxy runtime API commands sent, by command (ready, maint, set_addr, shutdown_sessions, read_back)",
                Family::default(),
            ),
            runtime_errors: registered(
                &mut r,
                "runtime_errors",
                "HAProxy runtime API failures, by kind (connect, timeout, io, refused)",
                Family::default(),
            ),
            converges: registered(
                &mut r,
                "converges",
                "Converges of one HAProxy on the decision in force, by result (changed, unchanged, error)",
                Family::default(),
            ),
            master_switches: registered(
                &mut r,
                "master_switches",
                "Times a HAProxy was switched to a new master",
                Counter::default(),
            ),
            // From tens of milliseconds to tens of seconds.
            switch_lag: registered(
                &mut r,
                "switch_lag_seconds",
                "From the promoted node's role:master (as its agent saw it) to HAProxy ready on it, per HAProxy",
                Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            ),
            topology_version: registered(
                &mut r,
                "topology_version",
                "Version of the last topology received from the coordinator",
                Gauge::default(),
            ),
            config_epoch: registered(
                &mut r,
                "config_epoch",
                "Config epoch of the routing decision in force",
                Gauge::default(),
            ),
            decisions: registered(
                &mut r,
                "decisions",
                "Routing changes taken, by the source that decided (coordinator, sentinel)",
                Family::default(),
            ),
            haproxy_converged: registered(
                &mut r,
                "haproxy_converged",
                "1 when the last converge found or left the HAProxy in the wanted state",
                Family::default(),
            ),
            instance_panics: registered(
                &mut r,
                "instance_task_panics",
                "Panics of the task that converges one HAProxy (each is logged and the task started again)",
                Family::default(),
            ),
            coordinator_connected: registered(
                &mut r,
                "coordinator_connected",
                "1 while the coordinator's topology stream is open",
                Gauge::default(),
            ),
            grpc_requests: GrpcRequests::registered(
                &mut r,
                "Calls to the coordinator, by method and gRPC status code",
            ),
            foreign_addresses: registered(
                &mut r,
                "foreign_addresses",
                "Addresses outside the configured node list named by a decision (a master: the decision ignored; a node: left out), by source and kind",
                Family::default(),
            ),
            read_servers: registered(
                &mut r,
                "read_servers",
                "Servers ready in the read backend at the last read-back",
                Family::default(),
            ),
            read_fallback: registered(
                &mut r,
                "read_fallback",
                "1 while the master serves the read endpoint (no replica qualifies, or the coordinator is away)",
                Family::default(),
            ),
            read_server_ready: registered(
                &mut r,
                "read_server_ready",
                "1 for each server ready in the read backend at the last read-back, 0 for the others seen before",
                Family::default(),
            ),
            read_seen: Mutex::new(BTreeSet::new()),
        };
        (m, r)
    }

    /// The read backend's ready servers of one HAProxy: 1 for these, 0 for every other server
    /// of that HAProxy already in the family.
    pub fn set_read_ready(&self, haproxy: &str, ready: &[String]) {
        for s in ready {
            self.read_server_ready
                .get_or_create(&ServerLabels {
                    haproxy: haproxy.to_owned(),
                    server: s.clone(),
                })
                .set(1);
        }
        // Servers of this HAProxy seen ready before and not now: 0 (the family has no
        // iteration, so remember them by name).
        let mut seen = lock(&self.read_seen);
        for (h, s) in seen.iter() {
            if h == haproxy && !ready.contains(s) {
                self.read_server_ready
                    .get_or_create(&ServerLabels {
                        haproxy: h.clone(),
                        server: s.clone(),
                    })
                    .set(0);
            }
        }
        for s in ready {
            seen.insert((haproxy.to_owned(), s.clone()));
        }
    }

    /// Commands about to be sent.
    pub fn commands(&self, commands: &[Command]) {
        for c in commands {
            self.runtime_commands
                .get_or_create(&CommandLabels {
                    command: command_name(c),
                })
                .inc();
        }
    }

    pub fn read_back(&self) {
        self.runtime_commands
            .get_or_create(&CommandLabels { command: READ_BACK })
            .inc();
    }

    pub fn runtime_error(&self, e: &RuntimeError) {
        let kind = match e {
            RuntimeError::Connect { .. } => "connect",
            RuntimeError::Timeout { .. } => "timeout",
            RuntimeError::Io { .. } => "io",
            RuntimeError::Unexpected { .. } => "refused",
        };
        self.runtime_errors
            .get_or_create(&ErrorLabels { kind })
            .inc();
    }

    pub fn converge(&self, result: &'static str) {
        self.converges.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn grpc(&self, method: &'static str, code: tonic::Code) {
        self.grpc_requests.count(method, code);
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::SetState {
            state: AdminTarget::Ready,
            ..
        } => "ready",
        Command::SetState {
            state: AdminTarget::Maint,
            ..
        } => "maint",
        Command::SetAddr { .. } => "set_addr",
        Command::ShutdownSessions { .. } => "shutdown_sessions",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_errors_by_kind() {
        let (m, r) = ReloaderMetrics::new();
        m.commands(&[
            Command::maint("redis", "redis-1"),
            Command::shutdown_sessions("redis", "redis-1"),
            Command::ready("redis", "redis-2"),
        ]);
        m.read_back();
        m.runtime_error(&RuntimeError::Timeout {
            addr: "unix:/x".into(),
            command: "show servers state".into(),
            after: std::time::Duration::from_secs(1),
        });
        m.switch_lag.observe(0.5);
        m.grpc("WatchTopology", tonic::Code::Unavailable);
        m.instance_panics
            .get_or_create(&HaproxyLabels {
                haproxy: "unix:/x".into(),
            })
            .inc();
        m.set_read_ready("unix:/x", &["redis-2".into(), "redis-3".into()]);
        m.set_read_ready("unix:/x", &["redis-2".into()]);
        m.read_servers
            .get_or_create(&HaproxyLabels {
                haproxy: "unix:/x".into(),
            })
            .set(1);
        let s = redis_ha_common::metrics::encode(&r);
        for line in [
            "redis_ha_reloader_read_servers{haproxy=\"unix:/x\"} 1",
            "redis_ha_reloader_read_server_ready{haproxy=\"unix:/x\",server=\"redis-2\"} 1",
            "redis_ha_reloader_read_server_ready{haproxy=\"unix:/x\",server=\"redis-3\"} 0",
            "redis_ha_reloader_runtime_commands_total{command=\"ready\"} 1",
            "redis_ha_reloader_runtime_commands_total{command=\"maint\"} 1",
            "redis_ha_reloader_runtime_commands_total{command=\"shutdown_sessions\"} 1",
            "redis_ha_reloader_runtime_commands_total{command=\"read_back\"} 1",
            "redis_ha_reloader_runtime_errors_total{kind=\"timeout\"} 1",
            "redis_ha_reloader_switch_lag_seconds_count 1",
            "redis_ha_reloader_grpc_requests_total{method=\"WatchTopology\",code=\"UNAVAILABLE\"} 1",
            "redis_ha_reloader_instance_task_panics_total{haproxy=\"unix:/x\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
    }
}
