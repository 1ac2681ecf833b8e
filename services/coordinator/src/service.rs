//! The gRPC service: shared state behind one mutex (short critical sections, never held
//! across an await), one `watch` channel per group for the topology stream.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::Stream;
use redis_ha_common::telemetry::adopt_trace_context;
use redis_ha_common::{ConfigError, Secret};
use redis_ha_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use redis_ha_proto::v1::{
    AgentReport, FailoverRequest, FailoverResponse, GetTopologyRequest, ListEventsRequest,
    ListEventsResponse, ReportAck, Topology, WatchTopologyRequest,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::config::CoordinatorConfig;
use crate::failover::{request_failover, FailoverError};
use crate::topology::{GroupState, Now, ReportOutcome, Settings};

/// How often every group is re-derived without a report (staleness needs no report to show).
const TICK: Duration = Duration::from_millis(250);
/// Groups created by agents' reports, at most: a misconfigured fleet must not grow memory
/// without bound.
const MAX_GROUPS: usize = 64;
/// Longest accepted group name or agent id.
const MAX_NAME_LEN: usize = 256;

/// The `redisha.v1.Coordinator` implementation. Cheap to clone (shared state).
#[derive(Clone)]
pub struct CoordinatorService {
    inner: Arc<Inner>,
}

struct Inner {
    groups: Mutex<BTreeMap<String, Group>>,
    settings: Settings,
    sentinel_password: Option<Secret>,
    io_timeout: Duration,
    /// Ends open watch streams, so a graceful shutdown does not wait for clients.
    shutdown: CancellationToken,
}

struct Group {
    state: GroupState,
    tx: watch::Sender<Arc<Topology>>,
}

impl Group {
    fn new(name: &str, settings: &Settings, now: Now) -> Self {
        let mut state = GroupState::new(name, settings.clone());
        let first = state.refresh(now).topology;
        let (tx, _) = watch::channel(first);
        Self { state, tx }
    }

    /// Re-derives; on a version change, publishes to the watchers.
    fn refresh(&mut self, now: Now) -> Arc<Topology> {
        let r = self.state.refresh(now);
        if r.changed {
            let t = &r.topology;
            let span = tracing::info_span!(
                "publish_topology",
                group = %t.master_group,
                version = t.version,
                master = %t.master_address,
                epoch = t.config_epoch,
            );
            let _entered = span.enter();
            tracing::info!(
                source = %t.master_source,
                confirmed = t.master_confirmed,
                failover_in_progress = t.failover_in_progress,
                split_brain = ?t.split_brain,
                "topology published"
            );
            self.tx.send_replace(Arc::clone(t));
        }
        r.topology
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
            event_history: config.event_history,
        };
        let mut groups = BTreeMap::new();
        groups.insert(
            config.master_group.clone(),
            Group::new(&config.master_group, &settings, Now::system()),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                groups: Mutex::new(groups),
                settings,
                sentinel_password: config.sentinel_password()?,
                io_timeout: config.io_timeout(),
                shutdown,
            }),
        })
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

    /// Runs `f` on an existing group: NOT_FOUND otherwise.
    // `Status` is what every RPC returns anyway; boxing it here would only add a step.
    #[allow(clippy::result_large_err)]
    fn with_group<R>(&self, name: &str, f: impl FnOnce(&mut Group) -> R) -> Result<R, Status> {
        let mut groups = self.groups();
        match groups.get_mut(name) {
            Some(g) => Ok(f(g)),
            None => Err(Status::not_found(format!(
                "unknown master group {name:?} (known: {})",
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Re-derives every group on a timer until `stop` is cancelled.
    pub async fn tick_until(self, stop: CancellationToken) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => {
                    let now = Now::system();
                    for g in self.groups().values_mut() {
                        g.refresh(now);
                    }
                }
            }
        }
    }
}

#[allow(clippy::result_large_err)] // as `with_group`
fn check_name(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

/// An RPC's span, child of the caller's trace when it sent one.
fn rpc_span<T>(request: &Request<T>, span: tracing::Span) -> tracing::Span {
    adopt_trace_context(request.metadata(), &span);
    span
}

/// One watcher's position in its topology stream.
struct WatchState {
    first: Option<Arc<Topology>>,
    last: u64,
    rx: watch::Receiver<Arc<Topology>>,
    stop: CancellationToken,
    span: tracing::Span,
}

type TopologyStream = Pin<Box<dyn Stream<Item = Result<Topology, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn report(&self, request: Request<AgentReport>) -> Result<Response<ReportAck>, Status> {
        let span = rpc_span(
            &request,
            tracing::info_span!(
                "Report",
                group = %request.get_ref().master_group,
                agent = %request.get_ref().agent_id,
                sequence = request.get_ref().sequence,
                reason = %request.get_ref().reason,
            ),
        );
        let _entered = span.enter();
        let report = request.into_inner();
        check_name("master_group", &report.master_group)?;
        check_name("agent_id", &report.agent_id)?;

        let now = Now::system();
        let mut groups = self.groups();
        if !groups.contains_key(&report.master_group) {
            if groups.len() >= MAX_GROUPS {
                return Err(Status::resource_exhausted(format!(
                    "too many master groups ({MAX_GROUPS}); refusing new group {:?}",
                    report.master_group
                )));
            }
            tracing::info!(group = %report.master_group, "new master group reported");
            groups.insert(
                report.master_group.clone(),
                Group::new(&report.master_group, &self.inner.settings, now),
            );
        }
        let Some(group) = groups.get_mut(&report.master_group) else {
            return Err(Status::internal("master group vanished"));
        };
        if let ReportOutcome::Ignored {
            held_started_at_ms,
            held_sequence,
        } = group.state.apply_report(report, now)
        {
            tracing::debug!(
                held_started_at_ms,
                held_sequence,
                "report not newer than the one held: ignored"
            );
        }
        let topology = group.refresh(now);
        Ok(Response::new(ReportAck {
            topology_version: topology.version,
        }))
    }

    async fn get_topology(
        &self,
        request: Request<GetTopologyRequest>,
    ) -> Result<Response<Topology>, Status> {
        let span = rpc_span(
            &request,
            tracing::info_span!("GetTopology", group = %request.get_ref().master_group),
        );
        let _entered = span.enter();
        let group = request.into_inner().master_group;
        check_name("master_group", &group)?;
        // A fresh derivation: current measurements, the current version.
        let t = self.with_group(&group, |g| g.refresh(Now::system()))?;
        Ok(Response::new((*t).clone()))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        request: Request<WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        let span = rpc_span(
            &request,
            tracing::info_span!("WatchTopology", group = %request.get_ref().master_group),
        );
        let group = request.into_inner().master_group;
        check_name("master_group", &group)?;
        let (first, rx) = self.with_group(&group, |g| {
            let first = g.refresh(Now::system());
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

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let span = rpc_span(
            &request,
            tracing::info_span!("ListEvents", group = %request.get_ref().master_group),
        );
        let _entered = span.enter();
        let req = request.into_inner();
        check_name("master_group", &req.master_group)?;
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let events = self.with_group(&req.master_group, |g| g.state.events(limit))?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    async fn failover(
        &self,
        request: Request<FailoverRequest>,
    ) -> Result<Response<FailoverResponse>, Status> {
        let span = rpc_span(
            &request,
            tracing::info_span!("Failover", group = %request.get_ref().master_group),
        );
        let group = request.into_inner().master_group;
        check_name("master_group", &group)?;
        let sentinels = self.with_group(&group, |g| g.state.sentinel_addresses(Now::system()))?;
        let result = request_failover(
            &sentinels,
            &group,
            self.inner.sentinel_password.as_ref(),
            self.inner.io_timeout,
        )
        .instrument(span.clone())
        .await;
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
