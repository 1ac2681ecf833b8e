//! Client for HAProxy's runtime API (the admin "stats socket").
//!
//! Non-interactive mode: one line per connection, HAProxy runs it, answers and closes. Several
//! commands may share the line separated by `;`; each answer ends with an empty line, which no
//! answer contains otherwise, so the answers can be told apart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use redis_ha_common::HostPort;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Biggest answer accepted: `show stat` of a small backend is a few kB.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Longest answer text kept in an error.
const MAX_ERROR_ANSWER: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("HAProxy runtime API {addr}: cannot connect: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HAProxy runtime API {addr}: no complete answer to `{command}` within {after:?}")]
    Timeout {
        addr: String,
        command: String,
        after: Duration,
    },
    #[error("HAProxy runtime API {addr}: `{command}`: {source}")]
    Io {
        addr: String,
        command: String,
        source: std::io::Error,
    },
    #[error("HAProxy runtime API: unexpected answer to `{command}` ({reason}): {answer:?}")]
    Unexpected {
        command: String,
        answer: String,
        reason: String,
    },
}

impl RuntimeError {
    fn unexpected(command: &str, answer: &str, reason: impl Into<String>) -> Self {
        let mut answer = answer.to_owned();
        if answer.len() > MAX_ERROR_ANSWER {
            let mut cut = MAX_ERROR_ANSWER;
            while !answer.is_char_boundary(cut) {
                cut -= 1;
            }
            answer.truncate(cut);
            answer.push_str("...");
        }
        Self::Unexpected {
            command: command.to_owned(),
            answer,
            reason: reason.into(),
        }
    }
}

/// A runtime API endpoint as configured: `unix:/path`, a plain path, or `tcp:host:port`.
/// A TCP host name may resolve to several HAProxy instances (`tasks.<service>` in a swarm).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeEndpoint {
    Unix(PathBuf),
    Tcp(HostPort),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid runtime API address {0:?}: expected unix:/path, /path or tcp:host:port")]
pub struct EndpointParseError(String);

impl FromStr for RuntimeEndpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || EndpointParseError(s.to_owned());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(hp) = s.strip_prefix("tcp:") {
            return hp.parse().map(Self::Tcp).map_err(|_| bad());
        }
        if s.starts_with('/') || s.starts_with("./") {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        Err(bad())
    }
}

impl fmt::Display for RuntimeEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(hp) => write!(f, "tcp:{hp}"),
        }
    }
}

impl RuntimeEndpoint {
    /// The concrete instances behind this endpoint (one per address a TCP name resolves to).
    pub async fn resolve(&self) -> std::io::Result<Vec<RuntimeAddr>> {
        match self {
            Self::Unix(p) => Ok(vec![RuntimeAddr::Unix(p.clone())]),
            Self::Tcp(hp) => {
                if let Ok(ip) = hp.host.parse::<IpAddr>() {
                    return Ok(vec![RuntimeAddr::Tcp(SocketAddr::new(ip, hp.port))]);
                }
                let mut addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((hp.host.as_str(), hp.port))
                        .await?
                        .collect();
                addrs.sort();
                addrs.dedup();
                Ok(addrs.into_iter().map(RuntimeAddr::Tcp).collect())
            }
        }
    }
}

/// One HAProxy instance's runtime API.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuntimeAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for RuntimeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Administrative state the reloader sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminTarget {
    Ready,
    Maint,
}

/// A runtime API command the reloader sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `set server B/S state ready|maint`
    SetState {
        backend: String,
        server: String,
        state: AdminTarget,
    },
    /// `set server B/S addr IP port P`
    SetAddr {
        backend: String,
        server: String,
        addr: SocketAddr,
    },
    /// `shutdown sessions server B/S`
    ShutdownSessions { backend: String, server: String },
}

impl Command {
    pub fn ready(backend: &str, server: &str) -> Self {
        Self::SetState {
            backend: backend.to_owned(),
            server: server.to_owned(),
            state: AdminTarget::Ready,
        }
    }

