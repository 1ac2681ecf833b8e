//! A partitioned master (cut off from its replicas and its Sentinels with iptables on
//! loopback) with the shipped Redis configuration, whose `min-replicas-max-lag` follows
//! down-after (`redis_ha_node::durability`): it stops acknowledging writes before the Sentinels
//! promote another node, and no write the rule promises is lost.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::Value;
use redis_ha_node::durability::min_replicas_max_lag;
use redis_ha_tests::kit::client;
use redis_ha_tests::kit::partition::{Partition, SourceBoundClient, ALLOWED_SOURCE};
use redis_ha_tests::{Cluster, ClusterOptions, READY_TIMEOUT};
use tokio::time::Instant;

/// The shortest down-after for which the rule's guarantee holds (max-lag 1 s).
const DOWN_AFTER_MS: u64 = 3000;
/// Writes acknowledged and confirmed on both replicas (`WAIT 2`) before the cut.
const PROMISED: usize = 50;
/// Writes sent to the old master after the test saw the promotion.
const AFTER_PROMOTION: usize = 30;
/// Redis's protected mode refuses a client from 127.0.0.2 (not loopback to it) unless a
/// password is set: the cluster gets one, as the stack has.
const PASSWORD: &str = "partition-pw";
/// Pause between two writes (and two polls of the replicas' roles).
const PACE: Duration = Duration::from_millis(5);

#[derive(Debug)]
enum Outcome {
    Acked,
    NoReplicas,
    Other(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Acked => f.write_str("OK"),
            Self::NoReplicas => f.write_str("NOREPLICAS"),
            Self::Other(reply) => write!(f, "{reply}"),
        }
    }
}

