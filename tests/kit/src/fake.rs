//! Fake servers for hostile-input tests: a TCP server on a port of the test's block that
//! answers whatever its [`Script`] says (garbage, half a reply, nothing, a close mid-reply),
//! and records what it was sent. Only for what a real server cannot be made to do; everything
//! else runs against the real `redis-server`, `redis-sentinel` and `haproxy`.
//!
//! The script can be replaced while the server runs ([`FakeServer::set_script`]); it applies
//! to the next request of every connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What the fake does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Writes these bytes and waits for the next request.
    Bytes(Vec<u8>),
    /// Writes these bytes and closes the connection (a close mid-reply when they are half a
    /// reply; an answer-and-close protocol such as HAProxy's runtime API otherwise).
    BytesThenClose(Vec<u8>),
    /// Writes these bytes, then never answers nor closes (half a reply, then a stall).
    BytesThenStall(Vec<u8>),
    /// Closes at once, answering nothing.
    Close,
}

impl Reply {
    pub fn bytes(b: impl AsRef<[u8]>) -> Self {
        Self::Bytes(b.as_ref().to_vec())
    }

    pub fn then_close(b: impl AsRef<[u8]>) -> Self {
        Self::BytesThenClose(b.as_ref().to_vec())
    }

    pub fn then_stall(b: impl AsRef<[u8]>) -> Self {
        Self::BytesThenStall(b.as_ref().to_vec())
    }
}

/// How the fake cuts what it reads into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Whatever one read returns is one request (RESP clients send a command per write).
    Chunk,
    /// One line, up to `\n` (HAProxy's runtime API).
    Line,
}

/// The answer to one request (its bytes, as read).
pub type Script = Arc<dyn Fn(&[u8]) -> Reply + Send + Sync>;

/// A script that answers every request the same way.
pub fn always(reply: Reply) -> Script {
    Arc::new(move |_| reply.clone())
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; stops (and drops every connection) when dropped.
pub struct FakeServer {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Serves on 127.0.0.1:`port` (a port of the test's block).
    pub async fn start(port: u16, framing: Framing, script: Script) -> Self {
        let listener = crate::ports::bind(port).await;
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(stream, framing, Arc::clone(&s)));
                // Reap finished connections so a long test does not pile them up.
                while conns.try_join_next().is_some() {}
            }
        });
        Self { port, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the script (from the next request on).
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every request read so far, in order, as text (lossy).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// How many requests read so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, framing: Framing, shared: Arc<Shared>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let request = match framing {
            Framing::Chunk => match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => chunk[..n].to_vec(),
            },
            Framing::Line => loop {
                if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    break line;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
            },
        };
        lock(&shared.requests).push(request.clone());
        let script = Arc::clone(&*lock(&shared.script));
        match script(&request) {
            Reply::Bytes(b) => {
                if stream.write_all(&b).await.is_err() {
                    return;
                }
            }
            Reply::BytesThenClose(b) => {
                let _ = stream.write_all(&b).await;
                let _ = stream.shutdown().await;
                return;
            }
            Reply::BytesThenStall(b) => {
                let _ = stream.write_all(&b).await;
                // Hold the connection open, reading (and dropping) whatever comes, until the
                // peer gives up or the fake stops.
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            }
            Reply::Close => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortBlock;

    async fn exchange(port: u16, send: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(send).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_by_script_and_records_requests() {
        let ports = PortBlock::allocate(1);
        let fake = FakeServer::start(
            ports.port(0),
            Framing::Line,
            Arc::new(|req: &[u8]| {
                if req.starts_with(b"show") {
                    Reply::then_close("shown\n\n")
                } else {
                    Reply::Close
                }
            }),
        )
        .await;
        assert_eq!(exchange(fake.port(), b"show x\n").await, b"shown\n\n");
        assert_eq!(exchange(fake.port(), b"other\n").await, b"");
        fake.set_script(always(Reply::then_close("new\n")));
        assert_eq!(exchange(fake.port(), b"show y\n").await, b"new\n");
        assert_eq!(fake.requests(), ["show x\n", "other\n", "show y\n"]);
        assert_eq!(fake.connections(), 3);
    }
}
