//! `host:port` addresses as they appear in configuration and in Sentinel's answers.

use std::fmt;
use std::net::ToSocketAddrs;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::ConfigError;

/// A `host:port` pair. The host is a name or an IP address (IPv6 in brackets).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("expected host:port, got {0:?}")]
    Shape(String),
    #[error("invalid port in {0:?}: expected 1-65535")]
    Port(String),
    #[error("empty host in {0:?}")]
    EmptyHost(String),
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Checks that the host resolves, retrying for up to `wait` (a swarm service name only
    /// resolves once its task runs). Errors name the configuration key.
    pub fn check_resolves(&self, key: &str, wait: Duration) -> Result<(), ConfigError> {
        let deadline = Instant::now() + wait;
        loop {
            match (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map(|mut a| a.next().is_some())
            {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if Instant::now() >= deadline => {
                    return Err(ConfigError::invalid(
                        key,
                        self.to_string(),
                        format!("host does not resolve: {e}"),
                    ))
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(ConfigError::invalid(
                    key,
                    self.to_string(),
                    "host resolves to no address",
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A host as a name or an IP address can be: not empty, no whitespace, control characters or
/// brackets (those only enclose an IPv6 address in `host:port`). No real one has them, and a
/// host with them does not print as text that reads back the same (found by the fuzz
/// targets: "[[\r\0*0;:1" as an address, `ip=[::1` in `INFO`); replies naming one are refused.
pub fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '[' || c == ']')
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| AddrError::Shape(s.to_owned()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(AddrError::EmptyHost(s.to_owned()));
        }
        if !is_valid_host(host) {
            return Err(AddrError::Shape(s.to_owned()));
        }
        if host.contains(':') && !s.trim().starts_with('[') {
            // An IPv6 literal must be bracketed, or the port is ambiguous.
            return Err(AddrError::Shape(s.to_owned()));
        }
        let port: u16 = port.parse().map_err(|_| AddrError::Port(s.to_owned()))?;
        if port == 0 {
            return Err(AddrError::Port(s.to_owned()));
        }
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_ipv4_and_ipv6() {
        assert_eq!(
            "redis-1:9001".parse::<HostPort>(),
            Ok(HostPort::new("redis-1", 9001))
        );
        assert_eq!(
            "127.0.0.1:19001".parse::<HostPort>(),
            Ok(HostPort::new("127.0.0.1", 19001))
        );
        let v6: HostPort = "[::1]:9001".parse().unwrap();
        assert_eq!(v6, HostPort::new("::1", 9001));
        assert_eq!(v6.to_string(), "[::1]:9001");
    }

    #[test]
    fn refuses_bad_shapes() {
        // The error names the input as it was given.
        type Refusal = fn(String) -> AddrError;
        let cases: [(&str, Refusal); 10] = [
            ("redis-1", AddrError::Shape),
            (":9001", AddrError::EmptyHost),
            ("h:0", AddrError::Port),
            ("h:70000", AddrError::Port),
            ("::1:80", AddrError::Shape),
            // Whitespace or control characters in the host (fuzz finding: the printed form
            // did not parse back to the same address).
            ("[[\r\0\0\0\0*0;:1", AddrError::Shape),
            ("[ ]:1", AddrError::Shape),
            ("a b:1", AddrError::Shape),
            ("[a\tb]:1", AddrError::Shape),
            ("[a]b:1", AddrError::Shape),
        ];
        for (input, error) in cases {
            assert_eq!(
                input.parse::<HostPort>(),
                Err(error(input.into())),
                "{input:?}"
            );
        }
    }

    #[test]
    fn what_parses_prints_as_text_that_parses_to_the_same() {
        for input in [
            "redis-1:9001",
            "[::1]:1",
            "[[x]]:2",
            "[a:b:3",
            "10.0.0.1:65535",
        ] {
            let hp: HostPort = input.parse().unwrap();
            assert_eq!(hp.to_string().parse::<HostPort>(), Ok(hp), "{input:?}");
        }
    }

    #[test]
    fn unresolvable_host_names_the_key() {
        let e = HostPort::new("no-such-host.invalid", 1)
            .check_resolves("redis_addr", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis_addr"), "{e}");
        assert!(e.contains("no-such-host.invalid:1"), "{e}");
    }
}
