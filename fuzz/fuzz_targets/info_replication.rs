//! `INFO replication` / `INFO server` text (`redis_ha_agent::redis_parse`, and the shared
//! `redis_ha_common::redis_client::info_fields`). Invariants: no panic; what parses, written
//! out again as `INFO` text, parses to the same; every address it yields is a `host:port`
//! with a host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_agent::redis_parse::{parse_info_replication, parse_run_id, ReplicationInfo};
use redis_ha_common::redis_client::info_fields;
use redis_ha_common::HostPort;
use redis_ha_proto::v1::{LinkState, Role};

/// The inverse of `join_addr`: host and port of an address the parser built.
fn split(addr: &str) -> (String, u16) {
    let hp: HostPort = addr
        .parse()
        .unwrap_or_else(|e| panic!("parsed address {addr:?} is no host:port: {e}"));
    assert!(
        !hp.host.trim().is_empty(),
        "address {addr:?} without a host"
    );
    (hp.host, hp.port)
}

fn render(info: &ReplicationInfo) -> String {
    let mut s = String::from("# Replication\r\n");
    match info.role {
        Role::Master => {
            s.push_str("role:master\r\n");
            for (i, r) in info.replicas.iter().enumerate() {
                let (ip, port) = split(&r.address);
                s.push_str(&format!(
                    "slave{i}:ip={ip},port={port},state={},offset={},lag={}\r\n",
                    r.state, r.offset, r.lag_seconds
                ));
            }
            s.push_str(&format!("master_repl_offset:{}\r\n", info.repl_offset));
        }
        _ => {
            let (host, port) = split(&info.master_address);
            let link = if info.link == LinkState::Up {
                "up"
            } else {
                "down"
            };
            s.push_str(&format!(
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{link}\r\nmaster_sync_in_progress:{}\r\nslave_repl_offset:{}\r\n",
                u8::from(info.sync_in_progress),
                info.repl_offset
            ));
        }
    }
    s.push_str(&format!(
        "master_replid:{}\r\nmaster_replid2:{}\r\n",
        info.replid, info.replid2
    ));
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = info_fields(&text);
    let _ = parse_run_id(&text);
    let Ok(info) = parse_info_replication(&text) else {
        return;
    };
    let mut status = Default::default();
    info.apply_to(&mut status);
    let _ = info.continued_by(&info);
    let again = parse_info_replication(&render(&info))
        .unwrap_or_else(|e| panic!("{info:?} written out does not parse: {e}"));
    assert_eq!(again, info);
});
