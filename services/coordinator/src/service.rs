//! The gRPC service: shared state behind one mutex (short critical sections, never held
//! across an await), one `watch` channel per group for the topology stream.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::Stream;
use redis_ha_common::telemetry::adopt_trace_context;
use redis_ha_common::{ConfigError, Secret};
use redis_ha_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, FailoverResponse, GetTopologyRequest, ListEventsRequest,
    ListEventsResponse, ReportAck, SwitchoverRequest, SwitchoverResponse, Topology,
    WatchTopologyRequest,
};
use redis_ha_tls::{Call, Guard, Identity};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::config::CoordinatorConfig;
use crate::failover::{
    forced_after_ballot, manual_after_ballot, request_failover, see_through, Attempt,
    BallotRequest, CrashFailoverError, FailoverError, Forced, ManualNext, SeenThrough,
    SentinelLinks,
};
use crate::limits::{self, Limits};
use crate::metrics::CoordinatorMetrics;
use crate::topology::CrashRequest;
use crate::topology::{addr_key, GroupState, Now, ReportOutcome, Settings};

/// How often every group is re-derived without a report (staleness needs no report to show).
const TICK: Duration = Duration::from_millis(250);
/// Every this many ticks (5 s) the crash failover's Sentinel links are pinged.
const WARM_LINKS_EVERY: u64 = 20;

/// The `redisha.v1.Coordinator` implementation. Cheap to clone (shared state).
#[derive(Clone)]
pub struct CoordinatorService {
    inner: Arc<Inner>,
}

struct Inner {
    groups: Mutex<BTreeMap<String, Group>>,
    settings: Settings,
    sentinel_password: Option<Secret>,
    /// The coordinator's Redis user and password (the switchover).
    redis_user: Option<String>,
    redis_password: Option<Secret>,
    /// One switchover at a time.
    switchover: tokio::sync::Mutex<()>,
    io_timeout: Duration,
    /// Who may make which call ([`redis_ha_tls::authorize`]), by the client's certificate.
    guard: Guard,
    /// The crash failover's open links to the Sentinels (kept warm by [`Self::tick_until`]).
    sentinel_links: tokio::sync::Mutex<SentinelLinks>,
    /// Ends open watch streams, so a graceful shutdown does not wait for clients.
    shutdown: CancellationToken,
    metrics: CoordinatorMetrics,
    registry: Arc<prometheus_client::registry::Registry>,
    /// Bounds on reports, groups and agents ([`crate::limits`]).
    limits: Limits,
    /// One permit per open `WatchTopology` stream (`max_watchers`).
    watchers: Arc<tokio::sync::Semaphore>,
    max_watchers: usize,
}

struct Group {
    state: GroupState,
    tx: watch::Sender<Arc<Topology>>,
    /// The agent ids that reported (`max_agents_per_group`); the topology keeps every one.
    agents: BTreeSet<String>,
}

impl Group {
    fn new(name: &str, settings: &Settings, now: Now, metrics: &CoordinatorMetrics) -> Self {
        let mut state = GroupState::new(name, settings.clone());
        let first = state.refresh(now).topology;
        metrics.topology(&first);
        let (tx, _) = watch::channel(first);
        Self {
            state,
            tx,
            agents: BTreeSet::new(),
        }
    }

    /// Re-derives; on a version change, publishes to the watchers. The publication is a span,
    /// a child of the RPC that caused the change (if any), and the topology carries its
    /// `traceparent`, so a watcher's work joins the same trace.
    fn refresh(&mut self, now: Now, metrics: &CoordinatorMetrics) -> Arc<Topology> {
        let r = self.state.refresh(now);
        let mut topology = r.topology;
        if r.changed {
            let old_master = self.tx.borrow().master_address.clone();
            let t = Arc::clone(&topology);
            let span = tracing::info_span!(
                "publish_topology",
                group = %t.master_group,
                version = t.version,
                master = %t.master_address,
                old_master = %old_master,
                epoch = t.config_epoch,
                source = %t.master_source(),
            );
            let _entered = span.enter();
            let trace_parent = redis_ha_common::telemetry::current_trace_parent();
            if !trace_parent.is_empty() {
                if let Some(with_trace) = self.state.set_trace_parent(trace_parent) {
                    topology = with_trace;
                }
            }
            let master_changed = !old_master.is_empty()
                && !t.master_address.is_empty()
                && addr_key(&old_master) != addr_key(&t.master_address);
            if master_changed {
                metrics.master_changed(&t);
                tracing::info!(
                    old_master = %old_master,
                    role_changed_at_ms = t.master_role_changed_at_ms,
                    "master changed"
                );
            }
            tracing::info!(
                confirmed = t.master_confirmed,
                failover_in_progress = t.failover_in_progress,
                split_brain = ?t.split_brain,
                "topology published"
            );
            self.tx.send_replace(Arc::clone(&topology));
        }
        metrics.topology(&topology);
        topology
    }
}

