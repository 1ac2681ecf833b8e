//! The chaos schedule: K times, after `interval` of calm on a whole cluster, fault the
//! current master and undo the fault after `down_for` (and the failover).
//!
//! Faults:
//! - `kill`: SIGKILL (a crash), restarted after `down_for` from its configuration file, as a
//!   supervisor or a container restart policy would;
//! - `stop`: SIGTERM (a clean shutdown: Redis flushes and tells its replicas), restarted after
//!   `down_for` likewise;
//! - `pause`: SIGSTOP (a hung process keeping its sockets open), SIGCONT after `down_for`.
//!
//! Before each fault the schedule waits until the cluster is whole again (a master, every
//! replica linked to it and synced), then `interval` more, so that every outage is followed by
//! steady traffic: a fault on a half-healed cluster would test a double failure, which no
//! 3-node Sentinel deployment survives without losses, not the failover.
//!
//! Targets implement [`ChaosTarget`]: [`crate::chaos::LocalProcesses`] for `deploy/up.sh
//! --local`, the test harness's nodes in `redis-ha-tests`, and [`crate::chaos::DockerStack`]
//! for the swarm stack
//! (the Docker API; the swarm restarts a killed task by itself, so its `restore` for kill and
//! stop only waits, and the node may be back before any failover).

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::link::sleep_or_stop;
use super::Clock;
use crate::chaos::{ChaosError, ChaosTarget, Fault};

/// What the chaos schedule does.
#[derive(Clone, Debug)]
pub struct ChaosPlan {
    pub fault: Fault,
    /// How many faults (0 = none).
    pub kills: u32,
    /// Calm before each fault: from the start of the run to the first fault, and from the
    /// cluster being whole again to the next.
    pub interval: Duration,
    /// How long the node stays faulted.
    pub down_for: Duration,
    /// How long to wait for the cluster to be whole before a fault (and at the end).
    pub settle_timeout: Duration,
}

impl Default for ChaosPlan {
    fn default() -> Self {
        Self {
            fault: Fault::Kill,
            kills: 0,
            interval: Duration::from_secs(8),
            down_for: Duration::from_secs(10),
            settle_timeout: Duration::from_secs(120),
        }
    }
}

/// One fault of the schedule, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultRecord {
    /// 1-based.
    pub round: u32,
    pub fault: Fault,
    pub node: String,
    pub address: String,
    /// Milliseconds since the start of the run.
    pub injected_at_ms: u64,
    /// When the target first named another master (`None`: no failover seen).
    pub failover_at_ms: Option<u64>,
    /// That master.
    pub new_master: Option<String>,
    /// When the fault was undone (`None` if that failed or the run was interrupted first).
    pub restored_at_ms: Option<u64>,
}

/// What the schedule did.
#[derive(Debug, Default)]
pub struct ChaosLog {
    pub faults: Vec<FaultRecord>,
    pub errors: Vec<String>,
}

/// How often the master is asked for while a fault lasts (to time the failover).
const MASTER_POLL: Duration = Duration::from_millis(100);

