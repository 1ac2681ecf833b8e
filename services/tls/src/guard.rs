//! The coordinator's check of each call: who the peer is (its certificate, verified by the
//! TLS handshake against the cluster CA) and whether [`authorize`] lets it.

use tonic::{Request, Status};

use crate::identity::{authorize, Call, Identity};

/// How the coordinator checks calls: by the peer's certificate, or not at all (insecure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Mutual TLS: every call carries a verified client certificate.
    Certificates,
    /// Plaintext: nobody is authenticated, every call is allowed.
    Open,
}

impl Guard {
    /// The peer's identity when `call` is allowed; UNAUTHENTICATED without a usable
    /// certificate, PERMISSION_DENIED when the rule refuses. `None` in insecure mode.
    #[allow(clippy::result_large_err)] // the RPC's own error type
    pub fn check<T>(
        &self,
        request: &Request<T>,
        call: Call<'_>,
    ) -> Result<Option<Identity>, Status> {
        match self {
            Self::Open => Ok(None),
            Self::Certificates => {
                let certs = request
                    .peer_certs()
                    .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
                let leaf = certs
                    .first()
                    .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
                let who = Identity::from_certificate(leaf)
                    .map_err(|e| Status::unauthenticated(e.to_string()))?;
                authorize(&who, call).map_err(|e| Status::permission_denied(e.to_string()))?;
                Ok(Some(who))
            }
        }
    }
}
