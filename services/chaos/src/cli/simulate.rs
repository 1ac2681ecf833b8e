//! `redis-ha simulate`: messages through the proxy across failovers, counted (see
//! [`crate::simulate`] for the modes and the chaos schedule).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use redis_ha_cli::output::emit;
use redis_ha_cli::Target;
use redis_ha_common::{HostPort, Secret};

use super::program_name;
use crate::chaos::docker::DEFAULT_STACK;
use crate::chaos::{DockerStack, Fault, LocalProcesses, NoChaos};
use crate::error::Error;
use crate::simulate::{self, ChaosPlan, Mode, Options, Report};

/// Where the chaos schedule's faults go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChaosKind {
    /// The processes of `deploy/up.sh --local` (pid files in --run-dir).
    Local,
    /// The swarm stack --stack through the Docker API (the master from --coordinator, which
    /// needs `deploy/up.sh --grpc-port`).
    Docker,
    /// No faults from the simulation (stop nodes by hand, as in the older project).
    None,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// fast: RPUSH + BLPOP, losses counted; durable: RPUSH + WAIT, BLMOVE + LREM, at least once.
    #[arg(long, value_enum, default_value_t = Mode::Durable)]
    pub mode: Mode,
    /// The proxy's client endpoint (HAProxy).
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "HOST:PORT")]
    pub proxy: HostPort,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub subscribers: u32,
    /// Publish at least this many messages (and on until the last fault has healed).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Messages per second (0 = as fast as acknowledgements come back).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Messages per RPUSH.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// durable: replicas WAIT must confirm (2 = both replicas of a 3-node group, the safe choice).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub wait_replicas: u32,
    /// durable: how long one WAIT may block.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub wait_timeout_ms: u64,
    /// Connect timeout, and reply timeout beyond a command's own blocking.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub io_timeout_ms: u64,
    /// Where faults go (with --kills above 0).
    #[arg(long, alias = "chaos-target", value_enum, default_value_t = ChaosKind::Local)]
    pub chaos: ChaosKind,
    /// --chaos docker: the swarm stack name deploy/up.sh used.
    #[arg(long, env = "REDIS_HA_STACK", default_value = DEFAULT_STACK, value_name = "NAME")]
    pub stack: String,
    /// The run directory of `deploy/up.sh --local`.
    #[arg(long, default_value = "deploy/local/run", value_name = "DIR")]
    pub run_dir: PathBuf,
    /// kill: SIGKILL, restart after --down-for; stop: SIGTERM, restart; pause: SIGSTOP, SIGCONT.
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    pub fault: Fault,
    /// How many faults of the master (0 = none).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub kills: u32,
    /// Seconds of calm before each fault: from the start, then from the moment the cluster
    /// is whole again after the previous fault.
    #[arg(long, default_value = "8", value_name = "S", value_parser = parse_seconds)]
    pub interval: Duration,
    /// Seconds a faulted node stays down or paused; above Sentinel's down-after (5 s in the
    /// shipped config) for a failover to happen.
    #[arg(long, default_value = "10", value_name = "S", value_parser = parse_seconds)]
    pub down_for: Duration,
    /// Seconds to wait for the cluster to heal before a fault.
    #[arg(long, default_value = "120", value_name = "S", value_parser = parse_seconds)]
    pub settle_timeout: Duration,
    /// Seconds the subscribers get to empty the list after publishing.
    #[arg(long, default_value = "60", value_name = "S", value_parser = parse_seconds)]
    pub drain_timeout: Duration,
    /// The list key (default: a new `redis-ha:simulate:<ms>` per run; must not exist).
    /// (`--key` is the TLS key file of the global options.)
    #[arg(long, value_name = "KEY")]
    pub list_key: Option<String>,
    /// File holding the Redis password (never on the command line). With --chaos docker the
    /// default is the simulator user's that deploy/up.sh generated,
    /// deploy/stack/run/<stack>/redis_simulator_password (and --user simulator).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The Redis ACL user to log in as (default: `default`; `simulator` with the stack's
    /// generated password file).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// File holding the Sentinels' password (--chaos docker asks them for the master). With
    /// --chaos docker the default is deploy/stack/run/<stack>/sentinel_password.
    #[arg(long, value_name = "FILE")]
    pub sentinel_password_file: Option<PathBuf>,
    /// Write the full report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Write the throughput plot: FILE.svg or FILE.png (repeatable).
    #[arg(long, value_name = "FILE")]
    pub plot_out: Vec<PathBuf>,
    /// TrueType font for PNG text (default: a common system font).
    #[arg(long, value_name = "FILE")]
    pub plot_font: Option<PathBuf>,
}

