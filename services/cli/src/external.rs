//! `redis-ha simulate` and `redis-ha chaos` run the `redis-ha-chaos` binary, as `git` and
//! `cargo` run their external subcommands: the simulator and the fault injection live in
//! their own crate (`redis-ha-chaos`), so that the operator's binary carries none of their
//! dependencies (plotters, bollard, nix, rand).
//!
//! The binary is looked for next to this executable first (the sidecars image and a cargo
//! target directory hold both), then on `PATH`. This process is replaced by it (`exec`), so
//! its output, its exit code and its handling of Ctrl-C are the user's, unchanged; `argv[0]`
//! stays `redis-ha`, so its usage lines and messages name `redis-ha` as before. The global
//! options are passed as `redis-ha-chaos`'s own (it has the same ones), before the
//! subcommand, so that any given after the subcommand still win, as they would here.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::cli::Connection;
use crate::error::CliError;

/// The program `simulate` and `chaos` run.
pub const CHAOS_BIN: &str = "redis-ha-chaos";

/// The arguments of a forwarded subcommand, untouched (`--help` included).
#[derive(Debug, Args)]
pub struct Forwarded {
    /// Options and arguments of the subcommand; `redis-ha <command> --help` lists them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

impl crate::cli::Command {
    /// The subcommand's name and arguments when `redis-ha-chaos` runs it.
    pub fn forwarded(&self) -> Option<(&'static str, &Forwarded)> {
        match self {
            Self::Simulate(f) => Some(("simulate", f)),
            Self::Chaos(f) => Some(("chaos", f)),
            _ => None,
        }
    }
}

/// `redis-ha help simulate` (or `chaos`) as `redis-ha simulate --help`: the help of a
/// forwarded subcommand is `redis-ha-chaos`'s, not the forwarding stub's.
pub fn help_forwarded(mut args: Vec<OsString>) -> Vec<OsString> {
    let forwarded = |a: &OsString| a == "simulate" || a == "chaos";
    if args.len() >= 3 && args[1] == "help" && forwarded(&args[2]) {
        args.remove(1);
        args.insert(2, OsString::from("--help"));
    }
    args
}

/// Where `program` is: in `beside` (this executable's directory) if there, else the first
/// directory of `path` (the `PATH` variable) that holds it.
pub fn locate(
    program: &str,
    beside: Option<&Path>,
    path: Option<&OsStr>,
    is_file: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let on_path = path.into_iter().flat_map(std::env::split_paths);
    beside
        .map(Path::to_path_buf)
        .into_iter()
        .chain(on_path)
        // An empty PATH entry means the current directory; never run from there.
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_file(candidate))
}

/// The command line of `redis-ha-chaos` for `redis-ha <subcommand> ARGS`.
pub fn command(program: &Path, subcommand: &str, fwd: &Forwarded, conn: &Connection) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg0("redis-ha")
        .arg("--coordinator")
        .arg(&conn.coordinator)
        .arg("--group")
        .arg(&conn.group)
        .arg("--timeout-ms")
        .arg(conn.timeout_ms.to_string());
    // Paths only (a key is never an argument); the environment is inherited anyway.
    for (flag, path) in [
        ("--ca", &conn.ca),
        ("--cert", &conn.cert),
        ("--key", &conn.key),
    ] {
        if let Some(p) = path {
            cmd.arg(flag).arg(p);
        }
    }
    if conn.insecure {
        cmd.arg("--insecure");
    }
    cmd.arg(subcommand).args(&fwd.args);
    cmd
}

