//! The second source: the Sentinels themselves, so routing follows a failover while the
//! coordinator is down.
//!
//! Every Sentinel is asked `SENTINEL MASTER <group>`; the master named at the highest config
//! epoch by at least `quorum` of them is the decision. They are asked every resync interval,
//! and at once when one of them publishes `+switch-master` for the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use redis_ha_common::{HostPort, Secret};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::decision::{Decision, Source, Target};

/// One Sentinel's answer: the master it names and the epoch of that configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelView {
    pub config_epoch: u64,
    pub master: HostPort,
}

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("sentinel {addr}: {source}")]
    Redis {
        addr: HostPort,
        source: redis::RedisError,
    },
    #[error("sentinel {addr}: SENTINEL MASTER {group}: {reason}")]
    Answer {
        addr: HostPort,
        group: String,
        reason: String,
    },
    #[error("sentinel {addr}: no answer within {after:?}")]
    Timeout { addr: HostPort, after: Duration },
}

/// The master named at the highest config epoch by at least `quorum` Sentinels, with how
/// many agree.
pub fn quorum_master(views: &[SentinelView], quorum: usize) -> Option<(SentinelView, usize)> {
    let mut counts: BTreeMap<(u64, &HostPort), usize> = BTreeMap::new();
    for v in views {
        *counts.entry((v.config_epoch, &v.master)).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n >= quorum)
        .max_by_key(|((epoch, _), _)| *epoch)
        .map(|((config_epoch, master), n)| {
            (
                SentinelView {
                    config_epoch,
                    master: master.clone(),
                },
                n,
            )
        })
}

/// Reads the flat field/value list of `SENTINEL MASTER`.
pub fn parse_sentinel_master(fields: &BTreeMap<String, String>) -> Result<SentinelView, String> {
    let get = |k: &str| fields.get(k).ok_or_else(|| format!("no field {k:?}"));
    let ip = get("ip")?;
    let port: u16 = get("port")?
        .parse()
        .map_err(|_| format!("port is not a port: {:?}", fields.get("port")))?;
    let config_epoch: u64 = get("config-epoch")?.parse().map_err(|_| {
        format!(
            "config-epoch is not a number: {:?}",
            fields.get("config-epoch")
        )
    })?;
    Ok(SentinelView {
        config_epoch,
        master: HostPort::new(ip.clone(), port),
    })
}

/// `+switch-master` payload: `<group> <old-ip> <old-port> <new-ip> <new-port>`.
fn switch_is_for(payload: &str, group: &str) -> bool {
    payload.split_whitespace().next() == Some(group)
}

#[derive(Clone)]
pub struct SentinelSource {
    pub sentinels: Vec<HostPort>,
    pub group: String,
    pub quorum: usize,
    pub password: Option<Secret>,
    pub poll_interval: Duration,
    pub io_timeout: Duration,
}

