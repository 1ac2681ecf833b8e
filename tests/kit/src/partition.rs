//! Network cuts on loopback, with iptables:
//!
//! - [`Partition`]: every TCP packet to or from one port is dropped (`INPUT` on `lo`) except
//!   those of one source address, [`ALLOWED_SOURCE`]; and a RESP client bound to that address,
//!   [`SourceBoundClient`], so a test still talks to the node it cut off from everything else
//!   (its replicas, its Sentinels);
//! - [`GroupCut`]: only the connections that the processes of one group id open to one port are
//!   cut (`OUTPUT` on `lo`, `-m owner --gid-owner`): reset (refused, as when nothing listens)
//!   or dropped (silence, as from a hung host). The process to cut off runs with that group as
//!   its group id ([`cut_group`]; its user stays the test's, so it reads and writes what the
//!   test can), every other process still reaches the port.
//!
//! The rules carry a comment naming the test process and the port; they are removed when the
//! [`Partition`] or [`GroupCut`] drops (also when the test panics), and rules left by a test
//! process that died without dropping (killed by a timeout) are removed by the next partition
//! or cut made anywhere. The port belongs to the test's own port block, so tests running at
//! once never share a rule. Needs `iptables` and the right to use it (root): a test that cannot
//! cut fails, it never passes without the cut.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use redis::{Cmd, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The one source address a partition lets through (the test's own client binds it).
pub const ALLOWED_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Every partition rule's comment starts with this.
const COMMENT_PREFIX: &str = "redis-ha-partition:pid=";