impl CoordinatorService {
    /// The service with the configured group in place (empty until reports arrive).
    pub fn new(
        config: &CoordinatorConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ConfigError> {
        let settings = Settings {
            stale_after: config.stale_after(),
            event_history: config.history_len(),
            crash: crate::crash::CrashSettings {
                enabled: config.crash_failover,
            },
            nodes: config.node_list(),
            failover_timeout: config.failover_timeout(),
            read_limits: config.read_limits(),
        };
        let (metrics, registry) = CoordinatorMetrics::new();
        let mut groups = BTreeMap::new();
        groups.insert(
            config.master_group.clone(),
            Group::new(&config.master_group, &settings, Now::system(), &metrics),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                groups: Mutex::new(groups),
                settings,
                sentinel_password: config.sentinel_password()?,
                redis_user: config.redis_user.clone(),
                redis_password: config.redis_password()?,
                switchover: tokio::sync::Mutex::new(()),
                sentinel_links: tokio::sync::Mutex::new(SentinelLinks::default()),
                io_timeout: config.io_timeout(),
                guard: if config.tls.insecure {
                    Guard::Open
                } else {
                    Guard::Certificates
                },
                shutdown,
                metrics,
                registry: Arc::new(registry),
                limits: config.limits(),
                watchers: Arc::new(tokio::sync::Semaphore::new(config.max_watchers)),
                max_watchers: config.max_watchers,
            }),
        })
    }

    /// The Prometheus registry of this service's metrics (served at `/metrics`).
    pub fn registry(&self) -> Arc<prometheus_client::registry::Registry> {
        Arc::clone(&self.inner.registry)
    }

    fn metrics(&self) -> &CoordinatorMetrics {
        &self.inner.metrics
    }

    /// The permission check of every call, before anything is read or changed: the peer's
    /// certificate names an identity the rule allows `call` (logged when refused).
    #[allow(clippy::result_large_err)] // as `with_group`
    /// The caller's identity (`None` in insecure mode) when `call` is allowed.
    fn allowed<T>(
        &self,
        method: &str,
        request: &Request<T>,
        call: Call<'_>,
    ) -> Result<Option<Identity>, Status> {
        self.inner.guard.check(request, call).inspect_err(|s| {
            tracing::warn!(method, peer = ?request.remote_addr(), code = ?s.code(), reason = s.message(), "call refused");
        })
    }

    /// Counts an answered request by method and status code.
    #[allow(clippy::result_large_err)] // passes the RPC's own result through
    fn counted<T>(&self, method: &'static str, result: Result<T, Status>) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics().request(method, code);
        result
    }

    pub fn into_server(self) -> CoordinatorServer<Self> {
        CoordinatorServer::new(self)
    }

    fn groups(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        // A panic while holding the lock leaves the state as consistent as any single step
        // leaves it; keep serving rather than poisoning every later call.
        self.inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the group `name`: INVALID_ARGUMENT for a name no group can have,
    /// NOT_FOUND for one no group has.
    // `Status` is what every RPC returns anyway; boxing it here would only add a step.
    #[allow(clippy::result_large_err)]
    fn with_group<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Group, &CoordinatorMetrics) -> R,
    ) -> Result<R, Status> {
        check_name("master_group", name)?;
        let mut groups = self.groups();
        match groups.get_mut(name) {
            Some(g) => Ok(f(g, &self.inner.metrics)),
            None => Err(Status::not_found(format!(
                "unknown master group {name:?} (known: {})",
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Asks a Sentinel for the failover of a crashed master ([`crate::crash`]) in the
    /// background; the outcome goes to the log, the metrics and the group's events.
    fn spawn_crash_failover(&self, group: String, request: CrashRequest) {
        let this = self.clone();
        let span = tracing::info_span!("crash_failover", group = %group, master = %request.master, epoch = request.epoch);
        tokio::spawn(
            async move {
                tracing::warn!(evidence = %request.evidence, "master process gone and unreachable for a majority of agents: asking a Sentinel for the failover now");
                let sentinels = this
                    .with_group(&group, |g, _| g.state.sentinel_addresses(Now::system()))
                    .unwrap_or_default();
                let password = this.inner.sentinel_password.as_ref();
                let result = forced_after_ballot(
                    &mut *this.inner.sentinel_links.lock().await,
                    &BallotRequest {
                        sentinels: &sentinels,
                        group: &group,
                        master: &request.master,
                        epoch: request.epoch,
                        password,
                        io_timeout: this.inner.io_timeout,
                    },
                )
                .await;
                // Asked again only when no Sentinel answered the poll: nothing was changed then,
                // so asking again cannot start a second failover.
                let (outcome, text, retry) = match &result {
                    Ok(f) => {
                        tracing::info!(sentinel = %f.sentinel, ballot = f.ballot, "crash failover accepted");
                        (
                            "accepted",
                            format!("accepted by Sentinel {}, elected at epoch {}", f.sentinel, f.ballot),
                            false,
                        )
                    }
                    Err(e @ CrashFailoverError::Unreachable { .. }) => {
                        tracing::warn!(error = %e, "crash failover: no Sentinel answered; will ask again");
                        ("unreachable", e.to_string(), true)
                    }
                    Err(e @ CrashFailoverError::Lost(_)) => {
                        tracing::warn!(error = %e, "crash failover not started; Sentinel's own detection follows");
                        ("lost", format!("not started: {e}"), false)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "crash failover not started; Sentinel's own detection follows");
                        ("refused", format!("not started: {e}"), false)
                    }
                };
                this.metrics().crash_failover(&group, outcome);
                if let Some(g) = this.groups().get_mut(&group) {
                    g.state
                        .crash_failover_result(&request, &text, retry, Now::system());
                }
                if let Ok(forced) = result {
                    this.see_crash_failover_through(&group, &request, &forced).await;
                }
            }
            .instrument(span),
        );
    }

    /// Follows an accepted crash failover to its promotion, asking again after an abort
    /// ([`see_through`]); retries and a give-up are events, log lines and metrics too.
    async fn see_crash_failover_through(
        &self,
        group: &str,
        request: &CrashRequest,
        forced: &Forced,
    ) {
        // The voters hold back for twice their failover-timeout: ask again within one.
        let window = forced.failover_timeout.max(Duration::from_secs(1));
        let note = |text: String| {
            if let Some(g) = self.groups().get_mut(group) {
                g.state
                    .crash_failover_result(request, &text, false, Now::system());
            }
        };
        let outcome = see_through(
            forced,
            group,
            &request.master,
            self.inner.sentinel_password.as_ref(),
            self.inner.io_timeout,
            window,
            |n, why| {
                tracing::warn!(sentinel = %forced.sentinel, attempt = n, why, "crash failover: asking the elected Sentinel again");
                self.metrics().crash_failover(group, "retried");
                note(format!("Sentinel {} {why} (request {})", forced.sentinel, n + 1));
            },
        )
        .await;
        match outcome {
            SeenThrough::Promoted { master, retries } => {
                tracing::info!(%master, retries, "crash failover: promoted");
                if retries > 0 {
                    note(format!(
                        "promoted {master} after {retries} repeated request(s)"
                    ));
                }
            }
            SeenThrough::GaveUp { retries, last } => {
                tracing::warn!(retries, %last, "crash failover: no promotion; Sentinel's own detection follows");
                self.metrics().crash_failover(group, "gave-up");
                note(format!(
                    "no promotion after {retries} repeated request(s): {last}"
                ));
            }
        }
    }

    /// Pings the Sentinels the crash failover would ask (in the background, skipped while a
    /// crash failover holds the links), so their connections are open when a crash comes.
    fn keep_sentinel_links_warm(&self) {
        if !self.inner.settings.crash.enabled {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let now = Now::system();
            let mut addrs: Vec<String> = this
                .groups()
                .values()
                .flat_map(|g| g.state.sentinel_addresses(now))
                .collect();
            addrs.sort_unstable();
            addrs.dedup();
            if let Ok(mut links) = this.inner.sentinel_links.try_lock() {
                links
                    .keep_warm(
                        &addrs,
                        this.inner.sentinel_password.as_ref(),
                        this.inner.io_timeout,
                    )
                    .await;
            }
        });
    }

    /// Re-derives every group on a timer until `stop` is cancelled.
    pub async fn tick_until(self, stop: CancellationToken) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => {
                    ticks = ticks.wrapping_add(1);
                    if ticks % WARM_LINKS_EVERY == 1 {
                        self.keep_sentinel_links_warm();
                    }
                    let now = Now::system();
                    let mut due = Vec::new();
                    for (name, g) in self.groups().iter_mut() {
                        g.refresh(now, &self.inner.metrics);
                        if let Some(r) = g.state.crash_failover_due(now) {
                            due.push((name.clone(), r));
                        }
                    }
                    for (group, r) in due {
                        self.spawn_crash_failover(group, r);
                    }
                }
            }
        }
    }
}

