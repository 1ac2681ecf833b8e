//! The master watch: a held connection to the master the coordinator publishes (this node's
//! own Redis when it is the master), so a crashed master is seen at once instead of at the next
//! poll. A process that dies closes its sockets: the held connection reads end-of-file within a
//! millisecond, and the reconnect that follows is refused. That (or, on a swarm, Docker's `die`
//! event for this node's container, see [`crate::docker_events`]) is the crash evidence the
//! coordinator's crash failover needs; a hang, a pause or a partition only makes the master
//! *unreachable*, which never counts as a crash.
//!
//! [`WatchState`] is the pure part: what the agent reports given what it saw.

use std::time::Duration;

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{MasterWatch, Reach};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one look at the watched master showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It answered (any reply: `-NOAUTH` proves the process as well as `+PONG`).
    Answered,
    /// Its port refused the connection: nothing listens there.
    Refused,
    /// The held connection was closed by the other side.
    Closed,
    /// Anything else: a timeout, a name that does not resolve, an unreachable network.
    Failed(String),
    /// Docker announced the death of this node's Redis container.
    ContainerDied { exit_code: Option<i64> },
}

/// What the agent reports about the watched master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchState {
    address: Option<HostPort>,
    reach: Reach,
    evidence: String,
    since_ms: i64,
}

impl Default for WatchState {
    fn default() -> Self {
        Self {
            address: None,
            reach: Reach::Unspecified,
            evidence: String::new(),
            since_ms: 0,
        }
    }
}

impl WatchState {
    pub fn address(&self) -> Option<&HostPort> {
        self.address.as_ref()
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Watches another master (or none): what was seen of the old one does not carry over.
    /// True when it changed.
    pub fn retarget(&mut self, address: Option<&HostPort>, now_ms: i64) -> bool {
        if self.address.as_ref() == address {
            return false;
        }
        *self = Self {
            address: address.cloned(),
            since_ms: now_ms,
            ..Self::default()
        };
        true
    }

    /// Applies a look; true when the reported reach changed.
    ///
    /// Gone stays gone until the master answers again: after a refusal or a container's death,
    /// a timeout or a name that no longer resolves is no news (the process is still not back).
    pub fn apply(&mut self, seen: &Seen, now_ms: i64) -> bool {
        if self.address.is_none() {
            return false;
        }
        let (reach, evidence) = match seen {
            Seen::Answered => (Reach::Up, String::new()),
            Seen::Refused => (Reach::Gone, "connection refused".to_owned()),
            Seen::ContainerDied { exit_code } => (
                Reach::Gone,
                match exit_code {
                    Some(code) => format!("container died (exit code {code})"),
                    None => "container died".to_owned(),
                },
            ),
            Seen::Closed | Seen::Failed(_) if self.reach == Reach::Gone => return false,
            Seen::Closed => (Reach::Unreachable, "connection closed".to_owned()),
            Seen::Failed(e) => (Reach::Unreachable, e.clone()),
        };
        let changed = reach != self.reach;
        if changed {
            self.since_ms = now_ms;
        }
        self.reach = reach;
        self.evidence = evidence;
        changed
    }

    /// The report form; `None` while nothing is watched.
    pub fn to_proto(&self) -> Option<MasterWatch> {
        let address = self.address.as_ref()?;
        Some(MasterWatch {
            address: address.to_string(),
            reach: self.reach as i32,
            evidence: self.evidence.clone(),
            since_ms: self.since_ms,
        })
    }
}

/// A held liveness connection. It speaks one inline `PING` and accepts any reply: the watch
/// asks whether a process owns the port, not what it thinks (AUTH is not needed for that).
pub struct Held {
    stream: TcpStream,
}

impl Held {
    /// Connects and checks for an answer. `Err` is what was seen instead.
    pub async fn open(addr: &HostPort, io_timeout: Duration) -> Result<Self, Seen> {
        let target = addr.to_string();
        let stream = match tokio::time::timeout(io_timeout, TcpStream::connect(&target)).await {
            Err(_) => {
                return Err(Seen::Failed(format!(
                    "connect timed out after {} ms",
                    io_timeout.as_millis()
                )))
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Seen::Refused)
            }
            Ok(Err(e)) => return Err(Seen::Failed(e.to_string())),
            Ok(Ok(s)) => s,
        };
        // Nagle would hold the tiny PING back.
        let _ = stream.set_nodelay(true);
        let mut held = Self { stream };
        held.ping(io_timeout).await?;
        Ok(held)
    }

