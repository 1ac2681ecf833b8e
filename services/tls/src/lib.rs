//! Certificates and identities of the redis-ha control plane (gRPC to the coordinator):
//!
//! - [`identity`]: who a certificate names ([`Identity`]) and who may make which call
//!   ([`authorize`]), the one rule;
//! - [`settings`]: the `[tls]` table of every sidecar's configuration ([`TlsSettings`]), turned
//!   into the coordinator's server configuration or a client's endpoint ([`ClientTls`]);
//! - [`guard`]: the coordinator's check of a call against the peer's certificate;
//! - [`issue`] (feature `issue`): the cluster CA and one certificate per party, created or
//!   kept in a directory (`redis-ha certs create`, the test harness).

pub mod guard;
pub mod identity;
#[cfg(feature = "issue")]
pub mod issue;
pub mod settings;

pub use guard::Guard;
pub use identity::{authorize, Call, Denied, Identity, IdentityError};
pub use settings::{insecure_warning, ClientTls, TlsSettings, UrlError};
