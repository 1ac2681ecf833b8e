//! The `redis-ha` binary end to end: exit codes and messages when the coordinator is
//! missing, and its output against a real system (Redis, Sentinels, the coordinator and the
//! agents from the process-test harness `redis_ha_tests`), compared with what the Sentinels
//! themselves answer.

// A test file: a failed unwrap is a failed test (clippy's in-tests allowance only covers
// `#[test]` functions, not the helpers here).
#![allow(clippy::unwrap_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use redis_ha_testkit::{wait_until, PortBlock};
use redis_ha_tests::{Cluster, ClusterOptions, NODES, READY_TIMEOUT};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_redis-ha");

/// Every command that talks to the coordinator about one master group.
const GROUP_COMMANDS: [&[&str]; 6] = [
    &["status"],
    &["status", "--json"],
    &["watch"],
    &["master"],
    &["events"],
    &["failover"],
];

/// A coordinator URL nothing listens on: a port of a reserved block (held while the block
/// lives, so no other test's server can take it).
fn dead_url(block: &PortBlock) -> String {
    format!("http://127.0.0.1:{}", block.port(0))
}

fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("REDIS_HA_COORDINATOR")
        .env_remove("REDIS_HA_GROUP")
        // Exact stderr is asserted: no log lines, no exporter warnings.
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str]) -> Output {
    let out = command(args).output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("redis-ha did not exit")
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `redis-ha --coordinator URL ARGS...` and expects exit 0; returns stdout.
async fn ok(url: &str, args: &[&str]) -> String {
    let mut all = vec!["--coordinator", url];
    all.extend_from_slice(args);
    let out = run(&all).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "redis-ha {all:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Like `ok`, but a non-zero exit is returned as the observation (for `wait_until`).
async fn try_ok(url: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--coordinator", url];
    all.extend_from_slice(args);
    let out = run(&all).await;
    if out.status.code() == Some(0) {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "redis-ha {all:?} exited {:?}: {}",
            out.status.code(),
            text(&out.stderr)
        ))
    }
}

#[tokio::test]
async fn unreachable_coordinator_exits_2_with_a_clear_message() {
    let block = PortBlock::allocate(1);
    let url = dead_url(&block);
    for cmd in GROUP_COMMANDS {
        let mut args = vec!["--coordinator", url.as_str()];
        args.extend_from_slice(cmd);
        let out = run(&args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert_eq!(
            err,
            format!(
                "redis-ha: cannot reach the coordinator at {url}: connection refused \
                 (is it running? set --coordinator or REDIS_HA_COORDINATOR)\n"
            ),
            "{cmd:?}"
        );
        assert!(out.stdout.is_empty(), "{cmd:?}");
    }
}

#[tokio::test]
async fn coordinator_url_comes_from_the_environment() {
    let block = PortBlock::allocate(1);
    let url = dead_url(&block);
    let out = tokio::process::Command::new(BIN)
        .arg("status")
        .env("REDIS_HA_COORDINATOR", &url)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("coordinator at {url}: ")));
}