    /// One `PING` and its reply line.
    pub async fn ping(&mut self, io_timeout: Duration) -> Result<(), Seen> {
        let exchange = async {
            self.stream.write_all(b"PING\r\n").await.map_err(io_seen)?;
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            loop {
                let n = self.stream.read(&mut buf).await.map_err(io_seen)?;
                if n == 0 {
                    return Err(Seen::Closed);
                }
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\r\n") {
                    return Ok(());
                }
                if got.len() > 4096 {
                    return Err(Seen::Failed("not a Redis reply".into()));
                }
            }
        };
        match tokio::time::timeout(io_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Seen::Failed(format!(
                "no answer to PING within {} ms",
                io_timeout.as_millis()
            ))),
        }
    }

    /// Waits until the connection is lost and says how: closed by the other side ([`Held::closed`])
    /// or a `PING`, one every `every`, unanswered (a connection that dies without a FIN, a host
    /// lost, would otherwise look open until TCP keepalive).
    pub async fn lost(&mut self, every: Duration, io_timeout: Duration) -> Seen {
        loop {
            tokio::select! {
                seen = self.closed() => return seen,
                () = tokio::time::sleep(every) => {
                    if let Err(seen) = self.ping(io_timeout).await {
                        return seen;
                    }
                }
            }
        }
    }

    /// Waits until the other side closes the connection (or sends something unasked, which a
    /// Redis never does: treated the same, the connection is no longer a clean probe).
    pub async fn closed(&mut self) -> Seen {
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf).await {
            Ok(0) => Seen::Closed,
            Ok(_) => Seen::Failed("unexpected data on the watch connection".into()),
            Err(e) => io_seen(e),
        }
    }
}

/// How long the close watch waits before it opens again a connection that could not be opened
/// (or stopped answering), and how often it checks one that stays open.
pub const CLOSE_WATCH_EVERY: Duration = Duration::from_secs(1);

/// Holds a connection to `addr` and runs `look` every time the other side closes it, at once:
/// Sentinel's promotion ends in `CLIENT KILL TYPE normal`, which closes every client of the
/// promoted node, this one included, so the close *is* the promotion's signal (and the signal that
/// the caller's own connections to the node were closed too; a restart and a crash close them as
/// well: `look` only makes its caller look again). The connection is opened again right after (a
/// promoted node accepts it at once). One that cannot be opened, or stops answering its `PING`
/// (a host lost closes nothing), is tried again every [`CLOSE_WATCH_EVERY`]; `look` runs when it
/// opens again, since a close meanwhile went unseen (a restarted node that Sentinel re-pointed at
/// once, `CLIENT KILL` included), and at the first open. Runs until dropped.
pub async fn on_every_close<F, Fut>(addr: &HostPort, io_timeout: Duration, mut look: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Nothing seen yet: the first open counts as a return.
    let mut unseen = true;
    loop {
        let Ok(mut held) = Held::open(addr, io_timeout).await else {
            unseen = true;
            tokio::time::sleep(CLOSE_WATCH_EVERY).await;
            continue;
        };
        if std::mem::take(&mut unseen) {
            look().await;
        }
        if held.lost(CLOSE_WATCH_EVERY, io_timeout).await == Seen::Closed {
            look().await;
        } else {
            unseen = true;
            tokio::time::sleep(CLOSE_WATCH_EVERY).await;
        }
    }
}