    pub fn maint(backend: &str, server: &str) -> Self {
        Self::SetState {
            backend: backend.to_owned(),
            server: server.to_owned(),
            state: AdminTarget::Maint,
        }
    }

    pub fn set_addr(backend: &str, server: &str, addr: SocketAddr) -> Self {
        Self::SetAddr {
            backend: backend.to_owned(),
            server: server.to_owned(),
            addr,
        }
    }

    pub fn shutdown_sessions(backend: &str, server: &str) -> Self {
        Self::ShutdownSessions {
            backend: backend.to_owned(),
            server: server.to_owned(),
        }
    }

    /// The server the command acts on.
    pub fn server(&self) -> &str {
        match self {
            Self::SetState { server, .. }
            | Self::SetAddr { server, .. }
            | Self::ShutdownSessions { server, .. } => server,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            Self::SetState {
                state: AdminTarget::Ready,
                ..
            }
        )
    }

    /// Checks HAProxy's answer: `set server ... state` and `shutdown sessions` print nothing on
    /// success, `set server ... addr` reports what changed; anything else is an error text.
    pub fn check_answer(&self, answer: &str) -> Result<(), RuntimeError> {
        let a = answer.trim();
        let ok = match self {
            Self::SetState { .. } | Self::ShutdownSessions { .. } => a.is_empty(),
            Self::SetAddr { .. } => {
                a.starts_with("IP changed from") || a.starts_with("no need to change the addr")
            }
        };
        if ok {
            Ok(())
        } else {
            Err(RuntimeError::unexpected(
                &self.to_string(),
                answer,
                "HAProxy refused the command",
            ))
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SetState {
                backend,
                server,
                state,
            } => {
                let s = match state {
                    AdminTarget::Ready => "ready",
                    AdminTarget::Maint => "maint",
                };
                write!(f, "set server {backend}/{server} state {s}")
            }
            Self::SetAddr {
                backend,
                server,
                addr,
            } => write!(
                f,
                "set server {backend}/{server} addr {} port {}",
                addr.ip(),
                addr.port()
            ),
            Self::ShutdownSessions { backend, server } => {
                write!(f, "shutdown sessions server {backend}/{server}")
            }
        }
    }
}

/// `srv_op_state` of `show servers state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    Stopped,
    Starting,
    Running,
    Stopping,
}

impl OpState {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::Stopped,
            1 => Self::Starting,
            2 => Self::Running,
            3 => Self::Stopping,
            _ => return None,
        })
    }
}

/// `srv_admin_state` of `show servers state`: a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminState(pub u32);

impl AdminState {
    /// Forced into maintenance (`state maint`, or `disabled` in the configuration).
    pub const FMAINT: u32 = 0x01;
    /// Inherited from a tracked server.
    pub const IMAINT: u32 = 0x02;
    /// Declared `disabled` in the configuration. Informational: it stays set after `state
    /// ready` and does not stop traffic (measured on 2.6).
    pub const CMAINT: u32 = 0x04;
    pub const FDRAIN: u32 = 0x08;
    pub const IDRAIN: u32 = 0x10;
    /// Address resolution failed.
    pub const RMAINT: u32 = 0x20;
    pub const HMAINT: u32 = 0x40;

    /// Forced into maintenance: the state the reloader keeps every non-master in.
    pub fn forced_maint(self) -> bool {
        self.0 & Self::FMAINT != 0
    }

    /// Takes no new traffic for an administrative reason (maintenance or drain).
    pub fn blocks_traffic(self) -> bool {
        self.0 & (Self::FMAINT | Self::IMAINT | Self::RMAINT | Self::FDRAIN | Self::IDRAIN) != 0
    }
}

