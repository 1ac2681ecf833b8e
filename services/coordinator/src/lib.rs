//! The redis-ha coordinator: keeps every health agent's latest report, derives one versioned
//! topology per master group ([`topology`]), and serves it over gRPC (`redisha.v1.Coordinator`,
//! plus `grpc.health.v1` and server reflection v1 / v1alpha). Prometheus metrics are served at
//! `/metrics` on `metrics_addr`.

pub mod ballot;
pub mod config;
pub mod crash;
pub mod failover;
pub mod limits;
mod metrics;
pub mod readers;
mod service;
pub mod switchover;
pub mod topology;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use config::{CoordinatorConfig, NodeConfig};
pub use redis_ha_common::ConfigError;
pub use service::CoordinatorService;

/// The served service type; its name ("redisha.v1.Coordinator") is what health checks ask for.
type ServedCoordinator =
    redis_ha_proto::v1::coordinator_server::CoordinatorServer<CoordinatorService>;

/// How long a shutdown waits for connected clients to go away.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the coordinator cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection set-up: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds `listen_addr` and serves until `shutdown` is cancelled.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: CancellationToken,
) -> Result<(), CoordinatorError> {
    config.validate()?;
    let addr = config.socket_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CoordinatorError::Bind { addr, source })?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener until `shutdown` is cancelled (tests bind port 0 and
/// know the real port). Open `WatchTopology` streams end on shutdown, so it returns promptly.
pub async fn serve(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), CoordinatorError> {
    config.validate()?;
    let local = listener.local_addr().ok();
    // Our own token: stops the timer and the watch streams when the server ends for any
    // reason, without cancelling the caller's token.
    let stop = shutdown.child_token();
    // Mutual TLS unless `tls.insecure`: the handshake refuses a client without a certificate
    // of the cluster CA; the service checks each call against the certificate's identity.
    let tls = config.tls.server()?;
    config
        .tls
        .warn_if_insecure("redis-ha-coordinator", "coordinator");
    let service = CoordinatorService::new(&config, stop.clone())?;
    redis_ha_common::metrics::start(
        "redis-ha-coordinator",
        config.metrics_socket_addr()?,
        service.registry(),
        stop.clone(),
    )
    .await;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    health_reporter.set_serving::<ServedCoordinator>().await;

    // Tell health checkers first when going down, so they stop sending traffic here.
    {
        let reporter = health_reporter.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            reporter.set_not_serving::<ServedCoordinator>().await;
        });
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(redis_ha_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(redis_ha_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Re-derive on a timer too, so a silent agent turns UNKNOWN without any report arriving.
    let ticker = tokio::spawn(service.clone().tick_until(stop.clone()));

    tracing::info!(
        listen = ?local,
        master_group = %config.master_group,
        stale_after_ms = config.stale_after_ms,
        tls = if tls.is_some() { "mutual TLS, client certificates required" } else { "off (insecure)" },
        "coordinator serving"
    );
    if config.nodes.is_empty() {
        tracing::warn!(
            "no node list configured (`nodes`): any address an agent or a Sentinel reports may become master, and the Sentinel password goes to any reported Sentinel; list the group's nodes"
        );
    } else {
        tracing::info!(
            nodes = ?config.nodes.iter().map(|n| format!("{} redis={} sentinel={}", n.id, n.redis, n.sentinel)).collect::<Vec<_>>(),
            "a master is only ever one of the configured nodes"
        );
    }
    let coordinator = service
        .clone()
        .into_server()
        .max_decoding_message_size(config.max_message_bytes);
    // Bounds on work per client connection (issue #11 item 8): calls in flight, streams.
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(config.concurrency_limit_per_connection)
        .max_concurrent_streams(config.max_concurrent_streams);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(coordinator)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
    let mut server = std::pin::pin!(server);
    // Graceful shutdown waits for every connection to close; a client that stopped reading a
    // watch stream never lets its connection drain, so stop waiting after a grace period.
    let result = tokio::select! {
        r = &mut server => r,
        _ = async {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                grace = ?SHUTDOWN_GRACE,
                "clients still connected after the shutdown grace period; leaving them"
            );
            Ok(())
        }
    };
    stop.cancel();
    if let Err(e) = ticker.await {
        tracing::warn!(error = %e, "topology timer task ended abnormally");
    }
    tracing::info!(listen = ?local, "coordinator stopped");
    result.map_err(CoordinatorError::from)
}

/// A coordinator served by a task of the calling tokio runtime, on an already bound listener:
/// the one way to run it in-process (the tests of every crate use it). Dropping it cancels the
/// server and aborts the task.
pub struct InProcess {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), CoordinatorError>>>,
}

impl InProcess {
    /// Spawns [`serve`] on `listener`.
    pub fn spawn(
        config: CoordinatorConfig,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(config, listener, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://<addr>" (clients turn the scheme into the one their TLS setting speaks).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// True once `serve` has returned (on its own, unless `stop` was called).
    pub fn is_finished(&self) -> bool {
        self.task
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Cancels the server; the returned task ends once `serve` has returned (its port free).
    pub fn stop(mut self) -> tokio::task::JoinHandle<Result<(), CoordinatorError>> {
        self.shutdown.cancel();
        self.task
            .take()
            .unwrap_or_else(|| tokio::spawn(async { Ok(()) }))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