/// Replaces this process with `redis-ha-chaos <subcommand> ...`; returns only on failure.
pub fn exec(subcommand: &str, fwd: &Forwarded, conn: &Connection) -> CliError {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path = std::env::var_os("PATH");
    let Some(program) = locate(CHAOS_BIN, beside.as_deref(), path.as_deref(), Path::is_file) else {
        return CliError::ChaosBinaryMissing {
            command: subcommand.to_owned(),
            program: CHAOS_BIN,
            beside: beside.map_or_else(|| "unknown".to_owned(), |d| d.display().to_string()),
        };
    };
    let e = command(&program, subcommand, fwd, conn).exec();
    CliError::Exec {
        program: program.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Sub};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    fn args_of(cli: &Cli) -> (&'static str, Vec<String>) {
        let (name, fwd) = cli.command.forwarded().unwrap();
        let cmd = command(Path::new("/x/redis-ha-chaos"), name, fwd, &cli.connection);
        (
            name,
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        )
    }

    #[test]
    fn arguments_pass_untouched_after_the_global_options() {
        let cli = parse(&[
            "redis-ha",
            "--coordinator",
            "c:1",
            "simulate",
            "--kills",
            "3",
            "--help",
            "--group",
            "g2",
        ]);
        let (name, args) = args_of(&cli);
        assert_eq!(name, "simulate");
        assert_eq!(
            args.join(" "),
            "--coordinator c:1 --group redis-cluster --timeout-ms 3000 simulate --kills 3 --help \
             --group g2"
        );
    }

    #[test]
    fn chaos_forwards_its_action_and_node() {
        let cli = parse(&["redis-ha", "--timeout-ms", "500", "chaos", "stop", "2"]);
        let (name, args) = args_of(&cli);
        assert_eq!(name, "chaos");
        assert_eq!(args[4..], ["--timeout-ms", "500", "chaos", "stop", "2"]);
        assert!(parse(&["redis-ha", "status"]).command.forwarded().is_none());
        // No arguments at all is the subcommand's business too.
        assert!(
            matches!(parse(&["redis-ha", "chaos"]).command, Sub::Chaos(ref f) if f.args.is_empty())
        );
    }

    #[test]
    fn help_of_a_forwarded_command_is_its_own() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            help_forwarded(os(&["redis-ha", "help", "simulate"])),
            os(&["redis-ha", "simulate", "--help"])
        );
        assert_eq!(
            help_forwarded(os(&["redis-ha", "help", "chaos", "x"])),
            os(&["redis-ha", "chaos", "--help", "x"])
        );
        for same in [
            &["redis-ha", "help", "status"][..],
            &["redis-ha", "help"],
            &["redis-ha", "simulate", "help"],
        ] {
            assert_eq!(help_forwarded(os(same)), os(same));
        }
    }

    #[test]
    fn the_binary_beside_wins_over_path() {
        let exists = |p: &Path| {
            p == Path::new("/opt/bin/redis-ha-chaos") || p == Path::new("/usr/bin/redis-ha-chaos")
        };
        let path = OsString::from("/nowhere::/usr/bin:/opt/bin");
        assert_eq!(
            locate(CHAOS_BIN, Some(Path::new("/opt/bin")), Some(&path), exists),
            Some(PathBuf::from("/opt/bin/redis-ha-chaos"))
        );
        assert_eq!(
            locate(
                CHAOS_BIN,
                Some(Path::new("/elsewhere")),
                Some(&path),
                exists
            ),
            Some(PathBuf::from("/usr/bin/redis-ha-chaos"))
        );
        assert_eq!(
            locate(CHAOS_BIN, Some(Path::new("/elsewhere")), None, exists),
            None
        );
        // An empty PATH entry (the current directory) is skipped.
        let cwd = |p: &Path| p == Path::new("redis-ha-chaos");
        assert_eq!(locate(CHAOS_BIN, None, Some(OsStr::new(":")), cwd), None);
    }

    #[test]
    fn a_missing_binary_is_exit_2_and_says_what_is_missing() {
        let e = CliError::ChaosBinaryMissing {
            command: "simulate".into(),
            program: CHAOS_BIN,
            beside: "/opt/bin".into(),
        };
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains("redis-ha-chaos") && text.contains("/opt/bin") && text.contains("PATH"),
            "{text}"
        );
    }
}