#[allow(clippy::result_large_err)] // as `with_group`
fn check_name(field: &str, value: &str) -> Result<(), Status> {
    limits::check_name(field, value, true).map_err(|r| r.status())
}

/// An RPC's span (`span` of the request), child of the caller's trace when it sent one, and
/// the request itself.
fn rpc_span<T>(request: Request<T>, span: impl FnOnce(&T) -> tracing::Span) -> (tracing::Span, T) {
    let span = span(request.get_ref());
    adopt_trace_context(request.metadata(), &span);
    (span, request.into_inner())
}

/// One watcher's position in its topology stream.
struct WatchState {
    first: Option<Arc<Topology>>,
    last: u64,
    rx: watch::Receiver<Arc<Topology>>,
    stop: CancellationToken,
    span: tracing::Span,
    /// Released when the stream is dropped (the client went away or the server stops).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<Topology, Status>> + Send + 'static>>;

// The RPC bodies; the trait methods below count each answer.
#[allow(clippy::result_large_err)] // as `with_group`
impl CoordinatorService {
    fn do_report(&self, request: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        let node = request.get_ref().agent_id.clone();
        self.allowed("Report", &request, Call::Report { node: &node })?;
        // Heartbeats are debug spans (as on the agent's side): a trace per heartbeat would
        // bury the failovers. A change a heartbeat causes still gets its publish span.
        let (span, mut report) = rpc_span(request, |r| {
            // A span's level is fixed where it is written: one field list for both levels.
            macro_rules! report_span {
                ($level:expr) => {
                    tracing::span!(
                        $level,
                        "Report",
                        group = %r.master_group,
                        agent = %r.agent_id,
                        sequence = r.sequence,
                        reason = %r.reason,
                    )
                };
            }
            if r.reason == "heartbeat" {
                report_span!(tracing::Level::DEBUG)
            } else {
                report_span!(tracing::Level::INFO)
            }
        });
        let _entered = span.enter();
        let limits = &self.inner.limits;
        // Refusals are counted by code in the request metric; logged at debug only, since a
        // flood of them must not flood the log.
        let refused = |r: limits::Refusal| {
            tracing::debug!(refusal = %r, "report refused");
            r.status()
        };
        limits.admit(&mut report).map_err(refused)?;

        let now = Now::system();
        let mut groups = self.groups();
        if !groups.contains_key(&report.master_group) {
            limits
                .new_group(&report.master_group, groups.len())
                .map_err(refused)?;
            tracing::info!(group = %report.master_group, "new master group reported");
            groups.insert(
                report.master_group.clone(),
                Group::new(
                    &report.master_group,
                    &self.inner.settings,
                    now,
                    &self.inner.metrics,
                ),
            );
        }
        let Some(group) = groups.get_mut(&report.master_group) else {
            return Err(Status::internal("master group vanished"));
        };
        if !group.agents.contains(&report.agent_id) {
            limits
                .new_agent(&report.master_group, &report.agent_id, group.agents.len())
                .map_err(refused)?;
            group.agents.insert(report.agent_id.clone());
        }
        let group_name = report.master_group.clone();
        let kinds: Vec<String> = report.events.iter().map(|e| e.kind.clone()).collect();
        match group.state.apply_report(report, now) {
            ReportOutcome::Applied => {
                for kind in &kinds {
                    self.inner.metrics.sentinel_event(&group_name, kind);
                }
            }
            ReportOutcome::Ignored {
                held_started_at_ms,
                held_sequence,
            } => {
                tracing::debug!(
                    held_started_at_ms,
                    held_sequence,
                    "report not newer than the one held: ignored"
                );
            }
        }
        for f in group.state.take_foreign() {
            self.inner
                .metrics
                .foreign_address(&group_name, f.kind.as_str());
            if f.first {
                tracing::warn!(
                    agent = %f.agent,
                    kind = f.kind.as_str(),
                    address = %f.address,
                    "report names an address outside the configured node list: ignored for deciding the master (logged once per agent and address)"
                );
            }
        }
        for u in group.state.take_uncorroborated() {
            self.inner
                .metrics
                .uncorroborated_claim(&group_name, u.kind.as_str());
            if u.first {
                tracing::warn!(
                    agent = %u.agent,
                    kind = u.kind.as_str(),
                    epoch = u.epoch,
                    address = %u.address,
                    "report claims an epoch no other agent's Sentinel has reached: not corroborated, ignored for deciding the master (logged once per agent, epoch and address)"
                );
            }
        }
        let topology = group.refresh(now, &self.inner.metrics);
        let crash = group.state.crash_failover_due(now);
        drop(groups);
        if let Some(r) = crash {
            self.spawn_crash_failover(group_name, r);
        }
        Ok(Response::new(ReportAck {
            topology_version: topology.version,
        }))
    }

