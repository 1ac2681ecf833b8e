//! HAProxy support for the process tests: to be written by the haproxy-reloader work.
//!
//! Use `crate::process::ManagedProcess` to run `haproxy -f <cfg> -db` from a config file in
//! `Cluster::dir()`, and the ports `Cluster::ports().port(HAPROXY_PORT_OFFSET + k)` for k in 0..=8
//! (offsets 21-29 of the cluster's block are reserved for HAProxy: frontend, stats, ...).
