//! Talking to the node's Redis and Sentinel: one connection each, a timeout around every
//! connect and command, the connection dropped (and re-made on the next call) after any
//! I/O error, timeout or unreadable reply. Callers decide when to retry (backoff).

use std::time::{Duration, Instant};

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use redis::{RedisError, Value};
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::{RedisStatus, SentinelStatus};

use crate::config::AgentSettings;
use crate::redis_parse::{
    parse_info_replication, parse_role, parse_run_id, ParseError, ReplicationInfo, RoleReply,
};
use crate::sentinel_parse::{parse_master, parse_replicas, parse_sentinels, SentinelObservation};

/// Why an observation failed. The text names the peer, the command and the cause; it
/// never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error("{peer} {addr}: connect: {reason}")]
    Connect {
        peer: &'static str,
        addr: String,
        reason: String,
    },
    #[error("{peer} {addr}: {command} timed out after {timeout_ms} ms")]
    Timeout {
        peer: &'static str,
        addr: String,
        command: String,
        timeout_ms: u64,
    },
    #[error("{peer} {addr}: {command}: {reason}")]
    Command {
        peer: &'static str,
        addr: String,
        command: String,
        reason: String,
    },
    #[error("{peer} {addr}: {command}: unexpected reply: {source}")]
    Reply {
        peer: &'static str,
        addr: String,
        command: String,
        source: ParseError,
    },
}

impl ObserveError {
    /// True for a timeout (a stalled peer).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ObserveError::Timeout { .. })
    }
}

/// The server answered with an error reply: the connection itself is fine.
fn is_server_reply(e: &RedisError) -> bool {
    e.code().is_some() && !e.is_connection_dropped() && !e.is_io_error()
}

/// One connection to a Redis or Sentinel, (re)made on demand.
struct Link {
    peer: &'static str,
    addr: HostPort,
    client: Client,
    conn: Option<MultiplexedConnection>,
    io_timeout: Duration,
}

