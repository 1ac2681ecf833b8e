//! Redis connections for the simulation: one fresh connection per (re)connect, with a
//! connect timeout and a reply timeout, so that a paused master or a proxy without a
//! master shows up as an error instead of a hang.
//!
//! Not `redis_ha_common::redis_client::RedisLink` on purpose: the simulator's clients hold
//! the raw connection (pipelines, commands that block for their own time, BLMOVE and WAIT),
//! and must see every broken connection as one, since the report counts disconnections and
//! reconnects, where `RedisLink` re-connects and retries once on its own. The chaos targets'
//! probes of nodes and Sentinels do use `RedisLink` (and `redis_ha_sentinel`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    ProtocolVersion, RedisConnectionInfo, RedisError,
};
use redis_ha_common::{HostPort, Secret};

/// Where to connect (HAProxy's frontend for the clients) and how patiently.
#[derive(Clone, Debug)]
pub struct RedisEndpoint {
    pub addr: HostPort,
    /// The ACL user (`None`: `default`).
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Connect timeout, and the reply timeout on top of a command's own blocking time.
    pub io_timeout: Duration,
}

/// Why a connection or a command failed, as one line for logs and the report.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{addr}: {source}")]
    Redis {
        addr: String,
        #[source]
        source: RedisError,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

impl ConnError {
    /// The error code when Redis answered with an error that leaves the connection usable
    /// (`NOREPLICAS`, `ERR` ...). `None` for a lost or timed-out connection, and for the
    /// answers that mean this connection reached the wrong node (`READONLY`: a replica,
    /// `MASTERDOWN`, `LOADING`): those need a new connection, routed anew.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            Self::Redis { source, .. } => source
                .code()
                .filter(|c| !matches!(*c, "READONLY" | "MASTERDOWN" | "LOADING")),
            Self::Timeout { .. } => None,
        }
    }
}

impl RedisEndpoint {
    pub fn new(addr: HostPort, password: Option<Secret>, io_timeout: Duration) -> Self {
        Self {
            addr,
            user: None,
            password,
            io_timeout,
        }
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            addr: ConnectionAddr::Tcp(self.addr.host.clone(), self.addr.port),
            redis: RedisConnectionInfo {
                db: 0,
                username: self.user.clone(),
                password: self.password.as_ref().map(|s| s.expose().to_owned()),
                protocol: ProtocolVersion::RESP2,
            },
        }
    }

    /// A new connection whose replies may take `blocking` (a command's own wait, as for
    /// BLMOVE or WAIT) plus the I/O timeout.
    pub async fn connect(&self, blocking: Duration) -> Result<MultiplexedConnection, ConnError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.io_timeout)
            .set_response_timeout(blocking + self.io_timeout);
        let fut = async {
            let client = Client::open(self.info())?;
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        // The connection set-up exchanges commands too (CLIENT SETINFO): bound all of it.
        match tokio::time::timeout(self.io_timeout * 2, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(self.error(source)),
            Err(_) => Err(ConnError::Timeout {
                addr: self.addr.to_string(),
                timeout: self.io_timeout * 2,
            }),
        }
    }

    pub fn error(&self, source: RedisError) -> ConnError {
        ConnError::Redis {
            addr: self.addr.to_string(),
            source,
        }
    }

    /// Runs one command on `con`, bounded by `blocking` + the I/O timeout on our side too.
    pub async fn run<T: FromRedisValue>(
        &self,
        con: &mut MultiplexedConnection,
        cmd: &Cmd,
        blocking: Duration,
    ) -> Result<T, ConnError> {
        let limit = blocking + self.io_timeout * 2;
        match tokio::time::timeout(limit, cmd.query_async::<T>(con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(ConnError::Timeout {
                addr: self.addr.to_string(),
                timeout: limit,
            }),
        }
    }

    /// One command on a fresh connection (probes of nodes and Sentinels).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, ConnError> {
        let mut con = self.connect(Duration::ZERO).await?;
        self.run(&mut con, cmd, Duration::ZERO).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;

    fn redis_err(e: RedisError) -> ConnError {
        ConnError::Redis {
            addr: "h:1".into(),
            source: e,
        }
    }

    #[test]
    fn refusals_keep_the_connection_wrong_nodes_do_not() {
        // As the reply parser makes it from "-NOREPLICAS Not enough good replicas to write."
        let noreplicas = redis_err(redis::make_extension_error(
            "NOREPLICAS".to_owned(),
            Some("Not enough good replicas to write.".to_owned()),
        ));
        assert_eq!(noreplicas.refusal_code(), Some("NOREPLICAS"));
        let readonly = redis_err(RedisError::from((ErrorKind::ReadOnly, "READONLY")));
        assert_eq!(readonly.refusal_code(), None);
        let io = redis_err(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::BrokenPipe,
        )));
        assert_eq!(io.refusal_code(), None);
        let t = ConnError::Timeout {
            addr: "h:1".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(t.refusal_code(), None);
    }
}
