//! Talking to the node's Redis and Sentinel: one connection each, a timeout around every
//! connect and command, the connection dropped (and re-made on the next call) after any
//! I/O error, timeout or unreadable reply. Callers decide when to retry (backoff).

use std::time::{Duration, Instant};

use redis_ha_common::redis_client::RedisLink;
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::{RedisStatus, SentinelStatus};
use redis_ha_sentinel::{EventSubscription, SentinelClient};

use crate::config::AgentSettings;
use crate::redis_parse::{
    parse_info_replication, parse_role, parse_run_id, ReplicationInfo, RoleReply,
};
use crate::sentinel_parse::{replica_view, SentinelObservation};

/// Why an observation failed. The text names the peer, the command and the cause; it
/// never contains a password.
pub use redis_ha_common::redis_client::LinkError as ObserveError;

/// Everything one full poll of a Redis node saw.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisObservation {
    /// `PING` round trip.
    pub ping_micros: u64,
    pub replication: ReplicationInfo,
    /// `ROLE`, asked after `INFO`: the freshest word on the role.
    pub role: RoleReply,
    pub run_id: String,
}

impl RedisObservation {
    /// The report form; `role_changed_at_ms` is left 0 for the caller.
    pub fn to_status(&self, announce: &HostPort) -> RedisStatus {
        let mut s = RedisStatus {
            address: announce.to_string(),
            reachable: true,
            ping_micros: self.ping_micros,
            run_id: self.run_id.clone(),
            ..RedisStatus::default()
        };
        self.replication.apply_to(&mut s);
        self.role.merge_into(&mut s);
        s
    }
}

/// A `RedisStatus` for a node that could not be observed.
pub fn unreachable_redis(announce: &HostPort, error: &ObserveError) -> RedisStatus {
    RedisStatus {
        address: announce.to_string(),
        reachable: false,
        error: error.to_string(),
        ..RedisStatus::default()
    }
}

/// Observes one Redis node.
pub struct RedisProbe {
    link: RedisLink,
    announce: HostPort,
    run_id: Option<String>,
}

impl RedisProbe {
    /// `addr` is where to connect, `announce` the address reports carry.
    pub fn new(
        addr: HostPort,
        announce: HostPort,
        password: Option<&Secret>,
        io_timeout: Duration,
    ) -> Result<Self, ObserveError> {
        Self::with_user(addr, announce, None, password, io_timeout)
    }

    /// Like [`RedisProbe::new`], authenticating as the ACL user `user` (`None`: `default`).
    pub fn with_user(
        addr: HostPort,
        announce: HostPort,
        user: Option<&str>,
        password: Option<&Secret>,
        io_timeout: Duration,
    ) -> Result<Self, ObserveError> {
        Ok(Self {
            link: RedisLink::new_as("redis", addr, user, password, io_timeout)?,
            announce,
            run_id: None,
        })
    }

    pub fn from_settings(s: &AgentSettings) -> Result<Self, ObserveError> {
        Self::with_user(
            s.redis_addr.clone(),
            s.announce_addr.clone(),
            s.redis_user.as_deref(),
            s.redis_password.as_ref(),
            s.io_timeout,
        )
    }

    pub fn announce_addr(&self) -> &HostPort {
        &self.announce
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// Full poll: `PING` (timed), `INFO replication`, `ROLE`, and `INFO server` once per
    /// connection for the run id.
    pub async fn observe(&mut self) -> Result<RedisObservation, ObserveError> {
        if !self.is_connected() {
            // A new connection may be a restarted process: ask its run id again.
            self.run_id = None;
        }
        let started = Instant::now();
        self.link.query(&redis::cmd("PING"), "PING").await?;
        let ping_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);

        let run_id = match &self.run_id {
            Some(id) => id.clone(),
            None => {
                let v = self
                    .link
                    .query(redis::cmd("INFO").arg("server"), "INFO server")
                    .await?;
                let text = self.link.text_reply("INFO server", &v)?;
                let id =
                    parse_run_id(&text).map_err(|e| self.link.reply_error("INFO server", e))?;
                self.run_id = Some(id.clone());
                id
            }
        };

        let replication = self.replication().await?;
        let role = self.role().await?;
        Ok(RedisObservation {
            ping_micros,
            replication,
            role,
            run_id,
        })
    }

