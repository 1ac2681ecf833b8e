//! The runtime client and the planner against a real HAProxy running the shipped config and
//! real Redis servers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis_ha_reloader::plan::{NodeTarget, ServerNames, Wanted};
use redis_ha_reloader::reloader::converge_once;
use redis_ha_reloader::runtime::{Command, OpState};
use tokio::net::TcpStream;

fn wanted(master: Option<usize>, redis: &[Redis]) -> Wanted {
    let nodes: Vec<NodeTarget> = redis
        .iter()
        .enumerate()
        .map(|(i, r)| NodeTarget {
            node: Some(format!("node-{}", i + 1)),
            addr: r.addr(),
        })
        .collect();
    Wanted {
        master: master.map(|i| nodes[i].clone()),
        nodes,
    }
}

async fn three_nodes(dir: &std::path::Path) -> Vec<Redis> {
    let m = start_redis(dir, None).await;
    let r2 = start_redis(dir, Some(m.port)).await;
    let r3 = start_redis(dir, Some(m.port)).await;
    vec![m, r2, r3]
}

#[tokio::test]
async fn everything_starts_in_maint_and_nothing_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let redis = three_nodes(dir.path()).await;
    let ports: Vec<u16> = redis.iter().map(|r| r.port).collect();
    let hap = start_haproxy(dir.path(), &ports).await;

    let obs = hap.client().observe("redis").await.unwrap();
    assert_eq!(obs.servers.len(), 3);
    for (s, port) in obs.servers.iter().zip(&ports) {
        assert!(s.srv_admin_state.forced_maint(), "{s:?}");
        assert!(!s.admin_ready());
        assert_eq!(s.srv_op_state, OpState::Stopped);
        assert_eq!(s.socket_addr().unwrap().port(), *port);
    }
    // The frontend accepts and closes: no Redis answers through it.
    assert_eq!(raw_command(hap.frontend_addr(), "PING").await, None);
    assert_eq!(routed_port(hap.frontend_addr()).await, None);
}

#[tokio::test]
async fn ready_then_switch_fences_the_old_master() {
    let dir = tempfile::tempdir().unwrap();
    let redis = three_nodes(dir.path()).await;
    let ports: Vec<u16> = redis.iter().map(|r| r.port).collect();
    let hap = start_haproxy(dir.path(), &ports).await;
    let client = hap.client();
    let names = ServerNames::default();

    // Ready node 1.
    let out = converge_once(&client, "redis", &names, &wanted(Some(0), &redis), true)
        .await
        .unwrap();
    assert_eq!(out.commands, ["set server redis/redis-1 state ready"]);
    assert_eq!(out.ready_server.as_deref(), Some("redis-1"));
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[0]));

    // A long-lived client on node 1.
    let mut old = TcpStream::connect(hap.frontend_addr()).await.unwrap();
    assert!(exchange(&mut old, "PING")
        .await
        .unwrap()
        .starts_with("+PONG"));

    // Converged: nothing to do.
    let again = converge_once(&client, "redis", &names, &wanted(Some(0), &redis), true)
        .await
        .unwrap();
    assert!(again.commands.is_empty(), "{:?}", again.commands);

    // Switch to node 2: fence 1 (maint + shutdown sessions), then ready 2.
    let out = converge_once(&client, "redis", &names, &wanted(Some(1), &redis), true)
        .await
        .unwrap();
    assert_eq!(
        out.commands,
        [
            "set server redis/redis-1 state maint",
            "shutdown sessions server redis/redis-1",
            "set server redis/redis-2 state ready",
        ]
    );
    // The old session is closed, new connections go to node 2.
    assert_eq!(exchange(&mut old, "PING").await, None);
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[1]));

    let obs = client.observe("redis").await.unwrap();
    let ready: Vec<&str> = obs.ready_servers().map(|s| s.srv_name.as_str()).collect();
    assert_eq!(ready, ["redis-2"]);
    let wait_sessions = Instant::now();
    loop {
        let obs = client.observe("redis").await.unwrap();
        if obs.sessions_of("redis-1") == 0 {
            break;
        }
        assert!(wait_sessions.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // No master known: the ready server stays.
    let keep = converge_once(&client, "redis", &names, &wanted(None, &redis), true)
        .await
        .unwrap();
    assert!(keep.commands.is_empty(), "{:?}", keep.commands);
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[1]));
}