#[tokio::test]
async fn bad_url_is_a_usage_error() {
    let out = run(&["--coordinator", "http://bad host:1", "status"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid coordinator URL"),
        "{}",
        text(&out.stderr)
    );
}

// ------------------------------------------------------------------ a real cluster

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` asked of Sentinel `i`, as redis-cli gives it: (host, port).
async fn sentinel_answer(cluster: &Cluster, i: usize) -> (String, String) {
    cluster
        .sentinel(i)
        .query::<(String, String)>(
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(cluster.group()),
        )
        .await
        .unwrap()
}

/// The master the Sentinels agree on right now ("host:port"), as an observation.
async fn sentinels_master(cluster: &Cluster) -> Result<String, String> {
    cluster.master_addr_by_sentinel().await
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The rows of one section ("NODES" or "SENTINELS") of the `status` table, header excluded.
fn section<'a>(table: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = table.lines().skip_while(|l| *l != title);
    assert_eq!(lines.next(), Some(title), "no {title} section in:\n{table}");
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("NODE "), "{title} header: {header:?}");
    lines
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with("  "))
        .collect()
}

/// The table row of the node or Sentinel whose address is `addr`.
fn row<'a>(rows: &[&'a str], addr: &str) -> &'a str {
    let found: Vec<&str> = rows
        .iter()
        .copied()
        .filter(|r| r.split_whitespace().nth(1) == Some(addr))
        .collect();
    assert_eq!(found.len(), 1, "one row for {addr} in {rows:#?}");
    found[0]
}

/// Column `i` (0-based) of a table row.
fn col(row: &str, i: usize) -> &str {
    row.split_whitespace().nth(i).unwrap_or_default()
}

/// Spawns `redis-ha ... watch ARGS`, returns its first line, and kills it.
async fn first_watch_line(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["--coordinator", url, "watch"];
    args.extend_from_slice(extra);
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
        .await
        .expect("watch printed nothing")
        .unwrap()
        .expect("watch ended without a line");
    assert!(
        child.try_wait().unwrap().is_none(),
        "watch must keep running after its first line"
    );
    child.kill().await.unwrap();
    line
}

/// One cluster serves every check, in the order an operator meets them: the coordinator up
/// before any agent, then a healthy cluster, then the master killed, then a manual failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_cluster() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let url = cluster.coordinator_url();
    let group = cluster.group().to_owned();

    // ---- The coordinator runs, no agent has reported yet: no master, no Sentinel known.
    cluster.start_coordinator().await;
    let out = run(&["--coordinator", &url, "master"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!("redis-ha: master group {group} has no master right now\n")
    );
    let table = ok(&url, &["status"]).await;
    assert!(
        table.starts_with(&format!("group {group}  version ")) && table.contains("  master none\n"),
        "{table}"
    );
    assert!(table.contains("(no agent has reported yet)"), "{table}");
    let out = run(&["--coordinator", &url, "failover"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "redis-ha: the coordinator at {url} answered FAILED_PRECONDITION: "
        )) && err.contains("no Sentinel is known"),
        "{err}"
    );

    // ---- An unknown master group: NOT_FOUND, exit 1, for every command that names one.
    for cmd in GROUP_COMMANDS {
        let mut args = vec!["--coordinator", url.as_str(), "--group", "nope"];
        args.extend_from_slice(cmd);
        let out = run(&args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            err.starts_with(&format!(
                "redis-ha: the coordinator at {url} answered NOT_FOUND: "
            )) && err.contains("\"nope\""),
            "{cmd:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{cmd:?}");
    }

    // ---- The agents report: a healthy cluster, node-1 master.
    for i in 1..=NODES {
        cluster.start_agent(i).await;
    }
    let steady = cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();
    assert_eq!(sentinels_master(&cluster).await.unwrap(), master);

    let table = ok(&url, &["status"]).await;
    assert!(!table.contains('\x1b'), "no colour when piped: {table:?}");
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with(&format!("group {group}  version "))
            && header.ends_with(&format!("  epoch 0  master {master} (node-1, confirmed)")),
        "{table}"
    );
    assert!(!table.contains("WARNING"), "{table}");
    let nodes = section(&table, "NODES");
    assert_eq!(nodes.len(), NODES, "{table}");
    let r = row(&nodes, &master);
    assert_eq!(
        (col(r, 0), col(r, 2), col(r, 3)),
        ("node-1", "master", "up")
    );
    for i in [2, 3] {
        let r = row(&nodes, &cluster.node(i).addr());
        assert_eq!(
            (col(r, 0), col(r, 2), col(r, 3), col(r, 4)),
            (format!("node-{i}").as_str(), "replica", "up", "up"),
            "{table}"
        );
    }
    let sentinels = section(&table, "SENTINELS");
    assert_eq!(sentinels.len(), NODES, "{table}");
    for i in 1..=NODES {
        let r = row(&sentinels, &cluster.sentinel(i).addr());
        assert_eq!(
            (col(r, 2), col(r, 3)),
            ("up", master.as_str()),
            "sentinel {i}: {table}"
        );
    }

    // A bare host:port works too.
    let bare = url.trim_start_matches("http://");
    let v = json(&ok(bare, &["status", "--json"]).await);
    let (host, port) = sentinel_answer(&cluster, 1).await;
    assert_eq!(v["master"]["address"], format!("{host}:{port}"));
    assert_eq!(v["master"]["node"], "node-1");
    assert_eq!(v["master"]["confirmed"], true);
    assert_eq!(v["group"], group.as_str());
    assert!(v["version"].as_u64().unwrap() >= steady.version);
    assert_eq!(v["summary"]["replicas_link_up"], 2, "{v:#}");
    assert_eq!(v["summary"]["sentinels_up"], 3, "{v:#}");
    assert_eq!(v["nodes"].as_array().unwrap().len(), NODES);
    assert_eq!(v["sentinels"].as_array().unwrap().len(), NODES);

    // `master` prints exactly what redis-cli prints for GET-MASTER-ADDR-BY-NAME, piped.
    for i in 1..=NODES {
        let (host, port) = sentinel_answer(&cluster, i).await;
        assert_eq!(ok(&url, &["master"]).await, format!("{host}\n{port}\n"));
        assert_eq!(
            ok(&url, &["master", "--addr"]).await,
            format!("{host}:{port}\n")
        );
    }

    // `watch` starts with the current topology and keeps running.
    let line = first_watch_line(&url, &["--json"]).await;
    let first = json(&line);
    assert_eq!(first["master"]["address"], master.as_str(), "{line}");
    assert!(
        first["version"].as_u64().unwrap() >= steady.version,
        "{line}"
    );
    let line = first_watch_line(&url, &[]).await;
    assert!(
        line.contains(&format!("  master {master} (node-1, confirmed)")),
        "{line}"
    );

    // ---- The master dies.
    cluster.node_mut(1).kill();
    let elected = cluster.wait_new_master(&master).await;
    assert_ne!(elected, master);
    // `status` follows: the master the Sentinels name (under load they may fail over once
    // more, so compare with their answer at that moment), node-1 down.
    let (u, c, old) = (&url, &cluster, &master);
    let (new_master, table) = wait_until(
        "status to show the Sentinels' new master and node-1 down",
        READY_TIMEOUT,
        || {
            let (url, cluster) = (u, c);
            async move {
                let now = sentinels_master(cluster).await?;
                let v = json(&try_ok(url, &["status", "--json"]).await?);
                let down = v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n["address"] == old.as_str() && n["health"] == "down");
                if v["master"]["address"] != now.as_str() || !down {
                    return Err(format!("Sentinels name {now}; status --json: {v}"));
                }
                let table = try_ok(url, &["status"]).await?;
                let n = section(&table, "NODES");
                let header = table.lines().next().unwrap_or_default();
                if header.contains(&format!("  master {now} (node-"))
                    && col(row(&n, old), 3) == "down"
                    && col(row(&n, &now), 2) == "master"
                {
                    Ok((now, table))
                } else {
                    Err(format!("Sentinels name {now}; status:\n{table}"))
                }
            }
        },
    )
    .await;
    let nodes = section(&table, "NODES");
    let old_row = row(&nodes, &master);
    assert_eq!(col(old_row, 0), "node-1", "{table}");
    // A dead node has no offset nor ping to show.
    assert!(old_row.contains(" - "), "{table}");

    // The events name the switch.
    let events = json(&ok(&url, &["events", "--json"]).await);
    let events = events.as_array().unwrap();
    let changed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "master-changed")
        .collect();
    assert!(
        changed.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{master} -> "))),
        "no master-changed away from {master}: {events:#?}"
    );
    let to_new = changed
        .iter()
        .rev()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains(&format!(" -> {new_master} "))
        })
        .unwrap_or_else(|| panic!("no master-changed to {new_master}: {events:#?}"));
    let m = cluster.node_index(&new_master).unwrap();
    assert_eq!(to_new["node"], format!("node-{m}"));
    assert!(to_new["topology_version"].as_u64().unwrap() > steady.version);
    assert!(to_new["at"].as_str().unwrap().ends_with('Z'), "{to_new}");
    let two = json(&ok(&url, &["events", "--limit", "2", "--json"]).await);
    assert_eq!(two.as_array().unwrap().len(), 2, "{two:#}");
    let listed = ok(&url, &["events"]).await;
    assert!(listed.contains("master-changed"), "{listed}");

    // ---- A manual failover through the CLI: the two live nodes swap roles.
    let c = &cluster;
    wait_until(
        "the live nodes to be the Sentinels' master and its synced replica",
        READY_TIMEOUT,
        || async move {
            let now = sentinels_master(c).await?;
            let m = c.node_index(&now).ok_or(format!("unknown master {now}"))?;
            let other = match m {
                2 => 3,
                3 => 2,
                _ => return Err(format!("Sentinels name the dead node-{m}")),
            };
            c.node(other).replica_synced_state(c.node(m).port()).await
        },
    )
    .await;
    let at_rest = cluster
        .wait_topology_agreeing("the failover over", READY_TIMEOUT, |t, _| {
            !t.failover_in_progress && t.master_confirmed
        })
        .await;
    let before = at_rest.master_address.clone();
    // A Sentinel may still refuse for a moment (INPROG right after the last failover).
    let said = wait_until("redis-ha failover to be accepted", READY_TIMEOUT, || {
        try_ok(&url, &["failover"])
    })
    .await;
    assert!(
        said.contains(&format!("accepted SENTINEL FAILOVER {group}")),
        "{said}"
    );
    cluster
        .wait_topology_agreeing(
            "a newer epoch with another master",
            READY_TIMEOUT,
            |t, m| t.config_epoch > at_rest.config_epoch && m != before,
        )
        .await;
    let (u, c) = (&url, &cluster);
    let shown = wait_until("master to print the new master", READY_TIMEOUT, || {
        let (url, cluster) = (u, c);
        async move {
            let now = sentinels_master(cluster).await?;
            let shown = try_ok(url, &["master", "--addr"]).await?;
            if shown == format!("{now}\n") {
                Ok(now)
            } else {
                Err(format!("Sentinels name {now}, master printed {shown:?}"))
            }
        }
    })
    .await;
    assert_ne!(shown, before);
    assert_ne!(shown, master, "node-1 is dead");
}
