//! `host:port` (`redis_ha_common::HostPort`), how every configured address and many reported
//! ones are read. Invariant: what parses prints as text that parses to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_common::HostPort;

fuzz_target!(|s: &str| {
    let Ok(hp) = s.parse::<HostPort>() else {
        return;
    };
    assert!(!hp.host.trim().is_empty(), "{s:?} parsed to a blank host");
    let text = hp.to_string();
    let again: HostPort = text.parse().unwrap_or_else(|e| {
        panic!("{s:?} -> {hp:?} prints as {text:?}, which does not parse: {e}")
    });
    assert_eq!(again, hp, "{s:?}");
});