/// A positive number of seconds, fractions allowed.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected seconds, got {s:?}"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("expected 0 < seconds <= 86400, got {s}"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The library options from the command line.
pub fn options(args: &SimulateArgs) -> Result<Options, Error> {
    let password_file = password_file(args);
    let password = Secret::from_optional_file("--password-file", password_file.as_deref())
        .map_err(|e| Error::Simulate(simulate::SimError::Invalid(e.to_string())))?;
    Ok(Options {
        proxy: args.proxy.clone(),
        user: user(args),
        password,
        mode: args.mode,
        subscribers: args.subscribers as usize,
        messages: args.messages,
        rate: args.rate,
        batch: args.batch,
        key: args.list_key.clone().unwrap_or_else(simulate::default_key),
        wait_replicas: args.wait_replicas,
        wait_timeout: Duration::from_millis(args.wait_timeout_ms),
        io_timeout: Duration::from_millis(args.io_timeout_ms),
        chaos: ChaosPlan {
            fault: args.fault,
            // `--chaos none`: faults are someone else's business.
            kills: if args.chaos == ChaosKind::None {
                0
            } else {
                args.kills
            },
            interval: args.interval,
            down_for: args.down_for,
            settle_timeout: args.settle_timeout,
        },
        drain_timeout: args.drain_timeout,
        ..Options::default()
    })
}

/// --password-file, or the simulator's password deploy/up.sh generated (the stack's with
/// --chaos docker, the run directory's with --chaos local) when it exists.
fn password_file(args: &SimulateArgs) -> Option<PathBuf> {
    if args.password_file.is_some() {
        return args.password_file.clone();
    }
    generated(args, "redis_simulator_password")
}

/// A secret file deploy/up.sh generated for the stack (--chaos docker) or the local run
/// (--chaos local), when it exists.
fn generated(args: &SimulateArgs, name: &str) -> Option<PathBuf> {
    let generated = match args.chaos {
        ChaosKind::Docker => Path::new("deploy/stack/run").join(&args.stack).join(name),
        ChaosKind::Local => args.run_dir.join("secrets").join(name),
        ChaosKind::None => return None,
    };
    generated.exists().then_some(generated)
}

/// --user, or `simulator` with its generated password file.
fn user(args: &SimulateArgs) -> Option<String> {
    if args.user.is_some() || args.password_file.is_some() {
        return args.user.clone();
    }
    generated(args, "redis_simulator_password").map(|_| "simulator".to_owned())
}