/// How long the partitioned node may take to answer one command (it is not cut off from us).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("cannot run iptables (tests/run.sh installs it): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("iptables {args}: {status}: {stderr}")]
    Failed {
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The DROP rules cutting 127.0.0.1:`port` off; removed on drop.
#[derive(Debug)]
pub struct Partition {
    port: u16,
    rules: Vec<Vec<String>>,
}

fn iptables(args: &[String]) -> Result<String, PartitionError> {
    // -w: wait for the xtables lock (tests partitioning at once).
    // Debian's path, also when a non-root PATH lacks /usr/sbin.
    let program = ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("iptables");
    let out = Command::new(program)
        .arg("-w")
        .args(args)
        .output()
        .map_err(PartitionError::Spawn)?;
    if !out.status.success() {
        return Err(PartitionError::Failed {
            args: args.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pid in a partition rule's comment, from one `iptables -S` line.
fn rule_owner(line: &str) -> Option<u32> {
    let rest = &line[line.find(COMMENT_PREFIX)? + COMMENT_PREFIX.len()..];
    rest.split(':').next()?.parse().ok()
}

/// Removes the partition and cut rules whose test process is gone.
fn remove_orphans() -> Result<(), PartitionError> {
    let mut listing = iptables(&["-S".into(), "INPUT".into()])?;
    listing.push_str(&iptables(&["-S".into(), "OUTPUT".into()])?);
    for line in listing.lines() {
        let Some(pid) = rule_owner(line) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Some(args) = delete_args(line) else {
            continue;
        };
        // Another test process may be removing the same orphan right now: a rule already gone
        // is no failure (a test that cannot use iptables at all fails at its own rule).
        if let Err(e) = iptables(&args) {
            eprintln!("leftover rule of test process {pid}: {e}");
        }
    }
    Ok(())
}

/// The arguments deleting the rule of one `iptables -S` line. `-S` prints the rule as it was
/// added (`-A INPUT ...` deletes as `-D INPUT ...`), with the comment in double quotes, which
/// are no part of it (our comments hold no spaces).
fn delete_args(line: &str) -> Option<Vec<String>> {
    let spec = line.strip_prefix("-A ")?;
    let mut args = vec!["-D".to_owned()];
    args.extend(
        spec.split_whitespace()
            .map(|w| w.trim_matches('"').to_owned()),
    );
    Some(args)
}

impl Partition {
    /// Drops every TCP packet to and from 127.0.0.1:`port` on loopback except those of
    /// [`ALLOWED_SOURCE`]: existing connections stall (as in a real partition, nothing is
    /// closed), new ones never complete.
    pub fn isolate(port: u16) -> Result<Self, PartitionError> {
        remove_orphans()?;
        let comment = format!("{COMMENT_PREFIX}{}:port={port}", std::process::id());
        let allowed = ALLOWED_SOURCE.to_string();
        let rule = |dir: &str, peer: &str| -> Vec<String> {
            [
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                dir,
                &port.to_string(),
                "!",
                peer,
                &allowed,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        };
        let mut partition = Self {
            port,
            rules: Vec::new(),
        };
        for r in [rule("--dport", "-s"), rule("--sport", "-d")] {
            let mut args = vec!["-I".to_owned()];
            args.extend(r.iter().cloned());
            // Inserted first in the chain, ahead of anything accepting loopback traffic.
            args.insert(2, "1".to_owned());
            iptables(&args)?;
            // Recorded once in place: a failure of the second leaves the first to `Drop`.
            partition.rules.push(r);
        }
        Ok(partition)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Ends the partition now (as dropping it does), reporting a failure to remove a rule.
    pub fn heal(mut self) -> Result<(), PartitionError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), PartitionError> {
        let mut first_error = None;
        for r in std::mem::take(&mut self.rules) {
            let mut args = vec!["-D".to_owned()];
            args.extend(r);
            if let Err(e) = iptables(&args) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("partition of port {}: {e}", self.port);
        }
    }
}

/// The first group id [`cut_group`] hands out; far above any group a system defines.
const CUT_GROUP_BASE: u32 = 0x6000_0000;

/// The group id this test process runs the processes it cuts off with (see [`GroupCut`]): no
/// other process has it, and no other test process uses it (it holds the pid).
pub fn cut_group() -> u32 {
    CUT_GROUP_BASE + std::process::id()
}

/// How a [`GroupCut`] treats the cut connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Every packet answered with a TCP reset: a held connection is reset at its next packet,
    /// a new one is refused. To the cut process the port's owner looks gone (crashed).
    Reset,
    /// Every packet dropped: a held connection stalls, a new one never completes. To the cut
    /// process the port's owner looks hung, or its host lost.
    Drop,
}

/// The rule cutting the connections that processes of group `gid` open to 127.0.0.1:`port`;
/// removed on drop. Only that direction is filtered (`OUTPUT` on `lo`, owner match): every
/// other process reaches the port, the cut process reaches every other port.
#[derive(Debug)]
pub struct GroupCut {
    port: u16,
    gid: u32,
    mode: CutMode,
    rule: Option<Vec<String>>,
}

impl GroupCut {
    /// Cuts the connections of group `gid`'s processes to 127.0.0.1:`port` (existing ones at
    /// their next packet).
    pub fn cut(gid: u32, port: u16, mode: CutMode) -> Result<Self, PartitionError> {
        remove_orphans()?;
        let comment = format!(
            "{COMMENT_PREFIX}{}:port={port}:gid={gid}",
            std::process::id()
        );
        let target: &[&str] = match mode {
            CutMode::Reset => &["REJECT", "--reject-with", "tcp-reset"],
            CutMode::Drop => &["DROP"],
        };
        let (port_s, gid_s) = (port.to_string(), gid.to_string());
        let mut rule: Vec<String> = [
            "OUTPUT",
            "-o",
            "lo",
            "-p",
            "tcp",
            "--dport",
            &port_s,
            "-m",
            "owner",
            "--gid-owner",
            &gid_s,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        rule.extend(target.iter().map(|s| (*s).to_owned()));
        let mut args = vec!["-I".to_owned()];
        args.extend(rule.iter().cloned());
        // Inserted first in the chain, ahead of anything accepting loopback traffic.
        args.insert(2, "1".to_owned());
        iptables(&args)?;
        Ok(Self {
            port,
            gid,
            mode,
            rule: Some(rule),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    pub fn mode(&self) -> CutMode {
        self.mode
    }

    /// Ends the cut now (as dropping it does), reporting a failure to remove the rule.
    pub fn heal(mut self) -> Result<(), PartitionError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), PartitionError> {
        let Some(rule) = self.rule.take() else {
            return Ok(());
        };
        let mut args = vec!["-D".to_owned()];
        args.extend(rule);
        iptables(&args).map(drop)
    }
}

impl Drop for GroupCut {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("cut of group {} from port {}: {e}", self.gid, self.port);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{source_addr} -> 127.0.0.1:{port}: {error}")]
    Io {
        source_addr: Ipv4Addr,
        port: u16,
        #[source]
        error: std::io::Error,
    },
    #[error("127.0.0.1:{port}: no reply within {REPLY_TIMEOUT:?} (read so far: {partial:?})")]
    Timeout { port: u16, partial: String },
    #[error("127.0.0.1:{port}: the server closed the connection")]
    Closed { port: u16 },
}

/// One connection to 127.0.0.1:`port` from a chosen loopback source address, speaking RESP
/// through the `redis` crate's command packing and reply parser, one command at a time.
#[derive(Debug)]
pub struct SourceBoundClient {
    source: Ipv4Addr,
    port: u16,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SourceBoundClient {
    pub async fn connect(source: Ipv4Addr, port: u16) -> Result<Self, ClientError> {
        let io = |error| ClientError::Io {
            source_addr: source,
            port,
            error,
        };
        let socket = TcpSocket::new_v4().map_err(io)?;
        socket.bind(SocketAddr::from((source, 0))).map_err(io)?;
        let connect = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        let stream = tokio::time::timeout(REPLY_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout {
                port,
                partial: String::new(),
            })?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(Self {
            source,
            port,
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `cmd` and returns its reply; an error reply (`-NOREPLICAS ...`) is a
    /// [`Value::ServerError`], not an `Err`.
    pub async fn command(&mut self, cmd: &Cmd) -> Result<Value, ClientError> {
        let (source, port) = (self.source, self.port);
        let io = |error| ClientError::Io {
            source_addr: source,
            port,
            error,
        };
        self.stream
            .write_all(&cmd.get_packed_command())
            .await
            .map_err(io)?;
        self.buf.clear();
        let read = async {
            let mut chunk = [0u8; 4096];
            loop {
                let n = self.stream.read(&mut chunk).await.map_err(io)?;
                if n == 0 {
                    return Err(ClientError::Closed { port });
                }
                self.buf.extend_from_slice(&chunk[..n]);
                // Every complete reply ends in CRLF; one that does not parse yet is an
                // aggregate still arriving.
                if self.buf.ends_with(b"\r\n") {
                    if let Ok(v) = redis::parse_redis_value(&self.buf) {
                        return Ok(v);
                    }
                }
            }
        };
        let replied = tokio::time::timeout(REPLY_TIMEOUT, read).await;
        match replied {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                port,
                partial: String::from_utf8_lossy(&self.buf).into_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_rule_is_read_from_its_comment() {
        let line = "-A INPUT ! -s 127.0.0.2/32 -i lo -p tcp -m tcp --dport 20001 -m comment \
                    --comment redis-ha-partition:pid=4242:port=20001 -j DROP";
        assert_eq!(rule_owner(line), Some(4242));
        let cut = "-A OUTPUT -o lo -p tcp -m tcp --dport 20001 -m owner --gid-owner 1610616978 \
                   -m comment --comment redis-ha-partition:pid=4242:port=20001:gid=1610616978 \
                   -j REJECT --reject-with tcp-reset";
        assert_eq!(rule_owner(cut), Some(4242));
        // As `iptables -S` prints it (comment quoted), as `-D` needs it (unquoted).
        let listed = "-A INPUT -i lo -p tcp -m tcp --dport 1 -m comment --comment \
                      \"redis-ha-partition:pid=42:port=1\" -j DROP";
        assert_eq!(
            delete_args(listed).unwrap().join(" "),
            "-D INPUT -i lo -p tcp -m tcp --dport 1 -m comment --comment \
             redis-ha-partition:pid=42:port=1 -j DROP"
        );
        assert_eq!(delete_args("-P INPUT ACCEPT"), None);
        assert_eq!(rule_owner("-A INPUT -j ACCEPT"), None);
        assert_eq!(
            rule_owner("-A INPUT -m comment --comment redis-ha-partition:pid=x -j DROP"),
            None
        );
    }
}