fn io_seen(e: std::io::Error) -> Seen {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => Seen::Closed,
        std::io::ErrorKind::ConnectionRefused => Seen::Refused,
        _ => Seen::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> HostPort {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_watched_reports_nothing() {
        let mut w = WatchState::default();
        assert!(!w.apply(&Seen::Refused, 1));
        assert_eq!(w.to_proto(), None);
    }

    #[test]
    fn a_crash_as_the_master_s_own_agent_sees_it() {
        let mut w = WatchState::default();
        assert!(w.retarget(Some(&hp("127.0.0.1:7001")), 0));
        assert!(w.apply(&Seen::Answered, 1));
        assert_eq!(w.reach(), Reach::Up);
        // EOF first, the reconnect refused right after.
        assert!(w.apply(&Seen::Closed, 10));
        assert_eq!(w.reach(), Reach::Unreachable);
        assert!(w.apply(&Seen::Refused, 11));
        let p = w.to_proto().unwrap();
        assert_eq!(p.reach(), Reach::Gone);
        assert_eq!(p.evidence, "connection refused");
        assert_eq!(p.since_ms, 11);
        assert_eq!(p.address, "127.0.0.1:7001");
    }

    #[test]
    fn gone_stays_gone_until_it_answers() {
        let mut w = WatchState::default();
        w.retarget(Some(&hp("redis-1:9001")), 0);
        w.apply(&Seen::Answered, 1);
        assert!(w.apply(
            &Seen::ContainerDied {
                exit_code: Some(137)
            },
            5
        ));
        assert!(!w.apply(&Seen::Failed("name not found".into()), 6));
        assert!(!w.apply(&Seen::Closed, 7));
        let p = w.to_proto().unwrap();
        assert_eq!(
            (p.reach(), p.evidence.as_str(), p.since_ms),
            (Reach::Gone, "container died (exit code 137)", 5)
        );
        assert!(w.apply(&Seen::Answered, 9));
        assert_eq!(w.reach(), Reach::Up);
    }

    #[test]
    fn a_timeout_is_unreachable_never_gone() {
        let mut w = WatchState::default();
        w.retarget(Some(&hp("127.0.0.1:7001")), 0);
        w.apply(&Seen::Answered, 1);
        assert!(w.apply(&Seen::Failed("no answer to PING within 1000 ms".into()), 2));
        assert_eq!(w.reach(), Reach::Unreachable);
        assert!(!w.apply(&Seen::Closed, 3), "still unreachable");
    }

    #[test]
    fn a_new_master_starts_unknown() {
        let mut w = WatchState::default();
        w.retarget(Some(&hp("127.0.0.1:7001")), 0);
        w.apply(&Seen::Refused, 1);
        assert!(w.retarget(Some(&hp("127.0.0.1:7002")), 2));
        assert_eq!(w.reach(), Reach::Unspecified);
        assert!(!w.retarget(Some(&hp("127.0.0.1:7002")), 3));
        assert!(w.retarget(None, 4));
        assert_eq!(w.to_proto(), None);
    }

    #[tokio::test]
    async fn held_connection_sees_a_close_and_the_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"PING\r\n");
            s.write_all(b"-NOAUTH Authentication required.\r\n")
                .await
                .unwrap();
            // Dropping the socket and the listener: like a process that died.
        });
        let mut held = Held::open(&addr, Duration::from_secs(5)).await.unwrap();
        server.await.unwrap();
        assert_eq!(held.closed().await, Seen::Closed);
        let again = Held::open(&addr, Duration::from_secs(5)).await.err();
        assert_eq!(again, Some(Seen::Refused));
    }

    #[tokio::test]
    async fn a_silent_listener_is_a_failure_not_a_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: HostPort = listener.local_addr().unwrap().to_string().parse().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = Held::open(&addr, Duration::from_millis(200)).await.err();
        assert!(matches!(e, Some(Seen::Failed(_))), "{e:?}");
        holder.abort();
    }
}
