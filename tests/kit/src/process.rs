//! A child process owned by a test: killed (SIGKILL) when its handle is dropped, also when the
//! test panics, so no `redis-server` outlives its test.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A program, its arguments and where its output goes; can be started again after it died.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    program: String,
    args: Vec<String>,
    /// Environment set on top of the inherited one, and inherited variables removed.
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    /// The group id it runs with (real, effective and saved; supplementary groups and the
    /// user kept); `None`: the test's.
    gid: Option<u32>,
    /// Receives stdout and stderr (appended across restarts), so early start-up errors
    /// that happen before a program opens its own log file are kept.
    output_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Started in a process group of its own and killed as a group ([`Self::wrap`]): a
    /// wrapper's children die with it.
    own_group: bool,
}

impl ManagedProcess {
    /// Starts `program` (looked up on PATH). Panics with an install hint when it is missing.
    pub fn spawn(name: &str, program: &str, args: &[String], output_path: &Path) -> Self {
        Self::spawn_with_env(name, program, args, &[], &[], output_path)
    }

    /// Like `spawn`, with the inherited variables `env_remove` removed and `env` set.
    pub fn spawn_with_env(
        name: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        env_remove: &[String],
        output_path: &Path,
    ) -> Self {
        Self::spawn_with_env_in_group(name, program, args, env, env_remove, None, output_path)
    }

    /// Like `spawn_with_env`, running with group id `gid` when given (every start): how a test
    /// cuts one process off a port ([`crate::partition::GroupCut`]).
    pub fn spawn_with_env_in_group(
        name: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        env_remove: &[String],
        gid: Option<u32>,
        output_path: &Path,
    ) -> Self {
        let mut p = Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.to_vec(),
            env: env.to_vec(),
            env_remove: env_remove.to_vec(),
            gid,
            output_path: output_path.to_owned(),
            child: None,
            paused: false,
            own_group: false,
        };
        p.start();
        p
    }

    /// Starts the process again with the same program and arguments. Panics if it still runs.
    pub fn start(&mut self) {
        assert!(
            !self.is_running(),
            "{}: start() while the process still runs",
            self.name
        );
        let out = self.open_output();
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: cannot clone output file: {e}", self.name));
        let mut cmd = Command::new(&self.program);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        if let Some(gid) = self.gid {
            // setgid only (no uid): the user, hence every file permission, stays the test's.
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let child = cmd
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    panic!(
                        "`{}` is not on PATH: install the test dependencies with the README's test \
                         command (it apt-installs redis-server, redis-sentinel and haproxy)",
                        self.program
                    )
                }
                panic!("{}: cannot start `{}`: {e}", self.name, self.program)
            });
        self.child = Some(child);
        self.paused = false;
    }

    fn open_output(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output_path)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot open {}: {e}",
                    self.name,
                    self.output_path.display()
                )
            })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group id of the next [`ManagedProcess::start`] (`None`: the test's own).
    pub fn set_gid(&mut self, gid: Option<u32>) {
        self.gid = gid;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process has not exited (a paused process is running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL, then reaps it. No-op when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.own_group {
                if let Ok(raw) = i32::try_from(c.id()) {
                    let _ = kill(Pid::from_raw(-raw), Signal::SIGKILL);
                }
            }
            // SIGKILL also ends a stopped (SIGSTOP) process.
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// From the next start, runs `wrapper wrapper_args... -- program args...` instead (a
    /// supervisor such as `redis-ha-node redis-run`), in a process group of its own that
    /// [`Self::kill`] ends as a whole.
    pub fn wrap(&mut self, wrapper: &str, wrapper_args: &[String]) {
        let mut args = wrapper_args.to_vec();
        args.push("--".into());
        args.push(std::mem::replace(&mut self.program, wrapper.to_owned()));
        args.append(&mut self.args);
        self.args = args;
        self.own_group = true;
    }

    /// Sends `sig` and returns at once (see [`Self::wait_exit`]).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            self.signal_pid(pid, sig);
        }
    }

    /// Waits (asynchronously, up to `timeout`) until it has exited; its status, or `None`
    /// when it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            } else {
                return None;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and waits up to 20 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        self.terminate(Duration::from_secs(20));
    }

    /// SIGTERM (SIGCONT first if paused), then waits up to `grace` for the exit, SIGKILL after
    /// that. Returns how it ended (`None`: it was not running, or had to be killed).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        if self.paused {
            self.signal_pid(c.id(), Signal::SIGCONT);
            self.paused = false;
        }
        self.signal_pid(c.id(), Signal::SIGTERM);
        // Synchronous (it also runs from `Drop`-like paths): a reaping loop, not a test wait.
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing (a hung node).
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            self.signal_pid(pid, Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT after `pause()`.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            self.signal_pid(pid, Signal::SIGCONT);
            self.paused = false;
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Everything the process wrote so far (all its runs).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output_path).unwrap_or_default()
    }

    /// The last `lines` lines of the process output file, for panic messages.
    pub fn output_tail(&self, lines: usize) -> String {
        tail(&self.output_path, lines)
    }

    fn signal_pid(&self, pid: u32, sig: Signal) {
        let Ok(raw) = i32::try_from(pid) else {
            return;
        };
        if let Err(e) = kill(Pid::from_raw(raw), sig) {
            // ESRCH: it already exited; anything else is a harness bug worth seeing.
            assert_eq!(
                e,
                nix::errno::Errno::ESRCH,
                "{}: cannot send {sig}: {e}",
                self.name
            );
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a text file ("" when it can't be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ManagedProcess {
    /// Waits until `probe` succeeds (the process answers); the panic names `what` and shows
    /// the last error with the end of the process output.
    pub async fn wait_ready<F, Fut, T, E>(&self, what: &str, probe: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let probe = &probe;
        crate::wait::wait_until(what, crate::wait::TIMEOUT, || async move {
            probe()
                .await
                .map(drop)
                .map_err(|e| format!("{e}; output:\n{}", self.output_tail(10)))
        })
        .await;
    }
}

/// `<parent>/<name>/<conf_file>` written with `conf`, and `program <that file>` started with
/// its output in `<parent>/<name>/<output_file>`: how Redis and Sentinel are run. Returns the
/// directory, the config path and the process.
pub(crate) fn spawn_configured(
    name: &str,
    program: &str,
    parent: &Path,
    conf_file: &str,
    conf: impl FnOnce(&Path) -> String,
    output_file: &str,
) -> (PathBuf, PathBuf, ManagedProcess) {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let conf_path = dir.join(conf_file);
    std::fs::write(&conf_path, conf(&dir))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
    let process = ManagedProcess::spawn(
        name,
        program,
        &[conf_path.display().to_string()],
        &dir.join(output_file),
    );
    (dir, conf_path, process)
}

/// `Deref` / `DerefMut` of a process wrapper to its [`ManagedProcess`] field: kill, stop,
/// pause, resume, pid ... come from there.
macro_rules! deref_to_process {
    ($wrapper:ty, $field:ident) => {
        impl std::ops::Deref for $wrapper {
            type Target = $crate::process::ManagedProcess;
            fn deref(&self) -> &$crate::process::ManagedProcess {
                &self.$field
            }
        }

        impl std::ops::DerefMut for $wrapper {
            fn deref_mut(&mut self) -> &mut $crate::process::ManagedProcess {
                &mut self.$field
            }
        }
    };
}
pub(crate) use deref_to_process;