/// One server line of `show servers state` (format version 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub be_id: u32,
    pub be_name: String,
    pub srv_id: u32,
    pub srv_name: String,
    /// `None` while the server has no address (`-`).
    pub srv_addr: Option<IpAddr>,
    pub srv_op_state: OpState,
    pub srv_admin_state: AdminState,
    pub srv_uweight: u32,
    pub srv_time_since_last_change: u64,
    pub srv_check_result: u32,
    pub srv_check_state: u32,
    pub srv_fqdn: Option<String>,
    pub srv_port: u16,
}

impl ServerState {
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.srv_addr.map(|ip| SocketAddr::new(ip, self.srv_port))
    }

    /// HAProxy may send new connections here as far as the reloader is concerned (its health
    /// check may still say otherwise).
    pub fn admin_ready(&self) -> bool {
        !self.srv_admin_state.blocks_traffic()
    }
}

/// What one read-back sees of a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// In HAProxy's order (by server id).
    pub servers: Vec<ServerState>,
    /// Current sessions per server (`scur` of `show stat`).
    pub sessions: BTreeMap<String, u64>,
}

impl Observation {
    pub fn server(&self, name: &str) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.srv_name == name)
    }

    pub fn sessions_of(&self, name: &str) -> u64 {
        self.sessions.get(name).copied().unwrap_or(0)
    }

    /// Servers that take traffic as far as the admin state goes.
    pub fn ready_servers(&self) -> impl Iterator<Item = &ServerState> {
        self.servers.iter().filter(|s| s.admin_ready())
    }
}

/// The columns of `show servers state` that [`parse_servers_state`] reads.
const SERVER_STATE_COLUMNS: [&str; 13] = [
    "be_id",
    "be_name",
    "srv_id",
    "srv_name",
    "srv_addr",
    "srv_op_state",
    "srv_admin_state",
    "srv_uweight",
    "srv_time_since_last_change",
    "srv_check_result",
    "srv_check_state",
    "srv_fqdn",
    "srv_port",
];

/// Parses the answer of `show servers state [<backend>]` (format version 1).
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    let version = lines.next().ok_or("empty answer")?.trim();
    if version != "1" {
        return Err(format!("expected format version 1, got {version:?}"));
    }
    let header = lines.next().ok_or("no column header")?;
    let columns: Vec<&str> = header
        .strip_prefix('#')
        .ok_or("column header does not start with '#'")?
        .split_whitespace()
        .collect();
    // Where each column this parser reads stands; the header must have them all.
    let index = SERVER_STATE_COLUMNS
        .iter()
        .map(|&name| match columns.iter().position(|c| *c == name) {
            Some(i) => Ok((name, i)),
            None => Err(format!("no column {name}")),
        })
        .collect::<Result<BTreeMap<&str, usize>, String>>()?;

    let mut servers = Vec::new();
    for line in lines {
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < columns.len() {
            return Err(format!(
                "line has {} fields, header has {}: {line:?}",
                f.len(),
                columns.len()
            ));
        }
        let field = |name: &str| {
            index
                .get(name)
                .map(|&i| f[i])
                .ok_or_else(|| format!("no column {name}"))
        };
        let num = |name: &str| {
            field(name).and_then(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name} is not a number: {v:?}"))
            })
        };
        let num32 = |name: &str| {
            num(name)
                .and_then(|v| u32::try_from(v).map_err(|_| format!("{name} out of range: {v}")))
        };
        let srv_addr = match field("srv_addr")? {
            "-" => None,
            a => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| format!("srv_addr is not an IP address: {a:?}"))?,
            ),
        };
        let op = num32("srv_op_state")?;
        let srv_port = match field("srv_port")? {
            "-" => 0,
            p => p
                .parse::<u16>()
                .map_err(|_| format!("srv_port is not a port: {p:?}"))?,
        };
        servers.push(ServerState {
            be_id: num32("be_id")?,
            be_name: field("be_name")?.to_owned(),
            srv_id: num32("srv_id")?,
            srv_name: field("srv_name")?.to_owned(),
            srv_addr,
            srv_op_state: OpState::from_code(op)
                .ok_or_else(|| format!("unknown srv_op_state {op}"))?,
            srv_admin_state: AdminState(num32("srv_admin_state")?),
            srv_uweight: num32("srv_uweight")?,
            srv_time_since_last_change: num("srv_time_since_last_change")?,
            srv_check_result: num32("srv_check_result")?,
            srv_check_state: num32("srv_check_state")?,
            srv_fqdn: match field("srv_fqdn")? {
                "-" => None,
                q => Some(q.to_owned()),
            },
            srv_port,
        });
    }
    Ok(servers)
}

