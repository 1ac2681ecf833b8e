//! RESP through the `redis` crate: one command on a fresh connection to any Redis, Sentinel or
//! proxy port on loopback, a held connection, and the few replies tests read (INFO, ROLE,
//! `CONFIG GET port`).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    ProtocolVersion, RedisConnectionInfo,
};
use redis_ha_common::redis_client::info_fields;

/// How long connecting, or one reply, may take: a paused (SIGSTOPped) server never answers.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("127.0.0.1:{port}: {source}")]
    Redis {
        port: u16,
        #[source]
        source: redis::RedisError,
    },
    #[error("127.0.0.1:{port}: no answer within {QUERY_TIMEOUT:?}")]
    Timeout { port: u16 },
}

impl QueryError {
    /// The server's error code (`NOREPLICAS`, `NOAUTH` ...) when it answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Redis { source, .. } => source.code(),
            Self::Timeout { .. } => None,
        }
    }
}

/// A connection to 127.0.0.1:`port` kept by the caller (e.g. a client held through a proxy:
/// once the other side closes it, every command on it fails; it never reconnects).
pub async fn connect(
    port: u16,
    password: Option<&str>,
) -> Result<MultiplexedConnection, QueryError> {
    connect_as(port, None, password).await
}

/// [`connect`] as the ACL user `user` (`None`: `default`).
pub async fn connect_as(
    port: u16,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<MultiplexedConnection, QueryError> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp("127.0.0.1".into(), port),
        redis: RedisConnectionInfo {
            db: 0,
            username: user.map(str::to_owned),
            password: password.map(str::to_owned),
            protocol: ProtocolVersion::RESP2,
        },
    };
    let fut = async {
        let client = Client::open(info)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(QUERY_TIMEOUT)
            .set_response_timeout(QUERY_TIMEOUT);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    };
    match tokio::time::timeout(QUERY_TIMEOUT * 2, fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(QueryError::Redis { port, source }),
        Err(_) => Err(QueryError::Timeout { port }),
    }
}

/// Runs `cmd` on a connection from [`connect`] (`port` names it in errors).
pub async fn run<T: FromRedisValue>(
    con: &mut MultiplexedConnection,
    port: u16,
    cmd: &Cmd,
) -> Result<T, QueryError> {
    match tokio::time::timeout(QUERY_TIMEOUT * 2, cmd.query_async::<T>(con)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(QueryError::Redis { port, source }),
        Err(_) => Err(QueryError::Timeout { port }),
    }
}

/// The keys of `keys` the server on `con` does not hold: the acknowledged writes a failover
/// lost. MGET in batches of 500, so a long run's keys never make one huge reply.
pub async fn missing_keys<'a>(
    con: &mut MultiplexedConnection,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, redis::RedisError> {
    let keys: Vec<&str> = keys.into_iter().collect();
    let mut missing = Vec::new();
    for batch in keys.chunks(500) {
        let mut c = redis::cmd("MGET");
        for k in batch {
            c.arg(*k);
        }
        let values: Vec<Option<redis::Value>> = c.query_async(con).await?;
        missing.extend(
            batch
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| (*k).to_owned()),
        );
    }
    Ok(missing)
}

/// Runs one command on a fresh connection to 127.0.0.1:`port` (fresh, so a restarted or
/// killed server never leaves a stale connection behind).
pub async fn query<T: FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &Cmd,
) -> Result<T, QueryError> {
    let mut con = connect(port, password).await?;
    run(&mut con, port, cmd).await
}

/// [`query`] as the ACL user `user`.
pub async fn query_as<T: FromRedisValue>(
    port: u16,
    user: &str,
    password: &str,
    cmd: &Cmd,
) -> Result<T, QueryError> {
    let mut con = connect_as(port, Some(user), Some(password)).await?;
    run(&mut con, port, cmd).await
}

/// `INFO <section>` as a key → value map.
pub async fn info(
    port: u16,
    password: Option<&str>,
    section: &str,
) -> Result<HashMap<String, String>, QueryError> {
    let text: String = query(port, password, redis::cmd("INFO").arg(section)).await?;
    Ok(parse_info(&text))
}

/// Parses INFO output ("key:value" lines, "# Section" headers) by the product's rule
/// ([`info_fields`]), into owned strings.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    info_fields(text)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The first element of `ROLE`: "master", "slave" or "sentinel".
pub async fn role(port: u16, password: Option<&str>) -> Result<String, QueryError> {
    let v: Vec<redis::Value> = query(port, password, &redis::cmd("ROLE")).await?;
    Ok(match v.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        other => format!("{other:?}"),
    })
}

/// True when PING on `con` is answered (false once the other side has closed it).
pub async fn pongs(con: &mut MultiplexedConnection, port: u16) -> bool {
    run::<String>(con, port, &redis::cmd("PING"))
        .await
        .is_ok_and(|r| r == "PONG")
}

/// `CONFIG GET port` on `con`: which Redis a connection (through a proxy) reached.
pub async fn config_port(con: &mut MultiplexedConnection, port: u16) -> Result<u16, String> {
    let (_, value): (String, String) = run(con, port, redis::cmd("CONFIG").arg("GET").arg("port"))
        .await
        .map_err(|e| e.to_string())?;
    value
        .parse()
        .map_err(|e| format!("CONFIG GET port: {value:?}: {e}"))
}

/// The port of the Redis a new connection to 127.0.0.1:`port` reaches (`CONFIG GET port`);
/// `None` when the connection is closed at once (a proxy with nothing routed) or fails.
pub async fn routed_port(port: u16, password: Option<&str>) -> Option<u16> {
    let mut con = connect(port, password).await.ok()?;
    config_port(&mut con, port).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_parsed() {
        let m = parse_info("# Replication\r\nrole:slave\r\nmaster_port:9001\r\n\r\n");
        assert_eq!(m["role"], "slave");
        assert_eq!(m["master_port"], "9001");
        assert_eq!(m.len(), 2);
    }
}
