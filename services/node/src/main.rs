//! `redis-ha-node`: run by the Redis and Sentinel containers before their server starts.
//!
//!   redis-ha-node redis-config           decide the Redis node's role, write its config
//!   redis-ha-node sentinel-config        rebuild the Sentinel's config
//!   redis-ha-node min-replicas-max-lag   print the lag for a down-after (deploy/up.sh --local)
//!
//! The first two take the entrypoints' `REDIS_HA_*` environment, write the config file (mode
//! 600, the only place the password goes), log one line saying why on stderr, and print the
//! file's path on stdout for the entrypoint to `exec` the server on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use redis_ha_common::{HostPort, Secret};
use redis_ha_node::durability::{min_replicas_max_lag, MaxLag};
use redis_ha_node::role::{decide_redis_role, settled, RoleInput, SentinelAnswer};
use redis_ha_node::{acl, files, probe, redis_conf, sentinel_conf, valid_group};
use redis_ha_sentinel::{named_master, same_node};
use tokio::time::Instant;

/// How long one Sentinel or peer has to answer one question.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two rounds of questions while no quorum has answered.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

// The defaults of the stack (deploy/stack/redis-ha.yml).
const SENTINELS: &str = "sentinel-1:19001 sentinel-2:19002 sentinel-3:19003";
const SECRETS_DIR: &str = "/run/secrets";
const SHARED_CONFIG: &str = "/etc/redis-ha/redis.conf";
const PEERS: &str = "redis-1:9001 redis-2:9002 redis-3:9003";
const TEMPLATE: &str = "/etc/redis-ha/sentinel.conf";

#[derive(Parser)]
#[command(
    name = "redis-ha-node",
    version,
    about = "redis-ha node start-up: decides and writes the Redis / Sentinel config"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide the Redis node's role (ask the Sentinels and the peers) and write its config.
    RedisConfig(RedisArgs),
    /// Rebuild the Sentinel's config from the template and its saved state.
    SentinelConfig(SentinelArgs),
    /// Print the `min-replicas-max-lag` (seconds) for a Sentinel down-after; on stderr a
    /// warning when a master cut off from its replicas could still acknowledge writes after
    /// another node is promoted. Refuses a down-after the rule cannot serve.
    MinReplicasMaxLag(DownAfter),
    /// One phase of rotating a Redis ACL user's password on every node and Sentinel
    /// (add the new one, switch our own clients of it, remove the old one; see
    /// `redis_ha_node::rotate`). Passwords come from files only.
    RotateSecret(RotateArgs),
    /// Whether this kernel can encrypt Docker's overlay networks: reads the kernel
    /// configuration on stdin (`zcat /proc/config.gz`); prints the answer, exits 0 for yes,
    /// 3 for no or unknown.
    OverlayEncryption,
    /// Print the password lines of a Redis node's (the ACL users) or a Sentinel's config from
    /// the secret files, for `deploy/up.sh --local`, which writes them into its mode-600
    /// configs (stdout is a pipe to it; never an argument).
    AuthLines(AuthLinesArgs),
    /// Run Redis (the arguments after `--`) as a child; on SIGTERM or SIGINT, while this node
    /// is the master, ask the coordinator to move the master away without losing a write
    /// (`Switchover` away from this node) before passing the signal on. Exits as Redis did.
    RedisRun(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// This node's id (its agent's `node_id`); default `node-$REDIS_HA_NODE`.
    #[arg(long, env = "REDIS_HA_NODE_ID")]
    node_id: Option<String>,
    /// The node's number (the stack's REDIS_HA_NODE).
    #[arg(long, env = "REDIS_HA_NODE", hide = true)]
    node: Option<String>,
    /// The local Redis port (asked `ROLE` on 127.0.0.1); default 9000+N.
    #[arg(long, env = "REDIS_HA_PORT")]
    port: Option<u16>,
    #[arg(long, env = "REDIS_HA_GROUP", default_value = "redis-cluster")]
    group: String,
    /// The coordinator's gRPC URL.
    #[arg(
        long,
        env = "REDIS_HA_COORDINATOR",
        default_value = "https://coordinator:50051"
    )]
    coordinator: String,
    /// The cluster CA and this node's agent certificate and key (agent.<node id>: it may
    /// move the master away from its own node only).
    #[arg(long, env = "REDIS_HA_TLS_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[arg(long, env = "REDIS_HA_TLS_CERT_FILE")]
    cert_file: Option<PathBuf>,
    #[arg(long, env = "REDIS_HA_TLS_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Plaintext gRPC (a coordinator with tls.insecure = true).
    #[arg(long, env = "REDIS_HA_TLS_INSECURE")]
    insecure: bool,
    /// Where `redis_agent_password` is (the local `ROLE` is asked as the `agent` user).
    #[arg(long, env = "REDIS_HA_SECRETS_DIR", default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
    /// The longest the stop waits for the switchover (keep it below the stop grace period).
    #[arg(long, env = "REDIS_HA_HANDOVER_TIMEOUT_MS", default_value_t = 40_000)]
    handover_timeout_ms: u64,
    /// The switchover's --max-pause.
    #[arg(long, env = "REDIS_HA_HANDOVER_MAX_PAUSE_MS", default_value_t = 1000)]
    max_pause_ms: u64,
    /// The server and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

