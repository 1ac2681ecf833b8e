//! Self-test of the harness against real Redis and Sentinel processes: no sidecars involved.

use redis_ha_tests::{Cluster, ClusterOptions};

#[tokio::test]
async fn cluster_starts_synced_and_fails_over_when_the_master_is_killed() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;

    // Start-up: node 1 is the master everyone names, both replicas hold its data.
    let master = cluster.node(1).addr();
    assert_eq!(cluster.master_addr_by_sentinel().await.unwrap(), master);
    assert_eq!(cluster.node(1).role().await.unwrap(), "master");
    let _: () = cluster
        .node(1)
        .query(redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap();
    cluster.wait_replicas_synced(1).await;
    for i in [2, 3] {
        assert_eq!(cluster.node(i).role().await.unwrap(), "slave");
    }

    // SIGKILL of the master: the Sentinels elect one of the replicas.
    cluster.node_mut(1).kill();
    assert!(!cluster.node_mut(1).is_running());
    let new_master = cluster.wait_new_master(&master).await;
    let m = cluster.node_index(&new_master).unwrap();
    assert_ne!(m, 1);
    let v: Option<String> = cluster
        .node(m)
        .query(redis::cmd("GET").arg("k"))
        .await
        .unwrap();
    assert_eq!(
        v.as_deref(),
        Some("v"),
        "the promoted replica lost the write"
    );

    // The killed node comes back from its config (still a master's) and Sentinel turns it
    // into a replica of the new master.
    cluster.node_mut(1).restart().await;
    let now_master = cluster.wait_rejoined_as_replica(1).await;
    assert_ne!(now_master, 1);
}

#[tokio::test]
async fn paused_node_times_out_and_resumes() {
    let mut cluster = Cluster::start(ClusterOptions {
        // Long enough that the pause below never triggers a failover.
        down_after_ms: 60_000,
        group: "pause-group".into(),
        password: Some("s3cret".into()),
        ..ClusterOptions::default()
    })
    .await;
    cluster.node_mut(3).pause();
    assert!(cluster.node(3).role().await.is_err());
    assert!(cluster.node_mut(3).is_running());
    cluster.node_mut(3).resume();
    assert_eq!(cluster.node(3).role().await.unwrap(), "slave");
    cluster.node_mut(3).stop();
    assert!(!cluster.node_mut(3).is_running());

    // The split-brain set-up: a replica restarted from a config without `replicaof` starts as
    // a master (Sentinel only converts it back seconds later).
    cluster.node_mut(3).restart_as_master().await;
    assert_eq!(cluster.node(3).role().await.unwrap(), "master");
    let conf = std::fs::read_to_string(cluster.node(3).conf_path()).unwrap();
    // No `replicaof` directive (the ACL rules name the command: `+replicaof`, `-replicaof`).
    assert!(!conf.lines().any(|l| l.starts_with("replicaof")), "{conf}");
}
