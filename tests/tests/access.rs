//! Redis and Sentinel access (README "Redis and Sentinel access"), on real processes started
//! from the shipped configuration with the ACL users on (`redis_ha_node::acl`):
//!
//! - each ACL user may do its part and nothing of the others' (the application no CONFIG,
//!   REPLICAOF, SHUTDOWN, DEBUG, FAILOVER, CLIENT KILL, MONITOR, ACL, nor the Sentinels'
//!   channels); replication and the Sentinels work with their own users; the Sentinels want
//!   their own password;
//! - a password rotation (`redis-ha-node rotate-secret`: add, switch, remove) of the
//!   application user, the replication user and the Sentinels' user, with a client writing through HAProxy all
//!   along on a new connection per write (each one logs in again): no write fails, and the
//!   replicas stay linked and re-link with the new password.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_ha_node::acl::User;
use redis_ha_testkit::client::{self, query_as, QueryError};
use redis_ha_testkit::conf::{sentinel_password, user_password};
use redis_ha_tests::binaries::{binary, NODE_BIN};
use redis_ha_tests::haproxy::ReloaderTask;
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, READY_TIMEOUT};
use tokio_util::sync::CancellationToken;

const BASE: &str = "acl-test-pw";

fn opts() -> ClusterOptions {
    ClusterOptions {
        password: Some(BASE.into()),
        ..ClusterOptions::default()
    }
}

fn cmd(words: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c
}

/// `words` as `user` on `port`: Ok when Redis ran it, the error code otherwise.
async fn as_user(port: u16, user: User, words: &[&str]) -> Result<redis::Value, String> {
    let pw = user_password(BASE, user);
    query_as::<redis::Value>(port, user.name(), &pw, &cmd(words))
        .await
        .map_err(|e: QueryError| e.code().map_or_else(|| e.to_string(), str::to_owned))
}

async fn refused(port: u16, user: User, words: &[&str]) {
    match as_user(port, user, words).await {
        // DEBUG is also off for everyone (Redis 7's enable-debug-command no), which Redis
        // checks first.
        Err(code) if words[0] == "DEBUG" => assert!(code == "NOPERM" || code == "ERR", "{code}"),
        Err(code) => assert_eq!(code, "NOPERM", "{user} {words:?}"),
        Ok(v) => panic!("{user} may run {words:?}: {v:?}"),
    }
}