    /// `PING` alone: connects when there is no connection.
    pub async fn ping(&mut self) -> Result<(), ObserveError> {
        self.link
            .query(&redis::cmd("PING"), "PING")
            .await
            .map(|_| ())
    }

    /// `INFO replication` alone.
    pub async fn replication(&mut self) -> Result<ReplicationInfo, ObserveError> {
        let v = self
            .link
            .query(redis::cmd("INFO").arg("replication"), "INFO replication")
            .await?;
        let text = self.link.text_reply("INFO replication", &v)?;
        parse_info_replication(&text).map_err(|e| self.link.reply_error("INFO replication", e))
    }

    /// `ROLE` alone: the fast poll during a failover.
    pub async fn role(&mut self) -> Result<RoleReply, ObserveError> {
        let v = self.link.query(&redis::cmd("ROLE"), "ROLE").await?;
        parse_role(&v).map_err(|e| self.link.reply_error("ROLE", e))
    }

    /// Full poll as a report status: `reachable = false` with the error when it fails.
    pub async fn status(&mut self) -> RedisStatus {
        match self.observe().await {
            Ok(o) => o.to_status(&self.announce),
            Err(e) => unreachable_redis(&self.announce, &e),
        }
    }

    /// Fencing: `REPLICAOF host port`.
    pub async fn replicaof(&mut self, master: &HostPort) -> Result<(), ObserveError> {
        let label = format!("REPLICAOF {master}");
        self.link
            .query(
                redis::cmd("REPLICAOF").arg(&master.host).arg(master.port),
                &label,
            )
            .await
            .map(|_| ())
    }

    /// Drops the connection (the next call reconnects).
    pub fn disconnect(&mut self) {
        self.link.disconnect();
    }
}

/// A `SentinelStatus` for a Sentinel that could not be observed.
pub fn unreachable_sentinel(addr: &HostPort, error: &ObserveError) -> SentinelStatus {
    SentinelStatus {
        address: addr.to_string(),
        reachable: false,
        error: error.to_string(),
        ..SentinelStatus::default()
    }
}

/// Observes one Sentinel.
pub struct SentinelProbe {
    client: SentinelClient,
}

impl SentinelProbe {
    pub fn new(client: SentinelClient) -> Self {
        Self { client }
    }

    pub fn from_settings(s: &AgentSettings) -> Result<Self, ObserveError> {
        let client = SentinelClient::new(
            s.sentinel_addr.clone(),
            s.sentinel_password.as_ref(),
            s.io_timeout,
        )?;
        Ok(Self::new(client))
    }

    pub fn addr(&self) -> &HostPort {
        self.client.addr()
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// How many connections were made so far: a new one may be a restarted Sentinel.
    pub fn connections(&self) -> u64 {
        self.client.connections()
    }

    /// `SENTINEL MASTER`, `SENTINEL REPLICAS`, `SENTINEL SENTINELS` for `group`.
    pub async fn observe(&mut self, group: &str) -> Result<SentinelObservation, ObserveError> {
        let master = self.client.master(group).await?;
        let replicas = self.client.replicas(group).await?;
        let peers = self.client.sentinels(group).await?;
        Ok(SentinelObservation {
            master,
            replicas: replicas.iter().map(replica_view).collect(),
            peers: peers.iter().map(HostPort::to_string).collect(),
        })
    }

    /// Sets the Sentinel's ping-period to `want` ms ([`redis_ha_sentinel::timers`]) when it is
    /// not that already; returns the value it had when it was changed.
    pub async fn tune_ping_period(&mut self, want: u64) -> Result<Option<u64>, ObserveError> {
        let had = self.client.ping_period().await?;
        if had == want {
            return Ok(None);
        }
        self.client.set_ping_period(want).await?;
        Ok(Some(had))
    }

    /// Poll as a report status: `reachable = false` with the error when it fails.
    pub async fn status(&mut self, group: &str) -> SentinelStatus {
        match self.observe(group).await {
            Ok(o) => o.to_status(self.client.addr()),
            Err(e) => unreachable_sentinel(self.client.addr(), &e),
        }
    }

    /// A separate connection subscribed to every channel (`PSUBSCRIBE *`): Sentinel's events,
    /// pinged every `keepalive`.
    pub async fn subscribe_events(
        &self,
        keepalive: Duration,
    ) -> Result<EventSubscription, ObserveError> {
        self.client.subscribe("*", keepalive).await
    }
}
