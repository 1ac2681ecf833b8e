//! The one way the sidecars talk to a Redis or a Sentinel: a [`RedisLink`] (one connection,
//! made on first use, with the password, a bound on the connect, the handshake and every
//! command), its typed errors ([`LinkError`], naming the peer, its address and the command,
//! never a password), and the readers every reply parser shares ([`text`], [`info_fields`],
//! [`ReplyError`]).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, RedisConnectionInfo,
    RedisError, Value,
};

use crate::{HostPort, Secret};

/// A reply that is not what the command should answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("missing field `{0}`")]
    Missing(String),
    #[error("field `{field}` has an invalid value {value:?}")]
    Invalid { field: String, value: String },
    #[error("unexpected reply shape: {0}")]
    Shape(String),
}

impl ReplyError {
    pub fn invalid(field: &str, value: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            value: value.into(),
        }
    }
}

/// A scalar reply as text (`None` for arrays, maps, nil...).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The `key:value` lines of an `INFO` reply (section headers and blank lines skipped).
pub fn info_fields(info: &str) -> HashMap<&str, &str> {
    info.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

/// Why a call failed. The text names the peer, its address, the command and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
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
    /// The command failed: the server answered with an error (`code` is its code, e.g.
    /// `NOGOODSLAVE`), or the connection broke (`code` is `None`).
    #[error("{peer} {addr}: {command}: {reason}")]
    Command {
        peer: &'static str,
        addr: String,
        command: String,
        reason: String,
        code: Option<String>,
    },
    #[error("{peer} {addr}: {command}: unexpected reply: {source}")]
    Reply {
        peer: &'static str,
        addr: String,
        command: String,
        source: ReplyError,
    },
}

