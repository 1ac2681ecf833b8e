//! The `redis-ha` binary end to end: exit codes and messages when the coordinator is
//! missing, `simulate` and `chaos` run through `redis-ha-chaos`, and its output against a
//! real system (Redis, Sentinels, the coordinator and the agents from the process-test
//! harness `redis_ha_tests`), compared with what the Sentinels themselves answer.

// A test file: a failed unwrap is a failed test (clippy's in-tests allowance only covers
// `#[test]` functions, not the helpers here).
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use redis_ha_testkit::tls::Certs;
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

/// The control plane's certificates of this test process: `redis-ha` presents the
/// operator's (through the environment, as `deploy/up.sh` tells users to), and the clusters
/// of these tests are made with them.
fn certs() -> &'static Certs {
    static CERTS: std::sync::OnceLock<Certs> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| Certs::temp(3))
}

/// A cluster whose coordinator trusts [`certs`].
fn cluster_options() -> ClusterOptions {
    ClusterOptions {
        tls_dir: Some(certs().dir().to_path_buf()),
        ..ClusterOptions::default()
    }
}

fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    let who = redis_ha_tls::Identity::Operator;
    cmd.args(args)
        .env("REDIS_HA_CA", certs().ca())
        .env("REDIS_HA_CERT", certs().cert(&who))
        .env("REDIS_HA_KEY", certs().key(&who))
        .env_remove("REDIS_HA_INSECURE")
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

/// The process exited `code` and its stderr says `what`.
fn assert_exit_saying(out: &Output, code: i32, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(what), "{what:?} not in: {err}");
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

/// `redis-ha --coordinator URL wait` that gives up after 300 ms.
async fn short_wait(url: &str) -> Output {
    run(&[
        "--coordinator",
        url,
        "wait",
        "--max-wait-ms",
        "300",
        "--poll-ms",
        "50",
    ])
    .await
}

#[tokio::test]
async fn wait_gives_up_on_an_unreachable_coordinator_with_exit_2() {
    let block = PortBlock::allocate(1);
    let url = dead_url(&block);
    let out = short_wait(&url).await;
    let refused = format!(
        "cannot reach the coordinator at {url}: connection refused \
         (is it running? set --coordinator or REDIS_HA_COORDINATOR)"
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("redis-ha: group redis-cluster is not healthy after 300 ms: {refused}\n")
    );
    // It kept trying: the reason is said once, not once per poll.
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0],
        "waiting for group redis-cluster: a confirmed master and 2 linked replica(s), up to 0.3 s"
    );
    assert!(
        lines[1].starts_with('[') && lines[1].ends_with(&format!(" s] waiting: {refused}")),
        "{stdout}"
    );
}

