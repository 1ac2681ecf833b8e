//! A network partition on loopback: every TCP packet to or from one port is dropped
//! (iptables, `INPUT` on `lo`) except those of one source address, [`ALLOWED_SOURCE`]; and a
//! RESP client bound to that address, [`SourceBoundClient`], so a test still talks to the node
//! it cut off from everything else (its replicas, its Sentinels).
//!
//! The rules carry a comment naming the test process and the port; they are removed when the
//! [`Partition`] drops (also when the test panics), and rules left by a test process that died
//! without dropping (killed by a timeout) are removed by the next partition made anywhere. The
//! port belongs to the test's own port block, so tests running at once never share a rule.
//! Needs `iptables` and the right to use it (root): a test that cannot cut fails, it never
//! passes without the partition.

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

/// Removes the partition rules whose test process is gone.
fn remove_orphans() -> Result<(), PartitionError> {
    let listing = iptables(&["-S".into(), "INPUT".into()])?;
    for line in listing.lines() {
        let Some(pid) = rule_owner(line) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // `-S` prints the rule as it was added: `-A INPUT ...` deletes as `-D INPUT ...`.
        let Some(spec) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut args = vec!["-D".to_owned()];
        args.extend(spec.split_whitespace().map(str::to_owned));
        iptables(&args)?;
    }
    Ok(())
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
        assert_eq!(rule_owner("-A INPUT -j ACCEPT"), None);
        assert_eq!(
            rule_owner("-A INPUT -m comment --comment redis-ha-partition:pid=x -j DROP"),
            None
        );
    }
}