impl SentinelSource {
    fn client(&self, addr: &HostPort) -> Result<Client, SentinelError> {
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(addr.host.clone(), addr.port),
            redis: RedisConnectionInfo {
                password: self.password.as_ref().map(|s| s.expose().to_owned()),
                ..Default::default()
            },
        };
        Client::open(info).map_err(|source| SentinelError::Redis {
            addr: addr.clone(),
            source,
        })
    }

    async fn connect(&self, addr: &HostPort) -> Result<MultiplexedConnection, SentinelError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.io_timeout)
            .set_response_timeout(self.io_timeout);
        self.client(addr)?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|source| SentinelError::Redis {
                addr: addr.clone(),
                source,
            })
    }

    async fn ask(
        &self,
        addr: &HostPort,
        conn: &mut Option<MultiplexedConnection>,
    ) -> Result<SentinelView, SentinelError> {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(self.connect(addr).await?),
        };
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg(&self.group);
        let query = cmd.query_async::<BTreeMap<String, String>>(c);
        let res = match tokio::time::timeout(self.io_timeout, query).await {
            Ok(r) => r.map_err(|source| SentinelError::Redis {
                addr: addr.clone(),
                source,
            }),
            Err(_) => Err(SentinelError::Timeout {
                addr: addr.clone(),
                after: self.io_timeout,
            }),
        };
        match res {
            Ok(fields) => parse_sentinel_master(&fields).map_err(|reason| SentinelError::Answer {
                addr: addr.clone(),
                group: self.group.clone(),
                reason,
            }),
            Err(e) => {
                // A fresh connection next time.
                *conn = None;
                Err(e)
            }
        }
    }

    /// Polls the Sentinels and sends a decision whenever a quorum agrees. Runs until cancelled.
    pub async fn run(self, decisions: mpsc::Sender<Decision>, cancel: CancellationToken) {
        let wake = Arc::new(Notify::new());
        for addr in &self.sentinels {
            let me = self.clone();
            let addr = addr.clone();
            let wake = wake.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = me.listen(addr, wake) => {}
                }
            });
        }
        let mut conns: Vec<Option<MultiplexedConnection>> = vec![None; self.sentinels.len()];
        let mut failing = vec![false; self.sentinels.len()];
        let mut last: Option<(SentinelView, usize)> = None;
        loop {
            let asks = self
                .sentinels
                .iter()
                .zip(conns.iter_mut())
                .map(|(addr, conn)| self.ask(addr, conn));
            let answers = futures::future::join_all(asks).await;
            let mut views = Vec::new();
            for (i, a) in answers.into_iter().enumerate() {
                match a {
                    Ok(v) => {
                        if failing[i] {
                            info!(sentinel = %self.sentinels[i], "sentinel answers again");
                            failing[i] = false;
                        }
                        views.push(v);
                    }
                    Err(e) => {
                        if !failing[i] {
                            warn!(error = %e, "sentinel query failed");
                            failing[i] = true;
                        } else {
                            debug!(error = %e, "sentinel query failed");
                        }
                    }
                }
            }
            let found = quorum_master(&views, self.quorum);
            match &found {
                Some((view, agreeing)) => {
                    if last.as_ref().map(|(v, _)| v) != Some(view) {
                        info!(
                            master = %view.master,
                            epoch = view.config_epoch,
                            agreeing,
                            "sentinel quorum names the master"
                        );
                    }
                    let d = Decision {
                        source: Source::Sentinel {
                            agreeing: *agreeing,
                        },
                        config_epoch: view.config_epoch,
                        master: Some(Target {
                            node: None,
                            address: view.master.clone(),
                        }),
                        nodes: Vec::new(),
                        // Not from a topology: no trace to continue, no promotion time known.
                        trace_parent: String::new(),
                        master_role_changed_at_ms: 0,
                    };
                    if decisions.send(d).await.is_err() {
                        return;
                    }
                }
                None => {
                    if last.is_some() {
                        warn!(
                            answering = views.len(),
                            quorum = self.quorum,
                            "no sentinel quorum on a master"
                        );
                    }
                }
            }
            last = found;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Subscribes to `+switch-master` on one Sentinel and wakes the poller on each one for
    /// the group. Reconnects forever.
    async fn listen(self, addr: HostPort, wake: Arc<Notify>) {
        const FIRST: Duration = Duration::from_millis(100);
        let mut backoff = FIRST;
        loop {
            let mut subscribed = false;
            match self.subscribe(&addr, &wake, &mut subscribed).await {
                Ok(()) => debug!(sentinel = %addr, "sentinel subscription ended"),
                Err(e) => debug!(error = %e, "sentinel subscription failed"),
            }
            if subscribed {
                backoff = FIRST;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn subscribe(
        &self,
        addr: &HostPort,
        wake: &Notify,
        subscribed: &mut bool,
    ) -> Result<(), SentinelError> {
        let redis_err = |source| SentinelError::Redis {
            addr: addr.clone(),
            source,
        };
        let client = self.client(addr)?;
        let mut pubsub =
            match tokio::time::timeout(self.io_timeout, client.get_async_pubsub()).await {
                Ok(r) => r.map_err(redis_err)?,
                Err(_) => {
                    return Err(SentinelError::Timeout {
                        addr: addr.clone(),
                        after: self.io_timeout,
                    })
                }
            };
        pubsub
            .subscribe("+switch-master")
            .await
            .map_err(redis_err)?;
        *subscribed = true;
        // A missed message while (re)subscribing is covered by one poll now.
        wake.notify_one();
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let payload: String = msg.get_payload().unwrap_or_default();
            if switch_is_for(&payload, &self.group) {
                info!(sentinel = %addr, %payload, "+switch-master");
                wake.notify_one();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(epoch: u64, addr: &str) -> SentinelView {
        SentinelView {
            config_epoch: epoch,
            master: addr.parse().unwrap(),
        }
    }

    #[test]
    fn quorum_takes_the_highest_agreed_epoch() {
        let views = [v(1, "a:1"), v(2, "b:2"), v(2, "b:2")];
        assert_eq!(quorum_master(&views, 2), Some((v(2, "b:2"), 2)));
        // One Sentinel ahead of the others is not enough.
        let views = [v(1, "a:1"), v(1, "a:1"), v(2, "b:2")];
        assert_eq!(quorum_master(&views, 2), Some((v(1, "a:1"), 2)));
        // No two agree.
        let views = [v(1, "a:1"), v(2, "b:2")];
        assert_eq!(quorum_master(&views, 2), None);
        assert_eq!(quorum_master(&[], 1), None);
        // Same address at different epochs does not add up.
        let views = [v(1, "a:1"), v(2, "a:1")];
        assert_eq!(quorum_master(&views, 2), None);
    }

    #[test]
    fn parses_sentinel_master_fields() {
        let fields: BTreeMap<String, String> = [
            ("name", "redis-cluster"),
            ("ip", "127.0.0.1"),
            ("port", "9001"),
            ("flags", "master"),
            ("config-epoch", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(parse_sentinel_master(&fields), Ok(v(3, "127.0.0.1:9001")));
        let mut bad = fields.clone();
        bad.remove("config-epoch");
        assert!(parse_sentinel_master(&bad)
            .unwrap_err()
            .contains("config-epoch"));
        bad = fields;
        bad.insert("port".into(), "x".into());
        assert!(parse_sentinel_master(&bad).is_err());
    }

    #[test]
    fn switch_master_payload_names_the_group() {
        assert!(switch_is_for(
            "redis-cluster 127.0.0.1 9001 127.0.0.1 9002",
            "redis-cluster"
        ));
        assert!(!switch_is_for(
            "other 127.0.0.1 9001 127.0.0.1 9002",
            "redis-cluster"
        ));
    }
}
