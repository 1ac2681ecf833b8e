//! Hung-node detection against a real redis-server: paused (SIGSTOP, sockets open) it is
//! found hung; killed (connection refused) it is a crash, left to the restart policy. The
//! Docker restart itself needs a container and is not exercised here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use redis_ha_agent::hung::{HungDecision, HungDetector, PollOutcome};
use redis_ha_agent::RedisProbe;
use redis_ha_common::HostPort;
use redis_ha_testkit::{wait_until, Sandbox, TIMEOUT};

const IO: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_paused_redis_is_hung_and_a_killed_one_is_not() {
    let sb = Sandbox::new();
    let mut redis = sb.redis(None).await;
    let addr = HostPort::new("127.0.0.1", redis.port());
    let mut probe = RedisProbe::new(addr.clone(), addr, None, IO).unwrap();
    let mut detector = HungDetector::new(true, AFTER, Duration::from_secs(60));

    let started = Instant::now();
    let result = probe.observe().await;
    assert_eq!(
        PollOutcome::of(&result),
        PollOutcome::Answered,
        "{result:?}"
    );
    assert_eq!(
        detector.observe(PollOutcome::Answered, started, false),
        HungDecision::Fine
    );

    redis.pause();
    // The probe, the detector and the number of polls, carried from one probe to the next.
    let state = tokio::sync::Mutex::new((probe, detector, 0));
    let hung_for = wait_until("the detector to decide a restart", TIMEOUT, || async {
        let (probe, detector, polls) = &mut *state.lock().await;
        let started = Instant::now();
        let result = probe.observe().await;
        let outcome = PollOutcome::of(&result);
        assert_eq!(outcome, PollOutcome::TimedOut, "{result:?}");
        *polls += 1;
        match detector.observe(outcome, started, false) {
            HungDecision::Restart(d) => Ok(d),
            HungDecision::Stalled(d) => Err(format!("stalled for {d:?}")),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    let (mut probe, mut detector, polls) = state.into_inner();
    assert!(hung_for >= AFTER, "{hung_for:?}");
    assert!(polls >= 2, "timeouts accumulate over several polls");
    detector.attempted(Instant::now());

    // SIGKILL reaches a stopped process: the port closes, connections are refused.
    redis.kill();
    let started = Instant::now();
    let result = probe.observe().await;
    assert_eq!(PollOutcome::of(&result), PollOutcome::Failed, "{result:?}");
    assert_eq!(
        detector.observe(PollOutcome::Failed, started, false),
        HungDecision::Fine
    );
}
