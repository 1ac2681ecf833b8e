//! The second source: the Sentinels themselves, so routing follows a failover while the
//! coordinator is down.
//!
//! Every Sentinel is asked `SENTINEL MASTER <group>`; the master that at least `quorum` of
//! them name, by the one rule of [`redis_ha_sentinel::named_master`], is the decision. They
//! are asked every resync interval, and at once when one of them publishes `+switch-master`
//! for the group.

use std::sync::Arc;
use std::time::Duration;

use redis_ha_common::{Backoff, HostPort, Secret};
use redis_ha_sentinel::{
    ask_each, named_master, parse_event, EventKind, NamedMaster, SentinelClient, SentinelError,
    SentinelMessage,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::decision::{Decision, Source, Target};

/// True for a `+switch-master` of `group`: the Sentinels' answer has changed.
fn is_switch_for(m: &SentinelMessage, group: &str) -> bool {
    parse_event(&m.channel, &m.payload)
        .is_ok_and(|e| e.kind == EventKind::SwitchMaster && e.master_group() == Some(group))
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
    fn client(&self, addr: &HostPort) -> Result<SentinelClient, SentinelError> {
        SentinelClient::new(addr.clone(), self.password.as_ref(), self.io_timeout)
    }

    /// The decision a quorum's answer makes.
    fn decision(named: &NamedMaster) -> Decision {
        Decision {
            source: Source::Sentinel {
                agreeing: named.votes,
            },
            config_epoch: named.config_epoch,
            master: Some(Target {
                node: None,
                address: named.master.clone(),
            }),
            nodes: Vec::new(),
            readers: Vec::new(),
            // Not from a topology: no trace to continue, no promotion time known.
            trace_parent: String::new(),
            master_role_changed_at_ms: 0,
        }
    }

    /// Polls the Sentinels and sends a decision whenever a quorum agrees. Runs until cancelled.
    pub async fn run(self, decisions: mpsc::Sender<Decision>, cancel: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let mut clients = Vec::new();
        for addr in &self.sentinels {
            match self.client(addr) {
                Ok(c) => clients.push(c),
                Err(e) => warn!(error = %e, "sentinel left out"),
            }
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
        let mut failing = vec![false; clients.len()];
        let mut last: Option<NamedMaster> = None;
        loop {
            let answers = ask_each(&mut clients, &self.group).await;
            let mut views = Vec::new();
            for (i, a) in answers.into_iter().enumerate() {
                match a {
                    Ok(v) => {
                        if failing[i] {
                            info!(sentinel = %v.sentinel, "sentinel answers again");
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
            let found = named_master(&views, self.quorum);
            match &found {
                Some(named) => {
                    let same = last.as_ref().is_some_and(|l| {
                        l.master == named.master && l.config_epoch == named.config_epoch
                    });
                    if !same {
                        info!(
                            master = %named.master,
                            epoch = named.config_epoch,
                            agreeing = named.votes,
                            "sentinel quorum names the master"
                        );
                    }
                    if decisions.send(Self::decision(named)).await.is_err() {
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
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let mut subscribed = false;
            match self.subscribe(&addr, &wake, &mut subscribed).await {
                Ok(()) => debug!(sentinel = %addr, "sentinel subscription ended"),
                Err(e) => debug!(error = %e, "sentinel subscription failed"),
            }
            if subscribed {
                backoff.reset();
            }
            tokio::time::sleep(backoff.fail()).await;
        }
    }

    async fn subscribe(
        &self,
        addr: &HostPort,
        wake: &Notify,
        subscribed: &mut bool,
    ) -> Result<(), SentinelError> {
        // Pinged at the poll interval: a stalled Sentinel is noticed and resubscribed.
        let mut events = self
            .client(addr)?
            .subscribe("+switch-master", self.poll_interval)
            .await?;
        *subscribed = true;
        // A missed message while (re)subscribing is covered by one poll now.
        wake.notify_one();
        loop {
            let msg = events.next().await?;
            if is_switch_for(&msg, &self.group) {
                info!(sentinel = %addr, payload = %msg.payload, "+switch-master");
                wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_of_the_group_only() {
        let msg = |channel: &str, payload: &str| SentinelMessage {
            channel: channel.into(),
            payload: payload.into(),
        };
        let group = "redis-cluster";
        assert!(is_switch_for(
            &msg(
                "+switch-master",
                "redis-cluster 127.0.0.1 9001 127.0.0.1 9002"
            ),
            group
        ));
        assert!(!is_switch_for(
            &msg("+switch-master", "other 127.0.0.1 9001 127.0.0.1 9002"),
            group
        ));
        assert!(!is_switch_for(&msg("+switch-master", "garbage"), group));
        assert!(!is_switch_for(
            &msg("+sdown", "master redis-cluster 127.0.0.1 9001"),
            group
        ));
    }

    #[test]
    fn a_quorum_answer_is_a_sentinel_decision() {
        let named = NamedMaster {
            master: HostPort::new("127.0.0.1", 9002),
            config_epoch: 4,
            votes: 2,
            settled_votes: 2,
        };
        let d = SentinelSource::decision(&named);
        assert_eq!(d.source, Source::Sentinel { agreeing: 2 });
        assert_eq!(d.config_epoch, 4);
        assert_eq!(
            d.master.map(|t| t.address),
            Some(HostPort::new("127.0.0.1", 9002))
        );
    }
}
