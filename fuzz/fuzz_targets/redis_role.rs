//! `ROLE` replies (`redis_ha_agent::redis_parse::parse_role`). Invariants: no panic; a reply
//! that parses fills a status without panicking and names the role it parsed; every address
//! it yields is a `host:port` that reads back as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_agent::redis_parse::{parse_role, RoleReply};
use redis_ha_common::HostPort;
use redis_ha_fuzz::FuzzValue;

fuzz_target!(|v: FuzzValue| {
    let Ok(role) = parse_role(&v.to_value()) else {
        return;
    };
    let addrs: Vec<&str> = match &role {
        RoleReply::Master { replicas, .. } => replicas.iter().map(|r| r.address.as_str()).collect(),
        RoleReply::Replica { master_address, .. } => vec![master_address.as_str()],
    };
    for a in addrs {
        let hp: HostPort = a
            .parse()
            .unwrap_or_else(|e| panic!("{role:?}: address {a:?} is no host:port: {e}"));
        assert_eq!(hp.to_string(), a);
    }
    let mut status = Default::default();
    role.merge_into(&mut status);
    assert_eq!(status.role, role.role() as i32);
});