#[tokio::test]
async fn addresses_are_set_before_ready_and_restart_is_reconverged() {
    let dir = tempfile::tempdir().unwrap();
    let redis = three_nodes(dir.path()).await;
    let ports: Vec<u16> = redis.iter().map(|r| r.port).collect();
    // HAProxy configured with nodes 1 and 2 swapped: the reloader's addresses win.
    let mut hap = start_haproxy(dir.path(), &[ports[1], ports[0], ports[2]]).await;
    let client = hap.client();
    let names = ServerNames::default();
    let out = converge_once(&client, "redis", &names, &wanted(Some(0), &redis), true)
        .await
        .unwrap();
    assert_eq!(
        out.commands,
        [
            format!("set server redis/redis-1 addr 127.0.0.1 port {}", ports[0]),
            format!("set server redis/redis-2 addr 127.0.0.1 port {}", ports[1]),
            "set server redis/redis-1 state ready".to_owned(),
        ]
    );
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[0]));

    // A restarted HAProxy is back to its config: everything in maint, swapped addresses.
    hap.restart().await;
    assert_eq!(routed_port(hap.frontend_addr()).await, None);
    let out = converge_once(&client, "redis", &names, &wanted(Some(0), &redis), false)
        .await
        .unwrap();
    assert_eq!(out.commands.len(), 3, "{:?}", out.commands);
    assert_eq!(routed_port(hap.frontend_addr()).await, Some(ports[0]));
}

#[tokio::test]
async fn refused_commands_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let r = start_redis(dir.path(), None).await;
    let hap = start_haproxy(dir.path(), &[r.port, r.port, r.port]).await;
    let client = hap.client();
    let e = client
        .execute(&Command::ready("redis", "no-such-server"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("No such server"), "{e}");
    let e = client
        .execute_pipelined(&[
            Command::maint("redis", "redis-1"),
            Command::ready("nobackend", "redis-1"),
        ])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nobackend"), "{e}");
    let e = client.observe("nobackend").await.unwrap_err();
    assert!(
        e.to_string().contains("show servers state nobackend"),
        "{e}"
    );
    assert!(client.servers_state("redis").await.unwrap().len() == 3);
}

/// Measures the apply path (not a pass/fail test): `cargo test -p redis-ha-reloader --test
/// haproxy_runtime -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_switch_latency() {
    let dir = tempfile::tempdir().unwrap();
    let redis = three_nodes(dir.path()).await;
    let ports: Vec<u16> = redis.iter().map(|r| r.port).collect();
    let hap = start_haproxy(dir.path(), &ports).await;
    let client = hap.client();
    let names = ServerNames::default();
    for pipeline in [true, false] {
        let mut switch = Vec::new();
        let mut routed = Vec::new();
        for i in 0..40 {
            let target = i % 2;
            let t0 = Instant::now();
            converge_once(
                &client,
                "redis",
                &names,
                &wanted(Some(target), &redis),
                pipeline,
            )
            .await
            .unwrap();
            switch.push(t0.elapsed());
            loop {
                if routed_port(hap.frontend_addr()).await == Some(ports[target]) {
                    break;
                }
            }
            routed.push(t0.elapsed());
        }
        switch.sort();
        routed.sort();
        println!(
            "pipeline={pipeline}: converge incl. read-back min {:?} median {:?} max {:?}; first routed request min {:?} median {:?} max {:?}",
            switch[0], switch[switch.len() / 2], switch[switch.len() - 1],
            routed[0], routed[routed.len() / 2], routed[routed.len() - 1]
        );
    }
}
