//! The `[tls]` table every sidecar's configuration has, and what it turns into: the
//! coordinator's server configuration (mutual TLS, client certificates required) and each
//! client's endpoint. Private keys are read from files only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_ha_common::ConfigError;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, ServerTlsConfig};

/// `[tls]`: the cluster CA, this party's certificate and key (PEM files), or `insecure`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The cluster CA's certificate: the peer must present a certificate it signed.
    pub ca_file: Option<PathBuf>,
    /// This party's certificate.
    pub cert_file: Option<PathBuf>,
    /// This party's private key (a mode-600 file or a Docker secret).
    pub key_file: Option<PathBuf>,
    /// Plaintext gRPC, no authentication at all: only when set, with a warning at every start.
    pub insecure: bool,
}

/// The files of one party, read.
struct Pems {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read(key: &str, path: Option<&Path>) -> Result<Vec<u8>, ConfigError> {
    let path = path.ok_or_else(|| {
        ConfigError::invalid(
            key,
            "",
            "required unless tls.insecure = true (plaintext gRPC, no authentication)",
        )
    })?;
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(key, path.display().to_string(), format!("cannot read: {e}"))
    })?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::invalid(
            key,
            path.display().to_string(),
            "not a PEM file",
        ));
    }
    Ok(pem)
}

impl TlsSettings {
    /// Mutual TLS from these three files.
    pub fn files(
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            ca_file: Some(ca.into()),
            cert_file: Some(cert.into()),
            key_file: Some(key.into()),
            insecure: false,
        }
    }

    /// Plaintext, no authentication.
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            ..Self::default()
        }
    }

    fn pems(&self) -> Result<Pems, ConfigError> {
        Ok(Pems {
            ca: read("tls.ca_file", self.ca_file.as_deref())?,
            cert: read("tls.cert_file", self.cert_file.as_deref())?,
            key: read("tls.key_file", self.key_file.as_deref())?,
        })
    }

    /// The identity `cert_file` names (`None` when insecure).
    pub fn identity(&self) -> Result<Option<crate::Identity>, ConfigError> {
        if self.insecure {
            return Ok(None);
        }
        // Every file first, in the order the refusals name them.
        let pem = self.pems()?.cert;
        let path = self
            .cert_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let bad = |reason: String| ConfigError::invalid("tls.cert_file", &path, reason);
        let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        crate::Identity::from_certificate(&parsed.contents)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// Checks that the files are there and read (nothing to check when insecure).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.insecure {
            self.pems()?;
        }
        Ok(())
    }

    /// Logs the warning every start in insecure mode gets; `role` says whose (server or client).
    pub fn warn_if_insecure(&self, program: &str, role: &str) {
        if self.insecure {
            tracing::warn!(program, "{}", insecure_warning(role));
        }
    }

    /// The coordinator's TLS: its certificate, client certificates required and checked
    /// against the CA. `None` when insecure.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, ConfigError> {
        if self.insecure {
            return Ok(None);
        }
        let p = self.pems()?;
        Ok(Some(
            ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(p.cert, p.key))
                .client_ca_root(Certificate::from_pem(p.ca))
                .client_auth_optional(false),
        ))
    }

    /// A client's TLS (the CA it trusts, the certificate it presents).
    pub fn client(&self) -> Result<ClientTls, ConfigError> {
        if self.insecure {
            return Ok(ClientTls(None));
        }
        let p = self.pems()?;
        Ok(ClientTls(Some(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(p.ca))
                .identity(tonic::transport::Identity::from_pem(p.cert, p.key)),
        )))
    }
}

/// The text of the insecure-mode warning (tests look for it).
pub fn insecure_warning(role: &str) -> String {
    format!(
        "tls.insecure = true: {role} speaks plaintext gRPC without authentication; anyone who reaches the coordinator can report, read and fail over"
    )
}

/// How a client reaches the coordinator: mutual TLS, or plaintext when insecure.
#[derive(Clone, Debug)]
pub struct ClientTls(Option<ClientTlsConfig>);

/// A coordinator URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("coordinator url {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl ClientTls {
    /// Plaintext (tests of the insecure mode, tools that need none).
    pub fn insecure() -> Self {
        Self(None)
    }

    pub fn is_insecure(&self) -> bool {
        self.0.is_none()
    }

    /// Logs the insecure-mode warning (every start of a client in that mode).
    pub fn warn_if_insecure(&self, program: &str) {
        if self.is_insecure() {
            tracing::warn!(program, "{}", insecure_warning(program));
        }
    }

    /// `url` with the scheme this mode speaks: `https://` with TLS, `http://` without, so one
    /// configured URL works in both and the setting alone decides.
    pub fn url(&self, url: &str) -> String {
        let url = url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let scheme = if self.is_insecure() { "http" } else { "https" };
        format!("{scheme}://{rest}")
    }

    /// The endpoint of the coordinator at `url`, with this TLS (the server's certificate is
    /// checked against the URL's host name or IP address).
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, UrlError> {
        let fixed = self.url(url);
        let err = |e: tonic::transport::Error| UrlError {
            url: url.to_owned(),
            reason: error_chain(&e),
        };
        let endpoint = Endpoint::from_shared(fixed).map_err(err)?;
        match &self.0 {
            None => Ok(endpoint),
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(err),
        }
    }

    /// [`ClientTls::endpoint`] as every client of the coordinator needs it: connections time
    /// out after `io_timeout`, and HTTP/2 keep-alives (every 2 s, answered within
    /// `io_timeout`, at least 500 ms) find a coordinator gone silent, its host cut off or
    /// lost. The dead connection is then dropped and the next call connects anew, resolving
    /// the URL's name again, so a coordinator the swarm has moved is reached within seconds;
    /// without them every call would queue on the dead connection until TCP gives up (many
    /// minutes).
    pub fn client_endpoint(&self, url: &str, io_timeout: Duration) -> Result<Endpoint, UrlError> {
        Ok(self
            .endpoint(url)?
            .connect_timeout(io_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(io_timeout.max(Duration::from_millis(500)))
            .keep_alive_while_idle(true))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_required_unless_insecure() {
        let e = TlsSettings::default().validate().unwrap_err().to_string();
        assert!(e.contains("tls.ca_file") && e.contains("insecure"), "{e}");
        TlsSettings::insecure().validate().unwrap();
        let missing = TlsSettings::files("/nonexistent/ca.pem", "/x", "/y");
        let e = missing.validate().unwrap_err().to_string();
        assert!(
            e.contains("tls.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello").unwrap();
        let e = TlsSettings::files(&junk, &junk, &junk)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a PEM file"), "{e}");
    }

    #[test]
    fn the_setting_decides_the_scheme() {
        let plain = ClientTls::insecure();
        assert_eq!(plain.url("https://a:1"), "http://a:1");
        assert_eq!(plain.url("http://a:1"), "http://a:1");
        assert_eq!(plain.url("a:1"), "http://a:1");
        let tls = ClientTls(Some(ClientTlsConfig::new()));
        assert_eq!(tls.url("http://127.0.0.1:50051"), "https://127.0.0.1:50051");
        assert_eq!(
            tls.url(" https://coordinator:50051 "),
            "https://coordinator:50051"
        );
        assert!(plain.endpoint("http://bad host:1").is_err());
    }
}