impl Link {
    fn new(
        peer: &'static str,
        addr: HostPort,
        password: Option<&Secret>,
        io_timeout: Duration,
    ) -> Result<Self, ObserveError> {
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(addr.host.clone(), addr.port),
            redis: RedisConnectionInfo {
                password: password.map(|p| p.expose().to_owned()),
                ..RedisConnectionInfo::default()
            },
        };
        let client = Client::open(info).map_err(|e| ObserveError::Connect {
            peer,
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            peer,
            addr,
            client,
            conn: None,
            io_timeout,
        })
    }

    fn timeout_error(&self, command: &str) -> ObserveError {
        ObserveError::Timeout {
            peer: self.peer,
            addr: self.addr.to_string(),
            command: command.to_owned(),
            timeout_ms: u64::try_from(self.io_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, ObserveError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.io_timeout)
            .set_response_timeout(self.io_timeout);
        // The handshake (AUTH, CLIENT SETINFO) is covered by this timeout too: a peer that
        // accepts and never answers must not hang us.
        let conn = tokio::time::timeout(
            self.io_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| self.timeout_error("connect"))?
        .map_err(|e| {
            if e.is_timeout() {
                self.timeout_error("connect")
            } else {
                ObserveError::Connect {
                    peer: self.peer,
                    addr: self.addr.to_string(),
                    reason: e.to_string(),
                }
            }
        })?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one command; `label` names it in errors (never the arguments: AUTH is not sent
    /// through here, but keep it that way). A connection that was closed under us is
    /// re-made and the command retried once: Sentinel's promotion (`CLIENT KILL TYPE
    /// normal`) closes every client at the very moment the node becomes master, and that
    /// moment must be seen at once, not after a backoff, and not as "unreachable".
    async fn query(&mut self, cmd: &redis::Cmd, label: &str) -> Result<Value, ObserveError> {
        let reused = self.conn.is_some();
        match self.query_once(cmd, label).await {
            Err(e) if reused && self.conn.is_none() && !e.is_timeout() => {
                tracing::debug!(error = %e, "connection lost; reconnecting once at once");
                self.query_once(cmd, label).await
            }
            other => other,
        }
    }

    async fn query_once(&mut self, cmd: &redis::Cmd, label: &str) -> Result<Value, ObserveError> {
        let mut conn = self.connection().await?;
        let result =
            tokio::time::timeout(self.io_timeout, cmd.query_async::<Value>(&mut conn)).await;
        match result {
            Err(_) => {
                self.conn = None;
                Err(self.timeout_error(label))
            }
            Ok(Err(e)) => {
                if !is_server_reply(&e) {
                    self.conn = None;
                }
                if e.is_timeout() {
                    return Err(self.timeout_error(label));
                }
                Err(ObserveError::Command {
                    peer: self.peer,
                    addr: self.addr.to_string(),
                    command: label.to_owned(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    fn reply_error(&mut self, command: &str, source: ParseError) -> ObserveError {
        // A reply we cannot read may mean the stream is out of step: start afresh.
        self.conn = None;
        ObserveError::Reply {
            peer: self.peer,
            addr: self.addr.to_string(),
            command: command.to_owned(),
            source,
        }
    }

    fn text_reply(&mut self, command: &str, v: &Value) -> Result<String, ObserveError> {
        match v {
            Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Ok(s.clone()),
            Value::VerbatimString { text, .. } => Ok(text.clone()),
            other => Err(self.reply_error(
                command,
                ParseError::Shape(format!("expected text, got {other:?}")),
            )),
        }
    }
}

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
    link: Link,
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
        Ok(Self {
            link: Link::new("redis", addr, password, io_timeout)?,
            announce,
            run_id: None,
        })
    }

    pub fn from_settings(s: &AgentSettings) -> Result<Self, ObserveError> {
        Self::new(
            s.redis_addr.clone(),
            s.announce_addr.clone(),
            s.redis_password.as_ref(),
            s.io_timeout,
        )
    }

    pub fn announce_addr(&self) -> &HostPort {
        &self.announce
    }

    pub fn is_connected(&self) -> bool {
        self.link.conn.is_some()
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

        let v = self
            .link
            .query(redis::cmd("INFO").arg("replication"), "INFO replication")
            .await?;
        let text = self.link.text_reply("INFO replication", &v)?;
        let replication = parse_info_replication(&text)
            .map_err(|e| self.link.reply_error("INFO replication", e))?;
        let role = self.role().await?;
        Ok(RedisObservation {
            ping_micros,
            replication,
            role,
            run_id,
        })
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
        self.link.conn = None;
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
    link: Link,
}

impl SentinelProbe {
    pub fn new(
        addr: HostPort,
        password: Option<&Secret>,
        io_timeout: Duration,
    ) -> Result<Self, ObserveError> {
        Ok(Self {
            link: Link::new("sentinel", addr, password, io_timeout)?,
        })
    }

    pub fn from_settings(s: &AgentSettings) -> Result<Self, ObserveError> {
        Self::new(
            s.sentinel_addr.clone(),
            s.sentinel_password.as_ref(),
            s.io_timeout,
        )
    }

    pub fn addr(&self) -> &HostPort {
        &self.link.addr
    }

    pub fn is_connected(&self) -> bool {
        self.link.conn.is_some()
    }

    /// `SENTINEL MASTER`, `SENTINEL REPLICAS`, `SENTINEL SENTINELS` for `group`.
    pub async fn observe(&mut self, group: &str) -> Result<SentinelObservation, ObserveError> {
        let label = format!("SENTINEL MASTER {group}");
        let v = self
            .link
            .query(redis::cmd("SENTINEL").arg("MASTER").arg(group), &label)
            .await?;
        let master = parse_master(&v).map_err(|e| self.link.reply_error(&label, e))?;

        let label = format!("SENTINEL REPLICAS {group}");
        let v = self
            .link
            .query(redis::cmd("SENTINEL").arg("REPLICAS").arg(group), &label)
            .await?;
        let replicas = parse_replicas(&v).map_err(|e| self.link.reply_error(&label, e))?;

        let label = format!("SENTINEL SENTINELS {group}");
        let v = self
            .link
            .query(redis::cmd("SENTINEL").arg("SENTINELS").arg(group), &label)
            .await?;
        let peers = parse_sentinels(&v).map_err(|e| self.link.reply_error(&label, e))?;
        Ok(SentinelObservation {
            master,
            replicas,
            peers,
        })
    }

    /// Poll as a report status: `reachable = false` with the error when it fails.
    pub async fn status(&mut self, group: &str) -> SentinelStatus {
        match self.observe(group).await {
            Ok(o) => o.to_status(&self.link.addr),
            Err(e) => unreachable_sentinel(&self.link.addr, &e),
        }
    }

    /// A separate connection subscribed to every channel (`PSUBSCRIBE *`): Sentinel's events.
    pub async fn subscribe_events(&self) -> Result<(PubSubSink, PubSubStream), ObserveError> {
        let timeout = |command: &str| self.link.timeout_error(command);
        let pubsub =
            tokio::time::timeout(self.link.io_timeout, self.link.client.get_async_pubsub())
                .await
                .map_err(|_| timeout("connect (pub/sub)"))?
                .map_err(|e| ObserveError::Connect {
                    peer: self.link.peer,
                    addr: self.link.addr.to_string(),
                    reason: e.to_string(),
                })?;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(self.link.io_timeout, sink.psubscribe("*"))
            .await
            .map_err(|_| timeout("PSUBSCRIBE *"))?
            .map_err(|e| ObserveError::Command {
                peer: self.link.peer,
                addr: self.link.addr.to_string(),
                command: "PSUBSCRIBE *".into(),
                reason: e.to_string(),
            })?;
        Ok((sink, stream))
    }

    /// Checks a subscribed connection is alive (`PING` works in subscribed mode).
    pub async fn ping_subscription(&self, sink: &mut PubSubSink) -> Result<(), ObserveError> {
        tokio::time::timeout(self.link.io_timeout, sink.ping::<Value>())
            .await
            .map_err(|_| self.link.timeout_error("PING (pub/sub)"))?
            .map(|_| ())
            .map_err(|e| ObserveError::Command {
                peer: self.link.peer,
                addr: self.link.addr.to_string(),
                command: "PING (pub/sub)".into(),
                reason: e.to_string(),
            })
    }
}
