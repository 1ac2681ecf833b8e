//! The loop: decisions come from the coordinator's stream and from the Sentinels, the arbiter
//! keeps the one in force (highest config epoch), and one task per HAProxy instance converges
//! that instance on it: at once when the decision changes, and on every resync tick (read-back,
//! re-apply on drift, so a restarted HAProxy or a failed command heals by itself).
//!
//! Before any decision exists (reloader just started) HAProxy is left as it is, so a reloader
//! restart never changes routing.
//!
//! Tracing: applying a coordinator topology is an `apply_topology` span, a child of the
//! coordinator span that published it (`Topology.trace_parent`), with the runtime API
//! commands and read-backs below it. The periodic resync converges are debug-level spans, so
//! an idle reloader does not fill the trace store.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use redis_ha_common::{ConfigError, HostPort};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, span, warn, Instrument, Level};

use crate::config::ReloaderConfig;
use crate::coordinator::CoordinatorSource;
use crate::decision::{Arbiter, Decision, Source, Verdict};
use crate::metrics::ReloaderMetrics;
use crate::plan::{self, NodeTarget, PlanError, ServerNames, Wanted};
use crate::runtime::{
    Command, Observation, RuntimeAddr, RuntimeClient, RuntimeEndpoint, RuntimeError,
};
use crate::sentinel::SentinelSource;
use crate::supervise::supervise;

/// How long a panicked HAProxy instance task waits before it starts again.
const INSTANCE_RESTART_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReloaderError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why one converge of one HAProxy failed. The next resync tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot resolve the master address {address}: {reason}")]
    Resolve { address: HostPort, reason: String },
    #[error("read-back after applying still differs: {0:?}")]
    Drift(Vec<String>),
}

/// What one converge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvergeOutcome {
    /// The commands sent (empty: HAProxy was already in the wanted state).
    pub commands: Vec<String>,
    /// The server ready afterwards (the read-back), if exactly one.
    pub ready_server: Option<String>,
}

/// The last apply that changed something on one HAProxy.
#[derive(Clone, Debug)]
pub struct AppliedRecord {
    /// When the last command of the apply was acknowledged.
    pub at: Instant,
    pub config_epoch: u64,
    pub master: Option<HostPort>,
    pub commands: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct InstanceStatus {
    /// The last converge found or left HAProxy in the wanted state.
    pub converged: bool,
    pub last_error: Option<String>,
    /// Converges that sent commands.
    pub applies: u64,
    pub last_apply: Option<AppliedRecord>,
    /// The server ready at the last read-back.
    pub ready_server: Option<String>,
    pub last_check: Option<Instant>,
    /// The read backend (when one is configured): its ready servers at the last read-back.
    pub read_ready: Vec<String>,
    /// The master serves reads (no reader known).
    pub read_fallback: bool,
    /// The last converge of the read backend found or left it in the wanted state.
    pub read_converged: bool,
    pub read_error: Option<String>,
}

/// Observable state, for tests, benchmarks and logs.
#[derive(Clone, Debug, Default)]
pub struct ReloaderStatus {
    /// The decision in force.
    pub decision: Option<Decision>,
    /// Keyed by runtime API address (`unix:/path` or `tcp:ip:port`).
    pub instances: BTreeMap<String, InstanceStatus>,
}

/// The reloader, ready to run.
pub struct Reloader {
    config: ReloaderConfig,
    names: ServerNames,
    status: watch::Sender<ReloaderStatus>,
    metrics: Arc<ReloaderMetrics>,
    registry: Arc<Registry>,
}

impl Reloader {
    pub fn new(config: ReloaderConfig) -> Result<Self, ReloaderError> {
        config.validate()?;
        let names = ServerNames::new(config.server_names.clone());
        let (metrics, registry) = ReloaderMetrics::new();
        Ok(Self {
            config,
            names,
            status: watch::Sender::new(ReloaderStatus::default()),
            metrics: Arc::new(metrics),
            registry: Arc::new(registry),
        })
    }