impl LinkError {
    /// True for a timeout (a stalled peer).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// `command` to `peer` at `addr` got no answer within `after`.
    pub fn timeout(peer: &'static str, addr: &HostPort, command: &str, after: Duration) -> Self {
        Self::Timeout {
            peer,
            addr: addr.to_string(),
            command: command.to_owned(),
            timeout_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// `command` to `peer` at `addr` failed with `e` (a timeout stays a timeout; `after` is
    /// the bound it ran under).
    pub fn command(
        peer: &'static str,
        addr: &HostPort,
        command: &str,
        after: Duration,
        e: &RedisError,
    ) -> Self {
        if e.is_timeout() {
            return Self::timeout(peer, addr, command, after);
        }
        Self::Command {
            peer,
            addr: addr.to_string(),
            command: command.to_owned(),
            reason: e.to_string(),
            code: is_server_reply(e).then(|| e.code().unwrap_or_default().to_owned()),
        }
    }

    /// The cause alone, without the peer and its address (for callers that name the peer
    /// themselves).
    pub fn cause(&self) -> String {
        match self {
            Self::Connect { reason, .. } => format!("connect: {reason}"),
            Self::Timeout {
                command,
                timeout_ms,
                ..
            } => format!("{command} timed out after {timeout_ms} ms"),
            Self::Command { reason, .. } => reason.clone(),
            Self::Reply {
                command, source, ..
            } => format!("{command}: unexpected reply: {source}"),
        }
    }

    /// The server's error code when the server itself refused the command.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Self::Command { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The server answered with an error reply: the connection itself is fine.
fn is_server_reply(e: &RedisError) -> bool {
    e.code().is_some() && !e.is_connection_dropped() && !e.is_io_error()
}

/// One connection to a Redis or a Sentinel, made on first use and again after it broke.
/// Every connect (handshake included) and every command is bounded by the link's timeout.
pub struct RedisLink {
    peer: &'static str,
    addr: HostPort,
    client: Client,
    conn: Option<MultiplexedConnection>,
    /// Connections made so far: a caller can tell a new one (a restarted peer) from the same.
    connections: u64,
    timeout: Duration,
}

impl RedisLink {
    /// A link to `addr`; `peer` ("redis", "sentinel") names it in errors. Nothing is sent
    /// until the first call.
    pub fn new(
        peer: &'static str,
        addr: HostPort,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, LinkError> {
        Self::new_as(peer, addr, None, password, timeout)
    }

    /// Like [`RedisLink::new`], authenticating as the ACL user `user` (`None`: `default`).
    pub fn new_as(
        peer: &'static str,
        addr: HostPort,
        user: Option<&str>,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, LinkError> {
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(addr.host.clone(), addr.port),
            redis: RedisConnectionInfo {
                username: user.map(str::to_owned),
                password: password.map(|p| p.expose().to_owned()),
                ..RedisConnectionInfo::default()
            },
        };
        let client = Client::open(info).map_err(|e| LinkError::Connect {
            peer,
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            peer,
            addr,
            client,
            conn: None,
            connections: 0,
            timeout,
        })
    }

    pub fn peer(&self) -> &'static str {
        self.peer
    }

    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// How many connections were made so far (each reconnection counts).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Drops the connection (the next call reconnects).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// The timeout error of `command`.
    pub fn timeout_error(&self, command: &str) -> LinkError {
        LinkError::timeout(self.peer, &self.addr, command, self.timeout)
    }

    /// The error of `command` failing with `e` (a timeout stays a timeout).
    pub fn command_error(&self, command: &str, e: &RedisError) -> LinkError {
        LinkError::command(self.peer, &self.addr, command, self.timeout, e)
    }

    fn connect_error(&self, e: &RedisError) -> LinkError {
        if e.is_timeout() {
            return self.timeout_error("connect");
        }
        LinkError::Connect {
            peer: self.peer,
            addr: self.addr.to_string(),
            reason: e.to_string(),
        }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, LinkError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        // The handshake (AUTH, CLIENT SETINFO) is covered by this timeout too: a peer that
        // accepts and never answers must not hang the caller.
        let conn = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| self.timeout_error("connect"))?
        .map_err(|e| self.connect_error(&e))?;
        self.conn = Some(conn.clone());
        self.connections += 1;
        Ok(conn)
    }

    /// Runs one command; `label` names it in errors (never the arguments: AUTH is not sent
    /// through here, keep it that way). A connection that was closed under us is re-made and
    /// the command retried once at once: Sentinel's promotion (`CLIENT KILL TYPE normal`)
    /// closes every client at the very moment the node becomes master, and that moment must
    /// be seen at once, not after a backoff, and not as "unreachable". Any error but a
    /// server's error reply drops the connection.
    pub async fn query(&mut self, cmd: &Cmd, label: &str) -> Result<Value, LinkError> {
        let reused = self.conn.is_some();
        match self.query_once(cmd, label).await {
            Err(e) if reused && self.conn.is_none() && !e.is_timeout() => {
                tracing::debug!(error = %e, "connection lost; reconnecting once at once");
                self.query_once(cmd, label).await
            }
            other => other,
        }
    }

    /// Runs `pipe` (its commands sent at once, one round trip) with the same timeout, error and
    /// reconnect rules as [`RedisLink::query`]; one reply per command.
    pub async fn query_pipeline(
        &mut self,
        pipe: &redis::Pipeline,
        label: &str,
    ) -> Result<Vec<Value>, LinkError> {
        let reused = self.conn.is_some();
        match self.pipeline_once(pipe, label).await {
            Err(e) if reused && self.conn.is_none() && !e.is_timeout() => {
                tracing::debug!(error = %e, "connection lost; reconnecting once at once");
                self.pipeline_once(pipe, label).await
            }
            other => other,
        }
    }

    async fn pipeline_once(
        &mut self,
        pipe: &redis::Pipeline,
        label: &str,
    ) -> Result<Vec<Value>, LinkError> {
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(self.timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await;
        self.settle(r, label)
    }

    async fn query_once(&mut self, cmd: &Cmd, label: &str) -> Result<Value, LinkError> {
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(self.timeout, cmd.query_async::<Value>(&mut conn)).await;
        self.settle(r, label)
    }

    /// A call's outcome under the timeout: a timeout or a broken connection drops it, a
    /// server's error reply keeps it.
    fn settle<T>(
        &mut self,
        r: Result<Result<T, RedisError>, tokio::time::error::Elapsed>,
        label: &str,
    ) -> Result<T, LinkError> {
        match r {
            Err(_) => {
                self.conn = None;
                Err(self.timeout_error(label))
            }
            Ok(Err(e)) => {
                if !is_server_reply(&e) {
                    self.conn = None;
                }
                Err(self.command_error(label, &e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// The error for a reply of `command` that the caller cannot read; the connection is
    /// dropped, as the stream may be out of step.
    pub fn reply_error(&mut self, command: &str, source: ReplyError) -> LinkError {
        self.conn = None;
        LinkError::Reply {
            peer: self.peer,
            addr: self.addr.to_string(),
            command: command.to_owned(),
            source,
        }
    }

    /// A text reply (`INFO`), or a reply error.
    pub fn text_reply(&mut self, command: &str, v: &Value) -> Result<String, LinkError> {
        match v {
            Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => {
                Ok(text(v).unwrap_or_default())
            }
            other => Err(self.reply_error(
                command,
                ReplyError::Shape(format!("expected text, got {other:?}")),
            )),
        }
    }

    /// A separate pub/sub connection, made within the link's timeout.
    pub async fn pubsub(&self) -> Result<PubSub, LinkError> {
        tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| self.timeout_error("connect (pub/sub)"))?
            .map_err(|e| self.connect_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_skip_headers_and_blank_lines() {
        let f = info_fields(
            "# Replication\r\nrole:master\r\n\r\nconnected_slaves:1\r\nslave0:ip=a,port=1\r\n",
        );
        assert_eq!(f.get("role"), Some(&"master"));
        assert_eq!(f.get("connected_slaves"), Some(&"1"));
        assert_eq!(f.get("slave0"), Some(&"ip=a,port=1"));
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn text_of_scalars_only() {
        assert_eq!(text(&Value::Int(3)).as_deref(), Some("3"));
        assert_eq!(
            text(&Value::BulkString(b"x".to_vec())).as_deref(),
            Some("x")
        );
        assert_eq!(text(&Value::Nil), None);
        assert_eq!(text(&Value::Array(vec![])), None);
    }

    fn link(peer: &'static str, listener: &std::net::TcpListener, ms: u64) -> RedisLink {
        let port = listener.local_addr().expect("addr").port();
        RedisLink::new(
            peer,
            HostPort::new("127.0.0.1", port),
            None,
            Duration::from_millis(ms),
        )
        .expect("a client")
    }

    #[tokio::test]
    async fn a_peer_that_hangs_up_is_a_connect_error_naming_peer_and_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut link = link("redis", &listener, 2000);
        // Accepts and closes every connection at once.
        std::thread::spawn(move || {
            for s in listener.incoming() {
                drop(s);
            }
        });
        let e = link.query(&redis::cmd("PING"), "PING").await.unwrap_err();
        assert!(matches!(e, LinkError::Connect { .. }), "{e}");
        let prefix = format!("redis {}: connect", link.addr());
        assert!(e.to_string().starts_with(&prefix), "{e}");
        assert_eq!(e.server_code(), None);
        assert!(!link.is_connected());
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_in_the_handshake() {
        // Accepted by the kernel, never answered.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut link = link("sentinel", &listener, 200);
        let e = link.query(&redis::cmd("PING"), "PING").await.unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(e.cause(), "connect timed out after 200 ms");
        let e = link.pubsub().await.map(drop).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        drop(listener);
    }
}
