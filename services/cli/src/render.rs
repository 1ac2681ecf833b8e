//! Pure rendering: protobuf topology and events in, text out. No I/O here, so every
//! layout decision is unit-tested.

use std::collections::BTreeMap;

use redis_ha_proto::v1::{Event, Topology};

use crate::model::{HealthJson, LinkJson, NodeJson, RoleJson, SentinelJson, StatusJson};
use crate::table::{Align, Cell, Style, Table};
use crate::timefmt;

fn health_cell(h: HealthJson) -> Cell {
    let style = match h {
        HealthJson::Up => Style::Good,
        HealthJson::Down => Style::Bad,
        HealthJson::Unknown => Style::Warn,
    };
    Cell::styled(h.as_str(), style)
}

fn dash() -> Cell {
    Cell::plain("-")
}

/// `127.0.0.1:9001 (node-1, confirmed)`, or `none`.
pub(crate) fn master_phrase(s: &StatusJson) -> String {
    match &s.master {
        None => "none".to_owned(),
        Some(m) => {
            let confirmed = match (m.confirmed, m.unconfirmed.as_deref()) {
                (true, _) => "confirmed".to_owned(),
                (false, Some(why)) => format!("unconfirmed: {}", unconfirmed_phrase(why)),
                (false, None) => "unconfirmed".to_owned(),
            };
            match &m.node {
                Some(node) => format!("{} ({node}, {confirmed})", m.address),
                None => format!("{} ({confirmed})", m.address),
            }
        }
    }
}

/// `Topology.master_unconfirmed`'s word for a person.
pub(crate) fn unconfirmed_phrase(why: &str) -> String {
    use redis_ha_proto::unconfirmed::{AGENTS_LOST, OWN_AGENT};
    match why {
        OWN_AGENT => "its own agent does not report it up as master".to_owned(),
        AGENTS_LOST => {
            "this coordinator hears too few agents (cut off with the master's node?)".to_owned()
        }
        other => other.to_owned(),
    }
}

/// The warnings a person must not miss, one per line.
fn warnings(s: &StatusJson) -> Vec<String> {
    let mut w = Vec::new();
    if s.master.is_none() {
        w.push("WARNING: no master to route clients to".to_owned());
    }
    if s.failover_in_progress {
        w.push("WARNING: failover in progress".to_owned());
    }
    if !s.split_brain.is_empty() {
        let master = s.master.as_ref().map_or("none", |m| m.address.as_str());
        w.push(format!(
            "WARNING: split brain: {} claim role:master but the master is {master}",
            s.split_brain.join(", ")
        ));
    }
    w
}

fn node_row(n: &NodeJson, fallback: bool) -> Vec<Cell> {
    let up = n.health == HealthJson::Up;
    let role = match (n.role, n.split_brain) {
        (RoleJson::Master, true) => Cell::styled("master (split brain)", Style::Bad),
        (RoleJson::Unknown, _) => dash(),
        (r, _) => Cell::plain(r.as_str()),
    };
    let link = match n.link {
        Some(LinkJson::Up) => Cell::styled("up", Style::Good),
        Some(LinkJson::Down) => Cell::styled("down", Style::Bad),
        None => dash(),
    };
    let lag = n
        .lag_bytes
        .map_or_else(dash, |b| Cell::plain(format!("{b} B")));
    let (offset, ping) = if up {
        (
            Cell::plain(n.repl_offset.to_string()),
            Cell::plain(timefmt::ping_micros(n.ping_micros)),
        )
    } else {
        (dash(), dash())
    };
    let reads = if n.serves_reads {
        Cell::styled("yes", Style::Good)
    } else if let Some(note) = &n.read_note {
        Cell::styled(format!("no ({note})"), Style::Warn)
    } else if n.is_master && fallback {
        Cell::plain("fallback")
    } else {
        dash()
    };
    vec![
        Cell::plain(or_dash(&n.node)),
        Cell::plain(or_dash(&n.address)),
        role,
        health_cell(n.health),
        link,
        lag,
        offset,
        ping,
        reads,
        Cell::plain(timefmt::duration_ms(n.report_age_ms)),
    ]
}