    fn do_get_topology(
        &self,
        request: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        self.allowed("GetTopology", &request, Call::Read)?;
        let (span, req) = rpc_span(
            request,
            |r| tracing::info_span!("GetTopology", group = %r.master_group),
        );
        let _entered = span.enter();
        // A fresh derivation: current measurements, the current version.
        let t = self.with_group(&req.master_group, |g, m| g.refresh(Now::system(), m))?;
        Ok(Response::new((*t).clone()))
    }

    fn do_watch_topology(
        &self,
        request: Request<WatchTopologyRequest>,
    ) -> Result<Response<TopologyStream>, Status> {
        self.allowed("WatchTopology", &request, Call::Read)?;
        let (span, req) = rpc_span(
            request,
            |r| tracing::info_span!("WatchTopology", group = %r.master_group),
        );
        let permit = Arc::clone(&self.inner.watchers)
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "too many open WatchTopology streams (max_watchers = {})",
                    self.inner.max_watchers
                ))
            })?;
        let (first, rx) = self.with_group(&req.master_group, |g, m| {
            let first = g.refresh(Now::system(), m);
            // Subscribed under the lock: every later version is seen as a change.
            let mut rx = g.tx.subscribe();
            rx.borrow_and_update();
            (first, rx)
        })?;
        span.in_scope(|| tracing::debug!(version = first.version, "watcher joined"));

        let state = WatchState {
            first: Some(first),
            last: 0,
            rx,
            stop: self.inner.shutdown.clone(),
            span,
            _permit: permit,
        };
        let stream = futures::stream::unfold(state, |mut st| {
            let span = st.span.clone();
            async move {
                if let Some(t) = st.first.take() {
                    st.last = t.version;
                    return Some((Ok((*t).clone()), st));
                }
                loop {
                    tokio::select! {
                        _ = st.stop.cancelled() => return None,
                        changed = st.rx.changed() => {
                            changed.ok()?;
                            // The channel keeps only the newest value: a slow watcher skips
                            // versions instead of queueing them.
                            let t = Arc::clone(&st.rx.borrow_and_update());
                            if t.version > st.last {
                                st.last = t.version;
                                return Some((Ok((*t).clone()), st));
                            }
                        }
                    }
                }
            }
            .instrument(span)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    fn do_list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.allowed("ListEvents", &request, Call::Read)?;
        let (span, req) = rpc_span(
            request,
            |r| tracing::info_span!("ListEvents", group = %r.master_group),
        );
        let _entered = span.enter();
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let events = self.with_group(&req.master_group, |g, _| g.state.events(limit))?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    async fn do_failover(
        &self,
        request: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        self.allowed("Failover", &request, Call::Change)?;
        let (span, req) = rpc_span(
            request,
            |r| tracing::info_span!("Failover", group = %r.master_group),
        );
        let group = req.master_group;
        let (sentinels, decided) = self.with_group(&group, |g, _| {
            (
                g.state.sentinel_addresses(Now::system()),
                g.state.decided().cloned(),
            )
        })?;
        // The ballot first (as for a crash): its voters' epochs let the promotion be
        // published before `+switch-master`; the plain request when it cannot be held.
        let mut next = ManualNext::Plain;
        if let Some(d) = decided.filter(|d| !d.master_address.trim().is_empty()) {
            let master = crate::topology::addr_key(&d.master_address);
            let ballot = forced_after_ballot(
                &mut *self.inner.sentinel_links.lock().await,
                &BallotRequest {
                    sentinels: &sentinels,
                    group: &group,
                    master: &master,
                    epoch: d.epoch,
                    password: self.inner.sentinel_password.as_ref(),
                    io_timeout: self.inner.io_timeout,
                },
            )
            .instrument(span.clone())
            .await;
            next = manual_after_ballot(&ballot);
            if let (ManualNext::Plain, Err(e)) = (&next, &ballot) {
                tracing::info!(parent: &span, error = %e, "manual failover: no ballot, asking without one");
            }
        }
        let result = match next {
            ManualNext::Accepted { sentinel, ballot } => {
                tracing::info!(parent: &span, %sentinel, ballot, "manual failover: ballot won");
                Ok(sentinel)
            }
            ManualNext::Refuse { reason } => Err(FailoverError::Refused {
                refusals: vec![Attempt {
                    sentinel: "ballot".to_owned(),
                    error: reason,
                }],
            }),
            ManualNext::Plain => {
                request_failover(
                    &sentinels,
                    &group,
                    self.inner.sentinel_password.as_ref(),
                    self.inner.io_timeout,
                )
                .instrument(span.clone())
                .await
            }
        };
        let _entered = span.enter();
        match result {
            Ok(sentinel) => {
                tracing::info!(%sentinel, "manual failover accepted");
                Ok(Response::new(FailoverResponse {
                    message: format!(
                        "Sentinel {sentinel} accepted SENTINEL FAILOVER {group}; watch the topology for the new master"
                    ),
                    sentinel,
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "manual failover refused");
                Err(match e {
                    FailoverError::NoSentinel { .. } | FailoverError::Refused { .. } => {
                        Status::failed_precondition(e.to_string())
                    }
                    FailoverError::Unreachable { .. } => Status::unavailable(e.to_string()),
                })
            }
        }
    }
}

impl CoordinatorService {
    async fn do_switchover(
        &self,
        request: Request<SwitchoverRequest>,
    ) -> Result<Response<SwitchoverResponse>, Status> {
        use crate::switchover::{self, Failure};
        let away_from = request.get_ref().away_from.trim().to_owned();
        let call = if away_from.is_empty() {
            Call::Change
        } else {
            Call::Handover { node: &away_from }
        };
        let who = self.allowed("Switchover", &request, call)?;
        // A stopping master's own address (see switchover::reach_stopping_master).
        let master_at = request
            .remote_addr()
            .and_then(|a| switchover::handover_from(who.as_ref(), &away_from, a.ip()));
        let (span, req) = rpc_span(
            request,
            |r| tracing::info_span!("Switchover", group = %r.master_group, to = %r.to, max_pause_ms = r.max_pause_ms),
        );
        let group = req.master_group.clone();
        let refused = |e: switchover::Refusal| {
            tracing::warn!(parent: &span, error = %e, "switchover refused");
            Status::failed_precondition(Failure::Refused(e).to_string())
        };
        let max_pause = switchover::max_pause(req.max_pause_ms).map_err(refused)?;
        let Ok(_running) = self.inner.switchover.try_lock() else {
            return Err(refused(switchover::Refusal::AlreadyRunning));
        };
        let (mut topology, sentinels) = self.with_group(&group, |g, m| {
            let now = Now::system();
            (g.refresh(now, m), g.state.sentinel_addresses(now))
        })?;
        let to = Some(req.to.as_str()).filter(|s| !s.trim().is_empty());
        if !away_from.is_empty() {
            if to.is_some() {
                return Err(Status::invalid_argument(
                    "away_from and to exclude each other: a stopping node does not choose its successor",
                ));
            }
            if let Some(reason) = switchover::not_master(&topology, &away_from) {
                span.in_scope(
                    || tracing::info!(%reason, "switchover away from a node: nothing to do"),
                );
                return Ok(Response::new(SwitchoverResponse {
                    message: reason,
                    ..SwitchoverResponse::default()
                }));
            }
        }
        if let (Some(ip), false) = (master_at, topology.master_confirmed) {
            let answers = match switchover::reach_stopping_master(&topology.master_address, ip) {
                Some(at) => {
                    switchover::answers_master(
                        at,
                        self.inner.redis_user.as_deref(),
                        self.inner.redis_password.as_ref(),
                        self.inner.io_timeout,
                    )
                    .await
                }
                None => false,
            };
            span.in_scope(|| tracing::info!(%ip, answers, "switchover away from a node: its agent does not confirm it; asked it at the call's address"));
            switchover::confirm_stopping_master(Arc::make_mut(&mut topology), answers);
        }
        let choice = switchover::choose(&topology, to).map_err(refused)?;
        span.in_scope(|| {
            tracing::info!(master = %choice.master.address, target = %choice.target.address, "switchover: starting")
        });
        let this = self.clone();
        let published_group = group.clone();
        let published = move || {
            this.with_group(&published_group, |g, m| {
                g.refresh(Now::system(), m).master_address.clone()
            })
            .unwrap_or_default()
        };
        let mut links = self.inner.sentinel_links.lock().await;
        let ctx = switchover::Context {
            group: &group,
            sentinels: &sentinels,
            sentinel_password: self.inner.sentinel_password.as_ref(),
            redis_user: self.inner.redis_user.as_deref(),
            redis_password: self.inner.redis_password.as_ref(),
            io_timeout: self.inner.io_timeout,
            failover_timeout: self.inner.settings.failover_timeout,
            links: &mut links,
            published: &published,
            master_at,
        };
        let result = switchover::run(ctx, &choice, max_pause)
            .instrument(span.clone())
            .await;
        drop(links);
        let _entered = span.enter();
        let note = |text: String| {
            if let Some(g) = self.groups().get_mut(&group) {
                g.state
                    .note_event("switchover", &choice.master.node, text, Now::system());
            }
        };
        match result {
            Ok(done) => {
                let mut message = format!(
                    "switchover done: {} is master (epoch {}), {} its replica; writes paused {} ms",
                    done.new_master,
                    done.epoch,
                    done.old_master,
                    done.pause.as_millis()
                );
                if done.pause > max_pause {
                    message.push_str(&format!(
                        " (longer than --max-pause {} ms: the promotion took longer, the old master stayed paused until it was a replica)",
                        max_pause.as_millis()
                    ));
                }
                for w in &done.warnings {
                    message.push_str(&format!("; warning: {w}"));
                }
                tracing::info!(%message, "switchover done");
                note(message.clone());
                self.metrics().switchover(&group, "done");
                Ok(Response::new(SwitchoverResponse {
                    message,
                    old_master: done.old_master,
                    new_master: done.new_master,
                    sentinel: done.sentinel,
                    epoch: done.epoch,
                    pause_ms: done.pause.as_millis() as u64,
                    steps: done.steps,
                }))
            }
            Err(e) => {
                let (outcome, steps) = match &e {
                    Failure::Refused(_) => ("refused", Vec::new()),
                    Failure::Aborted { steps, .. } => ("aborted", steps.clone()),
                    Failure::Unsettled { steps, .. } => ("unsettled", steps.clone()),
                };
                // The event keeps the short text (an event is at most 4 KiB), the answer the steps.
                note(e.to_string());
                let mut text = e.to_string();
                if !steps.is_empty() {
                    text.push_str(&format!(" [steps: {}]", steps.join("; ")));
                }
                tracing::warn!(error = %text, "switchover not done");
                self.metrics().switchover(&group, outcome);
                Err(match e {
                    Failure::Refused(_) => Status::failed_precondition(text),
                    Failure::Aborted { .. } => Status::aborted(text),
                    Failure::Unsettled { .. } => Status::unknown(text),
                })
            }
        }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn report(&self, request: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        self.counted("Report", self.do_report(request))
    }

    async fn get_topology(
        &self,
        request: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        self.counted("GetTopology", self.do_get_topology(request))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        self.counted("WatchTopology", self.do_watch_topology(request))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.counted("ListEvents", self.do_list_events(request))
    }

    async fn failover(
        &self,
        request: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        let result = self.do_failover(request).await;
        self.counted("Failover", result)
    }

    async fn switchover(
        &self,
        request: Request<SwitchoverRequest>,
    ) -> Result<Response<SwitchoverResponse>, Status> {
        let result = self.do_switchover(request).await;
        self.counted("Switchover", result)
    }
}