/// Parses `show stat <backend> 4 -1` (CSV) into current sessions per server.
pub fn parse_stat_sessions(answer: &str, backend: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("empty answer")?;
    let columns: Vec<&str> = header
        .strip_prefix("# ")
        .ok_or("CSV header does not start with '# '")?
        .split(',')
        .collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("no column {name}"))
    };
    let (i_px, i_sv, i_scur) = (col("pxname")?, col("svname")?, col("scur")?);
    let mut sessions = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let field = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("short CSV line: {line:?}"))
        };
        let (px, sv) = (field(i_px)?, field(i_sv)?);
        if px != backend || sv == "FRONTEND" || sv == "BACKEND" {
            continue;
        }
        let scur = field(i_scur)?;
        let scur = if scur.is_empty() {
            0
        } else {
            scur.parse::<u64>()
                .map_err(|_| format!("scur of {sv} is not a number: {scur:?}"))?
        };
        sessions.insert(sv.to_owned(), scur);
    }
    Ok(sessions)
}

/// Splits the output of a pipelined line into one answer per command.
fn split_answers(output: &str) -> Vec<String> {
    let mut answers = Vec::new();
    let mut current = String::new();
    let mut pending = false;
    for line in output.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            answers.push(std::mem::take(&mut current));
            pending = false;
        } else {
            current.push_str(line);
            pending = true;
        }
    }
    if pending {
        // HAProxy closed without the final empty line: keep what came.
        answers.push(current);
    }
    answers
}

