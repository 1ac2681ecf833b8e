//! A TCP forwarder whose established connections can be silenced at once while new ones still
//! pass: what a client sees when the host behind a name is cut off (no FIN, no RST, nothing
//! ever again on its connections) and the name then leads to a new host, as a swarm service
//! moved to another node does.
//!
//! A silenced connection forwards nothing in either direction and never closes on its own
//! (not even when the target closes its side); it stays open until the forwarder is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// See the module documentation.
pub struct Silencer {
    addr: SocketAddr,
    /// Connections accepted before the generation moved on are silenced.
    generation: Arc<AtomicU64>,
    accepted: Arc<AtomicUsize>,
    /// Dropping the sender ends every task (and closes every connection).
    _stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Silencer {
    /// Forwards every connection accepted on `listener` to `target`.
    pub fn start(listener: TcpListener, target: SocketAddr) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let generation = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = watch::channel(());
        let (g, a) = (generation.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let mut s = stopped.clone();
                let client = tokio::select! {
                    _ = s.changed() => return,
                    c = listener.accept() => c,
                };
                let Ok((client, _)) = client else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let mine = g.load(Ordering::SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let live = || g.load(Ordering::SeqCst) == mine;
                    tokio::select! {
                        _ = s.changed() => {}
                        () = async {
                            tokio::join!(pump(cr, sw, &live), pump(sr, cw, &live));
                        } => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            generation,
            accepted,
            _stop: stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Silences every connection established so far; later ones pass.
    pub fn silence_established(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Silencer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while `live()`; once it is not, holds both ends open and silent
/// forever (the caller's stop ends it), whatever arrives or closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    live: &impl Fn() -> bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await;
        if !live() {
            std::future::pending::<()>().await;
        }
        match n {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
