//! Hung-node detection against a real redis-server: paused (SIGSTOP, sockets open) it is
//! found hung; killed (connection refused) it is a crash, left to the restart policy. The
//! Docker restart itself needs a container and is not exercised here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis_ha_agent::hung::{HungDecision, HungDetector, PollOutcome};
use redis_ha_agent::RedisProbe;
use redis_ha_common::HostPort;

const IO: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_paused_redis_is_hung_and_a_killed_one_is_not() {
    let mut redis = redis(&[]);
    let addr = HostPort::new("127.0.0.1", redis.port);
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

    redis.pause(true);
    let deadline = Instant::now() + WAIT;
    let mut polls = 0;
    let hung_for = loop {
        assert!(Instant::now() < deadline, "never decided to restart");
        let started = Instant::now();
        let result = probe.observe().await;
        let outcome = PollOutcome::of(&result);
        assert_eq!(outcome, PollOutcome::TimedOut, "{result:?}");
        polls += 1;
        match detector.observe(outcome, started, false) {
            HungDecision::Restart(d) => break d,
            HungDecision::Stalled(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
