//! Command-line arguments (clap): one `Command` variant per subcommand, each with its own
//! module under `commands/`; `simulate` and `chaos` are forwarded to `redis-ha-chaos`
//! ([`crate::external`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redis_ha_tls::TlsSettings;

use crate::client::Target;
use crate::external::Forwarded;

pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:50051";
pub const DEFAULT_GROUP: &str = "redis-cluster";

#[derive(Debug, Parser)]
#[command(
    name = "redis-ha",
    version,
    about = "Operate a redis-ha deployment: who is master, how healthy is it, fail it over."
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,

    #[command(subcommand)]
    pub command: Command,
}

/// Where and how to reach the coordinator: the global options of `redis-ha`, and of
/// `redis-ha-chaos`, to which `redis-ha simulate` and `redis-ha chaos` forward them.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// The coordinator's gRPC URL (a bare host:port means http://host:port).
    #[arg(
        long,
        global = true,
        env = "REDIS_HA_COORDINATOR",
        default_value = DEFAULT_COORDINATOR,
        value_name = "URL"
    )]
    pub coordinator: String,

    /// The master group (Sentinel master name).
    #[arg(
        long,
        global = true,
        env = "REDIS_HA_GROUP",
        default_value = DEFAULT_GROUP,
        value_name = "NAME"
    )]
    pub group: String,

    /// Connect and per-request timeout, in milliseconds.
    #[arg(
        long,
        global = true,
        default_value_t = 3000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub timeout_ms: u64,

    /// The cluster CA's certificate (PEM): the coordinator's certificate must be signed by it.
    #[arg(long, global = true, env = "REDIS_HA_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// The operator's certificate (PEM), presented to the coordinator.
    #[arg(long, global = true, env = "REDIS_HA_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// The operator's private key (PEM file; the key itself is never an argument).
    #[arg(long, global = true, env = "REDIS_HA_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Plaintext gRPC without certificates, for a coordinator run with tls.insecure = true.
    #[arg(long, global = true, env = "REDIS_HA_INSECURE")]
    pub insecure: bool,
}

impl Connection {
    pub fn target(&self) -> Target {
        Target::new(
            &self.coordinator,
            &self.group,
            Duration::from_millis(self.timeout_ms),
        )
        .with_tls(self.tls())
    }

    /// The TLS settings these options give.
    pub fn tls(&self) -> TlsSettings {
        TlsSettings {
            ca_file: self.ca.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            insecure: self.insecure,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Master, replicas (lag, link), Sentinels and health, as a table.
    Status(StatusArgs),
    /// Follow the topology: one line per version (JSON lines with --json).
    Watch(WatchArgs),
    /// Print the master's address like `SENTINEL GET-MASTER-ADDR-BY-NAME` (host line, port line).
    Master(MasterArgs),
    /// The coordinator's recent events, oldest first.
    Events(EventsArgs),
    /// Emergencies only: a plain Sentinel failover that can lose acknowledged writes (use
    /// `switchover` to move the master on purpose).
    #[command(
        long_about = "Ask the Sentinels for a plain failover (SENTINEL FAILOVER, after the coordinator's ballot).

RISK: nothing stops the old master: it keeps acknowledging writes until the Sentinels demote it, and every write it acknowledged after the promotion is discarded when it becomes a replica (3 to 17 writes per failover of a full-speed writer in the benchmark, none with `switchover`), and clients see errors (NOREPLICAS) while the new master has no replica. Use it when the master is broken; for a planned move use `redis-ha switchover`, which loses nothing."
    )]
    Failover,
    /// Move the master to a replica without losing an acknowledged write (writes paused,
    /// target caught up, failover, old master made its replica, writes resumed).
    #[command(
        long_about = "Move the master to a replica without losing an acknowledged write: writes are paused on the \
master (CLIENT PAUSE WRITE, at most --max-pause), the target (the most caught-up healthy replica unless --to) \
reaches the master's offset, the Sentinels fail over to exactly that replica, HAProxy follows, the old master \
is made its replica, writes resume.\n\nExits 0 when done; 1 with the reason when refused (nothing touched) \
or aborted (the master unpaused and still master)."
    )]
    Switchover(SwitchoverArgs),
    /// Wait until the group is healthy: a confirmed master and N replicas linked to it.
    Wait(WaitArgs),
    /// Move sequence-numbered messages through the proxy while faulting the master; count them.
    #[command(disable_help_flag = true)]
    Simulate(Forwarded),
    /// Fault a Redis node of the swarm stack through the Docker API (stop, kill, pause, isolate ...).
    #[command(disable_help_flag = true)]
    Chaos(Forwarded),
    /// The cluster CA and the control plane's certificates (no coordinator needed).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The rolling upgrade's plan and waits (what deploy/up.sh runs on a running stack).
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
}

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Read `SERVICE CURRENT_IMAGE CURRENT_CONFIG DESIRED_IMAGE DESIRED_CONFIG` lines (redis-1..3,
    /// sentinel-1..3) on stdin; print the steps (replicas, Sentinels, switchover, old master).
    Plan(UpgradePlanArgs),
    /// Wait until a replaced node is back: a caught-up replica, the master, or a Sentinel.
    Wait(UpgradeWaitArgs),
}

