//! The local chaos target against real Redis and Sentinel processes: the run directory read,
//! the master named by a quorum of Sentinels when the coordinator does not answer (none runs
//! here), the cluster judged whole from the nodes' `INFO replication`, and a Sentinel
//! minority refused with what each Sentinel said.

use std::path::Path;
use std::time::Duration;

use redis_ha_chaos::chaos::{sentinel_master, ChaosError, ChaosTarget, LocalProcesses, Sentinels};
use redis_ha_cli::Target;
use redis_ha_common::HostPort;
use redis_ha_tests::{wait_for, Cluster, ClusterOptions, NODES, READY_TIMEOUT};

/// A `deploy/up.sh --local` run directory naming the cluster's ports (only the `port` lines
/// are read by these calls).
fn run_dir(cluster: &Cluster, dir: &Path) {
    for i in 1..=NODES {
        let write = |name: String, port: u16| {
            std::fs::write(dir.join(name), format!("port {port}\n")).expect("a conf file")
        };
        write(format!("redis-{i}.conf"), cluster.node(i).port());
        write(format!("sentinel-{i}.conf"), cluster.sentinel_port(i));
    }
}

fn sentinels(cluster: &Cluster) -> Sentinels {
    Sentinels {
        addrs: (1..=NODES)
            .map(|i| HostPort::new("127.0.0.1", cluster.sentinel_port(i)))
            .collect(),
        password: None,
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn the_sentinels_name_the_master_and_a_minority_does_not() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    run_dir(&cluster, dir.path());
    // Nothing listens on the coordinator's port: the target falls back to the Sentinels.
    let coordinator = Target::new(
        &format!("http://127.0.0.1:{}", cluster.coordinator_port()),
        cluster.group(),
        Duration::from_secs(2),
    );
    let mut target = LocalProcesses::open(dir.path(), coordinator).expect("the run directory");

    let master = target.master().await.expect("a master");
    assert_eq!(
        (master.name.as_str(), master.address.clone()),
        ("node-1", cluster.node(1).addr())
    );
    // `check_whole` takes the target mutably; the probe borrows it through a lock.
    let shared = tokio::sync::Mutex::new(target);
    wait_for(
        "the local target to see the cluster whole",
        READY_TIMEOUT,
        || async {
            let mut t = shared.lock().await;
            t.check_whole().await.map_err(|e| e.to_string())
        },
    )
    .await;
    let mut target = shared.into_inner();

    // A replica that is down: not whole, and the error names the node.
    cluster.node_mut(3).stop();
    let e = target.check_whole().await.expect_err("a node is down");
    assert!(
        matches!(&e, ChaosError::NotWhole(m) if m.contains(&cluster.node(3).addr())),
        "{e}"
    );

    // One Sentinel left is a minority: no master, and the reason lists the answer it gave and
    // the two Sentinels that did not answer.
    cluster.sentinel_mut(1).stop();
    cluster.sentinel_mut(2).stop();
    let e = sentinel_master(&sentinels(&cluster), cluster.group())
        .await
        .expect_err("a minority");
    let ChaosError::NoMaster(reason) = &e else {
        panic!("{e}");
    };
    assert!(reason.contains(&cluster.node(1).addr()), "{reason}");
    for i in [1, 2] {
        let down = format!("sentinel 127.0.0.1:{}", cluster.sentinel_port(i));
        assert!(reason.contains(&down), "{reason}");
    }
    assert!(
        target.master().await.is_err(),
        "the target has no master either"
    );
}