/// --sentinel-password-file, or with --chaos docker the stack's generated one.
fn sentinel_password_file(args: &SimulateArgs) -> Option<PathBuf> {
    if args.sentinel_password_file.is_some() || args.chaos != ChaosKind::Docker {
        return args.sentinel_password_file.clone();
    }
    generated(args, "sentinel_password")
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub async fn run(target: &Target, args: &SimulateArgs) -> Result<(), Error> {
    let opts = options(args)?;
    let report = if opts.chaos.kills == 0 {
        simulate::run_until(opts, NoChaos, ctrl_c()).await?
    } else if args.chaos == ChaosKind::Docker {
        let sentinel_password = Secret::from_optional_file(
            "--sentinel-password-file",
            sentinel_password_file(args).as_deref(),
        )
        .map_err(|e| Error::Simulate(simulate::SimError::Invalid(e.to_string())))?;
        let chaos =
            DockerStack::connect(&args.stack, target.clone(), &opts.proxy, sentinel_password)
                .await
                .map_err(|e| Error::Chaos(e.to_string()))?;
        simulate::run_until(opts, chaos, ctrl_c()).await?
    } else {
        let chaos = LocalProcesses::open(&args.run_dir, target.clone())
            .map_err(|e| Error::Chaos(e.to_string()))?;
        simulate::run_until(opts, chaos, ctrl_c()).await?
    };
    emit(&report.summary_text())?;
    write_outputs(&report, args)?;
    if report.lost_acknowledged_in_durable_mode() {
        return Err(Error::MessagesLost {
            lost: report.counts.acknowledged_lost,
        });
    }
    if !report.chaos_errors.is_empty() {
        return Err(Error::Chaos(report.chaos_errors.join("; ")));
    }
    if report.interrupted {
        return Err(Error::Interrupted);
    }
    Ok(())
}

fn write_outputs(report: &Report, args: &SimulateArgs) -> Result<(), Error> {
    let write_err = |path: &Path, reason: String| Error::WriteFile {
        path: path.display().to_string(),
        reason,
    };
    if let Some(path) = &args.json_out {
        let mut text = serde_json::to_string_pretty(report)?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| write_err(path, e.to_string()))?;
        eprintln!("{}: report written to {}", program_name(), path.display());
    }
    for path in &args.plot_out {
        match simulate::plot::write(report, path, args.plot_font.as_deref()) {
            Ok(None) => eprintln!("{}: plot written to {}", program_name(), path.display()),
            Ok(Some(note)) => eprintln!("{}: note: {note}", program_name()),
            Err(e) => return Err(write_err(path, e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let w = Wrap::try_parse_from(["x"]).unwrap();
        let o = options(&w.args).unwrap();
        assert_eq!(o.mode, Mode::Durable);
        assert_eq!(o.wait_replicas, 2);
        assert_eq!(o.subscribers, 3);
        assert_eq!(o.proxy.to_string(), "127.0.0.1:9000");
        assert_eq!(o.chaos.kills, 0);
        assert!(o.key.starts_with("redis-ha:simulate:"));
    }

    #[test]
    fn the_documented_invocation_parses() {
        let w = Wrap::try_parse_from([
            "x",
            "--mode",
            "fast",
            "--kills",
            "10",
            "--interval",
            "8",
            "--down-for",
            "7.5",
            "--fault",
            "pause",
            "--plot-out",
            "a.svg",
            "--plot-out",
            "a.png",
        ])
        .unwrap();
        let o = options(&w.args).unwrap();
        assert_eq!(o.mode, Mode::Fast);
        assert_eq!(o.chaos.kills, 10);
        assert_eq!(o.chaos.fault, Fault::Pause);
        assert_eq!(o.chaos.down_for, Duration::from_millis(7500));
        assert_eq!(w.args.plot_out.len(), 2);
    }

    #[test]
    fn no_chaos_means_no_faults() {
        let w = Wrap::try_parse_from(["x", "--kills", "3", "--chaos", "none"]).unwrap();
        assert_eq!(options(&w.args).unwrap().chaos.kills, 0);
    }

    #[test]
    fn the_docker_target_is_picked() {
        let w = Wrap::try_parse_from([
            "x",
            "--chaos-target",
            "docker",
            "--stack",
            "redis-ha-sim",
            "--kills",
            "2",
        ])
        .unwrap();
        assert_eq!(w.args.chaos, ChaosKind::Docker);
        assert_eq!(w.args.stack, "redis-ha-sim");
        // A stack without a generated password file: none.
        assert_eq!(password_file(&w.args), None);
        let w = Wrap::try_parse_from(["x", "--chaos", "docker", "--password-file", "/p"]).unwrap();
        assert_eq!(password_file(&w.args), Some(PathBuf::from("/p")));
        let w = Wrap::try_parse_from(["x"]).unwrap();
        assert_eq!(password_file(&w.args), None);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            vec!["x", "--interval", "0"],
            vec!["x", "--down-for", "-1"],
            vec!["x", "--interval", "nan"],
            vec!["x", "--subscribers", "0"],
            vec!["x", "--wait-timeout-ms", "0"],
            vec!["x", "--proxy", "nohostport"],
            vec!["x", "--fault", "reboot"],
        ] {
            assert!(Wrap::try_parse_from(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_comes_from_a_file_only() {
        let w = Wrap::try_parse_from(["x", "--password-file", "/nonexistent/pw"]).unwrap();
        assert!(options(&w.args).is_err());
    }
}
