//! The observation functions against real redis-server / redis-sentinel processes and
//! against sockets that misbehave (dead, stalled, garbage).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use redis_ha_agent::{AgentConfig, ObserveError, RedisProbe, SentinelProbe};
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{LinkState, RedisStatus, Role};
use redis_ha_sentinel::SentinelClient;
use redis_ha_testkit::{wait_until, RedisSpec, Sandbox, TIMEOUT};

const IO: Duration = Duration::from_millis(500);

fn addr(port: u16) -> HostPort {
    HostPort::new("127.0.0.1", port)
}

fn probe(port: u16) -> RedisProbe {
    RedisProbe::new(addr(port), addr(port), None, IO).unwrap()
}

/// Waits until the probed replica reports its link `state`; returns that status.
async fn wait_link(probe: &tokio::sync::Mutex<RedisProbe>, state: LinkState) -> RedisStatus {
    wait_until(
        &format!("the replica's link {state:?}"),
        TIMEOUT,
        || async {
            let s = probe.lock().await.status().await;
            if s.link() == state {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn master_status() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let mut p = probe(m.port());
    let obs = p.observe().await.unwrap();
    assert_eq!(obs.role.role(), Role::Master);
    assert!(!obs.run_id.is_empty());
    let s = p.status().await;
    assert!(s.reachable, "{s:?}");
    assert_eq!(s.role(), Role::Master);
    assert_eq!(s.address, m.addr());
    assert_eq!(s.run_id, obs.run_id);
    assert!(s.replicas.is_empty());
    assert!(s.error.is_empty());
    assert!(p.is_connected());
}

#[tokio::test]
async fn replica_status_and_the_master_seeing_it() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let r = sb.redis(Some(m.port())).await;
    let rp = tokio::sync::Mutex::new(probe(r.port()));
    let status = wait_link(&rp, LinkState::Up).await;
    assert!(status.reachable);
    assert_eq!(status.role(), Role::Replica);
    assert_eq!(status.master_address, m.addr());
    // The link is read from ROLE and the sync from INFO, two replies apart: on a loaded
    // machine one status once showed the link up with the (re)sync still running. It ends.
    wait_until("the replica's sync to end", TIMEOUT, || async {
        let s = rp.lock().await.status().await;
        if s.link() == LinkState::Up && !s.sync_in_progress {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    let mp = tokio::sync::Mutex::new(probe(m.port()));
    let ms = wait_until("the master to see its replica online", TIMEOUT, || async {
        let s = mp.lock().await.status().await;
        if s.replicas.iter().any(|l| l.state == "online") {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(ms.replicas.len(), 1);
    assert_eq!(ms.replicas[0].address, r.addr());

    // The master goes away: the replica still answers, link down.
    drop(m);
    let status = wait_link(&rp, LinkState::Down).await;
    assert!(status.reachable);
    assert_eq!(status.role(), Role::Replica);
}

#[tokio::test]
async fn down_redis_is_unreachable_with_an_error() {
    let sb = Sandbox::new();
    let port = sb.port();
    let mut p = probe(port);
    let s = p.status().await;
    assert!(!s.reachable);
    assert_eq!(s.role(), Role::Unspecified);
    assert!(s.error.contains(&port.to_string()), "{}", s.error);
    assert!(s.error.contains("connect"), "{}", s.error);
    assert!(!p.is_connected());

    // A node that dies under an open connection.
    let mut m = sb.redis(None).await;
    let mut p = probe(m.port());
    assert!(p.status().await.reachable);
    m.kill();
    let s = p.status().await;
    assert!(!s.reachable);
    assert!(!s.error.is_empty());
    assert!(!p.is_connected());
}

#[tokio::test]
async fn stalled_socket_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, never answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    let mut p = probe(port);
    let e = p.observe().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    let e = p.role().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");

    let mut s = SentinelProbe::new(SentinelClient::new(addr(port), None, IO).unwrap());
    let e = s.observe("redis-cluster").await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let Err(e) = s.subscribe_events(IO).await else {
        panic!("subscribed to a stalled socket")
    };
    assert!(e.is_timeout(), "{e}");
}

/// Answers every RESP command it reads with `reply`.
fn garbage_server(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    // Each command is a RESP array: one '*' at the start of a line.
                    let data = &buf[..n];
                    let commands = usize::from(data.first() == Some(&b'*'))
                        + data.windows(2).filter(|w| w == b"\n*").count();
                    for _ in 0..commands.max(1) {
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn garbage_answers_are_errors() {
    let port = garbage_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let mut p = probe(port);
    let e = p.observe().await.unwrap_err();
    assert!(!e.is_timeout(), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    assert!(!p.is_connected(), "connection dropped after garbage: {e}");

    // Valid RESP, wrong content: every command answers a number.
    let port = garbage_server(b":42\r\n");
    let mut p = probe(port);
    let e = p.observe().await.unwrap_err();
    assert!(
        matches!(e, ObserveError::Reply { .. } | ObserveError::Command { .. }),
        "{e}"
    );
    let e = p.role().await.unwrap_err();
    assert!(matches!(e, ObserveError::Reply { .. }), "{e}");
    let mut s = SentinelProbe::new(SentinelClient::new(addr(port), None, IO).unwrap());
    let e = s.observe("redis-cluster").await.unwrap_err();
    assert!(matches!(e, ObserveError::Reply { .. }), "{e}");
}

#[tokio::test]
async fn a_sentinel_port_is_not_a_redis_node() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let s = sb.sentinel("redis-cluster", m.port(), 1).await;
    let e = probe(s.port()).role().await.unwrap_err();
    assert!(e.to_string().contains("Sentinel"), "{e}");
}

#[tokio::test]
async fn sentinel_status() {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let r = sb.redis(Some(m.port())).await;
    let s = sb.sentinel("redis-cluster", m.port(), 1).await;
    let mut sp = SentinelProbe::new(SentinelClient::new(addr(s.port()), None, IO).unwrap());
    let obs = sp.observe("redis-cluster").await.unwrap();
    assert_eq!(obs.master.address, addr(m.port()));
    assert_eq!(obs.master.quorum, 1);
    assert_eq!(obs.master.config_epoch, 0);
    assert!(obs.master.flags.contains(&"master".to_owned()));
    assert!(!obs.master.failover_in_progress());

    // Sentinel learns the replica from the master's INFO.
    let replica = r.addr();
    let shared = tokio::sync::Mutex::new(sp);
    let st = wait_until("the Sentinel to discover the replica", TIMEOUT, || async {
        let st = shared.lock().await.status("redis-cluster").await;
        assert!(st.reachable, "{st:?}");
        if st.replicas.iter().any(|v| v.address == replica) {
            Ok(st)
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await;
    assert_eq!(st.master_address, m.addr());
    assert_eq!(st.address, s.addr());
    let mut sp = shared.into_inner();

    let e = sp.observe("no-such-group").await.unwrap_err();
    assert!(
        e.to_string().contains("SENTINEL MASTER no-such-group"),
        "{e}"
    );
    assert!(sp.is_connected(), "an error reply keeps the connection");
    let st = sp.status("no-such-group").await;
    assert!(!st.reachable);
}

#[tokio::test]
async fn password_from_file() {
    let sb = Sandbox::new();
    let port = sb.port();
    let m = sb
        .redis_with(RedisSpec::new("node-1", port).password("s3cret-pw"))
        .await;
    let write_file = |name: &str, content: &str| {
        let p = sb.path(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let good = write_file("good", "s3cret-pw\n");
    let bad = write_file("bad", "wrong\n");
    let config = |file: Option<std::path::PathBuf>| AgentConfig {
        redis_addr: addr(m.port()),
        redis_password_file: file,
        resolve_wait_ms: 0,
        io_timeout_ms: 500,
        metrics_addr: String::new(),
        // No coordinator here: only the Redis password is looked at.
        tls: redis_ha_tls::TlsSettings::insecure(),
        ..AgentConfig::default()
    };

    let settings = config(Some(good)).validate().unwrap();
    assert!(!format!("{settings:?}").contains("s3cret-pw"));
    let mut p = RedisProbe::from_settings(&settings).unwrap();
    let s = p.status().await;
    assert!(s.reachable, "{s:?}");
    assert_eq!(s.role(), Role::Master);

    let settings = config(Some(bad)).validate().unwrap();
    let mut p = RedisProbe::from_settings(&settings).unwrap();
    let e = p.observe().await.unwrap_err().to_string();
    assert!(!e.contains("wrong") || e.contains("WRONGPASS"), "{e}");
    assert!(!e.contains("s3cret-pw"));

    let settings = config(None).validate().unwrap();
    let mut p = RedisProbe::from_settings(&settings).unwrap();
    let s = p.status().await;
    assert!(!s.reachable);
    assert!(
        s.error.contains("NOAUTH") || s.error.contains("uthentication"),
        "{}",
        s.error
    );

    let e = config(Some(sb.path("missing")))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis_password_file"), "{e}");
    let empty = write_file("empty", "\n");
    let e = config(Some(empty)).validate().unwrap_err().to_string();
    assert!(e.contains("redis_password_file"), "{e}");
}

/// The Sentinel library's client against a real Sentinel: the commands the probe does not use,
/// FAILOVER's refusal code, the event subscription, and its keepalive noticing a stalled
/// Sentinel.
#[tokio::test]
async fn sentinel_client_commands_events_and_keepalive() {
    use redis_ha_sentinel::{parse_event, EventKind, SentinelClient};

    let sb = Sandbox::new();
    let mut m = sb.redis(None).await;
    let mut s = sb.sentinel("redis-cluster", m.port(), 1).await;
    let mut c = SentinelClient::new(addr(s.port()), None, IO).unwrap();
    assert_eq!(
        c.master_addr("redis-cluster").await.unwrap(),
        Some(addr(m.port()))
    );
    assert_eq!(c.master_addr("no-such-group").await.unwrap(), None);
    assert_eq!(c.sentinels("redis-cluster").await.unwrap(), vec![]);
    let e = c.failover("redis-cluster").await.unwrap_err();
    assert_eq!(e.server_code(), Some("NOGOODSLAVE"), "{e}");
    assert!(c.is_connected(), "a refusal keeps the connection");

    let mut events = c.subscribe("*", Duration::from_millis(200)).await.unwrap();
    m.kill();
    // The master's death shows as `+sdown` (after down-after-milliseconds, 1 s here).
    let sdown = tokio::time::timeout(TIMEOUT, async {
        loop {
            let msg = events.next().await.unwrap();
            let ev = parse_event(&msg.channel, &msg.payload).unwrap();
            if ev.kind == EventKind::Sdown && ev.master_group() == Some("redis-cluster") {
                return msg;
            }
        }
    })
    .await
    .expect("no +sdown");
    assert!(
        sdown.payload.starts_with("master redis-cluster"),
        "{sdown:?}"
    );

    // A stalled Sentinel: the keepalive ping times out and ends the subscription.
    s.pause();
    let e = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Err(e) = events.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the stall was never noticed");
    s.resume();
    assert!(e.is_timeout(), "{e}");
    assert!(e.to_string().contains("PING (pub/sub)"), "{e}");
}

/// `connected_clients` of the node on `port`, read on a connection of its own.
async fn connected_clients(node: &redis_ha_testkit::RedisNode) -> u64 {
    let info = node.info("clients").await.unwrap();
    info["connected_clients"].parse().unwrap()
}

#[tokio::test]
async fn siblings_are_held_connected_and_made_again_after_a_restart() {
    use redis_ha_agent::siblings::Siblings;
    let sb = Sandbox::new();
    let mut live = sb.redis(None).await;
    let dead = sb.port();
    let s = Siblings::new(None, None, IO);
    s.set(&[addr(live.port()), addr(dead)]);
    s.warm();
    let held = s.probe(&addr(live.port())).unwrap();
    wait_until("the live sibling connected", TIMEOUT, || async {
        // The lock waits for the PING the warm-up started.
        if held.lock().await.is_connected() {
            Ok(())
        } else {
            Err("not connected".to_owned())
        }
    })
    .await;
    assert!(!s.probe(&addr(dead)).unwrap().lock().await.is_connected());
    // The follow's read goes over the held connection: the node sees no new client.
    let before = connected_clients(&live).await;
    held.lock().await.replication().await.unwrap();
    assert_eq!(connected_clients(&live).await, before);

    // A restarted sibling: the held connection is found dead by the next PING and made again.
    live.restart().await;
    wait_until("the sibling connected again", TIMEOUT, || async {
        s.warm();
        let p = s.probe(&addr(live.port())).unwrap();
        let p = p.lock().await;
        if p.is_connected() && connected_clients(&live).await >= 2 {
            Ok(())
        } else {
            Err("not connected".to_owned())
        }
    })
    .await;
    assert!(std::sync::Arc::ptr_eq(
        &held,
        &s.probe(&addr(live.port())).unwrap()
    ));
}

/// The promotion's `CLIENT KILL TYPE normal` closes the held sibling connection; the sibling's
/// close watch makes it again at once, with no warm-up asked for.
#[tokio::test]
async fn a_sibling_s_client_kill_makes_its_connection_again_at_once() {
    use redis_ha_agent::siblings::Siblings;
    let sb = Sandbox::new();
    let live = sb.redis(None).await;
    let s = Siblings::new(None, None, IO);
    s.set(&[addr(live.port())]);
    s.warm();
    // The held probe and the close watch: their last command is `PING`.
    let both = || async {
        match live
            .clients_last_at("ping")
            .await
            .map_err(|e| e.to_string())?
        {
            (2, _) => Ok(()),
            (n, list) => Err(format!("{n} clients whose last command was PING:\n{list}")),
        }
    };
    wait_until("the probe and the close watch connected", TIMEOUT, both).await;
    let killed: u64 = live
        .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal"))
        .await
        .unwrap();
    assert!(
        killed >= 2,
        "the probe's and the watch's connections: {killed}"
    );
    wait_until("both made again, without a warm-up", TIMEOUT, both).await;
    let p = s.probe(&addr(live.port())).unwrap();
    assert!(p.lock().await.is_connected());
    p.lock().await.replication().await.unwrap();
}