/// Runs the schedule against `target`; returns early (undoing a fault in progress) when
/// `interrupt` turns true.
///
/// A faulted node is restored after `down_for`, but not before another master was named
/// (up to the settle timeout): a node without persistence restarted before the failover
/// comes back empty as the master, and its replicas would copy its emptiness (the known
/// Redis hazard of auto-restarting a master without persistence), which is not what the
/// schedule is there to test.
pub async fn run_schedule<C: ChaosTarget>(
    plan: &ChaosPlan,
    target: &mut C,
    clock: Clock,
    interrupt: &mut watch::Receiver<bool>,
) -> ChaosLog {
    let mut log = ChaosLog::default();
    if plan.kills == 0 {
        return log;
    }
    tracing::info!(
        "chaos: {} x {} of the master, {:.1} s after the start and after each heal, down for \
         {:.1} s, on {}",
        plan.kills,
        plan.fault.as_str(),
        plan.interval.as_secs_f64(),
        plan.down_for.as_secs_f64(),
        target.describe()
    );
    for round in 1..=plan.kills {
        // `interval` of calm on a whole cluster before every fault: from the start, then from
        // the moment the previous fault had healed.
        if round > 1
            && !whole_or_stop(plan, target, interrupt, &mut log, |e| {
                format!("round {round}: the cluster did not heal, schedule stopped: {e}")
            })
            .await
        {
            return log;
        }
        if sleep_or_stop(plan.interval, interrupt).await {
            return log;
        }
        // Whole still (a spontaneous failover may have happened meanwhile).
        let not_whole =
            |e| format!("round {round}: the cluster is not whole, schedule stopped: {e}");
        if !whole_or_stop(plan, target, interrupt, &mut log, not_whole).await {
            return log;
        }
        let node = match target.master().await {
            Ok(n) => n,
            Err(e) => {
                log.errors.push(format!("round {round}: {e}"));
                return log;
            }
        };
        tracing::info!(
            "chaos round {round}/{}: {} the master {} ({})",
            plan.kills,
            plan.fault.as_str(),
            node.name,
            node.address
        );
        let injected_at_ms = clock.ms();
        let injected = tokio::time::Instant::now();
        if let Err(e) = target.inject(&node, plan.fault).await {
            log.errors.push(format!(
                "round {round}: {} failed: {e}",
                plan.fault.as_str()
            ));
            return log;
        }
        let mut record = FaultRecord {
            round,
            fault: plan.fault,
            node: node.name.clone(),
            address: node.address.clone(),
            injected_at_ms,
            failover_at_ms: None,
            new_master: None,
            restored_at_ms: None,
        };
        // Down for `down_for` and until another master is named; interrupted or not, the
        // node is always brought back.
        let give_up = injected + plan.down_for.max(plan.settle_timeout);
        let self_heals = target.heals_by_itself(plan.fault);
        let mut healed_alone = false;
        loop {
            if record.new_master.is_none() {
                if let Ok(m) = target.master().await {
                    if m.address != node.address {
                        let at = clock.ms();
                        tracing::info!(
                            "chaos round {round}: {} is master {:.2} s after the {}",
                            m.name,
                            (at - injected_at_ms) as f64 / 1000.0,
                            plan.fault.as_str()
                        );
                        record.failover_at_ms = Some(at);
                        record.new_master = Some(m.name);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let down_long_enough = now >= injected + plan.down_for;
            if down_long_enough && record.new_master.is_some() {
                break;
            }
            if down_long_enough && self_heals && target.check_whole().await.is_ok() {
                healed_alone = true;
                tracing::info!(
                    "chaos round {round}: whole again after {} was restarted for us, no \
                     failover seen (back before Sentinel's down-after)",
                    node.name
                );
                break;
            }
            if now >= give_up {
                break;
            }
            if sleep_or_stop(MASTER_POLL, interrupt).await {
                break;
            }
        }
        if record.new_master.is_none() && !healed_alone && !*interrupt.borrow() {
            log.errors.push(format!(
                "round {round}: no other master named within {:.0} s of the {}",
                plan.settle_timeout.as_secs_f64(),
                plan.fault.as_str()
            ));
        }
        let restored = target.restore(&node, plan.fault).await;
        match restored {
            Ok(()) => {
                tracing::info!("chaos round {round}: {} restored", node.name);
                record.restored_at_ms = Some(clock.ms());
                log.faults.push(record);
            }
            Err(e) => {
                log.faults.push(record);
                log.errors.push(format!(
                    "round {round}: restoring {} failed: {e}",
                    node.name
                ));
                return log;
            }
        }
        if *interrupt.borrow() || !log.errors.is_empty() {
            return log;
        }
    }
    // End on a whole cluster, so the drain reads from a settled master.
    whole_or_stop(plan, target, interrupt, &mut log, |e| {
        format!("after the last round the cluster did not heal: {e}")
    })
    .await;
    log
}

/// Waits for a whole cluster: false when interrupted, or when it is not whole by the settle
/// timeout (logged as `failure` says), which ends the schedule.
async fn whole_or_stop<C: ChaosTarget>(
    plan: &ChaosPlan,
    target: &mut C,
    interrupt: &mut watch::Receiver<bool>,
    log: &mut ChaosLog,
    failure: impl FnOnce(ChaosError) -> String,
) -> bool {
    match wait_whole(plan, target, interrupt).await {
        Ok(whole) => whole,
        Err(e) => {
            log.errors.push(failure(e));
            false
        }
    }
}

/// Waits until `check_whole` passes: Ok(true), Ok(false) if interrupted, Err on timeout.
async fn wait_whole<C: ChaosTarget>(
    plan: &ChaosPlan,
    target: &mut C,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<bool, ChaosError> {
    let deadline = tokio::time::Instant::now() + plan.settle_timeout;
    let mut noted = false;
    loop {
        match target.check_whole().await {
            Ok(()) => return Ok(true),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                if !noted {
                    tracing::info!("chaos: waiting for the cluster to heal ({e})");
                    noted = true;
                }
            }
        }
        if sleep_or_stop(Duration::from_millis(250), interrupt).await {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::NodeRef;

    /// A node the platform restarts by itself 3 polls after the fault, as the master again.
    struct SelfHealing {
        heals: bool,
        down_polls: u32,
        faults: u32,
        restores: u32,
    }

    impl ChaosTarget for SelfHealing {
        fn describe(&self) -> String {
            "fake".into()
        }

        async fn master(&mut self) -> Result<NodeRef, ChaosError> {
            if self.down_polls > 0 {
                self.down_polls -= 1;
                return Err(ChaosError::NoMaster("down".into()));
            }
            Ok(NodeRef {
                name: "node-1".into(),
                address: "n1:1".into(),
            })
        }

        async fn check_whole(&mut self) -> Result<(), ChaosError> {
            if self.down_polls > 0 {
                return Err(ChaosError::NotWhole("down".into()));
            }
            Ok(())
        }

        fn heals_by_itself(&self, _fault: Fault) -> bool {
            self.heals
        }

        async fn inject(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
            self.faults += 1;
            self.down_polls = 3;
            Ok(())
        }

        async fn restore(&mut self, _node: &NodeRef, _fault: Fault) -> Result<(), ChaosError> {
            self.restores += 1;
            Ok(())
        }
    }

    fn quick_plan(kills: u32) -> ChaosPlan {
        ChaosPlan {
            fault: Fault::Kill,
            kills,
            interval: Duration::from_millis(10),
            down_for: Duration::from_millis(50),
            settle_timeout: Duration::from_secs(2),
        }
    }

    /// Three rounds against a [`SelfHealing`] target that `heals` by itself or not.
    async fn three_rounds(heals: bool) -> (SelfHealing, ChaosLog) {
        let (_tx, mut rx) = watch::channel(false);
        let mut t = SelfHealing {
            heals,
            down_polls: 0,
            faults: 0,
            restores: 0,
        };
        let log = run_schedule(&quick_plan(3), &mut t, Clock::start(), &mut rx).await;
        (t, log)
    }

    #[tokio::test]
    async fn a_node_back_before_any_failover_ends_the_round_when_it_heals_by_itself() {
        let (t, log) = three_rounds(true).await;
        assert!(log.errors.is_empty(), "{:?}", log.errors);
        assert_eq!((t.faults, t.restores), (3, 3));
        assert_eq!(log.faults.len(), 3);
        assert!(log
            .faults
            .iter()
            .all(|f| f.new_master.is_none() && f.restored_at_ms.is_some()));
    }

    #[tokio::test]
    async fn a_round_without_failover_is_an_error_unless_the_target_heals_by_itself() {
        let (t, log) = three_rounds(false).await;
        // The schedule stops after the first round: no other master within the settle timeout.
        assert_eq!(t.faults, 1);
        assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
        assert!(
            log.errors[0].contains("no other master"),
            "{:?}",
            log.errors
        );
    }
}
