//! `redis-ha simulate` end to end, in-process: a publisher and 3 subscribers through HAProxy
//! (the shipped config, driven by the reloader), while the harness faults the master.
//! Assertions are on counts and states, never on how fast anything happened, and every count
//! of the report is checked against a source of its own: the publisher's and subscribers' raw
//! logs recounted here, the harness's own record of each fault, the nodes' `ROLE`, and the
//! Sentinels' config epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis_ha_chaos::chaos::Fault;
use redis_ha_chaos::simulate::{self, report::LIST_LIMIT, ChaosPlan, Mode, Options, Run};
use redis_ha_common::HostPort;
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask};
use redis_ha_tests::simulate::{ClusterChaos, Injection};
use redis_ha_tests::{Cluster, ClusterOptions};

/// Dropped in field order: the reloader stops before HAProxy, both before the cluster.
struct Stack {
    _reloader: ReloaderTask,
    haproxy: Haproxy,
    cluster: Cluster,
}

/// Cluster + coordinator + agents at rest with node 1 as master, HAProxy routed by the reloader.
async fn stack() -> Stack {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.start_all_sidecars().await;
    cluster.wait_steady_topology(1).await;
    let haproxy = cluster.start_haproxy().await;
    let reloader = ReloaderTask::start(cluster.reloader_config(&haproxy));
    haproxy.wait_routed_to(cluster.node(1).port()).await;
    Stack {
        _reloader: reloader,
        haproxy,
        cluster,
    }
}

fn options(s: &Stack, mode: Mode, fault: Fault, kills: u32) -> Options {
    Options {
        proxy: HostPort::new("127.0.0.1", s.haproxy.frontend_port()),
        mode,
        subscribers: 3,
        // Publishing goes on until the schedule is over: this is only a floor.
        messages: 1500,
        rate: 250,
        chaos: ChaosPlan {
            fault,
            kills,
            interval: Duration::from_secs(2),
            // Longer than down-after (1 s) plus the failover; the schedule also waits for the
            // failover before restoring, whatever this says.
            down_for: Duration::from_secs(3),
            settle_timeout: Duration::from_secs(90),
        },
        drain_timeout: Duration::from_secs(90),
        progress_every: None,
        ..Options::default()
    }
}

/// The highest config epoch the Sentinels hold for the group: it rises with every failover.
async fn config_epoch(cluster: &Cluster) -> u64 {
    let mut highest = None;
    for i in 1..=redis_ha_tests::NODES {
        if let Ok(state) = cluster.sentinel(i).master_state().await {
            if let Some(e) = state
                .get("config-epoch")
                .and_then(|v| v.parse::<u64>().ok())
            {
                highest = highest.max(Some(e));
            }
        }
    }
    highest.unwrap_or_else(|| panic!("no Sentinel gave its config epoch"))
}

/// A run, with what the harness saw of it.
struct Observed {
    run: Run,
    injections: Vec<Injection>,
    /// Config epochs before and after the run.
    epochs: (u64, u64),
    text: String,
}

/// A fresh stack, one simulation on it with the harness as the chaos target.
async fn simulate(mode: Mode, fault: Fault, kills: u32) -> Observed {
    let mut s = stack().await;
    let opts = options(&s, mode, fault, kills);
    let before = config_epoch(&s.cluster).await;
    let mut chaos = ClusterChaos::new(&mut s.cluster);
    let run = simulate::run_logged(opts, &mut chaos)
        .await
        .unwrap_or_else(|e| panic!("simulate: {e}"));
    let injections = chaos.injections;
    let after = config_epoch(&s.cluster).await;
    let text = run.report.summary_text();
    eprintln!("{text}");
    Observed {
        run,
        injections,
        epochs: (before, after),
        text,
    }
}

/// The report's counts, recounted from the raw logs with sets (the report uses per-sequence
/// flags and derives some counts from others).
#[derive(Debug)]
struct Recount {
    published: u64,
    acknowledged: BTreeSet<u64>,
    /// Every sequence number received, with how many times.
    received: BTreeMap<u64, u64>,
    lost: Vec<u64>,
}

fn recount(run: &Run) -> Recount {
    let p = &run.publisher;
    assert_eq!(
        p.ack_ms.len(),
        p.first_push_ms.len(),
        "one acknowledgement slot per published sequence number"
    );
    let acknowledged: BTreeSet<u64> = (1..)
        .zip(&p.ack_ms)
        .filter(|(_, ack)| ack.is_some())
        .map(|(seq, _)| seq)
        .collect();
    let mut received = BTreeMap::new();
    for s in &run.subscribers {
        for d in &s.deliveries {
            *received.entry(d.seq).or_insert(0) += 1;
        }
    }
    let lost = acknowledged
        .iter()
        .copied()
        .filter(|seq| !received.contains_key(seq))
        .collect();
    Recount {
        published: p.first_push_ms.len() as u64,
        acknowledged,
        received,
        lost,
    }
}

