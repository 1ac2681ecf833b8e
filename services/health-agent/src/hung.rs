//! Hung-node recovery: restarts the node's Redis container through the Docker API when the
//! node stalls (its polls time out) for longer than `hung_after_ms`.
//!
//! A crashed Redis (connection refused) is the swarm restart policy's business; a process that
//! keeps its socket open but never answers (stuck in a command, a frozen disk, SIGSTOP) is not
//! seen by that policy: this is what covers it. Off by default: it needs the Docker socket.
//!
//! The decision ([`HungDetector`]) is pure and unit-tested; the Docker part ([`DockerRestarter`])
//! is one list call and one restart call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListContainersOptions, RestartContainerOptions, StopContainerOptions,
};
use bollard::Docker;

use crate::probe::ObserveError;

/// The swarm label naming a task container's service.
pub const SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// How long Docker waits for the hung process to stop before killing it: a hung Redis will
/// not flush anything on SIGTERM, so waiting long only lengthens the outage.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Bound on a whole restart call (stop + kill + start) beyond the stop timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which container to restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartTarget {
    /// A container name or id.
    Container(String),
    /// The live (running or paused) container on this host labelled with this swarm service name.
    Service(String),
}

impl std::fmt::Display for RestartTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartTarget::Container(c) => write!(f, "container {c}"),
            RestartTarget::Service(s) => write!(f, "the container of service {s}"),
        }
    }
}

/// The checked `hung_*` / `docker_*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HungSettings {
    pub enabled: bool,
    /// How long polls must keep timing out before a restart.
    pub after: Duration,
    /// No second restart attempt within this.
    pub cooldown: Duration,
    /// `None` when disabled.
    pub target: Option<RestartTarget>,
}

/// What one poll of the node said, as far as hanging goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// It answered.
    Answered,
    /// A connect or command timed out: the process may be stuck with its socket open.
    TimedOut,
    /// Any other failure (refused, reset, an error reply): not a stall.
    Failed,
}

impl PollOutcome {
    pub fn of<T>(result: &Result<T, ObserveError>) -> Self {
        match result {
            Ok(_) => PollOutcome::Answered,
            Err(e) if e.is_timeout() => PollOutcome::TimedOut,
            Err(_) => PollOutcome::Failed,
        }
    }
}

/// Why a restart that is due is not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// A restart was attempted less than the cooldown ago.
    Cooldown,
    /// Sentinel is failing the group over: restarting a hung master now could bring it back
    /// as master before a replica is promoted.
    Failover,
}

/// What to do after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HungDecision {
    /// Not stalled (or disabled).
    Fine,
    /// Stalled for this long, not long enough yet.
    Stalled(Duration),
    /// Stalled for this long: restart now, then call [`HungDetector::attempted`].
    Restart(Duration),
    /// Stalled long enough, but not now.
    Held(Duration, HoldReason),
}

/// Tracks how long the node has been stalling and decides when to restart it.
#[derive(Debug)]
pub struct HungDetector {
    enabled: bool,
    after: Duration,
    cooldown: Duration,
    /// When the current run of timeouts began.
    stalled_since: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl HungDetector {
    pub fn new(enabled: bool, after: Duration, cooldown: Duration) -> Self {
        Self {
            enabled,
            after,
            cooldown,
            stalled_since: None,
            last_attempt: None,
        }
    }

    pub fn from_settings(s: &HungSettings) -> Self {
        Self::new(s.enabled, s.after, s.cooldown)
    }

    /// One poll's outcome; `started` is when that poll began (the node was already not
    /// answering then).
    pub fn observe(
        &mut self,
        outcome: PollOutcome,
        started: Instant,
        failover_in_progress: bool,
    ) -> HungDecision {
        if !self.enabled {
            return HungDecision::Fine;
        }
        if outcome != PollOutcome::TimedOut {
            // An answer ends the stall; a refused connection is a crash, not a hang.
            self.stalled_since = None;
            return HungDecision::Fine;
        }
        let since = *self.stalled_since.get_or_insert(started);
        let stalled = started.saturating_duration_since(since);
        if stalled < self.after {
            return HungDecision::Stalled(stalled);
        }
        if failover_in_progress {
            return HungDecision::Held(stalled, HoldReason::Failover);
        }
        if self
            .last_attempt
            .is_some_and(|t| started.saturating_duration_since(t) < self.cooldown)
        {
            return HungDecision::Held(stalled, HoldReason::Cooldown);
        }
        HungDecision::Restart(stalled)
    }

    /// A restart was attempted at `now` (whether or not it worked): the cooldown starts and
    /// the stall is counted afresh.
    pub fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
        self.stalled_since = None;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("cannot reach the Docker daemon (is /var/run/docker.sock mounted and usable by the agent's user?): {0}")]
    Connect(String),
    #[error("docker {op} {target}: {reason}")]
    Docker {
        op: &'static str,
        target: String,
        reason: String,
    },
    #[error(
        "no live container of service {0} on this host (the agent must run on the node's host)"
    )]
    NoContainer(String),
    #[error("docker {op} {target}: no answer within {secs} s")]
    Timeout {
        op: &'static str,
        target: String,
        secs: u64,
    },
}

