//! The Sentinel client: one connection to one Sentinel (a [`RedisLink`]: password, a bound on
//! the connect, the handshake and every call), its commands, and the event subscription.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Value;
use redis_ha_common::redis_client::{LinkError, RedisLink};
use redis_ha_common::{HostPort, Secret};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::reply::{
    parse_master, parse_master_addr, parse_replicas, parse_sentinels, parse_vote, ReplyError,
    SentinelMaster, SentinelReplica, Vote,
};

/// One Sentinel's answers to [`SentinelClient::ballot_poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BallotPoll {
    pub master: SentinelMaster,
    /// `INFO sentinel` says `sentinel_tilt:1`.
    pub tilt: bool,
    /// `SENTINEL MYID`.
    pub run_id: String,
    /// Its last vote about the master asked for.
    pub last_vote: Vote,
}

/// Why a call to a Sentinel failed: names the Sentinel, the command and the cause.
pub type SentinelError = LinkError;

/// How errors name a Sentinel.
const PEER: &str = "sentinel";

/// A connection to one Sentinel, made on first use and again after it broke. A connection
/// closed under a call is re-made and the call retried once at once; an error reply keeps
/// the connection.
pub struct SentinelClient {
    link: RedisLink,
}

impl SentinelClient {
    /// A client for the Sentinel at `addr`; nothing is sent until the first call.
    pub fn new(
        addr: HostPort,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, SentinelError> {
        Ok(Self {
            link: RedisLink::new(PEER, addr, password, timeout)?,
        })
    }

    pub fn addr(&self) -> &HostPort {
        self.link.addr()
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// How many connections were made so far ([`RedisLink::connections`]).
    pub fn connections(&self) -> u64 {
        self.link.connections()
    }

    /// Runs one command; `label` names it in errors.
    pub async fn query(&mut self, cmd: &redis::Cmd, label: &str) -> Result<Value, SentinelError> {
        self.link.query(cmd, label).await
    }

    /// `SENTINEL <sub> <group>`, its reply read by `parse`.
    async fn group_command<T>(
        &mut self,
        sub: &str,
        group: &str,
        parse: impl FnOnce(&Value) -> Result<T, ReplyError>,
    ) -> Result<T, SentinelError> {
        let label = format!("SENTINEL {sub} {group}");
        let v = self
            .link
            .query(redis::cmd("SENTINEL").arg(sub).arg(group), &label)
            .await?;
        parse(&v).map_err(|e| self.link.reply_error(&label, e))
    }

    /// `SENTINEL MASTER <group>`.
    pub async fn master(&mut self, group: &str) -> Result<SentinelMaster, SentinelError> {
        self.group_command("MASTER", group, parse_master).await
    }

    /// `SENTINEL REPLICAS <group>`.
    pub async fn replicas(&mut self, group: &str) -> Result<Vec<SentinelReplica>, SentinelError> {
        self.group_command("REPLICAS", group, parse_replicas).await
    }

    /// `SENTINEL SENTINELS <group>`: the other Sentinels of the group.
    pub async fn sentinels(&mut self, group: &str) -> Result<Vec<HostPort>, SentinelError> {
        self.group_command("SENTINELS", group, parse_sentinels)
            .await
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <group>`; `None` for a group it does not monitor.
    pub async fn master_addr(&mut self, group: &str) -> Result<Option<HostPort>, SentinelError> {
        self.group_command("GET-MASTER-ADDR-BY-NAME", group, parse_master_addr)
            .await
    }

    /// `SENTINEL DEBUG`'s ping-period ([`crate::timers`]).
    pub async fn ping_period(&mut self) -> Result<u64, SentinelError> {
        let label = "SENTINEL DEBUG";
        let v = self
            .link
            .query(redis::cmd("SENTINEL").arg("DEBUG"), label)
            .await?;
        crate::timers::parse_ping_period(&v).map_err(|e| self.link.reply_error(label, e))
    }

    /// `SENTINEL DEBUG ping-period <ms>` ([`crate::timers`]).
    pub async fn set_ping_period(&mut self, ms: u64) -> Result<(), SentinelError> {
        self.link
            .query(
                redis::cmd("SENTINEL")
                    .arg("DEBUG")
                    .arg("ping-period")
                    .arg(ms),
                "SENTINEL DEBUG ping-period",
            )
            .await
            .map(drop)
    }

    /// `SENTINEL FAILOVER <group>`. A refusal is a [`LinkError::Command`] whose
    /// [`LinkError::server_code`] says why (`INPROG`, `NOGOODSLAVE`, ...).
    pub async fn failover(&mut self, group: &str) -> Result<(), SentinelError> {
        self.group_command("FAILOVER", group, |_| Ok(())).await
    }

    /// `SENTINEL IS-MASTER-DOWN-BY-ADDR <master> <epoch> <candidate>`: asks this Sentinel to
    /// vote for `candidate` (a run id) in `epoch`, as a Sentinel starting a failover does. It
    /// votes when it has not voted in `epoch` or later and its own epoch is not above it; a
    /// Sentinel that voted for someone else does not start a failover of its own for twice the
    /// failover-timeout. With `epoch` 0 nothing is voted: the reply is the last vote.
    pub async fn vote(
        &mut self,
        master: &HostPort,
        epoch: u64,
        candidate: &str,
    ) -> Result<Vote, SentinelError> {
        let label = format!("SENTINEL IS-MASTER-DOWN-BY-ADDR {master} {epoch}");
        let v = self
            .link
            .query(
                redis::cmd("SENTINEL")
                    .arg("IS-MASTER-DOWN-BY-ADDR")
                    .arg(&master.host)
                    .arg(master.port)
                    .arg(epoch)
                    .arg(candidate),
                &label,
            )
            .await?;
        parse_vote(&v).map_err(|e| self.link.reply_error(&label, e))
    }

    /// What a crash failover's ballot needs of this Sentinel, in one round trip: `SENTINEL
    /// MASTER <group>`, whether `INFO sentinel` says TILT, `SENTINEL MYID`, and its last vote
    /// on `master` (the vote request at epoch 0, which votes nothing).
    pub async fn ballot_poll(
        &mut self,
        group: &str,
        master: &HostPort,
    ) -> Result<BallotPoll, SentinelError> {
        let label = format!("SENTINEL MASTER/MYID/IS-MASTER-DOWN-BY-ADDR {group} + INFO sentinel");
        let mut pipe = redis::pipe();
        pipe.cmd("SENTINEL").arg("MASTER").arg(group);
        pipe.cmd("INFO").arg("sentinel");
        pipe.cmd("SENTINEL").arg("MYID");
        pipe.cmd("SENTINEL")
            .arg("IS-MASTER-DOWN-BY-ADDR")
            .arg(&master.host)
            .arg(master.port)
            .arg(0)
            .arg("redis-ha-read-vote");
        let replies = self.link.query_pipeline(&pipe, &label).await?;
        let [m, info, id, vote] = replies.as_slice() else {
            return Err(self.link.reply_error(
                &label,
                ReplyError::Shape(format!("{} replies to 4 commands", replies.len())),
            ));
        };
        let parsed = (|| {
            let master = parse_master(m)?;
            let tilt = crate::reply::text(info).is_some_and(|t| {
                redis_ha_common::redis_client::info_fields(&t).get("sentinel_tilt") == Some(&"1")
            });
            let run_id = crate::reply::text(id)
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ReplyError::invalid("myid", format!("{id:?}")))?;
            let last_vote = parse_vote(vote)?;
            Ok(BallotPoll {
                master,
                tilt,
                run_id,
                last_vote,
            })
        })();
        parsed.map_err(|e| self.link.reply_error(&label, e))
    }

    /// A separate connection subscribed to the channels matching `pattern` (`*` for every
    /// event, `+switch-master` for one kind), pinged every `keepalive` so a stalled Sentinel
    /// is noticed.
    pub async fn subscribe(
        &self,
        pattern: &str,
        keepalive: Duration,
    ) -> Result<EventSubscription, SentinelError> {
        let (mut sink, stream) = self.link.pubsub().await?.split();
        let label = format!("PSUBSCRIBE {pattern}");
        tokio::time::timeout(self.link.timeout(), sink.psubscribe(pattern))
            .await
            .map_err(|_| self.link.timeout_error(&label))?
            .map_err(|e| self.link.command_error(&label, &e))?;
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(EventSubscription {
            addr: self.addr().clone(),
            timeout: self.link.timeout(),
            sink,
            stream,
            ping,
        })
    }
}

/// One message a Sentinel published: the channel is the event kind (see
/// [`crate::events::parse_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelMessage {
    pub channel: String,
    pub payload: String,
}

/// A subscribed connection to one Sentinel.
pub struct EventSubscription {
    addr: HostPort,
    timeout: Duration,
    sink: PubSubSink,
    stream: PubSubStream,
    ping: Interval,
}

impl EventSubscription {
    /// The next message. Between messages the connection is pinged at the keepalive interval
    /// (`PING` works in subscribed mode); an error means the subscription is over (closed,
    /// stalled): subscribe again.
    pub async fn next(&mut self) -> Result<SentinelMessage, SentinelError> {
        loop {
            tokio::select! {
                msg = self.stream.next() => {
                    let Some(msg) = msg else {
                        return Err(LinkError::Command {
                            peer: PEER,
                            addr: self.addr.to_string(),
                            command: "subscription".into(),
                            reason: "connection closed".into(),
                            code: None,
                        });
                    };
                    return Ok(SentinelMessage {
                        channel: msg.get_channel_name().to_owned(),
                        payload: String::from_utf8_lossy(msg.get_payload_bytes()).into_owned(),
                    });
                }
                _ = self.ping.tick() => self.ping().await?,
            }
        }
    }