/// `127.0.0.1:9002 (node-2), 127.0.0.1:9003 (node-3)`, or who serves them when none qualifies.
pub(crate) fn readers_phrase(s: &StatusJson) -> String {
    if s.readers.is_empty() {
        return match &s.master {
            Some(m) => format!("{} (the master: no replica qualifies)", m.address),
            None => "none".to_owned(),
        };
    }
    s.readers
        .iter()
        .map(|a| match s.nodes.iter().find(|n| &n.address == a) {
            Some(n) => format!("{a} ({})", n.node),
            None => a.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sentinel_row(s: &SentinelJson, master: Option<&str>) -> Vec<Cell> {
    let named = match (&s.master_address, master) {
        (None, _) => dash(),
        (Some(a), Some(m)) if a != m => Cell::styled(format!("{a} (differs)"), Style::Warn),
        (Some(a), _) => Cell::plain(a.clone()),
    };
    let up = s.health == HealthJson::Up;
    vec![
        Cell::plain(or_dash(&s.node)),
        Cell::plain(or_dash(&s.address)),
        health_cell(s.health),
        named,
        if up {
            Cell::plain(s.config_epoch.to_string())
        } else {
            dash()
        },
        if s.master_flags.is_empty() {
            dash()
        } else {
            Cell::plain(s.master_flags.join(","))
        },
    ]
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// The `redis-ha status` screen: header, warnings, NODES and SENTINELS tables, errors.
pub fn render_status(t: &Topology, color: bool) -> String {
    let s = StatusJson::from(t);
    let mut out = format!(
        "group {}  version {}  epoch {}  master {}\n",
        s.group,
        s.version,
        s.config_epoch,
        master_phrase(&s)
    );
    for w in warnings(&s) {
        out.push_str(&Style::Bad.paint(&w, color));
        out.push('\n');
    }
    out.push_str(&format!(
        "reads (HAProxy read port, client port + 10): {}\n",
        readers_phrase(&s)
    ));

    let mut nodes = Table::new(&[
        ("NODE", Align::Left),
        ("ADDRESS", Align::Left),
        ("ROLE", Align::Left),
        ("HEALTH", Align::Left),
        ("LINK", Align::Left),
        ("LAG", Align::Right),
        ("OFFSET", Align::Right),
        ("PING", Align::Right),
        ("READS", Align::Left),
        ("REPORT AGE", Align::Right),
    ]);
    for n in &s.nodes {
        nodes.row(node_row(n, s.readers.is_empty()));
    }
    out.push_str("\nNODES\n");
    out.push_str(&nodes.render(color));
    if s.nodes.is_empty() {
        out.push_str("  (no agent has reported yet)\n");
    }
    for n in s.nodes.iter().filter(|n| n.error.is_some()) {
        out.push_str(&format!(
            "  {}: {}\n",
            or_dash(&n.node),
            n.error.as_deref().unwrap_or_default()
        ));
    }

    let mut sentinels = Table::new(&[
        ("NODE", Align::Left),
        ("ADDRESS", Align::Left),
        ("HEALTH", Align::Left),
        ("MASTER", Align::Left),
        ("EPOCH", Align::Right),
        ("FLAGS", Align::Left),
    ]);
    let master = s.master.as_ref().map(|m| m.address.as_str());
    for sv in &s.sentinels {
        sentinels.row(sentinel_row(sv, master));
    }
    out.push_str("\nSENTINELS\n");
    out.push_str(&sentinels.render(color));
    if s.sentinels.is_empty() {
        out.push_str("  (no Sentinel reported yet)\n");
    }
    for sv in s.sentinels.iter().filter(|sv| sv.error.is_some()) {
        out.push_str(&format!(
            "  {}: {}\n",
            or_dash(&sv.node),
            sv.error.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// One line for one topology version (`redis-ha watch`), with what changed since `prev`.
pub fn render_watch_line(prev: Option<&Topology>, t: &Topology) -> String {
    let s = StatusJson::from(t);
    let mut line = format!(
        "{}  v{}  epoch {}  master {}  replicas {}/{} linked  sentinels {}/{} up",
        timefmt::time_of_day_utc(s.updated_at_ms),
        s.version,
        s.config_epoch,
        master_phrase(&s),
        s.summary.replicas_link_up,
        s.summary.replicas,
        s.summary.sentinels_up,
        s.summary.sentinels_total,
    );
    if s.failover_in_progress {
        line.push_str("  FAILOVER IN PROGRESS");
    }
    if !s.split_brain.is_empty() {
        line.push_str(&format!("  SPLIT BRAIN: {}", s.split_brain.join(",")));
    }
    let changes = changes(prev, t);
    if !changes.is_empty() {
        line.push_str("  | ");
        line.push_str(&changes.join("; "));
    }
    line.push('\n');
    line
}

/// What a person watching cares about between two versions (not offsets or report ages,
/// which move on every heartbeat).
pub fn changes(prev: Option<&Topology>, cur: &Topology) -> Vec<String> {
    let Some(prev) = prev else {
        return Vec::new();
    };
    let (p, c) = (StatusJson::from(prev), StatusJson::from(cur));
    let mut out = Vec::new();
    let addr = |s: &StatusJson| {
        s.master
            .as_ref()
            .map_or("none".to_owned(), |m| m.address.clone())
    };
    if addr(&p) != addr(&c) {
        out.push(format!("master {} -> {}", addr(&p), addr(&c)));
    }
    if p.config_epoch != c.config_epoch {
        out.push(format!("epoch {} -> {}", p.config_epoch, c.config_epoch));
    }
    let confirmed = |s: &StatusJson| s.master.as_ref().is_some_and(|m| m.confirmed);
    if addr(&p) == addr(&c) && confirmed(&p) != confirmed(&c) {
        out.push(if confirmed(&c) {
            "master confirmed".to_owned()
        } else {
            "master unconfirmed".to_owned()
        });
    }
    match (p.failover_in_progress, c.failover_in_progress) {
        (false, true) => out.push("failover started".to_owned()),
        (true, false) => out.push("failover ended".to_owned()),
        _ => {}
    }
    if p.readers != c.readers {
        out.push(format!("reads: {}", readers_phrase(&c)));
    }
    if p.split_brain != c.split_brain {
        out.push(if c.split_brain.is_empty() {
            "split brain cleared".to_owned()
        } else {
            format!("split brain: {}", c.split_brain.join(","))
        });
    }

    let before: BTreeMap<&str, &NodeJson> = p.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let link = |l: Option<LinkJson>| l.map_or("-", LinkJson::as_str);
    for n in &c.nodes {
        match before.get(n.node.as_str()) {
            None => out.push(format!("{} appeared", n.node)),
            Some(o) => {
                if o.health != n.health {
                    out.push(format!(
                        "{} {} -> {}",
                        n.node,
                        o.health.as_str(),
                        n.health.as_str()
                    ));
                }
                if o.role != n.role {
                    out.push(format!(
                        "{} {} -> {}",
                        n.node,
                        o.role.as_str(),
                        n.role.as_str()
                    ));
                }
                if o.link != n.link && n.role == RoleJson::Replica {
                    out.push(format!(
                        "{} link {} -> {}",
                        n.node,
                        link(o.link),
                        link(n.link)
                    ));
                }
            }
        }
    }
    for o in &p.nodes {
        if !c.nodes.iter().any(|n| n.node == o.node) {
            out.push(format!("{} gone", o.node));
        }
    }
    let sent_before: BTreeMap<&str, &SentinelJson> =
        p.sentinels.iter().map(|s| (s.node.as_str(), s)).collect();
    for s in &c.sentinels {
        if let Some(o) = sent_before.get(s.node.as_str()) {
            if o.health != s.health {
                out.push(format!(
                    "sentinel {} {} -> {}",
                    s.node,
                    o.health.as_str(),
                    s.health.as_str()
                ));
            }
        }
    }
    out
}

/// The `redis-ha events` table, oldest first as the coordinator returns them.
pub fn render_events(events: &[Event]) -> String {
    let mut table = Table::new(&[
        ("TIME", Align::Left),
        ("KIND", Align::Left),
        ("NODE", Align::Left),
        ("VERSION", Align::Right),
        ("MESSAGE", Align::Left),
    ]);
    for e in events {
        let mut message = e.message.clone();
        if e.switch_lag_ms > 0 {
            message.push_str(&format!(" (switch lag {} ms)", e.switch_lag_ms));
        }
        table.row(vec![
            Cell::plain(timefmt::iso_utc(e.at_ms)),
            Cell::plain(or_dash(&e.kind)),
            Cell::plain(or_dash(&e.node)),
            Cell::plain(e.topology_version.to_string()),
            Cell::plain(message),
        ]);
    }
    table.render(false)
}

/// A healthy three-node group: node-1 master, node-2 and node-3 replicas, three Sentinels.
#[cfg(test)]
pub(crate) fn sample_topology() -> Topology {
    use redis_ha_proto::v1::{Health, LinkState, NodeView, Role, SentinelView};
    let node = |i: u32, role: Role| NodeView {
        node: format!("node-{i}"),
        address: format!("127.0.0.1:900{i}"),
        health: Health::Up as i32,
        role: role as i32,
        is_master: role == Role::Master,
        lag_bytes: 0,
        link: if role == Role::Replica {
            LinkState::Up as i32
        } else {
            LinkState::Unspecified as i32
        },
        master_address: if role == Role::Replica {
            "127.0.0.1:9001".into()
        } else {
            String::new()
        },
        repl_offset: 123_456,
        ping_micros: 180,
        report_age_ms: 420,
        split_brain: false,
        agent_health: Health::Up as i32,
        error: String::new(),
        serves_reads: role == Role::Replica,
        ack_lag_seconds: 0,
        read_note: String::new(),
    };
    let sentinel = |i: u32| SentinelView {
        node: format!("node-{i}"),
        address: format!("127.0.0.1:1900{i}"),
        health: Health::Up as i32,
        master_address: "127.0.0.1:9001".into(),
        config_epoch: 1,
        master_flags: vec!["master".into()],
        error: String::new(),
    };
    Topology {
        master_group: "redis-cluster".into(),
        version: 12,
        updated_at_ms: 1_764_073_865_123,
        master_address: "127.0.0.1:9001".into(),
        master_node: "node-1".into(),
        config_epoch: 1,
        master_source: redis_ha_proto::v1::MasterSource::SentinelQuorum as i32,
        failover_in_progress: false,
        nodes: vec![
            node(1, Role::Master),
            node(2, Role::Replica),
            node(3, Role::Replica),
        ],
        sentinels: vec![sentinel(1), sentinel(2), sentinel(3)],
        split_brain: Vec::new(),
        master_confirmed: true,
        readers: vec!["127.0.0.1:9002".into(), "127.0.0.1:9003".into()],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::{Health, LinkState, Role};

    /// The start column of every header word in the table that begins after `title`.
    fn table_lines<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
        text.lines()
            .skip_while(|l| *l != title)
            .skip(1)
            .take_while(|l| !l.is_empty() && !l.starts_with("  "))
            .collect()
    }

    #[test]
    fn healthy_status_reads_at_a_glance() {
        let text = render_status(&sample_topology(), false);
        assert!(text.starts_with(
            "group redis-cluster  version 12  epoch 1  master 127.0.0.1:9001 (node-1, confirmed)\n"
        ));
        assert!(!text.contains("WARNING"), "{text}");
        let nodes = table_lines(&text, "NODES");
        assert_eq!(nodes.len(), 4, "{text}");
        assert_eq!(
            nodes[0],
            "NODE    ADDRESS         ROLE     HEALTH  LINK  LAG  OFFSET    PING  READS  REPORT AGE"
        );
        assert_eq!(
            nodes[1],
            "node-1  127.0.0.1:9001  master   up      -       -  123456  0.18ms  -           420ms"
        );
        assert_eq!(
            nodes[2],
            "node-2  127.0.0.1:9002  replica  up      up    0 B  123456  0.18ms  yes         420ms"
        );
        assert!(
            text.contains("\nreads (HAProxy read port, client port + 10): 127.0.0.1:9002 (node-2), 127.0.0.1:9003 (node-3)\n"),
            "{text}"
        );
        let sentinels = table_lines(&text, "SENTINELS");
        assert_eq!(sentinels.len(), 4, "{text}");
        assert_eq!(
            sentinels[0],
            "NODE    ADDRESS          HEALTH  MASTER          EPOCH  FLAGS"
        );
        assert_eq!(
            sentinels[3],
            "node-3  127.0.0.1:19003  up      127.0.0.1:9001      1  master"
        );
    }

    #[test]
    fn columns_stay_aligned_with_wide_values() {
        let mut t = sample_topology();
        t.nodes[2].node = "a-much-longer-node-name".into();
        t.nodes[2].lag_bytes = 1_234_567;
        let text = render_status(&t, false);
        let lines = table_lines(&text, "NODES");
        let header = lines[0];
        // Left-aligned columns start where their header starts, in every row.
        for col in ["ADDRESS", "ROLE", "HEALTH", "LINK"] {
            let at = header.find(col).unwrap();
            for l in &lines[1..] {
                assert_eq!(&l[at - 2..at], "  ", "{col} in {l:?}");
                assert_ne!(&l[at..=at], " ", "{col} in {l:?}");
            }
        }
        // Right-aligned columns end where their header ends.
        for col in ["LAG", "OFFSET", "PING"] {
            let end = header.find(col).unwrap() + col.len();
            for l in &lines[1..] {
                assert_ne!(&l[end - 1..end], " ", "{col} in {l:?}");
                assert_eq!(&l[end..end + 2], "  ", "{col} in {l:?}");
            }
        }
        assert!(lines[3].contains("1234567 B"), "{text}");
    }

    #[test]
    fn down_node_shows_dashes_and_its_error() {
        let mut t = sample_topology();
        let n = &mut t.nodes[1];
        n.health = Health::Down as i32;
        n.role = Role::Unspecified as i32;
        n.link = LinkState::Unspecified as i32;
        n.error = "connection refused".into();
        n.report_age_ms = 2_500;
        n.serves_reads = false;
        t.readers = vec!["127.0.0.1:9003".into()];
        t.sentinels[1].health = Health::Unknown as i32;
        t.sentinels[1].error = "no report for 12.0s".into();
        let text = render_status(&t, false);
        let nodes = table_lines(&text, "NODES");
        assert_eq!(
            nodes[2],
            "node-2  127.0.0.1:9002  -        down    -       -       -       -  -            2.5s"
        );
        assert!(
            text.contains("client port + 10): 127.0.0.1:9003 (node-3)\n"),
            "{text}"
        );
        assert!(text.contains("\n  node-2: connection refused\n"), "{text}");
        let sentinels = table_lines(&text, "SENTINELS");
        assert!(sentinels[2].contains("  unknown  "), "{text}");
        assert!(text.contains("\n  node-2: no report for 12.0s\n"), "{text}");
    }

    #[test]
    fn split_brain_and_failover_are_warned() {
        let mut t = sample_topology();
        t.failover_in_progress = true;
        t.split_brain = vec!["node-3".into()];
        t.nodes[2].role = Role::Master as i32;
        t.nodes[2].split_brain = true;
        t.nodes[2].link = LinkState::Unspecified as i32;
        t.sentinels[2].master_address = "127.0.0.1:9003".into();
        let text = render_status(&t, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "WARNING: failover in progress");
        assert_eq!(
            lines[2],
            "WARNING: split brain: node-3 claim role:master but the master is 127.0.0.1:9001"
        );
        let nodes = table_lines(&text, "NODES");
        assert!(nodes[3].contains("  master (split brain)  up  "), "{text}");
        let sentinels = table_lines(&text, "SENTINELS");
        assert!(sentinels[3].contains("127.0.0.1:9003 (differs)"), "{text}");
    }

    #[test]
    fn lagging_replicas_say_why_and_the_master_serves_reads() {
        let mut t = sample_topology();
        t.readers.clear();
        for n in &mut t.nodes[1..] {
            n.serves_reads = false;
            n.read_note = "lag-bytes".into();
        }
        let text = render_status(&t, false);
        assert!(
            text.contains("client port + 10): 127.0.0.1:9001 (the master: no replica qualifies)\n"),
            "{text}"
        );
        let nodes = table_lines(&text, "NODES");
        assert!(nodes[1].contains("  fallback  "), "{text}");
        assert!(nodes[2].contains("  no (lag-bytes)  "), "{text}");
        let prev = sample_topology();
        let changes = changes(Some(&prev), &t);
        assert!(
            changes
                .iter()
                .any(|c| c == "reads: 127.0.0.1:9001 (the master: no replica qualifies)"),
            "{changes:?}"
        );
    }

    #[test]
    fn no_master_is_said() {
        let mut t = sample_topology();
        t.master_address.clear();
        t.master_node.clear();
        t.master_confirmed = false;
        let text = render_status(&t, false);
        assert!(text.starts_with("group redis-cluster  version 12  epoch 1  master none\n"));
        assert!(
            text.contains("WARNING: no master to route clients to"),
            "{text}"
        );
    }

    #[test]
    fn empty_topology_says_nobody_reported() {
        let t = Topology {
            master_group: "redis-cluster".into(),
            version: 1,
            ..Default::default()
        };
        let text = render_status(&t, false);
        assert!(text.contains("NODES\nNODE  ADDRESS  ROLE  HEALTH  LINK  LAG  OFFSET  PING  READS  REPORT AGE\n  (no agent has reported yet)\n"), "{text}");
        assert!(text.contains("  (no Sentinel reported yet)\n"), "{text}");
    }

    #[test]
    fn colour_only_when_asked() {
        let t = sample_topology();
        assert!(!render_status(&t, false).contains('\x1b'));
        assert!(render_status(&t, true).contains("\x1b[32mup\x1b[0m"));
    }

    #[test]
    fn watch_line_lists_what_changed() {
        let before = sample_topology();
        let first = render_watch_line(None, &before);
        assert_eq!(
            first,
            "12:31:05.123Z  v12  epoch 1  master 127.0.0.1:9001 (node-1, confirmed)  \
             replicas 2/2 linked  sentinels 3/3 up\n"
        );
        let mut after = before.clone();
        after.version = 13;
        after.config_epoch = 2;
        after.master_address = "127.0.0.1:9002".into();
        after.master_node = "node-2".into();
        after.nodes[0].health = Health::Down as i32;
        after.nodes[0].role = Role::Unspecified as i32;
        after.nodes[1].role = Role::Master as i32;
        after.nodes[1].link = LinkState::Unspecified as i32;
        after.nodes[2].link = LinkState::Down as i32;
        after.nodes[0].repl_offset = 999; // offsets are not news
        after.sentinels[0].health = Health::Down as i32;
        let line = render_watch_line(Some(&before), &after);
        assert!(
            line.contains("replicas 0/1 linked  sentinels 2/3 up  | "),
            "{line}"
        );
        assert!(
            line.ends_with(
                "| master 127.0.0.1:9001 -> 127.0.0.1:9002; epoch 1 -> 2; node-1 up -> down; \
                 node-1 master -> unknown; node-2 replica -> master; node-3 link up -> down; \
                 sentinel node-1 up -> down\n"
            ),
            "{line}"
        );
        assert!(!changes(Some(&before), &before)
            .iter()
            .any(|c| !c.is_empty()));
    }

    #[test]
    fn events_table() {
        let events = vec![
            Event {
                at_ms: 1_764_073_865_123,
                kind: "sentinel".into(),
                node: "node-1".into(),
                message: "+sdown master redis-cluster 127.0.0.1 9001".into(),
                topology_version: 12,
                switch_lag_ms: 0,
            },
            Event {
                at_ms: 1_764_073_866_000,
                kind: "master-changed".into(),
                node: String::new(),
                message: "master 127.0.0.1:9001 -> 127.0.0.1:9002".into(),
                topology_version: 13,
                switch_lag_ms: 85,
            },
        ];
        let text = render_events(&events);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TIME                      KIND            NODE    VERSION  MESSAGE"
        );
        assert_eq!(
            lines[2],
            "2025-11-25T12:31:06.000Z  master-changed  -            13  \
             master 127.0.0.1:9001 -> 127.0.0.1:9002 (switch lag 85 ms)"
        );
    }
}
