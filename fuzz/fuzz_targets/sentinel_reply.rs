//! Sentinel replies (`redis_ha_sentinel::reply`): `SENTINEL MASTER`, `REPLICAS`, `SENTINELS`,
//! `GET-MASTER-ADDR-BY-NAME`, `IS-MASTER-DOWN-BY-ADDR`, and the agent's conversion of them.
//! Invariant: no panic, whatever the shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_common::HostPort;
use redis_ha_fuzz::FuzzValue;
use redis_ha_sentinel::reply;

fuzz_target!(|v: FuzzValue| {
    let v = v.to_value();
    if let Ok(m) = reply::parse_master(&v) {
        let _ = m.failover_in_progress();
        let _ = m.view(HostPort::new("127.0.0.1", 19001));
    }
    if let Ok(replicas) = reply::parse_replicas(&v) {
        for r in &replicas {
            let _ = redis_ha_agent::sentinel_parse::replica_view(r);
        }
    }
    let _ = reply::parse_sentinels(&v);
    let _ = reply::parse_master_addr(&v);
    let _ = reply::parse_vote(&v);
    let _ = reply::parse_instance_list(&v);
});
