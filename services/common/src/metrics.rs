//! Prometheus metrics: each sidecar keeps its own [`Registry`] (several sidecars share one
//! process in the tests, so nothing here is global) and serves it as OpenMetrics text at
//! `GET /metrics` on its `metrics_addr`.
//!
//! The endpoint is a minimal HTTP/1.x responder on tokio: one request per connection,
//! `GET`/`HEAD /metrics` → 200, any other path → 404, any other method → 405. Prometheus
//! (and `curl`) need nothing more, and it keeps hyper's server stack out of the sidecars.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// What `prometheus-client` writes: the OpenMetrics text format (Prometheus picks its parser
/// by this content type).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest request head accepted; a scrape request is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A client gets this long to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a `metrics_addr` config value: empty disables the endpoint, otherwise `ip:port`
/// (`0.0.0.0:9121`, `[::]:9121`, `127.0.0.1:0` for any free port).
pub fn parse_metrics_addr(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|e| {
        ConfigError::invalid(
            key,
            value,
            format!("expected ip:port, or empty to disable the metrics endpoint: {e}"),
        )
    })
}

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, ...), as gRPC metrics label it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A running `/metrics` endpoint.
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
}

impl MetricsEndpoint {
    /// The bound address (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `addr` and serves `registry` until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<MetricsEndpoint> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let registry = Arc::clone(&registry);
                    tokio::spawn(async move {
                        let answered =
                            tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &registry))
                                .await;
                        if let Ok(Err(e)) = answered {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(MetricsEndpoint { addr: local })
}

/// Starts the endpoint when `addr` is set. A failure to bind is logged, not returned:
/// metrics are never a reason to stop routing (the scrape target shows as down instead).
pub async fn start(
    service: &str,
    addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Option<MetricsEndpoint> {
    let addr = addr?;
    match serve(addr, registry, shutdown).await {
        Ok(endpoint) => {
            tracing::info!(service, listen = %endpoint.local_addr(), "metrics endpoint serving /metrics");
            Some(endpoint)
        }
        Err(e) => {
            tracing::error!(service, listen = %addr, error = %e,
                "cannot listen for metrics; running without the /metrics endpoint");
            None
        }
    }
}

/// The whole exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        // Only a metric's own Display can fail here; show it rather than a torn answer.
        tracing::warn!(error = %e, "encoding the metrics failed");
        body.clear();
    }
    body
}

/// Where the request head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
}

/// The status, extra headers and body for a request line.
fn route(request_line: &str, registry: &Registry) -> (&'static str, &'static str, String, bool) {
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", "", "bad request line\n".into(), true);
    };
    if !version.starts_with("HTTP/1.") {
        return ("400 Bad Request", "", "HTTP/1.x only\n".into(), true);
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" {
        return (
            "404 Not Found",
            "",
            "not found: try /metrics\n".into(),
            true,
        );
    }
    match method {
        "GET" | "HEAD" => ("200 OK", "", encode(registry), false),
        _ => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "method not allowed\n".into(),
            true,
        ),
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            let msg = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            stream.write_all(msg.as_bytes()).await?;
            return stream.shutdown().await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // Closed before a full request: nothing to answer.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let request_line = head.lines().next().unwrap_or_default();
    let is_head = request_line.starts_with("HEAD ");
    let (status, extra, body, plain) = route(request_line, registry);
    let content_type = if plain {
        "text/plain; charset=utf-8"
    } else {
        CONTENT_TYPE
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[test]
    fn metrics_addr_empty_disables_and_junk_is_refused() {
        assert_eq!(parse_metrics_addr("metrics_addr", "").unwrap(), None);
        assert_eq!(parse_metrics_addr("metrics_addr", "  ").unwrap(), None);
        assert_eq!(
            parse_metrics_addr("metrics_addr", "0.0.0.0:9121").unwrap(),
            Some("0.0.0.0:9121".parse().unwrap())
        );
        assert!(parse_metrics_addr("metrics_addr", "[::]:9121")
            .unwrap()
            .is_some());
        let e = parse_metrics_addr("metrics_addr", "localhost")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_addr") && e.contains("localhost"), "{e}");
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let mut registry = Registry::with_prefix("demo");
        let c: Counter = Counter::default();
        registry.register("things", "Things seen", c.clone());
        c.inc_by(3);
        let stop = CancellationToken::new();
        let ep = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(registry),
            stop.clone(),
        )
        .await
        .unwrap();
        let addr = ep.local_addr();
        assert_ne!(addr.port(), 0);

        let ok = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(
            ok.contains("\r\n\r\n# HELP demo_things Things seen.\n"),
            "{ok}"
        );
        assert!(ok.contains("demo_things_total 3\n"), "{ok}");
        assert!(ok.ends_with("# EOF\n"), "{ok}");
        let len: usize = ok
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(len, ok.split_once("\r\n\r\n").unwrap().1.len());

        // A query string is not part of the path.
        let q = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"), "{q}");
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        let nf = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 Not Found\r\n"), "{nf}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
        let bad = get(addr, "HELLO\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");

        stop.cancel();
        // The listener goes away once the accept loop sees the cancellation.
        let gone = async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_logged_not_fatal() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let ep = start(
            "test",
            Some(addr),
            Arc::new(Registry::default()),
            CancellationToken::new(),
        )
        .await;
        assert!(ep.is_none());
        assert!(start(
            "test",
            None,
            Arc::new(Registry::default()),
            CancellationToken::new()
        )
        .await
        .is_none());
    }
}