/// Restarts the node's container through the local Docker daemon (`DOCKER_HOST` or
/// `/var/run/docker.sock`). Connects on first use, and again after a failure.
#[derive(Debug)]
pub struct DockerRestarter {
    target: RestartTarget,
    docker: Option<Docker>,
}

impl DockerRestarter {
    pub fn new(target: RestartTarget) -> Self {
        Self {
            target,
            docker: None,
        }
    }

    pub fn target(&self) -> &RestartTarget {
        &self.target
    }

    async fn client(&mut self) -> Result<Docker, RestartError> {
        if let Some(d) = &self.docker {
            return Ok(d.clone());
        }
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RestartError::Connect(e.to_string()))?;
        // The engines here speak API 1.41, older than bollard's default.
        let docker = tokio::time::timeout(CALL_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| RestartError::Connect("version negotiation timed out".into()))?
            .map_err(|e| RestartError::Connect(e.to_string()))?;
        self.docker = Some(docker.clone());
        Ok(docker)
    }

    /// Restarts the target; returns the container name or id restarted.
    pub async fn restart(&mut self) -> Result<String, RestartError> {
        let result = self.restart_once().await;
        if result.is_err() {
            // The daemon may have restarted, or the socket appeared: connect afresh next time.
            self.docker = None;
        }
        result
    }

    async fn restart_once(&mut self) -> Result<String, RestartError> {
        let docker = self.client().await?;
        let limit = STOP_TIMEOUT + CALL_TIMEOUT;
        let timeout_secs = i32::try_from(STOP_TIMEOUT.as_secs()).ok();
        let (container, op, call) = match &self.target {
            // A plain container: restart it in place.
            RestartTarget::Container(c) => {
                let options = RestartContainerOptions {
                    t: timeout_secs,
                    // `signal` needs API 1.42: leave it unset for 1.41 engines.
                    signal: None,
                };
                let d = docker.clone();
                let id = c.clone();
                let call: futures::future::BoxFuture<'_, Result<(), bollard::errors::Error>> =
                    Box::pin(async move { d.restart_container(&id, Some(options)).await });
                (c.clone(), "restart", call)
            }
            // A swarm task: stop its container and let the swarm start a new task. Restarting
            // it in place would leave the swarm (which saw the task end) starting a second
            // Redis with the same identity beside the revived one.
            RestartTarget::Service(s) => {
                let id = find_container(&docker, s).await?;
                let options = StopContainerOptions {
                    t: timeout_secs,
                    // `signal` needs API 1.42: leave it unset for 1.41 engines.
                    signal: None,
                };
                let d = docker.clone();
                let target = id.clone();
                let call: futures::future::BoxFuture<'_, Result<(), bollard::errors::Error>> =
                    Box::pin(async move { d.stop_container(&target, Some(options)).await });
                (id, "stop (the swarm replaces the task)", call)
            }
        };
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| RestartError::Timeout {
                op,
                target: container.clone(),
                secs: limit.as_secs(),
            })?
            .map_err(|e| RestartError::Docker {
                op,
                target: container.clone(),
                reason: e.to_string(),
            })?;
        Ok(container)
    }
}

