//! `ROLE` replies (`redis_ha_agent::redis_parse::parse_role`). Invariants: no panic; a reply
//! that parses fills a status without panicking and names the role it parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_agent::redis_parse::parse_role;
use redis_ha_fuzz::FuzzValue;

fuzz_target!(|v: FuzzValue| {
    let Ok(role) = parse_role(&v.to_value()) else {
        return;
    };
    let mut status = Default::default();
    role.merge_into(&mut status);
    assert_eq!(status.role, role.role() as i32);
});
