//! The control plane's certificates for a test: the CA and one certificate per party, created
//! in the test's directory by the product's own code (`redis_ha_tls::issue`, what
//! `deploy/up.sh` runs through `redis-ha certs create`).

use std::path::{Path, PathBuf};

use redis_ha_tls::issue::{create, CertDir, Plan};
use redis_ha_tls::{ClientTls, Identity, TlsSettings};
use tempfile::TempDir;

/// A directory with the cluster CA and the certificates of the coordinator, the reloader, the
/// operator and agents `node-1..=node-N`.
#[derive(Debug)]
pub struct Certs {
    dir: CertDir,
    _tmp: Option<TempDir>,
}

impl Certs {
    /// Creates them in `dir` for agents `node-1..=node-<nodes>`.
    pub fn create(dir: &Path, nodes: usize) -> Self {
        let ids: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
        create(dir, &Plan::for_nodes(&ids))
            .unwrap_or_else(|e| panic!("cannot create the certificates in {}: {e}", dir.display()));
        Self {
            dir: CertDir::new(dir),
            _tmp: None,
        }
    }

    /// In a temp dir of their own (removed when dropped).
    pub fn temp(nodes: usize) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("redis-ha-certs-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let mut certs = Self::create(&tmp.path().join("tls"), nodes);
        certs._tmp = Some(tmp);
        certs
    }

    pub fn dir(&self) -> &Path {
        &self.dir.dir
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.ca()
    }

    pub fn cert(&self, who: &Identity) -> PathBuf {
        self.dir.cert(who)
    }

    pub fn key(&self, who: &Identity) -> PathBuf {
        self.dir.key(who)
    }

    /// The `[tls]` settings of `who`.
    pub fn settings(&self, who: &Identity) -> TlsSettings {
        self.dir.settings(who)
    }

    /// A client presenting `who`'s certificate.
    pub fn client(&self, who: &Identity) -> ClientTls {
        self.settings(who)
            .client()
            .unwrap_or_else(|e| panic!("the certificate of {who}: {e}"))
    }

    /// The operator's client (what `redis-ha` presents).
    pub fn operator(&self) -> ClientTls {
        self.client(&Identity::Operator)
    }
}

/// Agent `node`'s identity.
pub fn agent(node: &str) -> Identity {
    Identity::agent(node).unwrap_or_else(|| panic!("{node:?} is no node id"))
}