    /// The Prometheus registry of this reloader's metrics (served at `/metrics`).
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Follows the decision in force and every HAProxy's state.
    pub fn status(&self) -> watch::Receiver<ReloaderStatus> {
        self.status.subscribe()
    }

    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ReloaderError> {
        let c = &self.config;
        let endpoints = c.runtime_endpoints()?;
        let password = c.sentinel_password()?;
        let children = cancel.child_token();
        redis_ha_common::metrics::start(
            "redis-ha-reloader",
            c.metrics_socket_addr()?,
            self.registry(),
            children.clone(),
        )
        .await;
        let (decision_tx, mut decision_rx) = mpsc::channel::<Decision>(64);
        let (applied_tx, applied_rx) = watch::channel::<Option<Arc<Decision>>>(None);
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        // Whether the coordinator's stream is open: the readers it names are followed only then.
        let coordinator_up_tx = watch::Sender::new(false);

        if c.coordinator_url.is_empty() {
            info!("no coordinator configured: following the Sentinels only");
        } else {
            let tls = c.tls.client()?;
            tls.warn_if_insecure("redis-ha-reloader");
            let src = CoordinatorSource {
                url: c.coordinator_url.clone(),
                tls,
                group: c.master_group.clone(),
                io_timeout: c.io_timeout(),
                max_backoff: c.reconnect_max_backoff(),
                metrics: Arc::clone(&self.metrics),
                connected: coordinator_up_tx.clone(),
            };
            tasks.push(tokio::spawn(src.run(decision_tx.clone(), children.clone())));
        }
        let mut coordinator_up = coordinator_up_tx.subscribe();
        if c.sentinels.is_empty() {
            warn!("no sentinels configured: routing cannot follow a failover while the coordinator is down");
        } else {
            let src = SentinelSource {
                sentinels: c.sentinels.clone(),
                group: c.master_group.clone(),
                quorum: c.sentinel_quorum,
                password,
                poll_interval: c.resync_interval(),
                io_timeout: c.io_timeout(),
            };
            tasks.push(tokio::spawn(src.run(decision_tx.clone(), children.clone())));
        }
        drop(decision_tx);

        let shared = Arc::new(Shared {
            backend: c.backend.clone(),
            read_backend: (!c.read_backend.is_empty()).then(|| c.read_backend.clone()),
            group: c.master_group.clone(),
            names: self.names.clone(),
            resync: c.resync_interval(),
            io_timeout: c.io_timeout(),
            pipeline: c.pipeline,
            status: self.status.clone(),
            metrics: Arc::clone(&self.metrics),
        });
        for endpoint in endpoints {
            tasks.push(tokio::spawn(drive_endpoint(
                endpoint,
                shared.clone(),
                applied_rx.clone(),
                children.clone(),
            )));
        }

        let mut arbiter =
            Arbiter::new(c.node_addresses()).with_failover_timeout(c.failover_timeout());
        if c.nodes.is_empty() {
            warn!("no node list configured (`nodes`): HAProxy follows any address the coordinator or the Sentinels name; list the group's nodes");
        } else {
            info!(
                nodes = ?c.nodes.iter().map(|n| format!("{}={}", n.id, n.redis)).collect::<Vec<_>>(),
                "HAProxy is only ever routed to the configured nodes"
            );
        }
        loop {
            let d = tokio::select! {
                () = cancel.cancelled() => break,
                r = coordinator_up.changed(), if r_ok(&coordinator_up) => {
                    if r.is_ok() && !*coordinator_up.borrow_and_update() && arbiter.clear_readers() {
                        info!("the coordinator's stream is broken: the read endpoint falls back to the master until it is back");
                        if let Some(cur) = arbiter.current() {
                            let cur = Arc::new(cur.clone());
                            self.status
                                .send_modify(|s| s.decision = Some(cur.as_ref().clone()));
                            applied_tx.send_replace(Some(cur));
                        }
                    }
                    continue;
                }
                d = decision_rx.recv() => match d {
                    Some(d) => d,
                    None => {
                        // Both sources are gone (cancelled): nothing more will come.
                        cancel.cancelled().await;
                        break;
                    }
                },
            };
            let mut d = d;
            if matches!(d.source, Source::Coordinator { .. }) && !*coordinator_up.borrow() {
                // Queued before its stream broke: its readers are no longer kept up to date.
                d.readers.clear();
            }
            let offered = d.source.clone();
            let verdict = arbiter.offer(d);
            for f in arbiter.foreign() {
                self.metrics
                    .foreign_addresses
                    .get_or_create(&crate::metrics::ForeignLabels {
                        source: f.source,
                        kind: f.kind,
                    })
                    .inc();
                if f.first {
                    warn!(source = f.source, kind = f.kind, address = %f.address,
                        "a decision names an address outside the configured node list: never routed to (logged once per address)");
                }
            }
            match verdict {
                Verdict::Changed => {
                    let Some(cur) = arbiter.current() else {
                        continue;
                    };
                    info!(
                        source = %cur.source,
                        epoch = cur.config_epoch,
                        master = %cur.master_address().map_or_else(|| "none".to_owned(), ToString::to_string),
                        "routing decision"
                    );
                    self.metrics
                        .decisions
                        .get_or_create(&crate::metrics::SourceLabels {
                            source: match cur.source {
                                Source::Coordinator { .. } => "coordinator",
                                Source::Sentinel { .. } => "sentinel",
                            },
                        })
                        .inc();
                    self.metrics
                        .config_epoch
                        .set(i64::try_from(cur.config_epoch).unwrap_or(i64::MAX));
                    let cur = Arc::new(cur.clone());
                    self.status
                        .send_modify(|s| s.decision = Some(cur.as_ref().clone()));
                    applied_tx.send_replace(Some(cur));
                }
                Verdict::Unchanged => {
                    if let Some(cur) = arbiter.current() {
                        // Newer version of the same routing: keep it without waking anyone,
                        // unless the readers changed (the read backend follows them).
                        let cur = cur.clone();
                        applied_tx.send_if_modified(|v| {
                            let wake = v.as_ref().is_none_or(|old| old.readers != cur.readers);
                            if wake {
                                info!(
                                    readers = ?cur.readers.iter().map(|r| r.address.to_string()).collect::<Vec<_>>(),
                                    "read endpoint: readers changed"
                                );
                            }
                            *v = Some(Arc::new(cur.clone()));
                            wake
                        });
                        self.status.send_if_modified(|s| {
                            s.decision = Some(cur);
                            false
                        });
                    }
                }
                Verdict::Ignored(reason) => match offered {
                    Source::Coordinator { version, .. } => {
                        info!(version, %reason, "coordinator topology not applied")
                    }
                    Source::Sentinel { .. } => debug!(%reason, "sentinel view not applied"),
                },
            }
        }
        children.cancel();
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

/// False once the sender is gone (no more changes will come: stop selecting on it).
fn r_ok(rx: &watch::Receiver<bool>) -> bool {
    rx.has_changed().is_ok()
}

/// Everything an instance task needs, shared.
struct Shared {
    backend: String,
    /// The read endpoint's backend; `None`: not driven.
    read_backend: Option<String>,
    group: String,
    names: ServerNames,
    resync: Duration,
    io_timeout: Duration,
    pipeline: bool,
    status: watch::Sender<ReloaderStatus>,
    metrics: Arc<ReloaderMetrics>,
}

/// Keeps one task per HAProxy instance behind an endpoint (a TCP name may resolve to several
/// HAProxy tasks; they come and go).
async fn drive_endpoint(
    endpoint: RuntimeEndpoint,
    shared: Arc<Shared>,
    applied: watch::Receiver<Option<Arc<Decision>>>,
    cancel: CancellationToken,
) {
    let mut running: HashMap<RuntimeAddr, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut tick = tokio::time::interval(shared.resync);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut logged_error = false;
    loop {
        match endpoint.resolve().await {
            Ok(addrs) => {
                logged_error = false;
                running.retain(|addr, (token, _)| {
                    let keep = addrs.contains(addr);
                    if !keep {
                        info!(instance = %addr, "HAProxy instance gone");
                        token.cancel();
                    }
                    keep
                });
                for addr in addrs {
                    if running.contains_key(&addr) {
                        continue;
                    }
                    info!(instance = %addr, "driving HAProxy instance");
                    let token = cancel.child_token();
                    let panics = shared
                        .metrics
                        .instance_panics
                        .get_or_create(&crate::metrics::HaproxyLabels {
                            haproxy: addr.to_string(),
                        })
                        .clone();
                    let start = {
                        let (addr, shared, applied, token) =
                            (addr.clone(), shared.clone(), applied.clone(), token.clone());
                        move || {
                            drive_instance(
                                RuntimeClient::new(addr.clone(), shared.io_timeout),
                                shared.clone(),
                                applied.clone(),
                                token.clone(),
                            )
                        }
                    };
                    // A panic in one converge must not leave this HAProxy undriven.
                    let h = tokio::spawn(supervise(
                        format!("HAProxy instance {addr}"),
                        start,
                        panics,
                        INSTANCE_RESTART_PAUSE,
                        token.clone(),
                    ));
                    running.insert(addr, (token, h));
                }
            }
            Err(e) if !logged_error => {
                warn!(endpoint = %endpoint, error = %e, "cannot resolve the HAProxy runtime endpoint");
                logged_error = true;
            }
            Err(e) => debug!(endpoint = %endpoint, error = %e, "still cannot resolve"),
        }
        if matches!(endpoint, RuntimeEndpoint::Unix(_)) && !running.is_empty() {
            // A path never resolves differently.
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
    }
    cancel.cancelled().await;
    for (_, (token, h)) in running {
        token.cancel();
        let _ = h.await;
    }
}

/// A name lookup: the address of a `host:port`, or why there is none.
type Lookup = Arc<
    dyn Fn(HostPort) -> futures::future::BoxFuture<'static, Result<SocketAddr, String>>
        + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo`), within `timeout`.
fn system_lookup(timeout: Duration) -> Lookup {
    Arc::new(move |hp: HostPort| {
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((hp.host.as_str(), hp.port));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| "no address".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    })
}

/// Name → address, looked up again once an address is older than one resync interval (in a
/// swarm a node that comes back gets a new address; IP literals never hit the resolver).
///
/// A lookup never holds up a converge once the name has an address: the known one is used and
/// the new lookup runs beside it, its answer taken by a later converge. A dead task's name can
/// take the whole timeout to fail (1 s on the stack), and a converge waiting for it kept the
/// switch to a promoted master waiting too (up to 1 s after the decision, seen on the stack).
/// Only a name never resolved is waited for: there is nothing to route to without it.
struct AddrCache {
    ttl: Duration,
    lookup: Lookup,
    // tokio's clock: a test can run it on.
    entries: HashMap<HostPort, (SocketAddr, tokio::time::Instant)>,
    pending: HashMap<HostPort, JoinHandle<Result<SocketAddr, String>>>,
}

impl AddrCache {
    fn new(ttl: Duration, timeout: Duration) -> Self {
        Self::with_lookup(ttl, system_lookup(timeout))
    }

    fn with_lookup(ttl: Duration, lookup: Lookup) -> Self {
        Self {
            ttl,
            lookup,
            entries: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Starts a lookup of `hp` unless one is under way.
    fn start_lookup(&mut self, hp: &HostPort) {
        if !self.pending.contains_key(hp) {
            let lookup = (self.lookup)(hp.clone());
            self.pending.insert(hp.clone(), tokio::spawn(lookup));
        }
    }

    /// The answer of `hp`'s lookup, a found address kept: at once when it is done, else only
    /// when `wait`; `None` when there is no answer to take.
    async fn collect(&mut self, hp: &HostPort, wait: bool) -> Option<Result<SocketAddr, String>> {
        let done = self.pending.get(hp).is_some_and(JoinHandle::is_finished);
        if !done && !wait {
            return None;
        }
        let found = self
            .pending
            .remove(hp)?
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Ok(a) = &found {
            self.entries
                .insert(hp.clone(), (*a, tokio::time::Instant::now()));
        }
        Some(found)
    }

    async fn resolve(&mut self, hp: &HostPort) -> Result<SocketAddr, String> {
        if let Ok(ip) = hp.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, hp.port));
        }
        let answer = self.collect(hp, false).await;
        if let Some(&(a, at)) = self.entries.get(hp) {
            if let Some(Err(e)) = answer {
                debug!(address = %hp, error = %e, "lookup failed, keeping the last address");
            }
            if at.elapsed() >= self.ttl {
                self.start_lookup(hp);
            }
            return Ok(a);
        }
        self.start_lookup(hp);
        self.collect(hp, true)
            .await
            .unwrap_or_else(|| Err("no lookup".to_owned()))
    }

    async fn wanted(&mut self, d: &Decision) -> Result<Wanted, ConvergeError> {
        let master = match &d.master {
            Some(m) => Some(NodeTarget {
                node: m.node.clone(),
                addr: self
                    .resolve(&m.address)
                    .await
                    .map_err(|reason| ConvergeError::Resolve {
                        address: m.address.clone(),
                        reason,
                    })?,
            }),
            None => None,
        };
        let mut nodes = Vec::with_capacity(d.nodes.len());
        for n in &d.nodes {
            match self.resolve(&n.address).await {
                Ok(addr) => nodes.push(NodeTarget {
                    node: n.node.clone(),
                    addr,
                }),
                Err(e) => debug!(address = %n.address, error = %e, "node address left out"),
            }
        }
        let mut readers = Vec::with_capacity(d.readers.len());
        for r in &d.readers {
            match self.resolve(&r.address).await {
                Ok(addr) => readers.push(NodeTarget {
                    node: r.node.clone(),
                    addr,
                }),
                Err(e) => debug!(address = %r.address, error = %e, "reader left out"),
            }
        }
        Ok(Wanted {
            master,
            nodes,
            readers,
        })
    }
}

/// Converges one HAProxy instance on the decision in force, forever.
async fn drive_instance(
    client: RuntimeClient,
    shared: Arc<Shared>,
    mut applied: watch::Receiver<Option<Arc<Decision>>>,
    cancel: CancellationToken,
) {
    let key = client.addr().to_string();
    let mut cache = AddrCache::new(shared.resync, shared.io_timeout);
    let mut tick = tokio::time::interval(shared.resync);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    let mut read_failing = false;
    // The master this HAProxy was last converged on: a different one is a switch.
    let mut routed_to: Option<HostPort> = None;
    loop {
        let resync = tokio::select! {
            // In this order: a new decision ready together with the resync tick is a change,
            // applied and traced as one (an unbiased select made it a resync now and then, its
            // span at debug level: the switch was missing from the failover's trace).
            biased;
            () = cancel.cancelled() => return,
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
        };
        let Some(d) = applied.borrow_and_update().clone() else {
            continue;
        };
        let master = d
            .master_address()
            .map_or_else(|| "none".to_owned(), ToString::to_string);
        let version = match &d.source {
            Source::Coordinator { version, .. } => *version,
            Source::Sentinel { .. } => 0,
        };
        let old_master = routed_to
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string);
        // A span's level is fixed where it is written: one field list for both levels.
        macro_rules! apply_span {
            ($level:expr) => {
                span!(
                    $level,
                    "apply_topology",
                    group = %shared.group,
                    version,
                    master = %master,
                    old_master = %old_master,
                    epoch = d.config_epoch,
                    source = %d.source,
                    instance = %key,
                    resync,
                )
            };
        }
        let span = if resync {
            apply_span!(Level::DEBUG)
        } else {
            let span = apply_span!(Level::INFO);
            // Part of the trace of the coordinator's publication of this version.
            redis_ha_common::telemetry::adopt_trace_parent(&d.trace_parent, &span);
            span
        };
        let result = converge(&client, &shared, &d, &mut cache, resync)
            .instrument(span.clone())
            .await;
        // The write endpoint's outcome first: its switch lag and log are not to include the
        // read endpoint's converge that follows.
        record_converge(&shared, &key, &d, &result, &mut routed_to);
        match &result {
            Ok(o) if !o.commands.is_empty() => {
                failing = false;
                info!(instance = %key, master = %master, epoch = d.config_epoch, commands = ?o.commands, ready = ?o.ready_server, "HAProxy converged");
            }
            Ok(_) => {
                if failing {
                    info!(instance = %key, "HAProxy converged again");
                }
                failing = false;
            }
            Err(e) if !failing => {
                warn!(instance = %key, error = %e, "converging HAProxy failed; retrying every resync");
                failing = true;
            }
            Err(e) => debug!(instance = %key, error = %e, "converging HAProxy still fails"),
        }
        let read = match &shared.read_backend {
            Some(backend) => Some(
                converge_read(&client, &shared, backend, &d, &mut cache)
                    .instrument(span)
                    .await,
            ),
            None => None,
        };
        if let Some(read) = &read {
            record_read(&shared, &key, read, &mut read_failing);
        }
        let now = Instant::now();
        shared.status.send_modify(|s| {
            let st = s.instances.entry(key.clone()).or_default();
            st.last_check = Some(now);
            match result {
                Ok(o) => {
                    st.converged = true;
                    st.last_error = None;
                    st.ready_server = o.ready_server;
                    if !o.commands.is_empty() {
                        st.applies += 1;
                        st.last_apply = Some(AppliedRecord {
                            at: now,
                            config_epoch: d.config_epoch,
                            master: d.master_address().cloned(),
                            commands: o.commands,
                        });
                    }
                }
                Err(e) => {
                    st.converged = false;
                    st.last_error = Some(e.to_string());
                }
            }
            match read {
                Some(Ok(r)) => {
                    st.read_converged = true;
                    st.read_error = None;
                    st.read_ready = r.ready;
                    st.read_fallback = r.fallback;
                }
                Some(Err(e)) => {
                    st.read_converged = false;
                    st.read_error = Some(e.to_string());
                }
                None => {}
            }
        });
    }
}

/// What one converge of the read backend did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The commands sent (empty: already in the wanted state).
    pub commands: Vec<String>,
    /// The servers ready afterwards (the read-back).
    pub ready: Vec<String>,
    /// The master serves reads (no reader known).
    pub fallback: bool,
}

/// Log and metrics of one read backend converge.
fn record_read(
    shared: &Shared,
    key: &str,
    read: &Result<ReadOutcome, ConvergeError>,
    failing: &mut bool,
) {
    let m = &shared.metrics;
    let haproxy = crate::metrics::HaproxyLabels {
        haproxy: key.to_owned(),
    };
    match read {
        Ok(r) => {
            if !r.commands.is_empty() {
                info!(instance = %key, commands = ?r.commands, ready = ?r.ready, fallback = r.fallback, "read endpoint converged");
            } else if *failing {
                info!(instance = %key, "read endpoint converged again");
            }
            *failing = false;
            m.read_servers
                .get_or_create(&haproxy)
                .set(i64::try_from(r.ready.len()).unwrap_or(i64::MAX));
            m.read_fallback
                .get_or_create(&haproxy)
                .set(i64::from(r.fallback));
            m.set_read_ready(key, &r.ready);
        }
        Err(e) if !*failing => {
            warn!(instance = %key, error = %e, "converging the read endpoint failed (the master endpoint is not affected); retrying every resync");
            *failing = true;
        }
        Err(e) => debug!(instance = %key, error = %e, "converging the read endpoint still fails"),
    }
}

/// Metrics of one converge: its result, and the switch (with its lag from the promotion) when
/// it readied a new master.
fn record_converge(
    shared: &Shared,
    key: &str,
    d: &Decision,
    result: &Result<ConvergeOutcome, ConvergeError>,
    routed_to: &mut Option<HostPort>,
) {
    let m = &shared.metrics;
    m.haproxy_converged
        .get_or_create(&crate::metrics::HaproxyLabels {
            haproxy: key.to_owned(),
        })
        .set(i64::from(result.is_ok()));
    let Ok(o) = result else {
        m.converge("error");
        return;
    };
    m.converge(if o.commands.is_empty() {
        "unchanged"
    } else {
        "changed"
    });
    let Some(master) = d.master_address() else {
        return;
    };
    // The first converge after start-up is no switch (the master may have been ready before).
    let switched = routed_to.as_ref().is_some_and(|r| r != master) && !o.commands.is_empty();
    if switched {
        m.master_switches.inc();
        // The timestamp comes from the wire (the coordinator, from an agent): any i64.
        if let Some(lag_ms) =
            switch_lag_ms(redis_ha_common::time::now_ms(), d.master_role_changed_at_ms)
        {
            m.switch_lag.observe(lag_ms as f64 / 1000.0);
            info!(haproxy = %key, master = %master, switch_lag_ms = lag_ms,
                "switched to the new master (lag measured from its role:master)");
        }
    }
    *routed_to = Some(master.clone());
}

/// Milliseconds from `role_changed_at_ms` (when the new master turned master, 0 = unknown)
/// to `now_ms`; `None` when unknown, in the future or not representable (a timestamp from
/// the wire may be anything, `i64::MIN` included).
pub fn switch_lag_ms(now_ms: i64, role_changed_at_ms: i64) -> Option<i64> {
    if role_changed_at_ms <= 0 {
        return None;
    }
    now_ms
        .checked_sub(role_changed_at_ms)
        .filter(|lag| *lag >= 0)
}

/// Reads HAProxy, plans, applies (fence and addresses first, ready last, only if the first
/// step was fully accepted), and reads back.
pub async fn converge_once(
    client: &RuntimeClient,
    backend: &str,
    names: &ServerNames,
    wanted: &Wanted,
    pipeline: bool,
) -> Result<ConvergeOutcome, ConvergeError> {
    converge_counted(client, backend, names, wanted, pipeline, None).await
}

/// A span below the current one, or none when there is no current span (a resync converge
/// runs in a disabled debug span: its commands must not become traces of their own).
fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        make()
    }
}

/// One read-back, as a span and in the metrics.
async fn read_back(
    client: &RuntimeClient,
    backend: &str,
    phase: &'static str,
    metrics: Option<&ReloaderMetrics>,
) -> Result<Observation, RuntimeError> {
    if let Some(m) = metrics {
        m.read_back();
    }
    let result = client
        .observe(backend)
        .instrument(child_span(|| info_span!("read_back", phase, backend)))
        .await;
    if let (Some(m), Err(e)) = (metrics, &result) {
        m.runtime_error(e);
    }
    result
}

/// What the plan against the read-back still asks for, after the commands ran: nothing but
/// session shutdowns (shut sessions may take a moment to leave the counters: the next resync
/// sees to them), or the backend drifted.
fn converged(left: Vec<Command>) -> Result<(), ConvergeError> {
    let left: Vec<String> = left
        .into_iter()
        .filter(|c| !matches!(c, Command::ShutdownSessions { .. }))
        .map(|c| c.to_string())
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(ConvergeError::Drift(left))
    }
}

/// [`converge_once`], counting commands, read-backs and errors in `metrics`.
async fn converge_counted(
    client: &RuntimeClient,
    backend: &str,
    names: &ServerNames,
    wanted: &Wanted,
    pipeline: bool,
    metrics: Option<&ReloaderMetrics>,
) -> Result<ConvergeOutcome, ConvergeError> {
    let observed = read_back(client, backend, "before", metrics).await?;
    let desired = plan::desired(wanted, names, &observed)?;
    let commands = plan::plan(backend, &desired, &observed)?;
    if commands.is_empty() {
        return Ok(ConvergeOutcome {
            commands: Vec::new(),
            ready_server: single_ready(&observed),
        });
    }
    let (fence, ready): (Vec<Command>, Vec<Command>) =
        commands.iter().cloned().partition(|c| !c.is_ready());
    run_step(client, &fence, pipeline, metrics).await?;
    run_step(client, &ready, pipeline, metrics).await?;

    let after = read_back(client, backend, "after", metrics).await?;
    let desired = plan::desired(wanted, names, &after)?;
    converged(plan::plan(backend, &desired, &after)?)?;
    Ok(ConvergeOutcome {
        commands: commands.iter().map(ToString::to_string).collect(),
        ready_server: single_ready(&after),
    })
}

async fn converge(
    client: &RuntimeClient,
    shared: &Shared,
    d: &Decision,
    cache: &mut AddrCache,
    resync: bool,
) -> Result<ConvergeOutcome, ConvergeError> {
    let wanted = cache.wanted(d).await?;
    let out = converge_counted(
        client,
        &shared.backend,
        &shared.names,
        &wanted,
        shared.pipeline,
        Some(&shared.metrics),
    )
    .await?;
    if resync && !out.commands.is_empty() {
        warn!(commands = ?out.commands, "HAProxy had drifted from the decision (restart, failed command, manual change): re-applied");
    }
    Ok(out)
}

/// Reads the read backend, plans ([`plan::plan_read`]: readers ready first, then the others
/// out), applies in one step, and reads back.
async fn converge_read(
    client: &RuntimeClient,
    shared: &Shared,
    backend: &str,
    d: &Decision,
    cache: &mut AddrCache,
) -> Result<ReadOutcome, ConvergeError> {
    let wanted = cache.wanted(d).await?;
    let metrics = Some(shared.metrics.as_ref());
    let observed = read_back(client, backend, "before", metrics).await?;
    let desired = plan::read_desired(&wanted, &shared.names, &observed)?;
    let commands = plan::plan_read(backend, &desired, &observed)?;
    if commands.is_empty() {
        return Ok(ReadOutcome {
            commands: Vec::new(),
            ready: ready_names(&observed),
            fallback: desired.fallback,
        });
    }
    run_step(client, &commands, shared.pipeline, metrics).await?;
    let after = read_back(client, backend, "after", metrics).await?;
    let again = plan::read_desired(&wanted, &shared.names, &after)?;
    converged(plan::plan_read(backend, &again, &after)?)?;
    Ok(ReadOutcome {
        commands: commands.iter().map(ToString::to_string).collect(),
        ready: ready_names(&after),
        fallback: again.fallback,
    })
}

fn ready_names(o: &Observation) -> Vec<String> {
    o.ready_servers().map(|s| s.srv_name.clone()).collect()
}

async fn run_step(
    client: &RuntimeClient,
    commands: &[Command],
    pipeline: bool,
    metrics: Option<&ReloaderMetrics>,
) -> Result<(), RuntimeError> {
    if commands.is_empty() {
        return Ok(());
    }
    if let Some(m) = metrics {
        m.commands(commands);
    }
    let result = if pipeline {
        let line = commands
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";");
        client
            .execute_pipelined(commands)
            .instrument(child_span(
                || info_span!("runtime_command", command = %line),
            ))
            .await
    } else {
        let mut result = Ok(());
        for c in commands {
            result = client
                .execute(c)
                .instrument(child_span(|| info_span!("runtime_command", command = %c)))
                .await;
            if result.is_err() {
                break;
            }
        }
        result
    };
    if let (Some(m), Err(e)) = (metrics, &result) {
        m.runtime_error(e);
    }
    result
}

fn single_ready(o: &Observation) -> Option<String> {
    let mut ready = o.ready_servers();
    match (ready.next(), ready.next()) {
        (Some(s), None) => Some(s.srv_name.clone()),
        _ => None,
    }
}

/// Loads nothing, validates, and runs until `cancel` fires.
pub async fn run(config: ReloaderConfig, cancel: CancellationToken) -> Result<(), ReloaderError> {
    Reloader::new(config)?.run(cancel).await
}

#[cfg(test)]
mod tests {
    use super::switch_lag_ms;
    use super::{AddrCache, Lookup};
    use redis_ha_common::HostPort;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A lookup that answers 10.0.0.N for the Nth lookup, after `delay`; `calls` counts them.
    fn counting_lookup(delay: Duration, calls: Arc<AtomicU64>) -> Lookup {
        Arc::new(move |hp: HostPort| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let ip = format!("10.0.0.{n}");
                Ok(SocketAddr::new(
                    ip.parse().map_err(|_| "ip".to_owned())?,
                    hp.port,
                ))
            })
        })
    }

    fn hp(s: &str) -> HostPort {
        s.parse().expect("an address")
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_address_is_used_while_its_slow_lookup_runs() {
        let calls = Arc::new(AtomicU64::new(0));
        let slow = Duration::from_secs(10);
        let mut cache = AddrCache::with_lookup(
            Duration::from_secs(1),
            counting_lookup(slow, Arc::clone(&calls)),
        );
        let node = hp("redis-1:9001");
        // Never resolved: waited for (the clock is paused: it runs on to the answer).
        let first = cache.resolve(&node).await.expect("resolved");
        assert_eq!(first, "10.0.0.1:9001".parse().expect("addr"));
        // Fresh: no lookup.
        assert_eq!(cache.resolve(&node).await.expect("cached"), first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Stale: the known address at once, one new lookup beside it.
        tokio::time::advance(Duration::from_secs(2)).await;
        let started = tokio::time::Instant::now();
        assert_eq!(cache.resolve(&node).await.expect("stale"), first);
        assert_eq!(cache.resolve(&node).await.expect("stale"), first);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a converge waited for a lookup"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one lookup at a time");
        // Its answer is taken by a later resolve.
        tokio::time::sleep(slow + Duration::from_millis(1)).await;
        assert_eq!(
            cache.resolve(&node).await.expect("refreshed"),
            "10.0.0.2:9001".parse::<SocketAddr>().expect("addr")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_keeps_the_last_address_and_ip_literals_skip_the_resolver() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let lookup: Lookup = Arc::new(move |hp: HostPort| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Ok(SocketAddr::new([10, 0, 0, 7].into(), hp.port))
                } else {
                    Err("no answer within 1s".to_owned())
                }
            })
        });
        let mut cache = AddrCache::with_lookup(Duration::from_secs(1), lookup);
        let node = hp("redis-2:9002");
        let known = cache.resolve(&node).await.expect("resolved");
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(2)).await;
            tokio::task::yield_now().await;
            assert_eq!(cache.resolve(&node).await.expect("kept"), known);
        }
        assert!(calls.load(Ordering::SeqCst) >= 2, "looked up again");
        let before = calls.load(Ordering::SeqCst);
        let literal = cache.resolve(&hp("127.0.0.1:9003")).await.expect("literal");
        assert_eq!(
            literal,
            "127.0.0.1:9003".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(calls.load(Ordering::SeqCst), before);
        // A name that never resolved is an error, not an address.
        let mut failing = AddrCache::with_lookup(
            Duration::from_secs(1),
            Arc::new(|_| Box::pin(async { Err("NXDOMAIN".to_owned()) })),
        );
        assert_eq!(failing.resolve(&node).await, Err("NXDOMAIN".to_owned()));
    }

    #[test]
    fn switch_lag_of_any_wire_timestamp_never_overflows() {
        // i64::MIN used to overflow `now - at` (a panic in a debug build).
        for now in [0, 1, 1_700_000_000_000, i64::MAX, i64::MIN] {
            assert_eq!(switch_lag_ms(now, i64::MIN), None, "now {now}");
            assert_eq!(switch_lag_ms(now, 0), None, "unknown, now {now}");
            assert_eq!(switch_lag_ms(now, -5), None, "negative, now {now}");
        }
        assert_eq!(switch_lag_ms(i64::MIN, i64::MAX), None);
        assert_eq!(switch_lag_ms(1_000, i64::MAX), None, "in the future");
        assert_eq!(switch_lag_ms(1_000, 1_001), None, "in the future");
        assert_eq!(switch_lag_ms(1_000, 1_000), Some(0));
        assert_eq!(switch_lag_ms(1_250, 1_000), Some(250));
        assert_eq!(switch_lag_ms(i64::MAX, 1), Some(i64::MAX - 1));
    }
}
