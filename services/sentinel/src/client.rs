//! The Sentinel client: one connection to one Sentinel, with a bound on every call.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use redis_ha_common::{HostPort, Secret};

use crate::reply::{parse_master, ReplyError, SentinelMaster};

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("sentinel {addr}: {source}")]
    Redis {
        addr: HostPort,
        source: redis::RedisError,
    },
    #[error("sentinel {addr}: no answer within {after:?}")]
    Timeout { addr: HostPort, after: Duration },
    #[error("sentinel {addr}: {command}: {source}")]
    Reply {
        addr: HostPort,
        command: String,
        source: ReplyError,
    },
}

/// A connection to one Sentinel, made on first use and again after an error.
pub struct SentinelClient {
    addr: HostPort,
    client: Client,
    conn: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl SentinelClient {
    /// A client for the Sentinel at `addr`; nothing is sent until the first call.
    pub fn new(
        addr: HostPort,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, SentinelError> {
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(addr.host.clone(), addr.port),
            redis: RedisConnectionInfo {
                password: password.map(|p| p.expose().to_owned()),
                ..RedisConnectionInfo::default()
            },
        };
        let client = Client::open(info).map_err(|source| SentinelError::Redis {
            addr: addr.clone(),
            source,
        })?;
        Ok(Self {
            addr,
            client,
            conn: None,
            timeout,
        })
    }

    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    fn timed_out(&self) -> SentinelError {
        SentinelError::Timeout {
            addr: self.addr.clone(),
            after: self.timeout,
        }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, SentinelError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        // The handshake (AUTH) is bounded too: a peer that accepts and never answers must not
        // hang the caller.
        let conn = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| self.timed_out())?
        .map_err(|source| SentinelError::Redis {
            addr: self.addr.clone(),
            source,
        })?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one command; any error drops the connection, so the next call starts afresh.
    pub async fn query(&mut self, cmd: &redis::Cmd) -> Result<redis::Value, SentinelError> {
        let mut conn = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await;
        match result {
            Err(_) => {
                self.conn = None;
                Err(self.timed_out())
            }
            Ok(Err(source)) => {
                self.conn = None;
                Err(SentinelError::Redis {
                    addr: self.addr.clone(),
                    source,
                })
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// `SENTINEL MASTER <group>`.
    pub async fn master(&mut self, group: &str) -> Result<SentinelMaster, SentinelError> {
        let v = self
            .query(redis::cmd("SENTINEL").arg("MASTER").arg(group))
            .await?;
        parse_master(&v).map_err(|source| SentinelError::Reply {
            addr: self.addr.clone(),
            command: format!("SENTINEL MASTER {group}"),
            source,
        })
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
    let asks = sentinels.iter().map(|addr| async move {
        let mut c = SentinelClient::new(addr.clone(), password, timeout)?;
        c.master(group).await.map(|m| m.view(addr.clone()))
    });
    let mut views = Vec::new();
    let mut errors = Vec::new();
    for r in futures::future::join_all(asks).await {
        match r {
            Ok(v) => views.push(v),
            Err(e) => errors.push(e),
        }
    }
    (views, errors)
}
