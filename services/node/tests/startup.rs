//! Process tests of node start-up: the `redis-ha-node` binary run as the containers run it (the
//! same environment variables), on real `redis-server` / `redis-sentinel` processes started from
//! the files it writes, with the shipped `deploy/stack/config` templates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_node::acl;
use redis_ha_testkit::client::{info, query};

use redis_ha_testkit::{wait_until, ManagedProcess, PortBlock};

const PASSWORD: &str = "node-test-pw";
const GROUP: &str = "node-test";
const WAIT: Duration = Duration::from_secs(60);

/// What one run of the binary did.
struct Run {
    ok: bool,
    stderr: String,
    conf: Option<String>,
}

/// One group: three Redis nodes and three Sentinels on loopback, none started yet.
struct Group {
    ports: PortBlock,
    dir: tempfile::TempDir,
    shared: PathBuf,
    template: PathBuf,
    redis: [Option<ManagedProcess>; 3],
    sentinels: [Option<ManagedProcess>; 3],
    down_after_ms: u64,
}

/// The secret files and their passwords.
fn secret_files() -> Vec<(&'static str, String)> {
    let mut files = vec![
        (acl::ADMIN_SECRET, PASSWORD.to_owned()),
        (acl::SENTINEL_SERVER_SECRET, PASSWORD.to_owned()),
    ];
    files.extend(
        acl::User::ALL
            .into_iter()
            .map(|u| (u.secret_file(), format!("{PASSWORD}-{u}"))),
    );
    files
}

/// A shipped config file, bound to loopback only (the tests send nothing elsewhere).
fn shipped(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/stack/config")
        .join(name);
    let text = std::fs::read_to_string(&src).expect("the shipped config");
    assert!(
        text.contains("\nbind * -::*\n"),
        "{name}: the bind line changed"
    );
    let dst = dir.join(name);
    std::fs::write(&dst, text.replace("\nbind * -::*\n", "\nbind 127.0.0.1\n")).expect("write");
    dst
}

