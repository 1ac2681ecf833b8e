//! The sidecars' configuration files: TOML through figment over the defaults, as
//! `redis_ha_common::load_config` reads them, for the agent, the coordinator and the reloader.
//! Invariants: no panic (reading nor checking); a configuration that loads, written out as
//! TOML again, loads to the same.
#![no_main]

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The file layer of `load_config` (the environment layer is not outside text).
fn load<T: Serialize + DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}

fn round_trip<T>(text: &str) -> Option<T>
where
    T: Serialize + DeserializeOwned + Default + PartialEq + std::fmt::Debug,
{
    let c: T = load(text).ok()?;
    let written = toml::to_string(&c).unwrap_or_else(|e| panic!("{c:?} cannot be written: {e}"));
    let again: T = load(&written)
        .unwrap_or_else(|e| panic!("{c:?} written as {written:?} does not load: {e}"));
    assert_eq!(again, c, "{written}");
    Some(c)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(c) = round_trip::<redis_ha_agent::AgentConfig>(text) {
        // The checks that need no I/O (the full one resolves names and reads files).
        let _ = c.check_shape();
    }
    if let Some(mut c) = round_trip::<redis_ha_coordinator::CoordinatorConfig>(text) {
        c.sentinel_password_file = None;
        let _ = c.validate();
    }
    if let Some(mut c) = round_trip::<redis_ha_reloader::ReloaderConfig>(text) {
        c.sentinel_password_file = None;
        let _ = c.validate();
    }
});