#[derive(Args)]
struct AuthLinesArgs {
    /// redis or sentinel.
    #[arg(long)]
    kind: String,
    #[arg(long, default_value = "redis-cluster")]
    group: String,
    #[arg(long, value_name = "DIR")]
    secrets_dir: PathBuf,
}

fn auth_lines(a: &AuthLinesArgs) -> anyhow::Result<()> {
    if !valid_group(&a.group) {
        bail!("--group must be letters, digits, . _ -, got {:?}", a.group);
    }
    let secret = |name: &str| files::read_secret(&a.secrets_dir.join(name));
    let text = match a.kind.as_str() {
        "redis" => {
            let mut users = Vec::new();
            for user in acl::User::ALL {
                users.push(acl::UserPasswords {
                    user,
                    passwords: vec![secret(user.secret_file())?],
                });
            }
            acl::render(&acl::Credentials {
                admin: secret(acl::ADMIN_SECRET)?,
                users,
            })?
        }
        "sentinel" => acl::render_sentinel(
            &a.group,
            &secret(acl::SENTINEL_SERVER_SECRET)?,
            &secret(acl::User::Sentinel.secret_file())?,
        ),
        other => bail!("--kind must be redis or sentinel, got {other:?}"),
    };
    print!("{text}");
    Ok(())
}

#[derive(Args)]
struct RotateArgs {
    /// The ACL user: app, replication, sentinel, agent, simulator.
    #[arg(long)]
    user: String,
    /// add, switch or remove.
    #[arg(long)]
    phase: redis_ha_node::rotate::Phase,
    /// The new password (add, switch) or the old one (remove).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// Every Redis node (host:port, comma or space separated).
    #[arg(long, env = "REDIS_HA_PEERS", default_value = PEERS)]
    redis: String,
    /// Every Sentinel.
    #[arg(long, env = "REDIS_HA_SENTINELS", default_value = SENTINELS)]
    sentinels: String,
    #[arg(long, env = "REDIS_HA_GROUP", default_value = "redis-cluster")]
    group: String,
    /// The operator's (`default` user's) Redis password.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/redis_admin_password"
    )]
    admin_password_file: PathBuf,
    /// The Sentinels' password.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/sentinel_password"
    )]
    sentinel_password_file: PathBuf,
}

