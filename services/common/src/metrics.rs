//! Prometheus metrics: each sidecar keeps its own [`Registry`] (several sidecars share one
//! process in the tests, so nothing here is global) and serves it as OpenMetrics text at
//! `GET /metrics` on its `metrics_addr`.
//!
//! The endpoint is an axum router on hyper's HTTP/1 server: `GET`/`HEAD /metrics` → 200,
//! any other path → 404, any other method → 405; it stops when the sidecar's cancellation
//! token fires.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// What `prometheus-client` writes: the OpenMetrics text format (Prometheus picks its parser
/// by this content type).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// `metric`, registered in `registry` as `name` with `help`: each metric is declared in one
/// place, its registration with it.
pub fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The labels of every sidecar's `grpc_requests_total`: the method and [`grpc_code_name`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

/// `grpc_requests_total{method, code}`: gRPC calls made or answered, one series per method and
/// status code. The same in the agent, the coordinator and the reloader, so one dashboard
/// query fits all three.
#[derive(Clone, Debug, Default)]
pub struct GrpcRequests(Family<GrpcLabels, Counter>);

impl GrpcRequests {
    /// A new counter, registered as `grpc_requests` in `registry` (under its prefix).
    pub fn registered(registry: &mut Registry, help: &str) -> Self {
        let counter = Self::default();
        counter.register(registry, help);
        counter
    }

    /// Registers the counter as `grpc_requests` in `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry, help: &str) {
        registry.register("grpc_requests", help, self.0.clone());
    }

    /// One call of `method` that ended with `code`.
    pub fn count(&self, method: &'static str, code: tonic::Code) {
        self.0
            .get_or_create(&GrpcLabels {
                method,
                code: grpc_code_name(code),
            })
            .inc();
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
        let served = axum::serve(listener, router(registry))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(MetricsEndpoint { addr: local })
}

/// `/metrics` for every method (so a wrong one gets 405 with `Allow`, not axum's bare
/// answer), a plain-text 404 for any other path.
fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", any(metrics))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found: try /metrics\n") })
        .with_state(registry)
}

async fn metrics(method: Method, State(registry): State<Arc<Registry>>) -> Response {
    // hyper leaves the body out of a HEAD answer and keeps its Content-Length.
    if method == Method::GET || method == Method::HEAD {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&registry)).into_response()
    } else {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        r
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One answer off the wire: status line, headers (names lower-cased), body.
    struct Answer {
        status: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `request` as written and reads until the server closes the connection.
    async fn send(addr: SocketAddr, request: &str) -> Answer {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// `REQUEST_LINE HTTP/1.1` with `Host`, `Connection: close` and `extra` header lines.
    async fn send11(addr: SocketAddr, request_line: &str, extra: &str) -> Answer {
        let request =
            format!("{request_line} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        send(addr, &request).await
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

        let ok = send11(addr, "GET /metrics", "Accept: */*\r\n").await;
        assert_eq!(ok.status, "HTTP/1.1 200 OK");
        assert_eq!(ok.header("content-type"), Some(CONTENT_TYPE));
        assert!(
            ok.body.starts_with("# HELP demo_things Things seen.\n"),
            "{}",
            ok.body
        );
        assert!(ok.body.contains("demo_things_total 3\n"), "{}", ok.body);
        assert!(ok.body.ends_with("# EOF\n"), "{}", ok.body);
        let len: usize = ok.header("content-length").unwrap().parse().unwrap();
        assert_eq!(len, ok.body.len());

        // Every scrape encodes the registry as it is now.
        c.inc();
        let again = send(addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
        assert_eq!(again.status, "HTTP/1.0 200 OK");
        assert!(
            again.body.contains("demo_things_total 4\n"),
            "{}",
            again.body
        );

        // A query string is not part of the path.
        let q = send(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        // hyper answers an HTTP/1.0 request in kind.
        assert_eq!(q.status, "HTTP/1.0 200 OK");
        let head = send11(addr, "HEAD /metrics", "").await;
        assert_eq!(head.status, "HTTP/1.1 200 OK");
        assert_eq!(head.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(head.body, "");

        let nf = send11(addr, "GET /", "").await;
        assert_eq!(nf.status, "HTTP/1.1 404 Not Found");
        assert_eq!(nf.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(nf.body, "not found: try /metrics\n");
        let post = send11(addr, "POST /metrics", "Content-Length: 0\r\n").await;
        assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        let bad = send(addr, "HELLO\r\n\r\n").await;
        assert_eq!(bad.status, "HTTP/1.1 400 Bad Request");

        stop.cancel();
        // The listener goes away once the server sees the cancellation.
        let gone = async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .unwrap();
    }

    #[test]
    fn grpc_requests_by_method_and_code_name() {
        let mut r = Registry::with_prefix("demo");
        let g = GrpcRequests::default();
        g.register(&mut r, "Calls");
        g.count("Report", tonic::Code::Ok);
        g.count("Report", tonic::Code::Ok);
        g.count("WatchTopology", tonic::Code::DeadlineExceeded);
        let s = encode(&r);
        for line in [
            "# HELP demo_grpc_requests Calls.",
            "# TYPE demo_grpc_requests counter",
            "demo_grpc_requests_total{method=\"Report\",code=\"OK\"} 2",
            "demo_grpc_requests_total{method=\"WatchTopology\",code=\"DEADLINE_EXCEEDED\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
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
