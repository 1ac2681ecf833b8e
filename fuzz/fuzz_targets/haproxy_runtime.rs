//! HAProxy runtime API answers (`redis_ha_reloader::runtime`): `show servers state`,
//! `show stat` CSV, the answers to the commands the reloader sends, and the endpoint syntax.
//! Invariants: no panic; a parsed server table written out again parses to the same; no
//! command accepts an answer that is not its success text; endpoints print as they parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ha_reloader::runtime::{
    parse_servers_state, parse_stat_sessions, Command, OpState, RuntimeEndpoint, ServerState,
};

fn render(servers: &[ServerState]) -> String {
    let mut s = String::from("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port\n");
    for v in servers {
        let op = match v.srv_op_state {
            OpState::Stopped => 0,
            OpState::Starting => 1,
            OpState::Running => 2,
            OpState::Stopping => 3,
        };
        s.push_str(&format!(
            "{} {} {} {} {} {op} {} {} 1 {} 6 {} 4 {} 0 0 0 {} {}\n",
            v.be_id,
            v.be_name,
            v.srv_id,
            v.srv_name,
            v.srv_addr.map_or("-".to_owned(), |a| a.to_string()),
            v.srv_admin_state.0,
            v.srv_uweight,
            v.srv_time_since_last_change,
            v.srv_check_result,
            v.srv_check_state,
            v.srv_fqdn.as_deref().unwrap_or("-"),
            v.srv_port,
        ));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(servers) = parse_servers_state(&text) {
        for v in &servers {
            let _ = (v.socket_addr(), v.admin_ready());
        }
        let again = parse_servers_state(&render(&servers))
            .unwrap_or_else(|e| panic!("{servers:?} written out does not parse: {e}"));
        assert_eq!(again, servers);
    }
    let (backend, answer) = text.split_once('\n').unwrap_or(("redis", &text));
    let _ = parse_stat_sessions(answer, backend);
    let addr = "127.0.0.1:9001".parse().expect("a socket address");
    for c in [
        Command::ready("redis", "redis-1"),
        Command::maint("redis", "redis-1"),
        Command::shutdown_sessions("redis", "redis-1"),
        Command::set_addr("redis", "redis-1", addr),
    ] {
        if c.check_answer(&text).is_ok() {
            let a = text.trim();
            let success = match c {
                Command::SetAddr { .. } => {
                    a.starts_with("IP changed from") || a.starts_with("no need to change the addr")
                }
                _ => a.is_empty(),
            };
            assert!(success, "{c} accepted {text:?}");
        }
    }
    if let Ok(e) = text.parse::<RuntimeEndpoint>() {
        let printed = e.to_string();
        assert_eq!(
            printed.parse::<RuntimeEndpoint>().as_ref(),
            Ok(&e),
            "{text:?} -> {printed:?}"
        );
    }
});