impl Group {
    fn new(down_after_ms: u64) -> Self {
        let ports = PortBlock::allocate(6);
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shipped("redis.conf", dir.path());
        let template = shipped("sentinel.conf", dir.path());
        // Every secret the containers get; the operator's and the Sentinels' are PASSWORD
        // (what the test asks with), each ACL user's its own.
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).expect("mkdir");
        for (name, value) in secret_files() {
            std::fs::write(secrets.join(name), format!("{value}\n")).expect("write");
        }
        for n in 1..=3 {
            for kind in ["redis", "sentinel"] {
                std::fs::create_dir_all(dir.path().join(format!("{kind}-{n}"))).expect("mkdir");
            }
        }
        Self {
            ports,
            dir,
            shared,
            template,
            redis: [None, None, None],
            sentinels: [None, None, None],
            down_after_ms,
        }
    }

    fn redis_port(&self, n: usize) -> u16 {
        self.ports.port(n as u16 - 1)
    }

    fn sentinel_port(&self, n: usize) -> u16 {
        self.ports.port(n as u16 + 2)
    }

    fn data_dir(&self, kind: &str, n: usize) -> PathBuf {
        self.dir.path().join(format!("{kind}-{n}"))
    }

    fn list(&self, port: impl Fn(usize) -> u16) -> String {
        (1..=3)
            .map(|n| format!("127.0.0.1:{}", port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `redis-ha-node <sub>` with the environment the node's container gives it.
    async fn run(&self, sub: &str, n: usize, wait_s: u64) -> Run {
        let kind = if sub == "redis-config" {
            "redis"
        } else {
            "sentinel"
        };
        let port = if kind == "redis" {
            self.redis_port(n)
        } else {
            self.sentinel_port(n)
        };
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_redis-ha-node"))
            .arg(sub)
            .env_clear()
            .env("REDIS_HA_NODE", n.to_string())
            .env("REDIS_HA_PORT", port.to_string())
            .env("REDIS_HA_ANNOUNCE_HOST", "127.0.0.1")
            .env("REDIS_HA_GROUP", GROUP)
            .env(
                "REDIS_HA_INITIAL_MASTER",
                format!("127.0.0.1:{}", self.redis_port(1)),
            )
            .env("REDIS_HA_QUORUM", "2")
            .env("REDIS_HA_SENTINELS", self.list(|n| self.sentinel_port(n)))
            .env("REDIS_HA_PEERS", self.list(|n| self.redis_port(n)))
            .env("REDIS_HA_CONFIG", &self.shared)
            .env("REDIS_HA_TEMPLATE", &self.template)
            .env("REDIS_HA_DATA_DIR", self.data_dir(kind, n))
            .env("REDIS_HA_SECRETS_DIR", self.dir.path().join("secrets"))
            .env("REDIS_HA_SENTINEL_WAIT", wait_s.to_string())
            .env("REDIS_HA_DOWN_AFTER_MS", self.down_after_ms.to_string())
            .env("REDIS_HA_FAILOVER_TIMEOUT_MS", "5000")
            .output()
            .await
            .expect("run redis-ha-node");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let conf = out
            .status
            .success()
            .then(|| std::fs::read_to_string(&stdout).expect("the printed config path"));
        Run {
            ok: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            conf,
        }
    }

    /// Writes the Sentinel's config with the binary and starts `redis-sentinel` on it.
    async fn start_sentinel(&mut self, n: usize) {
        let port = self.sentinel_port(n);
        self.sentinels[n - 1] = Some(self.start("sentinel", n, port, 1).await.1);
    }

    /// Writes the node's config with the binary and starts `redis-server` on it.
    async fn start_redis(&mut self, n: usize, wait_s: u64) -> Run {
        let port = self.redis_port(n);
        let (run, p) = self.start("redis", n, port, wait_s).await;
        self.redis[n - 1] = Some(p);
        run
    }

    /// `redis-ha-node <kind>-config`, then `redis-<kind>` on the file it printed, until it
    /// answers PING on `port`.
    async fn start(&self, kind: &str, n: usize, port: u16, wait_s: u64) -> (Run, ManagedProcess) {
        let run = self.run(&format!("{kind}-config"), n, wait_s).await;
        assert!(run.ok, "{kind}-config {n}: {}", run.stderr);
        let conf = self.data_dir(kind, n).join(format!("{kind}.conf"));
        let program = if kind == "redis" {
            "redis-server"
        } else {
            "redis-sentinel"
        };
        let p = ManagedProcess::spawn(
            &format!("{kind}-{n}"),
            program,
            &[conf.to_string_lossy().into_owned()],
            &self.dir.path().join(format!("{kind}-{n}.log")),
        );
        wait_until(&format!("{kind}-{n} to answer"), WAIT, || async move {
            query::<String>(port, Some(PASSWORD), &redis::cmd("PING"))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        (run, p)
    }

    fn kill_redis(&mut self, n: usize) {
        if let Some(mut p) = self.redis[n - 1].take() {
            p.kill();
        }
    }

    fn kill_sentinel(&mut self, n: usize) {
        if let Some(mut p) = self.sentinels[n - 1].take() {
            p.kill();
        }
    }

    /// The master port Sentinel `n` names.
    async fn sentinel_master(&self, n: usize) -> Result<u16, String> {
        let reply: Vec<String> = query(
            self.sentinel_port(n),
            Some(PASSWORD),
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(GROUP),
        )
        .await
        .map_err(|e| e.to_string())?;
        reply
            .get(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("reply {reply:?}"))
    }

    /// Waits until node `n` replicates from `master` with its link up.
    async fn wait_replica_of(&self, n: usize, master: u16) {
        let port = self.redis_port(n);
        wait_until(
            &format!("redis-{n} to replicate from {master}"),
            WAIT,
            || async move {
                let i = info(port, Some(PASSWORD), "replication")
                    .await
                    .map_err(|e| e.to_string())?;
                let ok = i.get("role").map(String::as_str) == Some("slave")
                    && i.get("master_port") == Some(&master.to_string())
                    && i.get("master_link_status").map(String::as_str) == Some("up");
                ok.then_some(()).ok_or_else(|| format!("{i:?}"))
            },
        )
        .await;
    }

    /// Waits until every Sentinel sees `master` with two replicas and both other Sentinels.
    async fn wait_sentinels_ready(&self, master: u16) {
        for n in 1..=3 {
            if self.sentinels[n - 1].is_none() {
                continue;
            }
            let port = self.sentinel_port(n);
            wait_until(
                &format!("sentinel-{n} to know the group"),
                WAIT,
                || async move {
                    let v: Vec<String> = query(
                        port,
                        Some(PASSWORD),
                        redis::cmd("SENTINEL").arg("MASTER").arg(GROUP),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    let field = |k: &str| {
                        v.chunks(2)
                            .find(|c| c[0] == k)
                            .and_then(|c| c.get(1).cloned())
                            .unwrap_or_default()
                    };
                    let ok = field("port") == master.to_string()
                        && field("num-slaves") == "2"
                        && field("num-other-sentinels") == "2"
                        && field("flags") == "master";
                    ok.then_some(()).ok_or_else(|| format!("{v:?}"))
                },
            )
            .await;
        }
    }

    /// A running group started by the binary, as a fresh deploy would: the Sentinels, then
    /// redis-1 (the initial master), then the two others.
    async fn start_all(&mut self) {
        for n in 1..=3 {
            self.start_sentinel(n).await;
        }
        let r1 = self.start_redis(1, 10).await;
        let conf = r1.conf.as_deref().unwrap_or_default();
        assert!(!conf.contains("\nreplicaof "), "the initial master: {conf}");
        assert!(r1.stderr.contains("starting as master"), "{}", r1.stderr);
        // min-replicas-max-lag follows down-after (the shared file does not set it), with a
        // warning where the rule's guarantee cannot hold.
        let lag = redis_ha_node::durability::min_replicas_max_lag(self.down_after_ms)
            .expect("a down-after the rule serves");
        assert!(
            conf.contains(&format!("\nmin-replicas-max-lag {}\n", lag.max_lag_s)),
            "{conf}"
        );
        assert_eq!(
            r1.stderr.contains("warning: down-after"),
            !lag.guarantee_holds(),
            "{}",
            r1.stderr
        );
        let (_, running): (String, String) = query(
            self.redis_port(1),
            Some(PASSWORD),
            redis::cmd("CONFIG").arg("GET").arg("min-replicas-max-lag"),
        )
        .await
        .expect("CONFIG GET");
        assert_eq!(running, lag.max_lag_s.to_string());
        for n in 2..=3 {
            let r = self.start_redis(n, 10).await;
            let want = format!("\nreplicaof 127.0.0.1 {}\n", self.redis_port(1));
            assert!(
                r.conf.as_deref().unwrap_or_default().contains(&want),
                "{}",
                r.stderr
            );
        }
        for n in 2..=3 {
            self.wait_replica_of(n, self.redis_port(1)).await;
        }
        self.wait_sentinels_ready(self.redis_port(1)).await;
        let _: () = query(
            self.redis_port(1),
            Some(PASSWORD),
            redis::cmd("SET").arg("k").arg("v"),
        )
        .await
        .expect("a write on the master");
    }
}

fn replicaof(conf: &Option<String>) -> Option<u16> {
    conf.as_deref()?
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("replicaof 127.0.0.1 "))
        .and_then(|p| p.trim().parse().ok())
}

#[tokio::test]
async fn a_never_started_cluster_starts_on_its_initial_master() {
    let mut g = Group::new(5000);
    // No Sentinel answers: the initial master of a cluster nobody can vouch for never started
    // refuses (the swarm starts it again later) instead of starting as a master.
    let early = g.run("redis-config", 1, 1).await;
    assert!(!early.ok, "{}", early.stderr);
    assert!(early.stderr.contains("no quorum"), "{}", early.stderr);
    assert!(!g.data_dir("redis", 1).join("redis.conf").exists());
    // Another node without Sentinels follows the initial master.
    let other = g.run("redis-config", 3, 1).await;
    assert_eq!(
        replicaof(&other.conf),
        Some(g.redis_port(1)),
        "{}",
        other.stderr
    );
    // With the Sentinels up (all at epoch 0, no replicas): redis-1 master, the others its replicas.
    g.start_all().await;
    let s1 =
        std::fs::read_to_string(g.data_dir("sentinel", 1).join("sentinel.conf")).expect("read");
    assert!(
        s1.contains(&format!(
            "sentinel monitor {GROUP} 127.0.0.1 {} 2",
            g.redis_port(1)
        )),
        "{s1}"
    );
    assert!(s1.contains(&format!("requirepass \"{PASSWORD}\"")), "{s1}");
}

#[tokio::test]
async fn a_restarted_ex_master_follows_the_master_the_quorum_names() {
    let mut g = Group::new(1000);
    g.start_all().await;
    g.kill_redis(1);
    let old = g.redis_port(1);
    let new = wait_until("a failover away from redis-1", WAIT, || {
        let g = &g;
        async move {
            let ports = [g.sentinel_master(1).await?, g.sentinel_master(2).await?];
            (ports[0] == ports[1] && ports[0] != old)
                .then_some(ports[0])
                .ok_or_else(|| format!("{ports:?}"))
        }
    })
    .await;
    // Its previous config says master, its data is there: the quorum decides.
    let run = g.start_redis(1, 30).await;
    assert_eq!(replicaof(&run.conf), Some(new), "{}", run.stderr);
    assert!(run.stderr.contains("at least the quorum"), "{}", run.stderr);
    g.wait_replica_of(1, new).await;
    let v: Option<String> = query(g.redis_port(1), Some(PASSWORD), redis::cmd("GET").arg("k"))
        .await
        .expect("a read on the replica");
    assert_eq!(v.as_deref(), Some("v"));

    // A Sentinel restarted keeps its id and epochs, and monitors the master it followed.
    let saved =
        std::fs::read_to_string(g.data_dir("sentinel", 2).join("sentinel.conf")).expect("read");
    g.kill_sentinel(2);
    let run = g.run("sentinel-config", 2, 1).await;
    assert!(run.ok, "{}", run.stderr);
    let conf = run.conf.unwrap_or_default();
    assert!(
        conf.contains(&format!("sentinel monitor {GROUP} 127.0.0.1 {new} 2")),
        "{conf}"
    );
    for line in saved
        .lines()
        .filter(|l| l.starts_with("sentinel myid") || l.starts_with("sentinel current-epoch"))
    {
        assert!(conf.contains(line), "{line:?} not carried over:\n{conf}");
    }
    assert!(
        run.stderr.contains("followed before its restart"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn without_a_quorum_a_node_restarts_as_a_replica_never_as_master() {
    let mut g = Group::new(5000);
    g.start_all().await;
    // Two of three Sentinels gone: one answer is no quorum of 2.
    g.kill_sentinel(2);
    g.kill_sentinel(3);
    // A replica restarts: the master its previous config names.
    g.kill_redis(2);
    let run = g.run("redis-config", 2, 2).await;
    assert!(run.stderr.contains("no quorum"), "{}", run.stderr);
    assert_eq!(
        replicaof(&run.conf),
        Some(g.redis_port(1)),
        "{}",
        run.stderr
    );
    // The master itself restarts (its previous config: master; the lone Sentinel names it):
    // never master again without a quorum, but a replica of the peer that answers.
    g.kill_redis(1);
    let run = g.run("redis-config", 1, 2).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        replicaof(&run.conf),
        Some(g.redis_port(3)),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("starting as master"), "{}", run.stderr);
}

#[tokio::test]
async fn an_empty_data_dir_never_starts_as_master_once_the_group_held_data() {
    // A long down-after: the Sentinels keep naming the killed master while the test runs.
    let mut g = Group::new(60_000);
    g.start_all().await;
    // A failover: the group is past config epoch 0.
    let _: () = query(
        g.sentinel_port(1),
        Some(PASSWORD),
        redis::cmd("SENTINEL").arg("FAILOVER").arg(GROUP),
    )
    .await
    .expect("SENTINEL FAILOVER");
    let old = g.redis_port(1);
    let new = wait_until("the forced failover", WAIT, || {
        let g = &g;
        async move {
            let ports = [
                g.sentinel_master(1).await?,
                g.sentinel_master(2).await?,
                g.sentinel_master(3).await?,
            ];
            (ports.iter().all(|p| *p == ports[0]) && ports[0] != old)
                .then_some(ports[0])
                .ok_or_else(|| format!("{ports:?}"))
        }
    })
    .await;
    let n = (1..=3).find(|n| g.redis_port(*n) == new).expect("a node");
    // The master's task is rescheduled on a fresh volume: no data, no previous config.
    g.kill_redis(n);
    let data = g.data_dir("redis", n);
    std::fs::remove_dir_all(&data).expect("wipe");
    std::fs::create_dir(&data).expect("mkdir");
    assert_eq!(
        g.sentinel_master(1).await,
        Ok(new),
        "the Sentinels still name it"
    );
    let run = g.run("redis-config", n, 10).await;
    assert!(run.ok, "{}", run.stderr);
    let of = replicaof(&run.conf).unwrap_or_else(|| panic!("not a replica: {}", run.stderr));
    assert_ne!(of, new);
    assert!(
        run.stderr.contains("data directory is empty"),
        "{}",
        run.stderr
    );
}

/// An entrypoint whose secret file is missing refuses to start, naming the file: a node never
/// runs without its ACL users, a Sentinel never without its password.
#[tokio::test]
async fn a_missing_secret_file_is_refused_naming_it() {
    let g = Group::new(5000);
    for (sub, name) in [
        ("redis-config", "redis_replication_password"),
        ("redis-config", acl::ADMIN_SECRET),
        ("sentinel-config", acl::SENTINEL_SERVER_SECRET),
        ("sentinel-config", "redis_sentinel_password"),
    ] {
        let path = g.dir.path().join("secrets").join(name);
        let kept = std::fs::read_to_string(&path).expect("read");
        std::fs::remove_file(&path).expect("rm");
        let run = g.run(sub, 1, 1).await;
        assert!(!run.ok, "{sub} ran without {name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&path.display().to_string()) && run.stderr.contains("missing"),
            "{sub} without {name}: {}",
            run.stderr
        );
        std::fs::write(&path, kept).expect("write");
    }
    assert!(!g.data_dir("redis", 1).join("redis.conf").exists());
    assert!(!g.data_dir("sentinel", 1).join("sentinel.conf").exists());
}
