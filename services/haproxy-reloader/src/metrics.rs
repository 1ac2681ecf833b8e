//! The reloader's Prometheus metrics (prefix `redis_ha_reloader_`), served at `/metrics` on
//! `metrics_addr`. One instance per reloader, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use redis_ha_common::metrics::GrpcRequests;

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
pub struct HaproxyLabels {
    pub haproxy: String,
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
}

impl ReloaderMetrics {
    /// The metrics, registered in a new registry.
    pub fn new() -> (Self, Registry) {
        let m = Self {
            runtime_commands: Family::default(),
            runtime_errors: Family::default(),
            converges: Family::default(),
            master_switches: Counter::default(),
            // From tens of milliseconds to tens of seconds.
            switch_lag: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            topology_version: Gauge::default(),
            config_epoch: Gauge::default(),
            decisions: Family::default(),
            haproxy_converged: Family::default(),
            instance_panics: Family::default(),
            coordinator_connected: Gauge::default(),
            grpc_requests: GrpcRequests::default(),
        };
        let mut r = Registry::with_prefix("redis_ha_reloader");
        r.register(
            "runtime_commands",
            "HAProxy runtime API commands sent, by command (ready, maint, set_addr, shutdown_sessions, read_back)",
            m.runtime_commands.clone(),
        );
        r.register(
            "runtime_errors",
            "HAProxy runtime API failures, by kind (connect, timeout, io, refused)",
            m.runtime_errors.clone(),
        );
        r.register(
            "converges",
            "Converges of one HAProxy on the decision in force, by result (changed, unchanged, error)",
            m.converges.clone(),
        );
        r.register(
            "master_switches",
            "Times a HAProxy was switched to a new master",
            m.master_switches.clone(),
        );
        r.register(
            "switch_lag_seconds",
            "From the promoted node's role:master (as its agent saw it) to HAProxy ready on it, per HAProxy",
            m.switch_lag.clone(),
        );
        r.register(
            "topology_version",
            "Version of the last topology received from the coordinator",
            m.topology_version.clone(),
        );
        r.register(
            "config_epoch",
            "Config epoch of the routing decision in force",
            m.config_epoch.clone(),
        );
        r.register(
            "decisions",
            "Routing changes taken, by the source that decided (coordinator, sentinel)",
            m.decisions.clone(),
        );
        r.register(
            "haproxy_converged",
            "1 when the last converge found or left the HAProxy in the wanted state",
            m.haproxy_converged.clone(),
        );
        r.register(
            "instance_task_panics",
            "Panics of the task that converges one HAProxy (each is logged and the task started again)",
            m.instance_panics.clone(),
        );
        r.register(
            "coordinator_connected",
            "1 while the coordinator's topology stream is open",
            m.coordinator_connected.clone(),
        );
        m.grpc_requests.register(
            &mut r,
            "Calls to the coordinator, by method and gRPC status code",
        );
        (m, r)
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
        let s = redis_ha_common::metrics::encode(&r);
        for line in [
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
