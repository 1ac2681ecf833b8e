//! The first source: the coordinator's `WatchTopology` stream (the current topology first, then
//! every change). Reconnects with a capped exponential backoff for as long as it runs.

use std::sync::Arc;
use std::time::Duration;

use redis_ha_common::Backoff;
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::WatchTopologyRequest;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::decision::{from_topology, next_stream_session, Decision};
use crate::metrics::ReloaderMetrics;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("coordinator {url}: invalid URL: {reason}")]
    Url { url: String, reason: String },
    #[error("coordinator {url}: cannot connect: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("coordinator {url}: WatchTopology: {status}")]
    Status { url: String, status: tonic::Status },
    #[error("coordinator {url}: the topology stream ended")]
    Ended { url: String },
}

#[derive(Clone, Debug)]
pub struct CoordinatorSource {
    pub url: String,
    /// Mutual TLS with the reloader's certificate, or plaintext when insecure.
    pub tls: redis_ha_tls::ClientTls,
    pub group: String,
    pub io_timeout: Duration,
    pub max_backoff: Duration,
    pub metrics: Arc<ReloaderMetrics>,
    /// True while the stream is open (the reloader follows the readers it names only then).
    pub connected: watch::Sender<bool>,
}

impl CoordinatorSource {
    /// Follows the stream until cancelled; every topology becomes a decision.
    pub async fn run(self, decisions: mpsc::Sender<Decision>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.max_backoff);
        let mut down_logged = false;
        loop {
            let mut received = false;
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.watch_once(&decisions, &mut received) => r,
            };
            self.metrics.coordinator_connected.set(0);
            self.connected.send_replace(false);
            if received {
                backoff.reset();
            }
            let retry_in = backoff.fail();
            match result {
                Ok(()) => return, // the receiver is gone: shutting down
                Err(e) if !down_logged || received => {
                    warn!(error = %e, retry_in = ?retry_in, "coordinator watch broken (the Sentinels, if configured, are followed meanwhile); reconnecting");
                    down_logged = true;
                }
                Err(e) => debug!(error = %e, retry_in = ?retry_in, "coordinator still unreachable"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// One connection: returns `Ok` only when the decision receiver is gone.
    async fn watch_once(
        &self,
        decisions: &mpsc::Sender<Decision>,
        received: &mut bool,
    ) -> Result<(), WatchError> {
        let url = || self.url.clone();
        let endpoint = self
            .tls
            .client_endpoint(&self.url, self.io_timeout)
            .map_err(|e| WatchError::Url {
                url: url(),
                reason: e.reason,
            })?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| WatchError::Connect { url: url(), source })?;
        let mut client = CoordinatorClient::new(channel);
        let mut stream = client
            .watch_topology(WatchTopologyRequest {
                master_group: self.group.clone(),
            })
            .await
            .map_err(|status| {
                self.metrics.grpc("WatchTopology", status.code());
                WatchError::Status { url: url(), status }
            })?
            .into_inner();
        self.metrics.grpc("WatchTopology", tonic::Code::Ok);
        self.metrics.coordinator_connected.set(1);
        self.connected.send_replace(true);
        // Tells the arbiter which decisions come from this stream, in order (revocations).
        let session = next_stream_session();
        info!(url = %self.url, group = %self.group, "watching the coordinator's topology");
        loop {
            let topology = match stream.message().await {
                Ok(Some(t)) => t,
                Ok(None) => return Err(WatchError::Ended { url: url() }),
                Err(status) => return Err(WatchError::Status { url: url(), status }),
            };
            *received = true;
            if topology.master_group != self.group {
                warn!(got = %topology.master_group, want = %self.group, "topology of another group ignored");
                continue;
            }
            self.metrics
                .topology_version
                .set(i64::try_from(topology.version).unwrap_or(i64::MAX));
            match from_topology(&topology, session) {
                Ok((d, skipped)) => {
                    for s in skipped {
                        warn!(version = topology.version, "topology node left out: {s}");
                    }
                    debug!(
                        version = topology.version,
                        master = %topology.master_address,
                        epoch = topology.config_epoch,
                        source = %topology.master_source(),
                        "topology received"
                    );
                    if decisions.send(d).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => warn!(error = %e, "topology ignored"),
            }
        }
    }
}
