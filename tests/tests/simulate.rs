//! `redis-ha simulate` end to end, in-process: a publisher and 3 subscribers through HAProxy
//! (the shipped config, driven by the reloader), while the harness faults the master.
//! Assertions are on counts and states, never on how fast anything happened.

use std::time::Duration;

use redis_ha_chaos::chaos::Fault;
use redis_ha_chaos::simulate::{self, ChaosPlan, Mode, Options, Report};
use redis_ha_common::HostPort;
use redis_ha_tests::haproxy::{Haproxy, ReloaderTask};
use redis_ha_tests::simulate::ClusterChaos;
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

/// The identities every report keeps, whatever the mode.
fn assert_consistent(r: &Report) {
    let c = &r.counts;
    let text = r.summary_text();
    assert_eq!(
        c.acknowledged,
        c.acknowledged_delivered + c.acknowledged_lost,
        "{text}"
    );
    assert_eq!(
        c.delivered,
        c.acknowledged_delivered + c.delivered_unacknowledged,
        "{text}"
    );
    assert_eq!(
        c.published,
        c.acknowledged + c.delivered_unacknowledged + c.unacknowledged_missing,
        "{text}"
    );
    assert_eq!(c.deliveries, c.delivered + c.duplicates, "{text}");
    assert_eq!(
        r.lost_seqs.len() as u64,
        c.acknowledged_lost.min(simulate::report::LIST_LIMIT as u64),
        "{text}"
    );
    assert_eq!(
        r.subscribers.iter().map(|s| s.deliveries).sum::<u64>(),
        c.deliveries,
        "{text}"
    );
    assert!(!r.interrupted, "{text}");
    assert!(c.acknowledged >= 1500, "{text}");
    assert_eq!(c.foreign_values, 0, "{text}");
}

/// Every fault was injected, followed by a failover to another node, and undone.
fn assert_faults(r: &Report, kills: usize) {
    let text = r.summary_text();
    assert!(r.chaos_errors.is_empty(), "{text}");
    assert_eq!(r.faults.len(), kills, "{text}");
    for f in &r.faults {
        assert!(f.restored_at_ms.is_some(), "{text}");
        let new = f.new_master.as_deref().unwrap_or_else(|| panic!("{text}"));
        assert_ne!(new, f.node, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_loses_no_acknowledged_message_across_three_master_kills() {
    let mut s = stack().await;
    let opts = options(&s, Mode::Durable, Fault::Kill, 3);
    let report = simulate::run(opts, ClusterChaos::new(&mut s.cluster))
        .await
        .unwrap_or_else(|e| panic!("simulate: {e}"));
    let text = report.summary_text();
    eprintln!("{text}");
    assert_consistent(&report);
    assert_faults(&report, 3);
    let c = &report.counts;
    assert_eq!(c.acknowledged_lost, 0, "{text}");
    assert_eq!(c.acknowledged, c.acknowledged_delivered, "{text}");
    assert_eq!(c.left_in_list, Some(0), "{text}");
    assert_eq!(c.left_in_processing, Some(0), "{text}");
    assert!(!report.lost_acknowledged_in_durable_mode(), "{text}");
    assert!(report.verdict.ok, "{text}");
    // WAIT for both replicas cannot succeed while a node is down: every kill is an outage.
    assert!(report.outages.len() >= 3, "{text}");
    assert!(report.outages.iter().all(|o| o.end_ms.is_some()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_loses_nothing_when_the_master_hangs() {
    let mut s = stack().await;
    let opts = options(&s, Mode::Durable, Fault::Pause, 2);
    let report = simulate::run(opts, ClusterChaos::new(&mut s.cluster))
        .await
        .unwrap_or_else(|e| panic!("simulate: {e}"));
    let text = report.summary_text();
    eprintln!("{text}");
    assert_consistent(&report);
    assert_faults(&report, 2);
    assert_eq!(report.counts.acknowledged_lost, 0, "{text}");
    assert_eq!(report.counts.left_in_list, Some(0), "{text}");
    assert!(report.verdict.ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_mode_report_accounts_for_every_acknowledged_message() {
    let mut s = stack().await;
    let opts = options(&s, Mode::Fast, Fault::Kill, 2);
    let report = simulate::run(opts, ClusterChaos::new(&mut s.cluster))
        .await
        .unwrap_or_else(|e| panic!("simulate: {e}"));
    let text = report.summary_text();
    eprintln!("{text}");
    assert_consistent(&report);
    assert_faults(&report, 2);
    // Losses are allowed in fast mode, but counted and never an error.
    assert!(!report.lost_acknowledged_in_durable_mode(), "{text}");
    assert!(report.verdict.text.starts_with("fast mode:"), "{text}");
    let json = serde_json::to_value(&report).unwrap_or_else(|e| panic!("JSON: {e}"));
    assert_eq!(json["settings"]["mode"], "fast");
    assert_eq!(
        json["counts"]["acknowledged"].as_u64(),
        Some(report.counts.acknowledged)
    );
    // The picture renders from a real run.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let svg = dir.path().join("run.svg");
    simulate::plot::write(&report, &svg, None).unwrap_or_else(|e| panic!("plot: {e}"));
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