/// The newest live container of swarm service `service` on this host: running, or paused (a
/// frozen container is the textbook hung node).
async fn find_container(docker: &Docker, service: &str) -> Result<String, RestartError> {
    let filters = HashMap::from([
        (
            "label".to_owned(),
            vec![format!("{SERVICE_LABEL}={service}")],
        ),
        (
            "status".to_owned(),
            vec!["running".to_owned(), "paused".to_owned()],
        ),
    ]);
    let options = ListContainersOptions {
        all: false,
        filters: Some(filters),
        ..Default::default()
    };
    let list = tokio::time::timeout(CALL_TIMEOUT, docker.list_containers(Some(options)))
        .await
        .map_err(|_| RestartError::Timeout {
            op: "list containers of service",
            target: service.to_owned(),
            secs: CALL_TIMEOUT.as_secs(),
        })?
        .map_err(|e| RestartError::Docker {
            op: "list containers of service",
            target: service.to_owned(),
            reason: e.to_string(),
        })?;
    list.into_iter()
        .filter_map(|c| Some((c.created.unwrap_or(0), c.id?)))
        .max()
        .map(|(_, id)| id)
        .ok_or_else(|| RestartError::NoContainer(service.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use HungDecision::{Fine, Held, Restart, Stalled};
    use PollOutcome::{Answered, Failed, TimedOut};

    const AFTER: Duration = Duration::from_secs(10);
    const COOLDOWN: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn detector() -> HungDetector {
        HungDetector::new(true, AFTER, COOLDOWN)
    }

    /// One poll: its outcome, when (seconds after t0), whether a failover is in progress, and
    /// the decision expected.
    type Step = (PollOutcome, u64, bool, HungDecision);

    /// A detector and the instant its polls' times count from.
    struct Timeline {
        d: HungDetector,
        t0: Instant,
    }

    impl Timeline {
        fn new(d: HungDetector) -> Self {
            Self {
                d,
                t0: Instant::now(),
            }
        }

        /// Feeds `steps` to the detector in order, checking each decision.
        fn play(&mut self, steps: &[Step]) {
            for (outcome, at, in_progress, want) in steps {
                assert_eq!(
                    self.d.observe(*outcome, self.t0 + secs(*at), *in_progress),
                    *want,
                    "{outcome:?} at {at} s (failover in progress: {in_progress})"
                );
            }
        }
    }

    #[test]
    fn timeouts_accumulate_until_the_threshold() {
        Timeline::new(detector()).play(&[
            (Answered, 0, false, Fine),
            (TimedOut, 1, false, Stalled(secs(0))),
            (TimedOut, 6, false, Stalled(secs(5))),
            (TimedOut, 11, false, Restart(secs(10))),
        ]);
    }

    #[test]
    fn an_answer_resets_the_stall() {
        Timeline::new(detector()).play(&[
            (TimedOut, 0, false, Stalled(secs(0))),
            (TimedOut, 9, false, Stalled(secs(9))),
            (Answered, 10, false, Fine),
            // Counted afresh.
            (TimedOut, 11, false, Stalled(secs(0))),
        ]);
    }

    #[test]
    fn a_refused_connection_is_not_a_hang() {
        let mut t = Timeline::new(detector());
        let refused: Vec<Step> = (0..30).map(|n| (Failed, n, false, Fine)).collect();
        t.play(&refused);
        // And it breaks a run of timeouts: the process died, the restart policy has it.
        t.play(&[
            (TimedOut, 30, false, Stalled(secs(0))),
            (Failed, 39, false, Fine),
            (TimedOut, 41, false, Stalled(secs(0))),
        ]);
    }

    #[test]
    fn cooldown_holds_a_second_restart() {
        let mut t = Timeline::new(detector());
        t.play(&[
            (TimedOut, 0, false, Stalled(secs(0))),
            (TimedOut, 10, false, Restart(secs(10))),
        ]);
        t.d.attempted(t.t0 + secs(10));
        // Still hung after the restart (or the restart failed): counted afresh, then held
        // until the cooldown is over.
        t.play(&[
            (TimedOut, 12, false, Stalled(secs(0))),
            (TimedOut, 25, false, Held(secs(13), HoldReason::Cooldown)),
            (TimedOut, 70, false, Restart(secs(58))),
        ]);
    }

    #[test]
    fn a_failover_in_progress_holds_the_restart() {
        Timeline::new(detector()).play(&[
            (TimedOut, 0, true, Stalled(secs(0))),
            (TimedOut, 5, true, Stalled(secs(5))),
            (TimedOut, 12, true, Held(secs(12), HoldReason::Failover)),
            (TimedOut, 15, false, Restart(secs(15))),
        ]);
    }

    #[test]
    fn disabled_never_restarts() {
        let hung: Vec<Step> = (0..100).map(|n| (TimedOut, n, false, Fine)).collect();
        Timeline::new(HungDetector::new(false, AFTER, COOLDOWN)).play(&hung);
    }

    #[test]
    fn outcomes_follow_the_error_kind() {
        let timeout: Result<(), ObserveError> = Err(ObserveError::Timeout {
            peer: "redis",
            addr: "x:1".into(),
            command: "PING".into(),
            timeout_ms: 1000,
        });
        let refused: Result<(), ObserveError> = Err(ObserveError::Connect {
            peer: "redis",
            addr: "x:1".into(),
            reason: "Connection refused".into(),
        });
        assert_eq!(PollOutcome::of(&timeout), PollOutcome::TimedOut);
        assert_eq!(PollOutcome::of(&refused), PollOutcome::Failed);
        assert_eq!(
            PollOutcome::of(&Ok::<(), ObserveError>(())),
            PollOutcome::Answered
        );
    }
}
