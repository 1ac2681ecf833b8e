//! Connecting to the coordinator and turning transport and gRPC failures into [`CliError`]s.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_tls::TlsSettings;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::error::CliError;

/// Where and how to reach the coordinator (the global options).
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub group: String,
    pub timeout: Duration,
    /// The CA, the operator's certificate and key (or insecure).
    pub tls: TlsSettings,
}

impl Target {
    /// TLS on, with no files yet: [`Self::with_tls`] gives them.
    pub fn new(url: &str, group: &str, timeout: Duration) -> Self {
        Self {
            url: normalize_url(url),
            group: group.to_owned(),
            timeout,
            tls: TlsSettings::default(),
        }
    }

    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// Opens the connection now, so that "nothing listens" is told apart from a gRPC error.
    pub async fn connect(&self) -> Result<CoordinatorClient<Channel>, CliError> {
        let tls = self.tls.client().map_err(|e| CliError::Tls {
            reason: e.to_string(),
        })?;
        if tls.is_insecure() {
            eprintln!(
                "redis-ha: warning: {}",
                redis_ha_tls::insecure_warning("redis-ha")
            );
        }
        let endpoint =
            tls.client_endpoint(&self.url, self.timeout)
                .map_err(|e| CliError::BadUrl {
                    url: self.url.clone(),
                    reason: e.reason,
                })?;
        match tokio::time::timeout(self.timeout, endpoint.connect()).await {
            Err(_) => Err(self.unreachable(format!(
                "no connection within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(self.unreachable(transport_reason(&e))),
            Ok(Ok(channel)) => Ok(CoordinatorClient::new(channel)),
        }
    }

    /// A request carrying the deadline (`grpc-timeout`) and the current trace context.
    pub fn request<T>(&self, message: T, with_deadline: bool) -> Request<T> {
        let mut req = Request::new(message);
        if with_deadline {
            req.set_timeout(self.timeout);
        }
        redis_ha_common::telemetry::inject_trace_context(req.metadata_mut());
        req
    }

    /// Awaits one RPC, bounded by the timeout on our side too.
    pub async fn call<T>(
        &self,
        rpc: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, rpc).await {
            Err(_) => {
                Err(self.unreachable(format!("no answer within {} ms", self.timeout.as_millis())))
            }
            Ok(Err(status)) => Err(self.status_error(&status)),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }

    pub fn unreachable(&self, reason: String) -> CliError {
        CliError::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    /// A connection lost under the call is "unreachable"; anything the server said is a gRPC error.
    pub fn status_error(&self, status: &Status) -> CliError {
        if status.code() == Code::Unavailable && find_io_error(status).is_some() {
            return self.unreachable(transport_reason(status));
        }
        CliError::Grpc {
            url: self.url.clone(),
            code: redis_ha_common::metrics::grpc_code_name(status.code()),
            message: status.message().to_owned(),
        }
    }
}

/// `127.0.0.1:50051` means `http://127.0.0.1:50051`: people type it that way.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

fn find_io_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// The useful part of a transport error: the OS error if there is one, else the whole chain.
fn transport_reason(err: &(dyn StdError + 'static)) -> String {
    use std::io::ErrorKind;
    match find_io_error(err) {
        Some(io) => match io.kind() {
            ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            ErrorKind::ConnectionReset => "connection reset".to_owned(),
            ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => io.to_string(),
        },
        None => error_chain(err),
    }
}

/// "outer: inner: innermost", skipping repeats (tonic and hyper often say the same thing twice).
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p == &s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_a_scheme() {
        assert_eq!(normalize_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize_url(" http://c:1 "), "http://c:1");
        assert_eq!(normalize_url("https://c:1"), "https://c:1");
    }

    #[test]
    fn io_error_is_found_under_a_status() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = Status::from_error(Box::new(io));
        assert_eq!(transport_reason(&status), "connection refused");
    }

    #[test]
    fn server_errors_keep_code_and_message() {
        let t = Target::new("http://h:1", "g", Duration::from_secs(1));
        let e = t.status_error(&Status::not_found("unknown master group \"x\""));
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "the coordinator at http://h:1 answered NOT_FOUND: unknown master group \"x\""
        );
    }
}