/// One write to the old master, with when the test sent it and got the answer.
#[derive(Debug)]
struct Write {
    key: String,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

fn key(i: usize) -> String {
    format!("partition:{i}")
}

async fn set(writer: &mut SourceBoundClient, key: &str) -> Outcome {
    match writer.command(redis::cmd("SET").arg(key).arg("v")).await {
        Ok(Value::Okay) => Outcome::Acked,
        Ok(Value::ServerError(e)) if e.code() == "NOREPLICAS" => Outcome::NoReplicas,
        Ok(other) => Outcome::Other(format!("{other:?}")),
        Err(e) => panic!("the old master must stay reachable from {ALLOWED_SOURCE}: {e}"),
    }
}

/// The node (2 or 3) first seen answering `ROLE` = master, and when.
type Promotion = Arc<OnceLock<(Instant, usize)>>;

/// Polls the replicas' `ROLE` until one says master; records that in `seen`.
fn watch_promotion(ports: [(usize, u16); 2], seen: Promotion) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for (node, port) in ports {
                if matches!(
                    client::role(port, Some(PASSWORD)).await.as_deref(),
                    Ok("master")
                ) {
                    let _ = seen.set((Instant::now(), node));
                    return;
                }
            }
            tokio::time::sleep(PACE).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_master_acknowledges_no_write_after_the_promotion() {
    let rule = min_replicas_max_lag(DOWN_AFTER_MS).expect("the rule serves 3000 ms");
    assert!(rule.guarantee_holds(), "{rule}");
    let cluster = Cluster::start(ClusterOptions {
        group: "partition".into(),
        down_after_ms: DOWN_AFTER_MS,
        password: Some(PASSWORD.into()),
        ..ClusterOptions::default()
    })
    .await;
    let old_port = cluster.node(1).port();
    // The shipped template filled by the rule, as deploy/up.sh --local fills it.
    let (_, lag): (String, String) = cluster
        .node(1)
        .query(redis::cmd("CONFIG").arg("GET").arg("min-replicas-max-lag"))
        .await
        .expect("CONFIG GET");
    assert_eq!(lag, rule.max_lag_s.to_string());

    let mut writer = SourceBoundClient::connect(ALLOWED_SOURCE, old_port)
        .await
        .expect("a client from 127.0.0.2");
    let auth = writer
        .command(redis::cmd("AUTH").arg(PASSWORD))
        .await
        .expect("AUTH");
    assert_eq!(auth, Value::Okay);
    for i in 0..PROMISED {
        let outcome = set(&mut writer, &key(i)).await;
        assert!(
            matches!(outcome, Outcome::Acked),
            "write {i} before the cut: {outcome}"
        );
    }
    let both = writer
        .command(redis::cmd("WAIT").arg(2).arg(10_000))
        .await
        .expect("WAIT");
    assert_eq!(
        both,
        Value::Int(2),
        "both replicas hold the writes before the cut"
    );

    let partition = Partition::isolate(old_port).expect("cut the master off with iptables");
    let cut = Instant::now();
    let promotion: Promotion = Arc::default();
    let watcher = watch_promotion(
        [(2, cluster.node(2).port()), (3, cluster.node(3).port())],
        promotion.clone(),
    );

    // Write to the old master until the promotion was seen and some writes went after it.
    // No promotion within the deadline fails the test.
    let deadline = cut + READY_TIMEOUT;
    let mut writes = Vec::new();
    let mut i = PROMISED;
    let (promoted_at, new_master) = loop {
        if let Some(&(at, node)) = promotion.get() {
            if writes.iter().filter(|w: &&Write| w.sent > at).count() >= AFTER_PROMOTION {
                break (at, node);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica promoted within {READY_TIMEOUT:?} of the cut\n{}",
            cluster.logs(40)
        );
        let sent = Instant::now();
        let outcome = set(&mut writer, &key(i)).await;
        writes.push(Write {
            key: key(i),
            sent,
            answered: Instant::now(),
            outcome,
        });
        i += 1;
        tokio::time::sleep(PACE).await;
    };
    watcher.abort();
    partition.heal().expect("remove the iptables rules");

    let acked_after_cut: Vec<&Write> = writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Acked))
        .collect();
    let first_refusal = writes
        .iter()
        .find(|w| matches!(w.outcome, Outcome::NoReplicas))
        .map(|w| w.answered);
    eprintln!(
        "cut; old master acknowledged {} writes after it, refused from {:?}; node {new_master} \
         seen as master {:?} after the cut",
        acked_after_cut.len(),
        first_refusal.map(|t| t - cut),
        promoted_at - cut
    );
    // The rule's guarantee, in the order the test saw things: nothing the old master
    // acknowledged came back after the promotion was seen.
    let late: Vec<&&Write> = acked_after_cut
        .iter()
        .filter(|w| w.answered > promoted_at)
        .collect();
    let shown: Vec<String> = late
        .iter()
        .take(5)
        .map(|w| format!("{} at +{:?}", w.key, w.answered - promoted_at))
        .collect();
    assert!(
        late.is_empty(),
        "{} writes acknowledged by the old master after node {new_master}'s promotion was \
         seen (first: {shown:?})",
        late.len()
    );
    // Those writes were refused by min-replicas (so the writer kept reaching the old master):
    // it had stopped on its own, not lost its client.
    let after: Vec<&Write> = writes.iter().filter(|w| w.sent > promoted_at).collect();
    assert!(after.len() >= AFTER_PROMOTION);
    let answers: Vec<String> = after.iter().map(|w| w.outcome.to_string()).collect();
    assert!(
        after
            .iter()
            .all(|w| matches!(w.outcome, Outcome::NoReplicas)),
        "after the promotion the old master must answer NOREPLICAS: {answers:?}"
    );

    // Healed: the Sentinels turn the old master into a replica; the promised writes are on
    // the master they name (the one promoted, or a later one that synced from it).
    let master = cluster.wait_rejoined_as_replica(1).await;
    let promised: Vec<String> = (0..PROMISED).map(key).collect();
    let present: i64 = cluster
        .node(master)
        .query(redis::cmd("EXISTS").arg(&promised))
        .await
        .expect("EXISTS on the new master");
    assert_eq!(
        present, PROMISED as i64,
        "promised writes missing on node {master}"
    );
    // Not promised: what the old master acknowledged after the cut never reached a replica.
    if !acked_after_cut.is_empty() {
        let keys: Vec<&str> = acked_after_cut.iter().map(|w| w.key.as_str()).collect();
        let kept: i64 = cluster
            .node(master)
            .query(redis::cmd("EXISTS").arg(&keys))
            .await
            .expect("EXISTS on the new master");
        eprintln!(
            "of the {} writes acknowledged after the cut, {kept} survived the failover",
            keys.len()
        );
    }
}