/// Carries out one phase on every instance; fails naming each instance that refused.
async fn rotate_secret(a: RotateArgs) -> anyhow::Result<()> {
    use redis_ha_common::redis_client::RedisLink;
    use redis_ha_node::rotate::{plan, Target};
    let user = acl::User::from_name(&a.user).with_context(|| {
        format!(
            "--user {:?}: one of app, replication, sentinel, agent, simulator",
            a.user
        )
    })?;
    if !valid_group(&a.group) {
        bail!("--group must be letters, digits, . _ -, got {:?}", a.group);
    }
    let password = files::read_secret(&a.password_file)?;
    let redis = probe::parse_addr_list(&a.redis).context("--redis")?;
    let sentinels = probe::parse_addr_list(&a.sentinels).context("--sentinels")?;
    let steps = plan(user, a.phase, &a.group);
    if steps.is_empty() {
        log(&format!(
            "switch {user}: nothing for us to do; point its clients at the new password file"
        ));
        return Ok(());
    }
    let admin = files::read_secret(&a.admin_password_file)?;
    let sentinel_pw = if steps.iter().any(|s| s.target == Target::Sentinel) {
        Some(files::read_secret(&a.sentinel_password_file)?)
    } else {
        None
    };
    let mut failed = Vec::new();
    for step in &steps {
        let (peer, addrs, pw) = match step.target {
            Target::Redis => ("redis", &redis, Some(&admin)),
            Target::Sentinel => ("sentinel", &sentinels, sentinel_pw.as_ref()),
        };
        for addr in addrs {
            let label = step.label();
            let result = async {
                let mut link = RedisLink::new(peer, addr.clone(), pw, ASK_TIMEOUT)?;
                link.query(&step.command(&password), &label).await
            }
            .await;
            match result {
                Ok(_) => log(&format!("{addr}: {label}: ok")),
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Sentinel's down-after: the Sentinels use it, and a Redis node's `min-replicas-max-lag`
/// follows it (`redis_ha_node::durability`).
#[derive(Args)]
struct DownAfter {
    #[arg(long, env = "REDIS_HA_DOWN_AFTER_MS", default_value_t = 5000)]
    down_after_ms: u64,
}

impl DownAfter {
    /// The rule's answer; its warning, if any, goes to the log.
    fn max_lag(&self) -> anyhow::Result<MaxLag> {
        let m = min_replicas_max_lag(self.down_after_ms)
            .context("--down-after-ms (REDIS_HA_DOWN_AFTER_MS)")?;
        if let Some(w) = m.warning() {
            log(&format!("warning: {w}"));
        }
        Ok(m)
    }
}

/// The settings both share.
#[derive(Args)]
struct Common {
    /// Node number N.
    #[arg(long, env = "REDIS_HA_NODE")]
    node: u16,
    /// Port (default 9000+N for Redis, 19000+N for a Sentinel).
    #[arg(long, env = "REDIS_HA_PORT")]
    port: Option<u16>,
    /// The stable name the others know this node by (default redis-N / sentinel-N).
    #[arg(long, env = "REDIS_HA_ANNOUNCE_HOST")]
    announce_host: Option<String>,
    /// Sentinel master name.
    #[arg(long, env = "REDIS_HA_GROUP", default_value = "redis-cluster")]
    group: String,
    /// The master of a brand-new cluster.
    #[arg(long, env = "REDIS_HA_INITIAL_MASTER", default_value = "redis-1:9001")]
    initial_master: HostPort,
    /// How many distinct Sentinels must name a master.
    #[arg(long, env = "REDIS_HA_QUORUM", default_value_t = 2)]
    quorum: usize,
    /// The group's Sentinels (host:port, comma or space separated).
    #[arg(long, env = "REDIS_HA_SENTINELS", default_value = SENTINELS)]
    sentinels: String,
    /// The data directory (the config file is written there).
    #[arg(long, env = "REDIS_HA_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// The directory of the secret files (Docker secrets), named as in
    /// `redis_ha_node::acl`: a missing one is refused, naming it.
    #[arg(long, env = "REDIS_HA_SECRETS_DIR", default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
    /// Seconds to wait for a quorum: of the Sentinels for a Redis node (default 60), of its
    /// peers for a new Sentinel (default 5).
    #[arg(long, env = "REDIS_HA_SENTINEL_WAIT")]
    sentinel_wait: Option<u64>,
}

#[derive(Args)]
struct RedisArgs {
    #[command(flatten)]
    common: Common,
    /// Shared settings (a Docker config), included by the generated file.
    #[arg(long, env = "REDIS_HA_CONFIG", default_value = SHARED_CONFIG)]
    config: PathBuf,
    /// The group's Redis nodes (host:port), asked for their replication state; this node is
    /// left out.
    #[arg(long, env = "REDIS_HA_PEERS", default_value = PEERS)]
    peers: String,
    #[command(flatten)]
    down_after: DownAfter,
    /// Redis `maxmemory` (bytes, or with a unit: 512mb, 2gb; 0: no bound). The policy is the
    /// shared config's (noeviction: a full node refuses writes instead of dropping data).
    #[arg(long, env = "REDIS_HA_MAXMEMORY", default_value = "256mb")]
    maxmemory: String,
}

#[derive(Args)]
struct SentinelArgs {
    #[command(flatten)]
    common: Common,
    /// The shared template (a Docker config) with @PLACEHOLDERS@.
    #[arg(long, env = "REDIS_HA_TEMPLATE", default_value = TEMPLATE)]
    template: PathBuf,
    #[command(flatten)]
    down_after: DownAfter,
    #[arg(long, env = "REDIS_HA_FAILOVER_TIMEOUT_MS", default_value_t = 10000)]
    failover_timeout_ms: u64,
}

fn log(line: &str) {
    eprintln!("redis-ha-node: {line}");
}

impl Common {
    fn check(&self) -> anyhow::Result<Vec<HostPort>> {
        if !valid_group(&self.group) {
            bail!(
                "REDIS_HA_GROUP must be letters, digits, . _ -, got {:?}",
                self.group
            );
        }
        let sentinels = probe::parse_addr_list(&self.sentinels).context("REDIS_HA_SENTINELS")?;
        if self.quorum == 0 || self.quorum > sentinels.len() {
            bail!(
                "REDIS_HA_QUORUM {} must be between 1 and the {} Sentinels of REDIS_HA_SENTINELS",
                self.quorum,
                sentinels.len()
            );
        }
        Ok(sentinels)
    }

    /// The secret file `name` of the secrets directory; it must exist.
    fn secret(&self, name: &str) -> anyhow::Result<Secret> {
        Ok(files::read_secret(&self.secrets_dir.join(name))?)
    }

    /// The Sentinels' password (every question a start-up asks them).
    fn sentinel_password(&self) -> anyhow::Result<Secret> {
        self.secret(acl::SENTINEL_SERVER_SECRET)
    }

    /// The operator's password and every ACL user's.
    fn credentials(&self) -> anyhow::Result<acl::Credentials> {
        let mut users = Vec::new();
        for user in acl::User::ALL {
            users.push(acl::UserPasswords {
                user,
                passwords: vec![self.secret(user.secret_file())?],
            });
        }
        Ok(acl::Credentials {
            admin: self.secret(acl::ADMIN_SECRET)?,
            users,
        })
    }
}

async fn redis_config(a: RedisArgs) -> anyhow::Result<PathBuf> {
    let c = &a.common;
    let sentinels = c.check()?;
    let max_lag = a.down_after.max_lag()?;
    let port = a.port_or_default();
    let announce = c
        .announce_host
        .clone()
        .unwrap_or(format!("redis-{}", c.node));
    let me = HostPort::new(announce.clone(), port);
    let peers: Vec<HostPort> = probe::parse_addr_list(&a.peers)
        .context("REDIS_HA_PEERS")?
        .into_iter()
        .filter(|p| !same_node(p, &me))
        .collect();
    if redis_conf::memory_size(&a.maxmemory).is_none() {
        bail!(
            "REDIS_HA_MAXMEMORY must be bytes or a size like 512mb or 2gb, got {:?}",
            a.maxmemory
        );
    }
    let shared = files::read(&a.config)?;
    let credentials = c.credentials()?;
    let sentinel_password = c.sentinel_password()?;
    // Peers are asked as the agent user (INFO replication).
    let peer_password = credentials.of(acl::User::Agent)?[0].clone();
    let conf = c.data_dir.join("redis.conf");
    let previous = redis_conf::previous_role(files::read_optional(&conf)?.as_deref());
    let (rdb, aof_dir) = redis_conf::data_file_names(&shared);
    let data_empty =
        redis_conf::data_dir_is_empty(&c.data_dir, &rdb, &aof_dir).with_context(|| {
            format!(
                "cannot look into the data directory {}",
                c.data_dir.display()
            )
        })?;

    let mut input = RoleInput {
        me,
        my_hosts: probe::interface_addresses(),
        initial_master: c.initial_master.clone(),
        quorum: c.quorum,
        sentinels_configured: sentinels.len(),
        answers: Vec::new(),
        previous,
        data_empty,
        peers: Vec::new(),
    };
    let wait_s = c.sentinel_wait.unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(wait_s);
    let errors = loop {
        let ((answers, mut errors), (peer_states, peer_errors)) = tokio::join!(
            probe::ask_sentinels(&sentinels, &c.group, Some(&sentinel_password), ASK_TIMEOUT),
            probe::ask_peers(&peers, Some(&peer_password), ASK_TIMEOUT),
        );
        errors.extend(peer_errors);
        input.answers = answers;
        input.peers = peer_states;
        if settled(&input) || Instant::now() >= deadline {
            break errors;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    };
    if !settled(&input) {
        log(&format!(
            "no quorum of {} within {} s ({})",
            c.quorum,
            wait_s,
            summary(&input.answers, &errors)
        ));
    }
    let role = decide_redis_role(&input)?;
    log(&role.to_string());
    log(&max_lag.to_string());
    let text = redis_conf::render(&redis_conf::RedisConf {
        shared: &a.config,
        data_dir: &c.data_dir,
        port,
        announce_host: &announce,
        credentials: &credentials,
        maxmemory: a.maxmemory.trim(),
        role: &role,
        min_replicas_max_lag: max_lag.max_lag_s,
    })?;
    files::write_atomic(&conf, &text)?;
    Ok(conf)
}

/// The answers and errors of the last round, for the log.
fn summary(answers: &[SentinelAnswer], errors: &[probe::ProbeError]) -> String {
    let mut parts: Vec<String> = answers
        .iter()
        .map(|a| {
            format!(
                "{} names {} at epoch {}",
                a.view.sentinel, a.view.master, a.view.config_epoch
            )
        })
        .collect();
    parts.extend(errors.iter().map(ToString::to_string));
    parts.join("; ")
}

impl RedisArgs {
    fn port_or_default(&self) -> u16 {
        self.common
            .port
            .unwrap_or(9000u16.saturating_add(self.common.node))
    }
}

async fn sentinel_config(a: SentinelArgs) -> anyhow::Result<PathBuf> {
    let c = &a.common;
    let sentinels = c.check()?;
    let port = c.port.unwrap_or(19000u16.saturating_add(c.node));
    let announce = c
        .announce_host
        .clone()
        .unwrap_or(format!("sentinel-{}", c.node));
    let me = HostPort::new(announce.clone(), port);
    let template = files::read(&a.template)?;
    let server = c.sentinel_password()?;
    let redis_user = c.secret(acl::User::Sentinel.secret_file())?;
    let password = Some(server.clone());
    let conf = c.data_dir.join("sentinel.conf");
    let saved = files::read_optional(&conf)?.filter(|s| !s.trim().is_empty());
    let saved_master = saved
        .as_deref()
        .and_then(|s| sentinel_conf::saved_monitor(s, &c.group));

    let peers_named = if saved_master.is_some() {
        None
    } else {
        let peers: Vec<HostPort> = sentinels
            .into_iter()
            .filter(|s| !same_node(s, &me))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(c.sentinel_wait.unwrap_or(5));
        loop {
            let (views, _) =
                redis_ha_sentinel::ask_all(&peers, &c.group, password.as_ref(), ASK_TIMEOUT).await;
            let named = named_master(&views, c.quorum);
            if named.is_some() || Instant::now() >= deadline {
                break named;
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    };
    let (master, reason) =
        sentinel_conf::choose_monitor(saved_master, peers_named, &c.initial_master);
    log(&format!("monitoring {master}: {reason}"));
    let data_dir = c.data_dir.to_string_lossy();
    let values = sentinel_conf::TemplateValues {
        group: &c.group,
        master: &master,
        quorum: c.quorum,
        down_after_ms: a.down_after.down_after_ms,
        failover_timeout_ms: a.failover_timeout_ms,
        port,
        announce_host: &announce,
        data_dir: &data_dir,
    };
    let rendered = sentinel_conf::render_template(&template, &values.pairs())
        .with_context(|| a.template.display().to_string())?;
    let auth = sentinel_conf::SentinelAuth {
        server: &server,
        redis_user: &redis_user,
    };
    let text = sentinel_conf::build(&rendered, &c.group, Some(&auth), saved.as_deref());
    files::write_atomic(&conf, &text)?;
    Ok(conf)
}

/// `redis-run`: Redis as a child, the handover before a stop ([`redis_ha_node::handover`]).
async fn redis_run(a: RunArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};

    let node_id = match (&a.node_id, &a.node) {
        (Some(id), _) => id.clone(),
        (None, Some(n)) => format!("node-{n}"),
        (None, None) => bail!("--node-id (or REDIS_HA_NODE_ID / REDIS_HA_NODE) is required"),
    };
    let (program, args) = a
        .program
        .split_first()
        .context("no program to run after --")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let status = tokio::select! {
        s = child.wait() => s.context("waiting for the server")?,
        _ = term.recv() => stop_redis(&a, &node_id, &mut child, "SIGTERM").await?,
        // Everything is going down (deploy/down.sh --local): no handover.
        _ = int.recv() => {
            forward(&child, nix::sys::signal::Signal::SIGINT);
            child.wait().await.context("waiting for the server")?
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `redis-run`'s stop: the handover when this node is the master, then the signal to Redis.
async fn stop_redis(
    a: &RunArgs,
    node_id: &str,
    child: &mut tokio::process::Child,
    why: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    use redis_ha_node::handover::{before_stop, local_role, Coordinator, Outcome};
    let password_file = a.secrets_dir.join(acl::User::Agent.secret_file());
    let password = if password_file.exists() {
        Some(files::read_secret(&password_file)?)
    } else {
        None
    };
    let user = password.as_ref().map(|_| acl::User::Agent.name());
    let port = a.port.unwrap_or_else(|| {
        let n: u16 = a.node.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
        9000u16.saturating_add(n)
    });
    let role = local_role(
        HostPort::new("127.0.0.1", port),
        user,
        password.as_ref(),
        ASK_TIMEOUT,
    )
    .await;
    let tls = redis_ha_tls::TlsSettings {
        ca_file: a.ca_file.clone(),
        cert_file: a.cert_file.clone(),
        key_file: a.key_file.clone(),
        insecure: a.insecure,
    };
    let outcome = match tls.client() {
        Err(e) if redis_ha_node::handover::needs_handover(&role) => {
            Outcome::Failed(format!("no TLS for the coordinator: {e}"))
        }
        tls => {
            let c = Coordinator {
                url: a.coordinator.clone(),
                tls: tls.unwrap_or_else(|_| redis_ha_tls::ClientTls::insecure()),
                group: a.group.clone(),
                node_id: node_id.to_owned(),
                max_pause_ms: a.max_pause_ms,
                timeout: Duration::from_millis(a.handover_timeout_ms),
            };
            log(&format!("{why}: this node is {role:?}"));
            tokio::select! {
                // Redis ended by itself meanwhile: nothing left to stop.
                s = child.wait() => return s.context("waiting for the server"),
                o = before_stop(&role, &c) => o,
            }
        }
    };
    match &outcome {
        Outcome::NotNeeded(_) => log("not the master: stopping Redis"),
        Outcome::HandedOver(m) => log(&format!("master handed over ({m}); stopping Redis")),
        Outcome::Failed(e) => log(&format!(
            "the master could not be handed over ({e}); stopping Redis anyway (the crash failover follows)"
        )),
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    child.wait().await.context("waiting for the server")
}

fn forward(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn print_path(p: &Path) {
    println!("{}", p.display());
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::RedisConfig(a) => redis_config(a).await.map(|p| print_path(&p)),
        Command::SentinelConfig(a) => sentinel_config(a).await.map(|p| print_path(&p)),
        Command::MinReplicasMaxLag(d) => d.max_lag().map(|m| println!("{}", m.max_lag_s)),
        Command::RotateSecret(a) => rotate_secret(a).await,
        Command::AuthLines(a) => auth_lines(&a),
        Command::RedisRun(a) => {
            return match redis_run(a).await {
                Ok(code) => code,
                Err(e) => {
                    log(&format!("{e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::OverlayEncryption => {
            let mut text = String::new();
            let read = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text);
            let answer =
                redis_ha_node::kernel::overlay_encryption(read.ok().map(|_| text.as_str()));
            println!("{answer}");
            return if answer == redis_ha_node::kernel::Encryption::Supported {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