#[tokio::test]
async fn coordinator_url_comes_from_the_environment() {
    let block = PortBlock::allocate(1);
    let url = dead_url(&block);
    let out = command(&["status"])
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
    assert_exit_saying(&out, 2, "invalid coordinator URL");
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
    let mut cluster = Cluster::start(cluster_options()).await;
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
    // `wait` too (not worth waiting for: it never comes).
    for cmd in GROUP_COMMANDS.iter().copied().chain([&["wait"][..]]) {
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

    // ---- `wait` before any agent reports: no master, and it says so when its time is up.
    let out = short_wait(&url).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("redis-ha: group {group} is not healthy after 300 ms: no master\n")
    );
    assert!(
        text(&out.stdout).ends_with(" s] waiting: no master\n"),
        "{}",
        text(&out.stdout)
    );
    // One that waits long enough sees the agents bring the group up.
    let mut waiter = command(&[
        "--coordinator",
        &url,
        "wait",
        "--max-wait-ms",
        "120000",
        "--poll-ms",
        "50",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut wait_lines = BufReader::new(waiter.stdout.take().unwrap()).lines();
    let mut wait_out = Vec::new();
    while !wait_out
        .last()
        .is_some_and(|l: &String| l.ends_with(" s] waiting: no master"))
    {
        let line = tokio::time::timeout(READY_TIMEOUT, wait_lines.next_line())
            .await
            .expect("wait said nothing")
            .unwrap()
            .unwrap_or_else(|| panic!("wait ended early: {wait_out:?}"));
        wait_out.push(line);
    }

    // ---- The agents report: a healthy cluster, node-1 master.
    for i in 1..=NODES {
        cluster.start_agent(i).await;
    }
    let steady = cluster.wait_steady_topology(1).await;
    let master = cluster.node(1).addr();

    // `wait` has ended, healthy, on the same master.
    while let Some(line) = tokio::time::timeout(READY_TIMEOUT, wait_lines.next_line())
        .await
        .expect("wait did not end")
        .unwrap()
    {
        wait_out.push(line);
    }
    let status = tokio::time::timeout(READY_TIMEOUT, waiter.wait())
        .await
        .expect("wait did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{wait_out:?}");
    let last = wait_out.last().unwrap();
    assert!(
        last.ends_with(&format!(
            " s] healthy: master {master} (node-1, confirmed), 2 replica(s) linked"
        )),
        "{wait_out:?}"
    );
    assert!(
        wait_out.iter().all(|l| l.starts_with("waiting for group ")
            || l.contains(" s] waiting: ")
            || l == last),
        "{wait_out:?}"
    );
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

// ------------------------------------------------------------------ simulate, chaos

/// A stand-in `redis-ha-chaos` that writes its arguments, one a line, to `args.txt` beside
/// it and exits 7.
fn fake_chaos_binary(dir: &Path) {
    let script = dir.join("redis-ha-chaos");
    let out = dir.join("args.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 7\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of `redis-ha` alone in a directory of its own (so nothing is beside it).
fn lone_redis_ha(dir: &Path) -> PathBuf {
    let exe = dir.join("redis-ha");
    std::fs::copy(BIN, &exe).unwrap();
    exe
}

async fn run_at(exe: &Path, path: &OsStr, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env_remove("REDIS_HA_COORDINATOR")
        .env_remove("REDIS_HA_GROUP")
        .env_remove("RUST_LOG")
        .env("PATH", path)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("redis-ha did not exit")
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn simulate_and_chaos_are_listed_with_the_other_commands() {
    let out = run(&["--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for line in [
        // The column is as wide as the longest command name (`switchover`).
        "  simulate    Move sequence-numbered messages through the proxy while faulting the master; count them",
        "  chaos       Fault a Redis node of the swarm stack through the Docker API",
    ] {
        assert!(help.contains(line), "{line:?} not in:\n{help}");
    }
}

#[tokio::test]
async fn simulate_and_chaos_run_redis_ha_chaos_beside_then_on_path() {
    let here = tempfile::tempdir().unwrap();
    let exe = lone_redis_ha(here.path());
    let elsewhere = tempfile::tempdir().unwrap();

    // On PATH, then beside the executable, which wins over PATH: the arguments untouched,
    // after the global options as the binary's own.
    let cases: [(&Path, &[&str], &[&str]); 2] = [
        (
            elsewhere.path(),
            &["--group", "g1", "simulate", "--kills", "3", "--help"],
            &[
                "--group",
                "g1",
                "--timeout-ms",
                "3000",
                "simulate",
                "--kills",
                "3",
                "--help",
            ],
        ),
        (
            here.path(),
            &["--timeout-ms", "250", "chaos", "stop", "2", "--json"],
            &[
                "--group",
                "redis-cluster",
                "--timeout-ms",
                "250",
                "chaos",
                "stop",
                "2",
                "--json",
            ],
        ),
    ];
    for (ran, args, expected) in cases {
        fake_chaos_binary(ran);
        let got = forwarded(&exe, elsewhere.path(), ran, args).await;
        assert_eq!(
            got[..2],
            ["--coordinator", "http://127.0.0.1:50051"],
            "{args:?}"
        );
        assert_eq!(got[2..], *expected, "{args:?}");
    }
}

/// Runs `exe ARGS` with `path` as PATH; expects the stand-in in `ran` to have run (exit 7)
/// and returns the arguments it got.
async fn forwarded(exe: &Path, path: &Path, ran: &Path, args: &[&str]) -> Vec<String> {
    let out = run_at(exe, path.as_os_str(), args).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    lines(&ran.join("args.txt"))
}

#[tokio::test]
async fn a_missing_redis_ha_chaos_is_exit_2_naming_it() {
    let here = tempfile::tempdir().unwrap();
    let exe = lone_redis_ha(here.path());
    for cmd in ["simulate", "chaos"] {
        let out = run_at(&exe, OsStr::new("/nonexistent"), &[cmd, "--help"]).await;
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "redis-ha: `redis-ha {cmd}` runs the redis-ha-chaos binary, which is neither next \
                 to this executable ({}) nor on PATH (it ships in the sidecars image with \
                 redis-ha; from a checkout: cargo build -p redis-ha-chaos)\n",
                here.path().display()
            )
        );
    }
}

/// The real `redis-ha-chaos`, built next to `redis-ha` by the harness.
fn real_chaos_binary() {
    let dir = redis_ha_tests::binaries::binary_dir();
    assert_eq!(
        Path::new(BIN).parent(),
        Some(dir),
        "redis-ha and redis-ha-chaos must share a directory"
    );
}

#[tokio::test]
async fn simulate_and_chaos_speak_as_redis_ha() {
    real_chaos_binary();
    let out = run(&["simulate", "--help"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: redis-ha simulate [OPTIONS]") && help.contains("--kills <K>"),
        "{help}"
    );
    let out = run(&["help", "simulate"]).await;
    assert_eq!(
        text(&out.stdout),
        help,
        "`help simulate` is `simulate --help`"
    );
    let out = run(&["chaos", "--help"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: redis-ha chaos [OPTIONS] <ACTION> <NODE>")
            && help.contains("Exit codes: 0 done"),
        "{help}"
    );

    // A usage error is exit 2, as clap gives it.
    let out = run(&["chaos", "frobnicate", "1"]).await;
    assert_exit_saying(&out, 2, "invalid value 'frobnicate'");

    // The proxy cannot be reached: exit 2 and redis-ha's message.
    let block = PortBlock::allocate(1);
    let proxy = format!("127.0.0.1:{}", block.port(0));
    let out = run(&["simulate", "--proxy", &proxy, "--messages", "1"]).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("redis-ha: simulate: cannot reach the proxy: ")
            && err.ends_with("(is the cluster up? set --proxy)\n"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Ctrl-C reaches the simulation, which prints its report and exits 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_simulation_reports_and_exits_130() {
    real_chaos_binary();
    let cluster = Cluster::start(cluster_options()).await;
    let proxy = cluster.node(1).addr();
    let key = "redis-ha:simulate:interrupted";
    let child = command(&[
        "simulate",
        "--proxy",
        &proxy,
        "--mode",
        "fast",
        "--subscribers",
        "1",
        "--rate",
        "200",
        "--key",
        key,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id().unwrap().to_string();
    // Running for real: its pushes reach Redis.
    wait_until("the simulation's first push", READY_TIMEOUT, || async {
        let stats: String = cluster
            .node(1)
            .query(redis::cmd("INFO").arg("commandstats"))
            .await
            .map_err(|e| e.to_string())?;
        if stats.contains("cmdstat_rpush:") {
            Ok(())
        } else {
            Err("no RPUSH yet".to_owned())
        }
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the interrupted simulation did not exit")
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        text(&out.stdout)
            .starts_with("redis-ha simulate: fast mode, 1 publisher and 1 subscriber(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        err.ends_with("redis-ha: simulate: interrupted (the report covers the run until then)\n"),
        "{err}"
    );
}