async fn allowed(port: u16, user: User, words: &[&str]) {
    if let Err(e) = as_user(port, user, words).await {
        panic!("{user} may not run {words:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_acl_user_may_do_its_part_and_nothing_else() {
    let cluster = Cluster::start(opts()).await;
    // Started at all: the replicas synced as the replication user, the Sentinels see the
    // master, both replicas and each other as the sentinel user and with their own password.
    let master = cluster.node(1).port();
    let replica = cluster.node(2).port();

    for user in [User::App, User::Simulator] {
        allowed(master, user, &["SET", "k", "v"]).await;
        allowed(master, user, &["GET", "k"]).await;
        allowed(master, user, &["RPUSH", "l", "1"]).await;
        allowed(master, user, &["LPOP", "l"]).await;
        allowed(master, user, &["WAIT", "1", "100"]).await;
        allowed(master, user, &["PUBLISH", "news", "x"]).await;
        for forbidden in [
            &["CONFIG", "GET", "maxmemory"][..],
            &["CONFIG", "SET", "maxmemory", "1"],
            &["REPLICAOF", "127.0.0.1", "1"],
            &["SLAVEOF", "NO", "ONE"],
            &["SHUTDOWN", "NOSAVE"],
            &["DEBUG", "SLEEP", "0"],
            &["FAILOVER"],
            &["CLIENT", "KILL", "TYPE", "normal"],
            &["MONITOR"],
            &["ACL", "LIST"],
            &["ACL", "SETUSER", "app", "+@all"],
            &["PUBLISH", "__sentinel__:hello", "x"],
            &["SUBSCRIBE", "__sentinel__:hello"],
            &["FLUSHALL"],
        ] {
            refused(master, user, forbidden).await;
        }
    }
    // The simulator reads the replication state; the application does not need it.
    allowed(master, User::Simulator, &["INFO", "replication"]).await;

    allowed(master, User::Agent, &["PING"]).await;
    allowed(master, User::Agent, &["ROLE"]).await;
    allowed(master, User::Agent, &["INFO", "replication"]).await;
    // Fencing and following re-point a node: here a replica at the master it follows already.
    let master_port = master.to_string();
    allowed(
        replica,
        User::Agent,
        &["REPLICAOF", "127.0.0.1", master_port.as_str()],
    )
    .await;
    for forbidden in [
        &["SET", "k", "v"][..],
        &["GET", "k"],
        &["CONFIG", "GET", "port"],
        &["SHUTDOWN", "NOSAVE"],
        &["PUBLISH", "__sentinel__:hello", "x"],
    ] {
        refused(master, User::Agent, forbidden).await;
    }

    // The switchover's user: pause and resume writes, offsets and roles, a replica's
    // priority, REPLICAOF; no key, no channel, no other admin command.
    for words in [
        &["PING"][..],
        &["ROLE"],
        &["INFO", "replication"],
        &["CLIENT", "PAUSE", "1", "WRITE"],
        &["CLIENT", "UNPAUSE"],
    ] {
        allowed(master, User::Coordinator, words).await;
    }
    allowed(
        replica,
        User::Coordinator,
        &["CONFIG", "SET", "replica-priority", "100"],
    )
    .await;
    allowed(
        replica,
        User::Coordinator,
        &["REPLICAOF", "127.0.0.1", master_port.as_str()],
    )
    .await;
    for forbidden in [
        &["SET", "k", "v"][..],
        &["GET", "k"],
        &["CONFIG", "GET", "requirepass"],
        &["ACL", "LIST"],
        &["SHUTDOWN", "NOSAVE"],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["FLUSHALL"],
        &["PUBLISH", "__sentinel__:hello", "x"],
        &["DEBUG", "SLEEP", "0"],
    ] {
        refused(master, User::Coordinator, forbidden).await;
    }

    allowed(master, User::Replication, &["PING"]).await;
    for forbidden in [&["GET", "k"][..], &["SET", "k", "v"], &["INFO"], &["ROLE"]] {
        refused(master, User::Replication, forbidden).await;
    }

    allowed(master, User::Sentinel, &["INFO"]).await;
    allowed(
        master,
        User::Sentinel,
        &["PUBLISH", "__sentinel__:hello", "x"],
    )
    .await;
    for forbidden in [&["GET", "k"][..], &["SET", "k", "v"], &["FLUSHALL"]] {
        refused(master, User::Sentinel, forbidden).await;
    }

    // The operator's default user may do everything; without a login nothing.
    let admin: String = client::query(master, Some(BASE), &cmd(&["CONFIG", "GET", "maxmemory"]))
        .await
        .map(|v: Vec<String>| v.join(" "))
        .unwrap_or_else(|e| panic!("admin CONFIG GET: {e}"));
    assert!(admin.starts_with("maxmemory"), "{admin}");
    let anon = client::query::<String>(master, None, &cmd(&["GET", "k"])).await;
    assert_eq!(
        anon.err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("NOAUTH")
    );

    // The Sentinels want their own password: not the operator's, not none.
    let s = cluster.sentinel_port(1);
    let master_cmd = cmd(&["SENTINEL", "MASTER", cluster.group()]);
    client::query::<redis::Value>(s, Some(&sentinel_password(BASE)), &master_cmd)
        .await
        .unwrap_or_else(|e| panic!("SENTINEL MASTER with the Sentinel password: {e}"));
    for wrong in [None, Some(BASE)] {
        assert!(
            client::query::<redis::Value>(s, wrong, &master_cmd)
                .await
                .is_err(),
            "a Sentinel answered with {wrong:?}"
        );
    }
}

/// Writes `SET <prefix>:<n>` through the proxy on a new connection each time, as `app` with
/// whatever password `password` holds at that moment; records each failure.
struct AppWriter {
    stop: CancellationToken,
    acked: Arc<std::sync::atomic::AtomicU64>,
    /// The failed writes.
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl AppWriter {
    fn start(port: u16, password: Arc<Mutex<String>>, prefix: &str) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let prefix = prefix.to_owned();
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut n = 0u64;
            while !token.is_cancelled() {
                n += 1;
                let pw = password
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let set = cmd(&["SET", &format!("{prefix}:{n}"), "x"]);
                match query_as::<String>(port, User::App.name(), &pw, &set).await {
                    Ok(_) => {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => failed.push(format!("write {n}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failed
        });
        Self { stop, acked, task }
    }

    /// Writes acknowledged so far.
    fn acked(&self) -> u64 {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` writes in all were acknowledged (generous timeout: a busy machine
    /// writes slowly), so that a finished writer has done something worth checking.
    async fn wait_acked(&self, n: u64) {
        wait_until(
            "the writer's acknowledged writes",
            READY_TIMEOUT,
            || async move {
                match self.acked() {
                    a if a >= n => Ok(()),
                    a => Err(format!("{a} of {n}")),
                }
            },
        )
        .await;
    }

    /// Stops the writer: (acknowledged writes, failed writes).
    async fn finish(self) -> (u64, Vec<String>) {
        let Self { stop, acked, task } = self;
        stop.cancel();
        let failed = task
            .await
            .unwrap_or_else(|e| panic!("the writer failed: {e}"));
        (acked.load(std::sync::atomic::Ordering::Relaxed), failed)
    }
}

/// `redis-ha-node rotate-secret` for this cluster; panics on a failure.
async fn rotate(cluster: &Cluster, user: User, phase: &str, password_file: &Path) {
    let list = |port: &dyn Fn(usize) -> u16| {
        (1..=3)
            .map(|i| format!("127.0.0.1:{}", port(i)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let redis = list(&|i| cluster.node(i).port());
    let sentinels = list(&|i| cluster.sentinel_port(i));
    let admin = cluster.password_file().expect("the admin password file");
    let sentinel = cluster
        .sentinel_password_file()
        .expect("the Sentinel password file");
    let out = tokio::process::Command::new(binary(NODE_BIN))
        .args(["rotate-secret", "--user", user.name(), "--phase", phase])
        .arg("--password-file")
        .arg(password_file)
        .args(["--redis", &redis, "--sentinels", &sentinels, "--group"])
        .arg(cluster.group())
        .arg("--admin-password-file")
        .arg(&admin)
        .arg("--sentinel-password-file")
        .arg(&sentinel)
        .env_clear()
        .output()
        .await
        .unwrap_or_else(|e| panic!("{NODE_BIN}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "rotate-secret {user} {phase}: {stderr}"
    );
    let new_pw = std::fs::read_to_string(password_file).expect("read");
    assert!(
        !stderr.contains(new_pw.trim()),
        "rotate-secret logged the password: {stderr}"
    );
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).expect("write");
    p
}

/// The client ids of the replicas' links to the master on `master`.
async fn replica_link_ids(master: u16) -> Vec<String> {
    let list: String = client::query(
        master,
        Some(BASE),
        &cmd(&["CLIENT", "LIST", "TYPE", "replica"]),
    )
    .await
    .unwrap_or_else(|e| panic!("CLIENT LIST TYPE replica: {e}"));
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// Every replica linked to the master on `master`.
async fn replicas_linked(cluster: &Cluster, master: u16) {
    wait_until("both replicas linked", READY_TIMEOUT, || async move {
        let info = client::info(master, Some(BASE), "replication")
            .await
            .map_err(|e| e.to_string())?;
        // Online, not only connected: a replica still syncing does not count for writes.
        let online = (0..2)
            .filter(|i| {
                info.get(&format!("slave{i}"))
                    .is_some_and(|v| v.contains("state=online"))
            })
            .count();
        match info.get("connected_slaves").map(String::as_str) {
            Some("2") if online == 2 => Ok(()),
            other => Err(format!("connected_slaves {other:?}, {online} online")),
        }
    })
    .await;
    for i in 2..=3 {
        let port = cluster.node(i).port();
        wait_until(&format!("node {i} linked"), READY_TIMEOUT, || async move {
            let info = client::info(port, Some(BASE), "replication")
                .await
                .map_err(|e| e.to_string())?;
            match info.get("master_link_status").map(String::as_str) {
                Some("up") => Ok(()),
                other => Err(format!("master_link_status {other:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_app_replication_and_sentinel_passwords_fails_no_write() {
    // Sentinel's default down-after, so min-replicas-max-lag is 3 s (it follows down-after): at
    // 1000 it is 1 s, and one replica acknowledgement late on a loaded host made a write
    // NOREPLICAS, which says nothing about the rotation.
    let mut cluster = Cluster::start(ClusterOptions {
        down_after_ms: 5000,
        ..opts()
    })
    .await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    let proxy = haproxy.frontend_port();
    let old_app = user_password(BASE, User::App);
    let password = Arc::new(Mutex::new(old_app.clone()));
    let pw = password.clone();
    wait_until("a write through HAProxy", READY_TIMEOUT, || {
        let pw = pw.lock().map(|p| p.clone()).unwrap_or_default();
        async move {
            query_as::<String>(proxy, User::App.name(), &pw, &cmd(&["SET", "ready", "1"]))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let master = cluster.node(1).port();
    let dir = cluster.dir().to_owned();
    let writer = AppWriter::start(proxy, password.clone(), "rotation");

    // ---- the application password: add, the client switches, remove.
    let new_app = format!("{old_app}-rotated");
    let new_file = write_secret(&dir, "new_app_password", &new_app);
    let old_file = write_secret(&dir, "old_app_password", &old_app);
    rotate(&cluster, User::App, "add", &new_file).await;
    for i in 1..=3 {
        // Both passwords work on every node (any may become master).
        for p in [&old_app, &new_app] {
            query_as::<String>(cluster.node(i).port(), "app", p, &cmd(&["PING"]))
                .await
                .unwrap_or_else(|e| panic!("node {i} after add: {e}"));
        }
    }
    rotate(&cluster, User::App, "switch", &new_file).await;
    *password
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = new_app.clone();
    rotate(&cluster, User::App, "remove", &old_file).await;
    for i in 1..=3 {
        match query_as::<String>(cluster.node(i).port(), "app", &old_app, &cmd(&["PING"])).await {
            Ok(_) => panic!("node {i} still takes the old application password"),
            // The client reports the refused AUTH (WRONGPASS) as an authentication failure.
            Err(e) => assert!(
                e.to_string().to_lowercase().contains("auth"),
                "node {i}, the old password: {e}"
            ),
        }
    }

    // ---- the replication password: add, every node's masterauth, remove; the links re-made
    // after it (a replica killed off its master reconnects) use the new one.
    let old_repl = user_password(BASE, User::Replication);
    let new_repl = format!("{old_repl}-rotated");
    let new_file = write_secret(&dir, "new_repl_password", &new_repl);
    let old_file = write_secret(&dir, "old_repl_password", &old_repl);
    rotate(&cluster, User::Replication, "add", &new_file).await;
    rotate(&cluster, User::Replication, "switch", &new_file).await;
    rotate(&cluster, User::Replication, "remove", &old_file).await;
    replicas_linked(&cluster, master).await;
    // One link at a time: with both cut at once the master has no replica for the instant
    // before they reconnect, and a write in it is refused (NOREPLICAS), rotation or not.
    let ids = replica_link_ids(master).await;
    assert_eq!(ids.len(), 2, "two replica links: {ids:?}");
    for id in &ids {
        let _: redis::Value =
            client::query(master, Some(BASE), &cmd(&["CLIENT", "KILL", "ID", id]))
                .await
                .unwrap_or_else(|e| panic!("CLIENT KILL ID {id}: {e}"));
        replicas_linked(&cluster, master).await;
    }
    let relinked = replica_link_ids(master).await;
    assert!(
        !ids.iter().any(|id| relinked.contains(id)),
        "the replica links were not made again: {ids:?} then {relinked:?}"
    );

    // ---- the Sentinels' login to the nodes: add, every Sentinel's auth-pass, remove; a
    // restarted Sentinel (its rewritten config) logs in with the new one.
    let old_sent = user_password(BASE, User::Sentinel);
    let new_sent = format!("{old_sent}-rotated");
    let new_file = write_secret(&dir, "new_sentinel_user_password", &new_sent);
    let old_file = write_secret(&dir, "old_sentinel_user_password", &old_sent);
    rotate(&cluster, User::Sentinel, "add", &new_file).await;
    rotate(&cluster, User::Sentinel, "switch", &new_file).await;
    rotate(&cluster, User::Sentinel, "remove", &old_file).await;
    let _: String = client::query(master, Some(BASE), &cmd(&["ACL", "LOG", "RESET"]))
        .await
        .unwrap_or_else(|e| panic!("ACL LOG RESET: {e}"));
    cluster.sentinel_mut(1).restart().await;
    cluster.wait_sentinels_ready().await;
    // Every Sentinel (the restarted one too) holds its two links to the master as the
    // sentinel user, and none was refused.
    wait_until(
        "three Sentinels' links to the master as the sentinel user",
        READY_TIMEOUT,
        || async move {
            let clients: String = client::query(master, Some(BASE), &cmd(&["CLIENT", "LIST"]))
                .await
                .map_err(|e| e.to_string())?;
            let links = clients
                .lines()
                .filter(|l| l.contains(" user=sentinel "))
                .count();
            if links == 6 {
                Ok(())
            } else {
                Err(format!("{links} links as sentinel"))
            }
        },
    )
    .await;
    let log: Vec<std::collections::HashMap<String, String>> =
        client::query(master, Some(BASE), &cmd(&["ACL", "LOG"]))
            .await
            .unwrap_or_else(|e| panic!("ACL LOG: {e}"));
    assert!(
        !log.iter()
            .any(|e| e.get("username").map(String::as_str) == Some("sentinel")),
        "a Sentinel was refused: {log:?}"
    );

    // Writes went through during the rotation (not a count: a busy machine writes slowly),
    // and 20 in all, with the rotated passwords, before the writer stops.
    let during = writer.acked();
    writer.wait_acked(20).await;
    let (acked, failed) = writer.finish().await;
    assert!(
        failed.is_empty(),
        "{} writes failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        during > 0 && acked >= 20,
        "{during} writes went through during the rotation, {acked} in all"
    );
    // Every node logs in its Sentinels with the sentinel user still: the group is whole.
    cluster.wait_sentinels_ready().await;
    reloader.stop().await;
}
