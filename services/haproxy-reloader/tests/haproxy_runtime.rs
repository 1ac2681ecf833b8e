//! The runtime client and the planner against a real HAProxy running the shipped config and
//! real Redis servers.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use redis_ha_reloader::plan::{ServerNames, Wanted};
use redis_ha_reloader::reloader::{converge_once, ConvergeOutcome};
use redis_ha_reloader::runtime::{Command, OpState, RuntimeAddr, RuntimeClient};
use redis_ha_testkit::{client, wait_until, Haproxy, RedisNode, Sandbox, TIMEOUT};

fn wanted(master: Option<usize>, redis: &[RedisNode]) -> Wanted {
    let loopback = redis
        .iter()
        .map(|r| SocketAddr::from(([127, 0, 0, 1], r.port())));
    Wanted::numbered(loopback, master)
}

/// A master and two replicas, and their ports.
async fn three_nodes(sb: &Sandbox) -> (Vec<RedisNode>, Vec<u16>) {
    let m = sb.redis(None).await;
    let r2 = sb.redis(Some(m.port())).await;
    let r3 = sb.redis(Some(m.port())).await;
    let redis = vec![m, r2, r3];
    let ports = redis.iter().map(RedisNode::port).collect();
    (redis, ports)
}

/// One `converge_once` of the backend to `master` (an index into `redis`), or to no master.
async fn converge(
    client: &RuntimeClient,
    redis: &[RedisNode],
    master: Option<usize>,
    pipeline: bool,
) -> ConvergeOutcome {
    converge_once(
        client,
        "redis",
        &ServerNames::default(),
        &wanted(master, redis),
        pipeline,
    )
    .await
    .unwrap()
}

/// The reloader's runtime client of `hap`.
fn runtime(hap: &Haproxy) -> RuntimeClient {
    RuntimeClient::new(
        RuntimeAddr::Unix(hap.socket().to_owned()),
        Duration::from_secs(2),
    )
}

/// PING through the frontend on a new connection: answered?
async fn ping_through(hap: &Haproxy) -> bool {
    client::query::<String>(hap.frontend_port(), None, &redis::cmd("PING"))
        .await
        .is_ok()
}

#[tokio::test]
async fn everything_starts_in_maint_and_nothing_is_routed() {
    let sb = Sandbox::new();
    let (_redis, ports) = three_nodes(&sb).await;
    let hap = sb.haproxy(&ports).await;

    let obs = runtime(&hap).observe("redis").await.unwrap();
    assert_eq!(obs.servers.len(), 3);
    for (s, port) in obs.servers.iter().zip(&ports) {
        assert!(s.srv_admin_state.forced_maint(), "{s:?}");
        assert!(!s.admin_ready());
        assert_eq!(s.srv_op_state, OpState::Stopped);
        assert_eq!(s.socket_addr().unwrap().port(), *port);
    }
    // The frontend accepts and closes: no Redis answers through it.
    assert!(!ping_through(&hap).await);
    assert_eq!(hap.routed_port().await, None);
}

#[tokio::test]
async fn ready_then_switch_fences_the_old_master() {
    let sb = Sandbox::new();
    let (redis, ports) = three_nodes(&sb).await;
    let hap = sb.haproxy(&ports).await;
    let client = runtime(&hap);

    // Ready node 1.
    let out = converge(&client, &redis, Some(0), true).await;
    assert_eq!(out.commands, ["set server redis/redis-1 state ready"]);
    assert_eq!(out.ready_server.as_deref(), Some("redis-1"));
    assert_eq!(hap.routed_port().await, Some(ports[0]));

    // A long-lived client on node 1.
    let mut old = client::connect(hap.frontend_port(), None).await.unwrap();
    let ping = redis::cmd("PING");
    assert_eq!(
        client::run::<String>(&mut old, hap.frontend_port(), &ping)
            .await
            .unwrap(),
        "PONG"
    );

    // Converged: nothing to do.
    let again = converge(&client, &redis, Some(0), true).await;
    assert!(again.commands.is_empty(), "{:?}", again.commands);

    // Switch to node 2: fence 1 (maint + shutdown sessions), then ready 2.
    let out = converge(&client, &redis, Some(1), true).await;
    assert_eq!(
        out.commands,
        [
            "set server redis/redis-1 state maint",
            "shutdown sessions server redis/redis-1",
            "set server redis/redis-2 state ready",
        ]
    );
    // The old session is closed, new connections go to node 2.
    assert!(client::run::<String>(&mut old, hap.frontend_port(), &ping)
        .await
        .is_err());
    assert_eq!(hap.routed_port().await, Some(ports[1]));

    let obs = client.observe("redis").await.unwrap();
    let ready: Vec<&str> = obs.ready_servers().map(|s| s.srv_name.as_str()).collect();
    assert_eq!(ready, ["redis-2"]);
    wait_until("redis-1's sessions to end", TIMEOUT, || async {
        match client
            .observe("redis")
            .await
            .unwrap()
            .sessions_of("redis-1")
        {
            0 => Ok(()),
            n => Err(format!("{n} sessions")),
        }
    })
    .await;

    // No master known: the ready server stays.
    let keep = converge(&client, &redis, None, true).await;
    assert!(keep.commands.is_empty(), "{:?}", keep.commands);
    assert_eq!(hap.routed_port().await, Some(ports[1]));
}

#[tokio::test]
async fn addresses_are_set_before_ready_and_restart_is_reconverged() {
    let sb = Sandbox::new();
    let (redis, ports) = three_nodes(&sb).await;
    // HAProxy configured with nodes 1 and 2 swapped: the reloader's addresses win.
    let mut hap = sb.haproxy(&[ports[1], ports[0], ports[2]]).await;
    let client = runtime(&hap);
    let out = converge(&client, &redis, Some(0), true).await;
    assert_eq!(
        out.commands,
        [
            format!("set server redis/redis-1 addr 127.0.0.1 port {}", ports[0]),
            format!("set server redis/redis-2 addr 127.0.0.1 port {}", ports[1]),
            "set server redis/redis-1 state ready".to_owned(),
        ]
    );
    assert_eq!(hap.routed_port().await, Some(ports[0]));

    // A restarted HAProxy is back to its config: everything in maint, swapped addresses.
    hap.restart().await;
    assert_eq!(hap.routed_port().await, None);
    let out = converge(&client, &redis, Some(0), false).await;
    assert_eq!(out.commands.len(), 3, "{:?}", out.commands);
    assert_eq!(hap.routed_port().await, Some(ports[0]));
}

#[tokio::test]
async fn refused_commands_are_typed_errors() {
    let sb = Sandbox::new();
    let r = sb.redis(None).await;
    let hap = sb.haproxy(&[r.port(), r.port(), r.port()]).await;
    let client = runtime(&hap);
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
