//! A relay in front of the coordinator that records every agent report the coordinator
//! acknowledged: agents configured with [`ReportRelay::url`] as their coordinator talk to the
//! real one through it (every RPC forwarded as is, `WatchTopology` streams included).
//!
//! The coordinator answers a report only after it applied it, re-derived the topology and
//! evaluated its crash rule on it, so an acknowledged report is a decision the coordinator has
//! taken on what that report said: a test proves that something did *not* happen by counting
//! such decisions, not by waiting some time.
//!
//! It listens on the cluster block's port [`RELAY_PORT_OFFSET`], with mutual TLS as the
//! coordinator does (its certificate), and forwards each call with the certificate of the
//! caller's own identity, so the coordinator checks every call as if it came directly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, FailoverResponse, GetTopologyRequest, ListEventsRequest,
    ListEventsResponse, Reach, ReportAck, SwitchoverRequest, SwitchoverResponse, Topology,
    WatchTopologyRequest,
};
use redis_ha_testkit::tls::{agent, Certs};
use redis_ha_testkit::wait_until;
use redis_ha_tls::{ClientTls, Identity};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::cluster::{Cluster, NODES, READY_TIMEOUT};

/// The relay's port in the cluster's block.
pub const RELAY_PORT_OFFSET: u16 = 30;

/// One report the coordinator acknowledged.
#[derive(Clone, Debug)]
pub struct Relayed {
    pub report: AgentReport,
    /// When the acknowledgement came back through the relay.
    pub acked_at: Instant,
    /// The topology version the acknowledgement carried.
    pub topology_version: u64,
}

impl Relayed {
    /// The agent's master watch: the address it watches and how it reaches it.
    pub fn watch(&self) -> Option<(&str, Reach)> {
        watch_of(&self.report)
    }
}

/// A report's master watch: the address watched and how it is reached.
pub fn watch_of(report: &AgentReport) -> Option<(&str, Reach)> {
    report
        .master_watch
        .as_ref()
        .map(|w| (w.address.as_str(), w.reach()))
}

type Log = Arc<Mutex<Vec<Relayed>>>;

