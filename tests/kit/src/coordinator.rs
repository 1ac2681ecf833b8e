//! The coordinator's public gRPC API as tests read it: GetTopology, ListEvents and
//! WatchTopology of one master group, waits on them, and one-line descriptions for failure
//! messages. Only the generated client (`redis-ha-proto`): how a coordinator is run is the
//! test's business (in-process: `redis_ha_coordinator::InProcess`).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{
    Event, GetTopologyRequest, ListEventsRequest, Topology, WatchTopologyRequest,
};
use redis_ha_tls::ClientTls;
use tonic::transport::Channel;

use crate::wait::{wait_until, TIMEOUT};

/// A lazy gRPC client of the coordinator at `url` with `tls` (a certificate, or plaintext):
/// it connects on first use and reconnects after a coordinator restart.
pub fn client(url: &str, tls: &ClientTls) -> CoordinatorClient<Channel> {
    let endpoint = tls
        .endpoint(url)
        .unwrap_or_else(|e| panic!("bad coordinator url {url}: {e}"))
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    CoordinatorClient::new(endpoint.connect_lazy())
}

/// One master group of one coordinator.
#[derive(Clone, Debug)]
pub struct Api {
    client: CoordinatorClient<Channel>,
    group: String,
}

impl Api {
    /// The API of `group` at `url`, reached with `tls`.
    pub fn new(url: &str, group: &str, tls: &ClientTls) -> Self {
        Self {
            client: client(url, tls),
            group: group.to_owned(),
        }
    }

    pub fn client(&self) -> CoordinatorClient<Channel> {
        self.client.clone()
    }

    pub async fn topology(&self) -> Result<Topology, tonic::Status> {
        self.client
            .clone()
            .get_topology(GetTopologyRequest {
                master_group: self.group.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// ListEvents (all kept); panics when the call fails.
    pub async fn events(&self) -> Vec<Event> {
        self.client
            .clone()
            .list_events(ListEventsRequest {
                master_group: self.group.clone(),
                limit: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("ListEvents failed: {s}"))
            .into_inner()
            .events
    }

    /// Opens WatchTopology; panics when the call fails.
    pub async fn watch(&self) -> tonic::Streaming<Topology> {
        self.client
            .clone()
            .watch_topology(WatchTopologyRequest {
                master_group: self.group.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("WatchTopology failed: {s}"))
            .into_inner()
    }

    /// Ok once the coordinator answers gRPC at all (even NOT_FOUND before the first report);
    /// Err while it is unavailable.
    pub async fn serving_state(&self) -> Result<(), String> {
        match self.topology().await {
            Ok(_) => Ok(()),
            Err(s) if s.code() != tonic::Code::Unavailable => Ok(()),
            Err(s) => Err(s.to_string()),
        }
    }

    /// Polls GetTopology until `pred` holds.
    pub async fn wait_topology(&self, what: &str, pred: impl Fn(&Topology) -> bool) -> Topology {
        wait_until(what, TIMEOUT, || async {
            match self.topology().await {
                Ok(t) if pred(&t) => Ok(t),
                Ok(t) => Err(describe(&t)),
                Err(s) => Err(format!("GetTopology failed: {s}")),
            }
        })
        .await
    }

    /// Polls ListEvents until `find` returns something.
    pub async fn wait_events<T>(&self, what: &str, find: impl Fn(&[Event]) -> Option<T>) -> T {
        wait_until(what, TIMEOUT, || async {
            let events = self.events().await;
            find(&events).ok_or_else(|| dump(&events))
        })
        .await
    }

    /// Records every topology WatchTopology sends from now on.
    pub async fn record_watch(&self) -> Watched {
        let mut stream = self.watch().await;
        let seen = Watched::default();
        let out = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(t)) = stream.message().await {
                out.push(t);
            }
        });
        seen
    }
}

/// The topologies a watcher received, in order.
#[derive(Clone, Debug, Default)]
pub struct Watched(Arc<Mutex<Vec<Topology>>>);

impl Watched {
    fn push(&self, t: Topology) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(t);
    }

    pub fn all(&self) -> Vec<Topology> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Everything received once a topology of `version` or later has arrived.
    pub async fn until_version(&self, version: u64) -> Vec<Topology> {
        wait_until(
            &format!("the watcher to receive v{version}"),
            TIMEOUT,
            || async {
                let all = self.all();
                match all.last() {
                    Some(t) if t.version >= version => Ok(all),
                    Some(t) => Err(describe(t)),
                    None => Err("nothing received".to_owned()),
                }
            },
        )
        .await
    }
}

/// A summary of a topology, one line per node and Sentinel, for failure messages.
pub fn describe(t: &Topology) -> String {
    let mut s = format!(
        "v{} master={:?} ({:?}) epoch={} source={:?} confirmed={} failover={} split_brain={:?}",
        t.version,
        t.master_address,
        t.master_node,
        t.config_epoch,
        t.master_source(),
        t.master_confirmed,
        t.failover_in_progress,
        t.split_brain
    );
    for n in &t.nodes {
        let _ = write!(
            s,
            "\n  {} {} {:?} {:?} master={} link={:?} is_master={} agent={:?} age={}ms err={:?}",
            n.node,
            n.address,
            n.health(),
            n.role(),
            n.master_address,
            n.link(),
            n.is_master,
            n.agent_health(),
            n.report_age_ms,
            n.error
        );
    }
    for v in &t.sentinels {
        let _ = write!(
            s,
            "\n  sentinel {} {} {:?} master={} epoch={} flags={:?} err={:?}",
            v.node,
            v.address,
            v.health(),
            v.master_address,
            v.config_epoch,
            v.master_flags,
            v.error
        );
    }
    s
}

/// Events one per line, with their position, for failure messages.
pub fn dump(events: &[Event]) -> String {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "[{i}] v{} {} {}: {}\n",
                e.topology_version, e.kind, e.node, e.message
            )
        })
        .collect()
}