    /// Checks the subscribed connection is alive.
    pub async fn ping(&mut self) -> Result<(), SentinelError> {
        let label = "PING (pub/sub)";
        tokio::time::timeout(self.timeout, self.sink.ping::<Value>())
            .await
            .map_err(|_| LinkError::timeout(PEER, &self.addr, label, self.timeout))?
            .map(drop)
            .map_err(|e| LinkError::command(PEER, &self.addr, label, self.timeout, &e))
    }
}

/// Asks every Sentinel in `sentinels` for the group's master at once; returns the answers
/// (as votes for [`crate::named_master`]) and the errors of those that did not answer.
pub async fn ask_all(
    sentinels: &[HostPort],
    group: &str,
    password: Option<&Secret>,
    timeout: Duration,
) -> (Vec<crate::MasterView>, Vec<SentinelError>) {
    let mut clients = Vec::new();
    let mut errors = Vec::new();
    for addr in sentinels {
        match SentinelClient::new(addr.clone(), password, timeout) {
            Ok(c) => clients.push(c),
            Err(e) => errors.push(e),
        }
    }
    let (views, more) = partition_results(ask_each(&mut clients, group).await);
    errors.extend(more);
    (views, errors)
}

/// Asks each client for the group's master at once (keeping their connections for the next
/// round); one result per client, in order.
pub async fn ask_each(
    clients: &mut [SentinelClient],
    group: &str,
) -> Vec<Result<crate::MasterView, SentinelError>> {
    let asks = clients.iter_mut().map(|c| async move {
        let m = c.master(group).await?;
        Ok(m.view(c.addr().clone()))
    });
    futures::future::join_all(asks).await
}

/// The answers and the errors of a round of asks, each in the order asked.
pub fn partition_results<T, E>(results: Vec<Result<T, E>>) -> (Vec<T>, Vec<E>) {
    let mut ok = Vec::new();
    let mut err = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => err.push(e),
        }
    }
    (ok, err)
}
