//! Sentinel event messages (`redis_ha_sentinel::parse_event`): the channel is the first line
//! of the input, the payload the rest. Invariants: no panic; the channel name comes back as
//! it was; a parsed instance payload, written out again, parses to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_sentinel::events::{EventKind, InstanceRef, Payload};
use redis_ha_sentinel::parse_event;

fn render_instance(i: &InstanceRef, extra: &str) -> String {
    let kind = match i.kind {
        redis_ha_sentinel::events::InstanceType::Master => "master",
        redis_ha_sentinel::events::InstanceType::Slave => "slave",
        redis_ha_sentinel::events::InstanceType::Sentinel => "sentinel",
    };
    let mut s = format!("{kind} {} {} {}", i.name, i.addr.host, i.addr.port);
    if let Some(m) = &i.master {
        s.push_str(&format!(" @ {} {} {}", m.name, m.addr.host, m.addr.port));
    }
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (channel, payload) = text.split_once('\n').unwrap_or((text, ""));
    assert_eq!(EventKind::from_channel(channel).channel(), channel);
    let Ok(event) = parse_event(channel, payload) else {
        return;
    };
    let _ = (event.master_group(), event.epoch(), event.named_master());
    let _ = event.kind.failover_effect();
    if let Payload::Instance { instance, extra } = &event.payload {
        let again = parse_event(channel, &render_instance(instance, extra))
            .unwrap_or_else(|e| panic!("{event:?} written out does not parse: {e}"));
        assert_eq!(again, event);
    }
});
