//! The local chaos target against real Redis and Sentinel processes (the test kit's, from the
//! shipped configuration): the run directory read, the master named by a quorum of Sentinels
//! when the coordinator does not answer (none runs here), the cluster judged whole from the
//! nodes' `INFO replication`, and a Sentinel minority refused with what each Sentinel said.

use std::time::Duration;

use redis_ha_chaos::chaos::{sentinel_master, ChaosError, ChaosTarget, LocalProcesses, Sentinels};
use redis_ha_cli::Target;
use redis_ha_common::HostPort;
use redis_ha_testkit::{wait_until, Sandbox, TIMEOUT};

const GROUP: &str = "redis-cluster";

#[tokio::test]
async fn the_sentinels_name_the_master_and_a_minority_does_not() {
    let sb = Sandbox::new();
    let master = sb.redis(None).await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let r = sb.redis(Some(master.port())).await;
        r.wait_synced_to(master.port()).await;
        replicas.push(r);
    }
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(sb.sentinel(GROUP, master.port(), 2).await);
    }
    for s in &sentinels {
        wait_until(
            "a Sentinel to see 2 replicas and 2 Sentinels",
            TIMEOUT,
            || s.ready_state(2, 2),
        )
        .await;
    }

    // A `deploy/up.sh --local` run directory naming these ports (only the `port` lines are
    // read by these calls).
    let nodes = std::iter::once(&master).chain(&replicas);
    for (i, (node, sentinel)) in nodes.zip(&sentinels).enumerate() {
        let write = |name: String, port: u16| {
            std::fs::write(sb.path(&name), format!("port {port}\n")).expect("a conf file")
        };
        write(format!("redis-{}.conf", i + 1), node.port());
        write(format!("sentinel-{}.conf", i + 1), sentinel.port());
    }
    // Nothing listens on the coordinator's port: the target falls back to the Sentinels.
    let coordinator = Target::new(
        &format!("http://127.0.0.1:{}", sb.port()),
        GROUP,
        Duration::from_secs(2),
    );
    let mut target = LocalProcesses::open(sb.dir(), coordinator).expect("the run directory");

    let named = target.master().await.expect("a master");
    assert_eq!(
        (named.name.as_str(), named.address),
        ("node-1", master.addr())
    );
    // `check_whole` takes the target mutably; the probe borrows it through a lock.
    let shared = tokio::sync::Mutex::new(target);
    wait_until(
        "the local target to see the cluster whole",
        TIMEOUT,
        || async { shared.lock().await.check_whole().await },
    )
    .await;
    let mut target = shared.into_inner();

    // A replica that is down: not whole, and the error names the node.
    replicas[1].stop();
    let e = target.check_whole().await.expect_err("a node is down");
    assert!(
        matches!(&e, ChaosError::NotWhole(m) if m.contains(&replicas[1].addr())),
        "{e}"
    );

    // One Sentinel left is a minority: no master, and the reason lists the answer it gave and
    // the two Sentinels that did not answer.
    sentinels[0].stop();
    sentinels[1].stop();
    let all = Sentinels {
        addrs: sentinels
            .iter()
            .map(|s| HostPort::new("127.0.0.1", s.port()))
            .collect(),
        password: None,
        timeout: Duration::from_secs(2),
    };
    let e = sentinel_master(&all, GROUP).await.expect_err("a minority");
    let ChaosError::NoMaster(reason) = &e else {
        panic!("{e}");
    };
    assert!(reason.contains(&master.addr()), "{reason}");
    for s in &sentinels[..2] {
        let down = format!("sentinel 127.0.0.1:{}", s.port());
        assert!(reason.contains(&down), "{reason}");
    }
    assert!(
        target.master().await.is_err(),
        "the target has no master either"
    );
}