/// The report says what the logs say, and nothing received was never published.
fn assert_report_matches_the_logs(o: &Observed) -> Recount {
    let (r, text) = (&o.run.report, &o.text);
    let c = &r.counts;
    let n = recount(&o.run);
    assert_eq!(c.published, n.published, "{text}");
    assert_eq!(c.acknowledged, n.acknowledged.len() as u64, "{text}");
    assert_eq!(c.delivered, n.received.len() as u64, "{text}");
    assert_eq!(c.deliveries, n.received.values().sum::<u64>(), "{text}");
    assert_eq!(
        c.duplicates,
        n.received.values().map(|k| k - 1).sum::<u64>(),
        "{text}"
    );
    assert_eq!(c.acknowledged_lost, n.lost.len() as u64, "{text}");
    assert_eq!(
        r.lost_seqs,
        n.lost[..n.lost.len().min(LIST_LIMIT)],
        "{text}"
    );
    let unacknowledged_received = n
        .received
        .keys()
        .filter(|seq| !n.acknowledged.contains(seq))
        .count() as u64;
    assert_eq!(
        c.delivered_unacknowledged, unacknowledged_received,
        "{text}"
    );
    assert_eq!(
        c.acknowledged_delivered,
        n.acknowledged.len() as u64 - n.lost.len() as u64,
        "{text}"
    );
    // Pushed, but neither acknowledged nor received: the pushes that failed.
    assert_eq!(
        c.unacknowledged_missing,
        n.published - n.acknowledged.len() as u64 - unacknowledged_received,
        "{text}"
    );
    // Only sequence numbers the publisher pushed came back, and nothing else under the key.
    let beyond: Vec<_> = n
        .received
        .keys()
        .filter(|&&s| s == 0 || s > n.published)
        .collect();
    assert!(
        beyond.is_empty(),
        "received but never published: {beyond:?}\n{text}"
    );
    assert_eq!(c.foreign_values, 0, "{text}");
    for (summary, log) in r.subscribers.iter().zip(&o.run.subscribers) {
        assert_eq!(summary.deliveries, log.deliveries.len() as u64, "{text}");
        assert!(
            summary.deliveries > 0,
            "{} received nothing\n{text}",
            summary.name
        );
    }
    assert!(!r.interrupted, "{text}");
    assert!(n.acknowledged.len() >= 1500, "{text}");
    n
}

/// Every fault the report lists is one the harness made, on the node that was master by its
/// own `ROLE`, which then went down (or stopped), and was undone; each was followed by a
/// failover to another node that the Sentinels recorded.
fn assert_faults(o: &Observed, fault: Fault, kills: usize) {
    let (r, text) = (&o.run.report, &o.text);
    assert!(r.chaos_errors.is_empty(), "{text}");
    assert_eq!(r.faults.len(), kills, "{text}");
    assert_eq!(o.injections.len(), kills, "{:?}\n{text}", o.injections);
    for (f, seen) in r.faults.iter().zip(&o.injections) {
        assert_eq!(f.address, seen.address, "{seen:?}\n{text}");
        assert_eq!((f.fault, seen.fault), (fault, fault), "{text}");
        assert_eq!(seen.role_before, "master", "{seen:?}\n{text}");
        assert!(seen.took_effect, "{seen:?}\n{text}");
        assert!(
            seen.restored && f.restored_at_ms.is_some(),
            "{seen:?}\n{text}"
        );
        let new = f.new_master.as_deref().unwrap_or_else(|| panic!("{text}"));
        assert_ne!(new, f.node, "{text}");
    }
    let (before, after) = o.epochs;
    assert!(
        after >= before + kills as u64,
        "config epoch {before} -> {after}: fewer than {kills} failovers\n{text}"
    );
}

/// A run whose report matches the logs and whose faults all happened as the report says.
async fn checked(mode: Mode, fault: Fault, kills: u32) -> (Observed, Recount) {
    let o = simulate(mode, fault, kills).await;
    let n = assert_report_matches_the_logs(&o);
    assert_faults(&o, fault, kills as usize);
    (o, n)
}

/// A durable run: nothing acknowledged is missing from what the subscribers received, nothing
/// is left behind, and the run is a success.
async fn durable(fault: Fault, kills: u32) -> Observed {
    let (o, n) = checked(Mode::Durable, fault, kills).await;
    let (r, text) = (&o.run.report, &o.text);
    assert_eq!(n.lost, Vec::<u64>::new(), "{text}");
    assert_eq!(r.counts.left_in_list, Some(0), "{text}");
    assert_eq!(r.counts.left_in_processing, Some(0), "{text}");
    assert!(!r.lost_acknowledged_in_durable_mode(), "{text}");
    assert!(r.verdict.ok, "{text}");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_loses_no_acknowledged_message_across_three_master_kills() {
    let o = durable(Fault::Kill, 3).await;
    let (r, text) = (&o.run.report, &o.text);
    // WAIT for both replicas cannot succeed while a node is down: every kill is an outage.
    assert!(r.outages.len() >= 3, "{text}");
    assert!(r.outages.iter().all(|o| o.end_ms.is_some()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_loses_nothing_when_the_master_hangs() {
    durable(Fault::Pause, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_mode_report_accounts_for_every_acknowledged_message() {
    let (o, n) = checked(Mode::Fast, Fault::Kill, 2).await;
    let (r, text) = (&o.run.report, &o.text);
    // Losses are allowed in fast mode: counted as recounted, stated, never a failed run.
    assert!(r.verdict.ok, "{text}");
    let stated = format!(
        "fast mode: {} of {} acknowledged message(s) lost",
        n.lost.len(),
        n.acknowledged.len()
    );
    assert!(r.verdict.text.starts_with(&stated), "{stated:?}\n{text}");
    let json = serde_json::to_value(r).unwrap_or_else(|e| panic!("JSON: {e}"));
    assert_eq!(json["settings"]["mode"], "fast");
    for (field, recounted) in [
        ("acknowledged", n.acknowledged.len()),
        ("acknowledged_lost", n.lost.len()),
    ] {
        assert_eq!(
            json["counts"][field].as_u64(),
            Some(recounted as u64),
            "{field}"
        );
    }
    // The picture renders from a real run.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let svg = dir.path().join("run.svg");
    simulate::plot::write(r, &svg, None).unwrap_or_else(|e| panic!("plot: {e}"));
    let body = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("read: {e}"));
    assert!(
        body.contains("kill node-1"),
        "the first fault band is labelled"
    );
    assert!(
        body.matches("<polyline").count() >= 5,
        "publisher, total, 3 subscribers"
    );
}
