//! The reloader's apply path against a real HAProxy (the shipped config) and real Redis
//! servers: how long a switch takes through the runtime API (`converge_once`, read-back
//! included), pipelined or not, and how soon the first new connection reaches the new master.
//!
//! `cargo bench -p redis-ha-tests --bench haproxy_runtime [-- SWITCHES]` (default 40 per mode).
//! Prints the figures; asserts nothing but that every switch is routed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_ha_reloader::plan::{ServerNames, Wanted};
use redis_ha_reloader::reloader::converge_once;
use redis_ha_reloader::runtime::{RuntimeAddr, RuntimeClient};
use redis_ha_tests::figures;
use redis_ha_tests::kit::{RedisNode, Sandbox};

/// How long one switch may take to be routed before the run is abandoned.
const ROUTED_WITHIN: Duration = Duration::from_secs(10);

fn wanted(master: usize, redis: &[RedisNode]) -> Wanted {
    let loopback = redis
        .iter()
        .map(|r| SocketAddr::from(([127, 0, 0, 1], r.port())));
    Wanted::numbered(loopback, Some(master))
}

fn main() {
    let switches: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().unwrap_or_else(|e| panic!("SWITCHES {a:?}: {e}")))
        .unwrap_or(40);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    rt.block_on(run(switches));
}

async fn run(switches: usize) {
    let sb = Sandbox::new();
    let m = sb.redis(None).await;
    let r2 = sb.redis(Some(m.port())).await;
    let r3 = sb.redis(Some(m.port())).await;
    let redis = vec![m, r2, r3];
    let ports: Vec<u16> = redis.iter().map(RedisNode::port).collect();
    let hap = sb.haproxy(&ports).await;
    let client = RuntimeClient::new(
        RuntimeAddr::Unix(hap.socket().to_owned()),
        Duration::from_secs(2),
    );
    let names = ServerNames::default();
    for pipeline in [true, false] {
        let mut switch = Vec::new();
        let mut routed = Vec::new();
        for i in 0..switches {
            let target = i % 2;
            let t0 = Instant::now();
            converge_once(&client, "redis", &names, &wanted(target, &redis), pipeline)
                .await
                .unwrap_or_else(|e| panic!("converge: {e}"));
            switch.push(t0.elapsed());
            // Bounded: a switch that is never routed ends the run with a message.
            while hap.routed_port().await != Some(ports[target]) {
                assert!(
                    t0.elapsed() < ROUTED_WITHIN,
                    "switch {i} to redis-{} not routed within {ROUTED_WITHIN:?}",
                    target + 1
                );
            }
            routed.push(t0.elapsed());
        }
        println!(
            "pipeline={pipeline}, {switches} switches (min | median | max): converge incl. read-back {}; first routed request {}",
            figures::cells(&switch, |d| format!("{d:?}")),
            figures::cells(&routed, |d| format!("{d:?}"))
        );
    }
}
