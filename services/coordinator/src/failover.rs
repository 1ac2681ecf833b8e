//! The operator's manual failover: `SENTINEL FAILOVER <group>` sent to the first Sentinel that
//! answers.

use std::fmt;
use std::time::Duration;

use redis_ha_common::{HostPort, Secret};
use redis_ha_sentinel::{SentinelClient, SentinelError};

/// Why no Sentinel started the failover.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// No agent has reported a Sentinel for this group yet.
    #[error("no Sentinel is known for master group {group:?}: no agent has reported one")]
    NoSentinel { group: String },
    /// A Sentinel answered and said no (failover in progress, no good replica, unknown group ...).
    #[error("{}", join(.refusals))]
    Refused { refusals: Vec<Attempt> },
    /// No Sentinel could be reached.
    #[error("no Sentinel reachable: {}", join(.failures))]
    Unreachable { failures: Vec<Attempt> },
}

/// One Sentinel's answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub sentinel: String,
    pub error: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sentinel {}: {}", self.sentinel, self.error)
    }
}

fn join(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Error codes after which asking another Sentinel would be wrong (it would start a second
/// failover) or pointless (the same replicas are just as bad for every Sentinel).
const FINAL_CODES: [&str; 2] = ["INPROG", "NOGOODSLAVE"];

/// Asks each Sentinel in turn; returns the one that accepted.
pub async fn request_failover(
    sentinels: &[String],
    group: &str,
    password: Option<&Secret>,
    io_timeout: Duration,
) -> Result<String, FailoverError> {
    if sentinels.is_empty() {
        return Err(FailoverError::NoSentinel {
            group: group.to_owned(),
        });
    }
    let mut refusals = Vec::new();
    let mut failures = Vec::new();
    for sentinel in sentinels {
        match ask(sentinel, group, password, io_timeout).await {
            Ok(()) => return Ok(sentinel.clone()),
            Err(Outcome::Unreachable(error)) => {
                tracing::warn!(sentinel = %sentinel, %error, "failover: Sentinel unreachable");
                failures.push(Attempt {
                    sentinel: sentinel.clone(),
                    error,
                });
            }
            Err(Outcome::Refused { error, last }) => {
                tracing::warn!(sentinel = %sentinel, %error, "failover: Sentinel refused");
                refusals.push(Attempt {
                    sentinel: sentinel.clone(),
                    error,
                });
                if last {
                    break;
                }
            }
        }
    }
    if refusals.is_empty() {
        Err(FailoverError::Unreachable { failures })
    } else {
        Err(FailoverError::Refused { refusals })
    }
}

enum Outcome {
    Unreachable(String),
    Refused { error: String, last: bool },
}

async fn ask(
    sentinel: &str,
    group: &str,
    password: Option<&Secret>,
    io_timeout: Duration,
) -> Result<(), Outcome> {
    let hp: HostPort = sentinel
        .parse()
        .map_err(|e| Outcome::Unreachable(format!("bad address: {e}")))?;
    let mut client = SentinelClient::new(hp, password, io_timeout).map_err(|e| classify(&e))?;
    client.failover(group).await.map_err(|e| classify(&e))
}

/// Network trouble means "try the next Sentinel"; an answer means the Sentinel decided.
fn classify(e: &SentinelError) -> Outcome {
    match e.server_code() {
        Some(code) => Outcome::Refused {
            error: e.cause(),
            last: FINAL_CODES.contains(&code),
        },
        None => Outcome::Unreachable(e.cause()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_sentinel_known() {
        let e = request_failover(&[], "g", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, FailoverError::NoSentinel { .. }));
        assert!(e.to_string().contains("\"g\""), "{e}");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        // Bind then drop: the port is very likely closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let e = request_failover(
            &[addr.clone(), "not an address".into()],
            "g",
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        match e {
            FailoverError::Unreachable { failures } => {
                assert_eq!(failures.len(), 2);
                assert_eq!(failures[0].sentinel, addr);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_listener_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accept and keep the sockets open without answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = request_failover(&[addr], "g", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, FailoverError::Unreachable { .. }), "{e:?}");
        holder.abort();
    }
}