#[derive(Debug, Args)]
pub struct UpgradePlanArgs {}

#[derive(Debug, Args)]
pub struct UpgradeWaitArgs {
    /// Node N (1-3) a replica of the confirmed master, link up, caught up; both replicas linked.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub replica: Option<u8>,
    /// Node N (1-3) the confirmed master with both replicas linked.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub master: Option<u8>,
    /// Node N's (1-3) Sentinel up and naming the master; all three Sentinels up.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub sentinel: Option<u8>,
    /// A replica this many bytes behind the master or fewer counts as caught up.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_lag_bytes: u64,
    /// Give up after this long (exit 1 with the last reason).
    #[arg(long, default_value_t = 300_000, value_name = "MS", value_parser = millis(1, 86_400_000))]
    pub max_wait_ms: u64,
    /// Time between two looks at the topology.
    #[arg(long, default_value_t = 500, value_name = "MS", value_parser = millis(10, 60_000))]
    pub poll_ms: u64,
}

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The node to promote: its id (`node-2`), its number (`2`) or its address; default: the
    /// most caught-up healthy replica linked to the master.
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// The longest writes may stay paused on the master, in milliseconds (400-30000): a target
    /// that cannot catch up and be promoted in time aborts the switchover.
    #[arg(long = "max-pause", value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(400..=30_000))]
    pub max_pause_ms: u64,
    /// Also print the steps, with their times.
    #[arg(long, short)]
    pub verbose: bool,
    /// The answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the CA and a certificate for the coordinator, the reloader, the operator and
    /// each node's agent in DIR; certificates already there that are still right are kept.
    Create(CertsCreateArgs),
}

#[derive(Debug, Args)]
pub struct CertsCreateArgs {
    /// Where the files go (created mode 700; keys mode 600).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The node ids, one agent certificate each (comma separated).
    #[arg(long, value_name = "IDS", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// A DNS name or IP address the coordinator is reached by (repeatable; default:
    /// coordinator, tasks.coordinator, localhost, 127.0.0.1, ::1).
    #[arg(long = "server-name", value_name = "NAME", value_delimiter = ',')]
    pub server_names: Vec<String>,
    /// Validity of the certificates, in days (the CA: 10 years).
    #[arg(long, default_value_t = redis_ha_tls::issue::DEFAULT_DAYS, value_name = "DAYS")]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (the shape is documented in the crate's `model` module).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One compact JSON object per line, same shape as `status --json`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MasterArgs {
    /// Print `host:port` on one line instead.
    #[arg(long)]
    pub addr: bool,
}

/// A number of milliseconds from `min` to `max`.
fn millis(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(min..=max)
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// How many replicas must have their link to the confirmed master up.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub replicas: usize,
    /// Give up after this long (exit 1 with the reason; 2 when the coordinator could not be
    /// reached at the end).
    #[arg(long, default_value_t = 60_000, value_name = "MS", value_parser = millis(1, 86_400_000))]
    pub max_wait_ms: u64,
    /// Time between two looks at the topology.
    #[arg(long, default_value_t = 500, value_name = "MS", value_parser = millis(10, 60_000))]
    pub poll_ms: u64,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only the last N events (0 = every event the coordinator keeps).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub limit: u32,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from([
            "redis-ha",
            "status",
            "--json",
            "--group",
            "other",
            "--coordinator",
            "c:1",
        ])
        .unwrap();
        assert_eq!(cli.connection.group, "other");
        assert_eq!(cli.connection.coordinator, "c:1");
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs { json: true })
        ));
    }

    #[test]
    fn wait_defaults_and_limits() {
        let cli = Cli::try_parse_from(["redis-ha", "wait"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Wait(WaitArgs {
                replicas: 2,
                max_wait_ms: 60_000,
                poll_ms: 500
            })
        ));
        assert!(Cli::try_parse_from(["redis-ha", "wait", "--max-wait-ms", "0"]).is_err());
        assert!(Cli::try_parse_from(["redis-ha", "wait", "--poll-ms", "5"]).is_err());
    }

    #[test]
    fn tls_options_from_flags() {
        let cli = Cli::try_parse_from([
            "redis-ha",
            "--ca",
            "/c/ca.pem",
            "--cert",
            "/c/op.pem",
            "--key",
            "/c/op-key.pem",
            "status",
        ])
        .unwrap();
        let tls = cli.connection.tls();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/c/ca.pem"))
        );
        assert_eq!(
            tls.key_file.as_deref(),
            Some(std::path::Path::new("/c/op-key.pem"))
        );
        assert!(!tls.insecure);
        let cli = Cli::try_parse_from([
            "redis-ha",
            "certs",
            "create",
            "--dir",
            "d",
            "--nodes",
            "node-1,node-2",
        ])
        .unwrap();
        match cli.command {
            Command::Certs(CertsCommand::Create(a)) => {
                assert_eq!(a.nodes, ["node-1", "node-2"]);
                assert!(a.server_names.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_timeout_is_refused() {
        assert!(Cli::try_parse_from(["redis-ha", "--timeout-ms", "0", "status"]).is_err());
    }
}