fn lock(log: &Log) -> MutexGuard<'_, Vec<Relayed>> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running relay; stops when dropped.
pub struct ReportRelay {
    url: String,
    log: Log,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ReportRelay {
    /// Serves the relay on 127.0.0.1:`port`, forwarding to the coordinator at
    /// `coordinator_url`; `certs` holds the coordinator's certificate (served) and every
    /// client's (forwarded with).
    /// `certs: None`: plaintext both ways, for a coordinator run with `tls.insecure`.
    pub async fn start(port: u16, coordinator_url: &str, certs: Option<&Certs>) -> Self {
        let listener = redis_ha_testkit::ports::bind(port).await;
        let log = Log::default();
        let identities = (1..=NODES)
            .map(|i| agent(&format!("node-{i}")))
            .chain([Identity::Reloader, Identity::Operator]);
        let clients = match certs {
            Some(certs) => identities
                .map(|who| {
                    let tls = certs.client(&who);
                    (
                        who,
                        redis_ha_testkit::coordinator::client(coordinator_url, &tls),
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let plain = certs.is_none().then(|| {
            redis_ha_testkit::coordinator::client(coordinator_url, &ClientTls::insecure())
        });
        let forward = Forward {
            clients,
            plain,
            log: log.clone(),
        };
        let stop = CancellationToken::new();
        let mut builder = tonic::transport::Server::builder();
        if let Some(certs) = certs {
            let tls = certs
                .settings(&Identity::Coordinator)
                .server()
                .unwrap_or_else(|e| panic!("the relay's TLS: {e}"))
                .unwrap_or_else(|| panic!("the relay's TLS: insecure"));
            builder = builder
                .tls_config(tls)
                .unwrap_or_else(|e| panic!("the relay's TLS: {e}"));
        }
        let server = builder
            .add_service(CoordinatorServer::new(forward))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("report relay on port {port}: {e}");
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            log,
            stop,
            task,
        }
    }

    /// What agents use as their coordinator URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many acknowledged reports were recorded so far: a position to wait from.
    pub fn len(&self) -> usize {
        lock(&self.log).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The acknowledged reports at positions `from..to`, in the order acknowledged.
    pub fn between(&self, from: usize, to: usize) -> Vec<Relayed> {
        let log = lock(&self.log);
        log[from.min(log.len())..to.min(log.len())].to_vec()
    }

    /// Waits for an acknowledged report at position `from` or later for which `pred` holds;
    /// returns its position.
    pub async fn wait_report(
        &self,
        what: &str,
        from: usize,
        pred: impl Fn(&Relayed) -> bool,
    ) -> usize {
        let pred = &pred;
        wait_until(what, READY_TIMEOUT, || async move {
            let log = lock(&self.log);
            let tail = log.get(from..).unwrap_or_default();
            match tail.iter().position(pred) {
                Some(p) => Ok(from + p),
                None => Err(describe_tail(tail)),
            }
        })
        .await
    }

    /// Waits until each of `agents` (agent ids) had `n` reports acknowledged at position `from`
    /// or later; returns the position right after the report that completed the count.
    pub async fn wait_reports_from_each(&self, from: usize, agents: &[String], n: usize) -> usize {
        wait_until(
            &format!("{n} more acknowledged reports from each of {agents:?}"),
            READY_TIMEOUT,
            || async move {
                let log = lock(&self.log);
                let mut counts = vec![0usize; agents.len()];
                for (p, r) in log.iter().enumerate().skip(from) {
                    if let Some(i) = agents.iter().position(|a| *a == r.report.agent_id) {
                        counts[i] += 1;
                    }
                    if counts.iter().all(|&c| c >= n) {
                        return Ok(p + 1);
                    }
                }
                Err(format!("counted {counts:?}"))
            },
        )
        .await
    }
}

/// The last few reports, one line each, for failure messages.
fn describe_tail(tail: &[Relayed]) -> String {
    let shown: Vec<String> = tail
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(|r| {
            format!(
                "{} #{} ({}) watch={:?} evidence={:?}",
                r.report.agent_id,
                r.report.sequence,
                r.report.reason,
                r.watch(),
                r.report
                    .master_watch
                    .as_ref()
                    .map_or("", |w| w.evidence.as_str())
            )
        })
        .collect();
    format!("{} reports; last: {shown:?}", tail.len())
}

impl Drop for ReportRelay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// The relay's service: forwards every call, records acknowledged reports.
struct Forward {
    /// One client per identity: a call goes on with its caller's certificate.
    clients: BTreeMap<Identity, CoordinatorClient<Channel>>,
    /// Plaintext: one client for every caller.
    plain: Option<CoordinatorClient<Channel>>,
    log: Log,
}

impl Forward {
    /// The client with the certificate of the caller's identity.
    #[allow(clippy::result_large_err)] // the RPC's own error type
    fn client<T>(&self, request: &Request<T>) -> Result<CoordinatorClient<Channel>, Status> {
        if let Some(plain) = &self.plain {
            return Ok(plain.clone());
        }
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("relay: no client certificate"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("relay: no client certificate"))?;
        let who = Identity::from_certificate(leaf)
            .map_err(|e| Status::unauthenticated(format!("relay: {e}")))?;
        self.clients
            .get(&who)
            .cloned()
            .ok_or_else(|| Status::permission_denied(format!("relay: no certificate for {who}")))
    }
}

#[tonic::async_trait]
impl Coordinator for Forward {
    async fn report(&self, request: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        let mut client = self.client(&request)?;
        let report = request.into_inner();
        let ack = client.report(report.clone()).await?.into_inner();
        lock(&self.log).push(Relayed {
            report,
            acked_at: Instant::now(),
            topology_version: ack.topology_version,
        });
        Ok(Response::new(ack))
    }

    async fn get_topology(
        &self,
        request: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        self.client(&request)?
            .get_topology(request.into_inner())
            .await
    }

    type WatchTopologyStream = tonic::Streaming<Topology>;

    async fn watch_topology(
        &self,
        request: Request<WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        self.client(&request)?
            .watch_topology(request.into_inner())
            .await
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.client(&request)?
            .list_events(request.into_inner())
            .await
    }

    async fn failover(
        &self,
        request: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        self.client(&request)?.failover(request.into_inner()).await
    }

    async fn switchover(
        &self,
        request: Request<SwitchoverRequest>,
    ) -> Result<Response<SwitchoverResponse>, Status> {
        self.client(&request)?
            .switchover(request.into_inner())
            .await
    }
}

impl Cluster {
    /// Starts a [`ReportRelay`] to this cluster's coordinator on the block's relay port.
    pub async fn start_report_relay(&self) -> ReportRelay {
        ReportRelay::start(
            self.ports().port(RELAY_PORT_OFFSET),
            &self.coordinator_url(),
            (!self.options().insecure).then(|| self.certs()),
        )
        .await
    }
}