/// Escapes what the CLI treats specially inside one command (`;` separates commands).
fn escape(command: &str) -> String {
    let mut out = String::with_capacity(command.len());
    for c in command.chars() {
        if c == ';' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A client for one HAProxy instance. Cheap to clone; holds no connection.
#[derive(Clone, Debug)]
pub struct RuntimeClient {
    addr: RuntimeAddr,
    timeout: Duration,
}

impl RuntimeClient {
    /// `timeout` bounds each exchange: connect, send, and read the whole answer.
    pub fn new(addr: RuntimeAddr, timeout: Duration) -> Self {
        Self { addr, timeout }
    }

    pub fn addr(&self) -> &RuntimeAddr {
        &self.addr
    }

    /// Sends one line (one command, or several joined by `;`) and returns the whole answer.
    pub async fn send_line(&self, line: &str) -> Result<String, RuntimeError> {
        if line.contains(['\n', '\r']) {
            return Err(RuntimeError::unexpected(
                line,
                "",
                "a command line must not contain a line break",
            ));
        }
        match tokio::time::timeout(self.timeout, self.exchange(line)).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout {
                addr: self.addr.to_string(),
                command: line.to_owned(),
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, line: &str) -> Result<String, RuntimeError> {
        let connect_err = |source| RuntimeError::Connect {
            addr: self.addr.to_string(),
            source,
        };
        match &self.addr {
            RuntimeAddr::Unix(p) => {
                let s = UnixStream::connect(p).await.map_err(connect_err)?;
                self.talk(s, line).await
            }
            RuntimeAddr::Tcp(a) => {
                let s = TcpStream::connect(a).await.map_err(connect_err)?;
                // Best effort: the line goes out in one segment either way.
                let _ = s.set_nodelay(true);
                self.talk(s, line).await
            }
        }
    }

    async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        line: &str,
    ) -> Result<String, RuntimeError> {
        let io_err = |source| RuntimeError::Io {
            addr: self.addr.to_string(),
            command: line.to_owned(),
            source,
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        s.write_all(&buf).await.map_err(io_err)?;
        s.flush().await.map_err(io_err)?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > MAX_ANSWER_BYTES {
                return Err(RuntimeError::unexpected(
                    line,
                    "",
                    format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                ));
            }
        }
        String::from_utf8(out).map_err(|e| {
            RuntimeError::unexpected(
                line,
                &String::from_utf8_lossy(e.as_bytes()),
                "answer is not UTF-8",
            )
        })
    }

    /// Sends several commands on one connection (joined by `;`) and returns one answer per
    /// command, in order. HAProxy runs every command even if an earlier one failed.
    pub async fn send_pipelined(&self, commands: &[String]) -> Result<Vec<String>, RuntimeError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let line = commands
            .iter()
            .map(|c| escape(c))
            .collect::<Vec<_>>()
            .join(";");
        let output = self.send_line(&line).await?;
        let answers = split_answers(&output);
        if answers.len() != commands.len() {
            return Err(RuntimeError::unexpected(
                &line,
                &output,
                format!("expected {} answers, got {}", commands.len(), answers.len()),
            ));
        }
        Ok(answers)
    }

    /// Runs the commands on one connection and checks every answer; the first refusal is
    /// the error (the later commands have run all the same).
    pub async fn execute_pipelined(&self, commands: &[Command]) -> Result<(), RuntimeError> {
        let lines: Vec<String> = commands.iter().map(ToString::to_string).collect();
        let answers = self.send_pipelined(&lines).await?;
        for (c, a) in commands.iter().zip(&answers) {
            c.check_answer(a)?;
        }
        Ok(())
    }

    /// Runs one command on its own connection and checks the answer.
    pub async fn execute(&self, command: &Command) -> Result<(), RuntimeError> {
        let line = command.to_string();
        let answer = self.send_line(&escape(&line)).await?;
        let answers = split_answers(&answer);
        match answers.as_slice() {
            [one] => command.check_answer(one),
            _ => Err(RuntimeError::unexpected(
                &line,
                &answer,
                "expected exactly one answer",
            )),
        }
    }

    /// `show servers state <backend>`.
    pub async fn servers_state(&self, backend: &str) -> Result<Vec<ServerState>, RuntimeError> {
        let command = format!("show servers state {backend}");
        let answer = self.send_line(&escape(&command)).await?;
        parse_servers_state(&answer).map_err(|r| RuntimeError::unexpected(&command, &answer, r))
    }

    /// One read-back of a backend: servers state and current sessions, on one connection.
    pub async fn observe(&self, backend: &str) -> Result<Observation, RuntimeError> {
        let commands = [
            format!("show servers state {backend}"),
            format!("show stat {backend} 4 -1"),
        ];
        let answers = self.send_pipelined(&commands).await?;
        let servers = parse_servers_state(&answers[0])
            .map_err(|r| RuntimeError::unexpected(&commands[0], &answers[0], r))?;
        let sessions = parse_stat_sessions(&answers[1], backend)
            .map_err(|r| RuntimeError::unexpected(&commands[1], &answers[1], r))?;
        if let Some(other) = servers.iter().find(|s| s.be_name != backend) {
            return Err(RuntimeError::unexpected(
                &commands[0],
                &answers[0],
                format!("server of another backend: {}", other.be_name),
            ));
        }
        Ok(Observation { servers, sessions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from HAProxy 2.6.12 running deploy/haproxy/haproxy.cfg: all servers in maint
    // as configured, then redis-1 ready (health check passed), redis-3 moved to ::1.
    const STATE_START: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 redis 1 redis-1 127.0.0.1 0 5 1 1 3 1 0 0 14 0 0 0 - 39001 - 0 0 - - 0\n3 redis 2 redis-2 127.0.0.1 0 5 1 1 3 1 0 0 14 0 0 0 - 39002 - 0 0 - - 0\n3 redis 3 redis-3 127.0.0.1 0 5 1 1 3 1 0 0 14 0 0 0 - 39003 - 0 0 - - 0\n\n";
    const STATE_READY: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 redis 1 redis-1 127.0.0.1 2 4 1 1 3 15 3 2 6 0 0 0 - 39001 - 0 0 - - 0\n3 redis 2 redis-2 192.0.2.1 0 5 1 1 10 1 0 0 14 0 0 0 redis-2 9002 - 0 0 - - 0\n3 redis 3 redis-3 ::1 0 5 1 1 10 1 0 0 14 0 0 0 redis-3 39003 - 0 0 - - 0\n\n";
    // `init-addr none` leaves servers without an address (and RMAINT set).
    const STATE_NO_ADDR: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 redis 1 redis-1 - 0 37 1 1 1 1 0 0 14 0 0 0 redis-1 9001 - 0 0 - - 0\n\n";
    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\nredis,redis-1,0,0,2,2,,1,35,25,,0,,0,0,0,0,UP 1/2,1,1,0,0,1,0,0,,1,3,1,,1,,2,0,,1,L7OK,0,0,,,,,,,,,,,0,0,,,,,13,(tcp-check),,0,0,0,0,,,,Layer7 check passed,,1,2,1,,,,127.0.0.1:39001,,tcp,,,,,,,,0,1,0,\nredis,redis-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,20,20,,1,3,2,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:39002,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n\n";

    #[test]
    fn parses_servers_state_as_configured() {
        let s = parse_servers_state(STATE_START).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].be_name, "redis");
        assert_eq!(s[0].be_id, 3);
        assert_eq!(s[1].srv_name, "redis-2");
        assert_eq!(s[1].srv_id, 2);
        assert_eq!(s[2].socket_addr(), Some("127.0.0.1:39003".parse().unwrap()));
        for srv in &s {
            assert_eq!(srv.srv_op_state, OpState::Stopped);
            assert_eq!(srv.srv_admin_state, AdminState(5));
            assert!(srv.srv_admin_state.forced_maint());
            assert!(!srv.admin_ready());
            assert_eq!(srv.srv_fqdn, None);
        }
    }

    #[test]
    fn parses_ready_server_ipv6_and_fqdn() {
        let s = parse_servers_state(STATE_READY).unwrap();
        // CMAINT stays set after `state ready` and does not stop traffic.
        assert_eq!(s[0].srv_admin_state, AdminState(4));
        assert!(s[0].admin_ready());
        assert_eq!(s[0].srv_op_state, OpState::Running);
        assert_eq!(s[0].srv_check_result, 3);
        assert_eq!(s[1].srv_fqdn.as_deref(), Some("redis-2"));
        assert_eq!(s[1].socket_addr(), Some("192.0.2.1:9002".parse().unwrap()));
        assert_eq!(s[2].socket_addr(), Some("[::1]:39003".parse().unwrap()));
    }

    #[test]
    fn parses_server_without_address() {
        let s = parse_servers_state(STATE_NO_ADDR).unwrap();
        assert_eq!(s[0].srv_addr, None);
        assert_eq!(s[0].socket_addr(), None);
        assert!(!s[0].admin_ready());
    }

    #[test]
    fn refuses_unexpected_servers_state() {
        assert!(parse_servers_state("Can't find backend.\n\n").is_err());
        assert!(parse_servers_state("").is_err());
        assert!(parse_servers_state("2\n# be_id\n").is_err());
        let short = STATE_START.replace(" 39001 - 0 0 - - 0", "");
        assert!(parse_servers_state(&short).is_err());
        let bad_op = STATE_START.replacen("127.0.0.1 0 5", "127.0.0.1 9 5", 1);
        assert!(parse_servers_state(&bad_op)
            .unwrap_err()
            .contains("srv_op_state"));
        let bad_addr = STATE_START.replacen("127.0.0.1", "not-an-ip", 1);
        assert!(parse_servers_state(&bad_addr)
            .unwrap_err()
            .contains("srv_addr"));
    }

    #[test]
    fn parses_sessions_from_show_stat() {
        let s = parse_stat_sessions(STAT, "redis").unwrap();
        assert_eq!(s.get("redis-1"), Some(&2));
        assert_eq!(s.get("redis-2"), Some(&0));
        assert!(parse_stat_sessions(STAT, "other").unwrap().is_empty());
        assert!(parse_stat_sessions("Unknown command\n\n", "redis").is_err());
    }

    #[test]
    fn splits_pipelined_answers() {
        assert_eq!(split_answers("\n"), vec![""]);
        assert_eq!(split_answers("\n\n"), vec!["", ""]);
        assert_eq!(
            split_answers("No such server.\n\n\n"),
            vec!["No such server.\n", ""]
        );
        assert_eq!(
            split_answers("1\n# a\nx\n\ny\n"),
            vec!["1\n# a\nx\n", "y\n"]
        );
        assert!(split_answers("").is_empty());
    }

    #[test]
    fn command_lines_and_answers() {
        let addr = Command::set_addr("redis", "redis-2", "[::1]:9002".parse().unwrap());
        assert_eq!(
            addr.to_string(),
            "set server redis/redis-2 addr ::1 port 9002"
        );
        assert!(addr
            .check_answer("IP changed from '192.0.2.1' to '::1', port changed from '9003' to '9002' by 'stats socket command'\n")
            .is_ok());
        assert!(addr
            .check_answer("no need to change the addr, port changed from '39002' to '39003' by 'stats socket command'\n")
            .is_ok());
        assert!(addr
            .check_answer("Update for the current server address family is only supported through configuration file by 'stats socket command'\n")
            .is_err());
        let ready = Command::ready("redis", "redis-1");
        assert_eq!(ready.to_string(), "set server redis/redis-1 state ready");
        assert!(ready.is_ready());
        assert!(ready.check_answer("").is_ok());
        let e = ready.check_answer("No such server.\n").unwrap_err();
        assert!(matches!(e, RuntimeError::Unexpected { .. }), "{e}");
        assert!(e.to_string().contains("No such server"), "{e}");
        assert_eq!(
            Command::shutdown_sessions("redis", "redis-3").to_string(),
            "shutdown sessions server redis/redis-3"
        );
        assert_eq!(
            Command::maint("redis", "redis-3").to_string(),
            "set server redis/redis-3 state maint"
        );
    }

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            "unix:/run/haproxy/admin.sock".parse::<RuntimeEndpoint>(),
            Ok(RuntimeEndpoint::Unix("/run/haproxy/admin.sock".into()))
        );
        assert_eq!(
            "/tmp/a.sock".parse::<RuntimeEndpoint>(),
            Ok(RuntimeEndpoint::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "tcp:tasks.haproxy:9999".parse::<RuntimeEndpoint>(),
            Ok(RuntimeEndpoint::Tcp(HostPort::new("tasks.haproxy", 9999)))
        );
        assert!("tcp:nohost".parse::<RuntimeEndpoint>().is_err());
        assert!("unix:".parse::<RuntimeEndpoint>().is_err());
        assert!("haproxy:9999".parse::<RuntimeEndpoint>().is_err());
    }

    #[test]
    fn escapes_separators() {
        assert_eq!(escape(r"a;b\c"), r"a\;b\\c");
    }

    #[tokio::test]
    async fn connect_error_is_typed() {
        let c = RuntimeClient::new(
            RuntimeAddr::Unix("/nonexistent/haproxy.sock".into()),
            Duration::from_secs(1),
        );
        let e = c.servers_state("redis").await.unwrap_err();
        assert!(matches!(e, RuntimeError::Connect { .. }), "{e}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let c = RuntimeClient::new(RuntimeAddr::Unix(path), Duration::from_millis(100));
        let e = c.servers_state("redis").await.unwrap_err();
        assert!(matches!(e, RuntimeError::Timeout { .. }), "{e}");
        hold.abort();
    }
}
