//! The accounting at the end of a run, as JSON (`--json-out`) and as a human summary.
//!
//! Every count is over sequence numbers, and the identities below always hold:
//! - `acknowledged = acknowledged_delivered + acknowledged_lost`
//! - `delivered = acknowledged_delivered + delivered_unacknowledged`
//! - `published = acknowledged + delivered_unacknowledged + unacknowledged_missing`
//! - `deliveries = delivered + duplicates`
//!
//! `out_of_order` counts first deliveries of a sequence number lower than one the same
//! subscriber had already received. Outages are the publisher's: from the last acknowledged
//! push before a failure to the first acknowledged push after it.

use serde::Serialize;

use super::link::ClientEvent;
use super::publisher::PublisherLog;
use super::schedule::FaultRecord;
use super::subscriber::SubscriberLog;
use super::{Mode, Settings};

/// How many sequence numbers of each kind the JSON lists (the counts are always complete).
pub const LIST_LIMIT: usize = 1000;

/// Format version of the JSON report.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub settings: Settings,
    /// Wall clock at the start, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// Stopped early (Ctrl-C): the counts cover what happened until then.
    pub interrupted: bool,
    pub counts: Counts,
    /// The first `LIST_LIMIT` acknowledged-but-lost sequence numbers.
    pub lost_seqs: Vec<u64>,
    pub outages: Vec<Outage>,
    pub faults: Vec<FaultRecord>,
    pub chaos_errors: Vec<String>,
    pub publisher: PublisherSummary,
    pub subscribers: Vec<SubscriberSummary>,
    /// Every disconnection and reconnection of every client (the first `LIST_LIMIT`).
    pub connection_events: Vec<ClientEvent>,
    pub throughput: Throughput,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Distinct sequence numbers pushed at least once.
    pub published: u64,
    /// RPUSH commands sent, retries included.
    pub push_attempts: u64,
    pub acknowledged: u64,
    /// Distinct sequence numbers received by some subscriber.
    pub delivered: u64,
    /// Every reception, duplicates included.
    pub deliveries: u64,
    pub acknowledged_delivered: u64,
    /// Acknowledged, never delivered: the number that must be 0 in durable mode.
    pub acknowledged_lost: u64,
    /// Delivered although the publisher never saw it acknowledged (the reply was lost).
    pub delivered_unacknowledged: u64,
    /// Neither acknowledged nor delivered: a push that failed.
    pub unacknowledged_missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Deliveries read back from a processing list after a reconnection (durable mode).
    pub recovered: u64,
    /// Values under the key that were not sequence numbers.
    pub foreign_values: u64,
    /// Left in the list when the run ended (`None`: it could not be read).
    pub left_in_list: Option<u64>,
    /// Left in the subscribers' processing lists.
    pub left_in_processing: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    pub start_ms: u64,
    /// `None`: the run ended before a push was acknowledged again.
    pub end_ms: Option<u64>,
    pub duration_ms: u64,
    pub first_error_ms: u64,
    pub first_error: String,
    /// The round of the fault that caused it (the last fault injected before the outage's
    /// first error), if any.
    pub fault_round: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublisherSummary {
    pub pushes: u64,
    pub wait_shortfalls: u64,
    pub disconnections: u64,
    /// Runs of error answers (`NOREPLICAS` ...) on a kept connection.
    pub refusals: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriberSummary {
    pub name: String,
    pub deliveries: u64,
    pub recovered: u64,
    pub disconnections: u64,
    pub refusals: u64,
}

/// Messages per second over time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub bucket_ms: u64,
    /// Acknowledged pushes per second, one value per bucket.
    pub publisher_acknowledged: Vec<f64>,
    /// Receptions per second, per subscriber.
    pub subscribers: Vec<Vec<f64>>,
    /// Receptions per second, all subscribers.
    pub delivered_total: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// False when an acknowledged message was lost in durable mode (the exit code says so),
    /// or when the chaos schedule failed.
    pub ok: bool,
    pub text: String,
}

/// The raw material of a report.
pub struct Inputs<'a> {
    pub settings: Settings,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub interrupted: bool,
    pub publisher: &'a PublisherLog,
    pub subscribers: &'a [SubscriberLog],
    pub faults: Vec<FaultRecord>,
    pub chaos_errors: Vec<String>,
    pub left_in_list: Option<u64>,
    pub left_in_processing: Option<u64>,
}

impl Report {
    pub fn build(inp: Inputs<'_>) -> Self {
        let publ = inp.publisher;
        let published = publ.first_push_ms.len();
        let mut delivered_flag = vec![false; published];
        let mut counts = Counts {
            published: published as u64,
            push_attempts: publ.pushes,
            left_in_list: inp.left_in_list,
            left_in_processing: inp.left_in_processing,
            ..Counts::default()
        };

        // First deliveries in time order across subscribers (ties: subscriber order).
        let mut all: Vec<(u64, usize, usize, u64)> = Vec::new();
        for (si, s) in inp.subscribers.iter().enumerate() {
            counts.foreign_values += s.foreign;
            for (pi, d) in s.deliveries.iter().enumerate() {
                all.push((d.at_ms, si, pi, d.seq));
                if d.recovered {
                    counts.recovered += 1;
                }
            }
        }
        all.sort_unstable();
        counts.deliveries = all.len() as u64;
        let mut first: Vec<Vec<bool>> = inp
            .subscribers
            .iter()
            .map(|s| vec![false; s.deliveries.len()])
            .collect();
        let mut seen_beyond: u64 = 0;
        let mut seen = std::collections::HashSet::new();
        for &(_, si, pi, seq) in &all {
            let new = match usize::try_from(seq - 1)
                .ok()
                .and_then(|i| delivered_flag.get_mut(i))
            {
                Some(flag) => !std::mem::replace(flag, true),
                // Beyond what the publisher logged (cannot happen with a fresh key).
                None => {
                    let new = seen.insert(seq);
                    if new {
                        seen_beyond += 1;
                    }
                    new
                }
            };
            first[si][pi] = new;
        }
        for (si, s) in inp.subscribers.iter().enumerate() {
            let mut max = 0;
            for (pi, d) in s.deliveries.iter().enumerate() {
                if first[si][pi] && d.seq < max {
                    counts.out_of_order += 1;
                }
                max = max.max(d.seq);
            }
        }

        let mut lost_seqs = Vec::new();
        for (i, ack) in publ.ack_ms.iter().enumerate() {
            let delivered = delivered_flag[i];
            match (ack.is_some(), delivered) {
                (true, true) => counts.acknowledged_delivered += 1,
                (true, false) => {
                    counts.acknowledged_lost += 1;
                    if lost_seqs.len() < LIST_LIMIT {
                        lost_seqs.push(i as u64 + 1);
                    }
                }
                (false, true) => counts.delivered_unacknowledged += 1,
                (false, false) => counts.unacknowledged_missing += 1,
            }
        }
        counts.acknowledged = counts.acknowledged_delivered + counts.acknowledged_lost;
        counts.delivered =
            counts.acknowledged_delivered + counts.delivered_unacknowledged + seen_beyond;
        counts.duplicates = counts.deliveries - counts.delivered;

        let outages = publ
            .outages
            .iter()
            .map(|o| Outage {
                start_ms: o.start_ms,
                end_ms: o.end_ms,
                duration_ms: o
                    .end_ms
                    .unwrap_or(inp.duration_ms)
                    .saturating_sub(o.start_ms),
                first_error_ms: o.first_error_ms,
                first_error: o.first_error.clone(),
                fault_round: inp
                    .faults
                    .iter()
                    .rev()
                    .find(|f| f.injected_at_ms <= o.first_error_ms)
                    .map(|f| f.round),
            })
            .collect();

        let mut connection_events: Vec<ClientEvent> = publ
            .events
            .iter()
            .chain(inp.subscribers.iter().flat_map(|s| s.events.iter()))
            .cloned()
            .collect();
        connection_events.sort_by_key(|e| e.at_ms);
        connection_events.truncate(LIST_LIMIT);

        let throughput = throughput(inp.duration_ms, publ, inp.subscribers);
        let verdict = verdict(
            inp.settings.mode,
            &counts,
            &inp.chaos_errors,
            inp.interrupted,
        );
        Self {
            report_version: REPORT_VERSION,
            settings: inp.settings,
            started_at_ms: inp.started_at_ms,
            duration_ms: inp.duration_ms,
            interrupted: inp.interrupted,
            counts,
            lost_seqs,
            outages,
            faults: inp.faults,
            chaos_errors: inp.chaos_errors,
            publisher: PublisherSummary {
                pushes: publ.pushes,
                wait_shortfalls: publ.wait_shortfalls,
                disconnections: publ.disconnections,
                refusals: publ.refusals,
            },
            subscribers: inp
                .subscribers
                .iter()
                .map(|s| SubscriberSummary {
                    name: s.name.clone(),
                    deliveries: s.deliveries.len() as u64,
                    recovered: s.deliveries.iter().filter(|d| d.recovered).count() as u64,
                    disconnections: s.disconnections,
                    refusals: s.refusals,
                })
                .collect(),
            connection_events,
            throughput,
            verdict,
        }
    }

    /// True when an acknowledged message was lost in durable mode: the run's failure.
    pub fn lost_acknowledged_in_durable_mode(&self) -> bool {
        self.settings.mode == Mode::Durable && self.counts.acknowledged_lost > 0
    }

    /// The human summary.
    pub fn summary_text(&self) -> String {
        let c = &self.counts;
        let s = &self.settings;
        let mut out = String::new();
        let secs = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
        out.push_str(&format!(
            "redis-ha simulate: {} mode, 1 publisher and {} subscriber(s) through {}\n",
            s.mode.as_str(),
            s.subscribers,
            s.proxy
        ));
        out.push_str(&format!(
            "  {}\n",
            s.mode.describe(s.wait_replicas, s.wait_timeout_ms)
        ));
        let chaos = if s.kills == 0 {
            "no faults injected".to_owned()
        } else {
            format!(
                "{} x {} of the master, {:.1} s of calm before each, down for {:.1} s ({})",
                s.kills,
                s.fault.as_str(),
                s.interval_ms as f64 / 1000.0,
                s.down_for_ms as f64 / 1000.0,
                s.chaos_target
            )
        };
        out.push_str(&format!(
            "  run: {}{}, {chaos}\n\n",
            secs(self.duration_ms),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        ));
        let opt = |v: Option<u64>| v.map_or("unknown".to_owned(), |n| n.to_string());
        let rows: Vec<(&str, String, String)> = vec![
            (
                "published",
                c.published.to_string(),
                format!("{} pushes incl. retries", c.push_attempts),
            ),
            ("acknowledged", c.acknowledged.to_string(), String::new()),
            (
                "delivered",
                c.delivered.to_string(),
                format!("{} receptions", c.deliveries),
            ),
            (
                "acknowledged but lost",
                c.acknowledged_lost.to_string(),
                if c.acknowledged_lost == 0 {
                    String::new()
                } else {
                    format!(
                        "first: {:?}",
                        &self.lost_seqs[..self.lost_seqs.len().min(10)]
                    )
                },
            ),
            (
                "delivered, not acknowledged",
                c.delivered_unacknowledged.to_string(),
                "the push landed, its acknowledgement did not".into(),
            ),
            (
                "neither",
                c.unacknowledged_missing.to_string(),
                "pushes that failed".into(),
            ),
            ("duplicates", c.duplicates.to_string(), String::new()),
            ("out of order", c.out_of_order.to_string(), String::new()),
            (
                "recovered",
                c.recovered.to_string(),
                "re-read from a processing list after a reconnection".into(),
            ),
            (
                "left in the list",
                opt(c.left_in_list),
                format!("{} in processing lists", opt(c.left_in_processing)),
            ),
        ];
        out.push_str("messages\n");
        for (k, v, note) in rows {
            if note.is_empty() {
                out.push_str(&format!("  {k:<28} {v:>9}\n"));
            } else {
                out.push_str(&format!("  {k:<28} {v:>9}   ({note})\n"));
            }
        }
        if c.foreign_values > 0 {
            out.push_str(&format!(
                "  {:<28} {:>9}\n",
                "foreign values", c.foreign_values
            ));
        }

        if !self.faults.is_empty() || !self.chaos_errors.is_empty() {
            out.push_str("\nfaults\n");
            for f in &self.faults {
                out.push_str(&format!(
                    "  {:>2}  {} {} ({}) at {}; {}; {}\n",
                    f.round,
                    f.fault.as_str(),
                    f.node,
                    f.address,
                    secs(f.injected_at_ms),
                    match (&f.new_master, f.failover_at_ms) {
                        (Some(m), Some(t)) => format!(
                            "{m} master at {} (+{})",
                            secs(t),
                            secs(t.saturating_sub(f.injected_at_ms))
                        ),
                        _ => "no failover seen".to_owned(),
                    },
                    f.restored_at_ms
                        .map_or("not restored".to_owned(), |t| format!(
                            "restored at {}",
                            secs(t)
                        )),
                ));
            }
            for e in &self.chaos_errors {
                out.push_str(&format!("  error: {e}\n"));
            }
        }

        out.push_str("\nwrite outages (last acknowledged push before a failure -> first after)\n");
        if self.outages.is_empty() {
            out.push_str("  none\n");
        }
        for o in &self.outages {
            out.push_str(&format!(
                "  {:>9} -> {:>9}  {:>8}  {}{}\n",
                secs(o.start_ms),
                o.end_ms.map_or("(end)".to_owned(), secs),
                secs(o.duration_ms),
                o.fault_round
                    .map_or(String::new(), |r| format!("fault {r}: ")),
                truncate(&o.first_error, 90)
            ));
        }

        out.push_str("\nclients\n");
        out.push_str(&format!(
            "  publisher     {} pushes, {} WAIT shortfalls, {} disconnections, {} refusals\n",
            self.publisher.pushes,
            self.publisher.wait_shortfalls,
            self.publisher.disconnections,
            self.publisher.refusals
        ));
        for sub in &self.subscribers {
            out.push_str(&format!(
                "  {:<13} {} receptions ({} recovered), {} disconnections, {} refusals\n",
                sub.name, sub.deliveries, sub.recovered, sub.disconnections, sub.refusals
            ));
        }
        let t = &self.throughput;
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "  throughput    publisher {:.0}/s mean, {:.0}/s peak; subscribers {:.0}/s mean, \
             {:.0}/s peak\n",
            mean(&t.publisher_acknowledged),
            max(&t.publisher_acknowledged),
            mean(&t.delivered_total),
            max(&t.delivered_total)
        ));
        out.push_str(&format!("\nverdict: {}\n", self.verdict.text));
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push_str("...");
        t
    }
}

fn verdict(mode: Mode, c: &Counts, chaos_errors: &[String], interrupted: bool) -> Verdict {
    let chaos_ok = chaos_errors.is_empty();
    let (ok, mut text) = match mode {
        Mode::Durable if c.acknowledged_lost > 0 => (
            false,
            format!(
                "FAILED: {} acknowledged message(s) lost in durable mode",
                c.acknowledged_lost
            ),
        ),
        Mode::Durable => (
            chaos_ok,
            format!(
                "OK: no acknowledged message lost ({} acknowledged, all delivered)",
                c.acknowledged
            ),
        ),
        Mode::Fast => (
            chaos_ok,
            format!(
                "fast mode: {} of {} acknowledged message(s) lost ({:.4} %); fast mode does \
                 not promise more",
                c.acknowledged_lost,
                c.acknowledged,
                if c.acknowledged == 0 {
                    0.0
                } else {
                    c.acknowledged_lost as f64 * 100.0 / c.acknowledged as f64
                }
            ),
        ),
    };
    if !chaos_ok {
        text.push_str(&format!(
            "; the chaos schedule failed ({} error(s))",
            chaos_errors.len()
        ));
    }
    if interrupted {
        text.push_str("; interrupted before the end");
    }
    Verdict { ok, text }
}

/// Per-bucket rates: 1 s buckets, wider for runs over 10 minutes (at most 600 points). The
/// last, partial bucket is divided by its own length (at least half a bucket, so that a few
/// messages in its last milliseconds do not look like a burst).
fn throughput(duration_ms: u64, publ: &PublisherLog, subs: &[SubscriberLog]) -> Throughput {
    let bucket_ms = (duration_ms.div_ceil(600).div_ceil(1000) * 1000).max(1000);
    let n = usize::try_from(duration_ms.div_ceil(bucket_ms).max(1)).unwrap_or(1);
    let idx = |t: u64| {
        usize::try_from(t / bucket_ms)
            .unwrap_or(usize::MAX)
            .min(n - 1)
    };
    let last_len = duration_ms
        .saturating_sub((n as u64 - 1) * bucket_ms)
        .clamp(bucket_ms / 2, bucket_ms);
    let rate = |counts: Vec<u64>| -> Vec<f64> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let len = if i + 1 == n { last_len } else { bucket_ms };
                c as f64 * 1000.0 / len as f64
            })
            .collect()
    };
    let mut pubs = vec![0u64; n];
    for t in publ.ack_ms.iter().flatten() {
        pubs[idx(*t)] += 1;
    }
    let mut total = vec![0u64; n];
    let subscribers = subs
        .iter()
        .map(|s| {
            let mut v = vec![0u64; n];
            for d in &s.deliveries {
                v[idx(d.at_ms)] += 1;
                total[idx(d.at_ms)] += 1;
            }
            rate(v)
        })
        .collect();
    Throughput {
        bucket_ms,
        publisher_acknowledged: rate(pubs),
        subscribers,
        delivered_total: rate(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::Fault;
    use crate::simulate::publisher::RawOutage;
    use crate::simulate::subscriber::Delivery;

    fn settings(mode: Mode) -> Settings {
        Settings {
            mode,
            ..Settings::example()
        }
    }

    fn sub(name: &str, seqs: &[(u64, u64)]) -> SubscriberLog {
        SubscriberLog {
            name: name.into(),
            deliveries: seqs
                .iter()
                .map(|&(seq, at_ms)| Delivery {
                    seq,
                    at_ms,
                    recovered: false,
                })
                .collect(),
            ..SubscriberLog::default()
        }
    }

    fn publisher(acks: &[Option<u64>]) -> PublisherLog {
        PublisherLog {
            first_push_ms: (0..acks.len() as u64).collect(),
            ack_ms: acks.to_vec(),
            pushes: acks.len() as u64 + 2,
            ..PublisherLog::default()
        }
    }

    fn build(mode: Mode, publ: &PublisherLog, subs: &[SubscriberLog]) -> Report {
        Report::build(Inputs {
            settings: settings(mode),
            started_at_ms: 0,
            duration_ms: 3500,
            interrupted: false,
            publisher: publ,
            subscribers: subs,
            faults: vec![FaultRecord {
                round: 1,
                fault: Fault::Kill,
                node: "node-1".into(),
                address: "127.0.0.1:9001".into(),
                injected_at_ms: 1000,
                failover_at_ms: Some(1400),
                new_master: Some("node-2".into()),
                restored_at_ms: Some(2000),
            }],
            chaos_errors: vec![],
            left_in_list: Some(0),
            left_in_processing: Some(0),
        })
    }

    #[test]
    fn counts_add_up() {
        // seq 1..=6: 1-4 acked; 5 unacked but delivered; 6 neither; 3 acked and lost;
        // 2 delivered twice (a duplicate); 1 arrives after 4 at subscriber 2 (out of order).
        let publ = publisher(&[Some(10), Some(11), Some(12), Some(13), None, None]);
        let subs = [
            sub("subscriber-1", &[(2, 100), (4, 120), (2, 2500)]),
            sub("subscriber-2", &[(4, 130), (1, 140), (5, 3000)]),
        ];
        let r = build(Mode::Durable, &publ, &subs);
        let c = &r.counts;
        assert_eq!(c.published, 6);
        assert_eq!(c.acknowledged, 4);
        assert_eq!(c.acknowledged_delivered, 3);
        assert_eq!(c.acknowledged_lost, 1);
        assert_eq!(r.lost_seqs, vec![3]);
        assert_eq!(c.delivered, 4);
        assert_eq!(c.delivered_unacknowledged, 1);
        assert_eq!(c.unacknowledged_missing, 1);
        assert_eq!(c.deliveries, 6);
        assert_eq!(c.duplicates, 2);
        // seq 1 after 4 at subscriber-2 (4 there is a duplicate, but it was seen first there).
        assert_eq!(c.out_of_order, 1);
        assert_eq!(
            c.acknowledged,
            c.acknowledged_delivered + c.acknowledged_lost
        );
        assert_eq!(
            c.published,
            c.acknowledged + c.delivered_unacknowledged + c.unacknowledged_missing
        );
        assert!(r.lost_acknowledged_in_durable_mode());
        assert!(!r.verdict.ok);
        assert!(
            r.verdict.text.starts_with("FAILED: 1 acknowledged"),
            "{}",
            r.verdict.text
        );
    }

    #[test]
    fn fast_mode_losses_are_reported_not_failed() {
        let publ = publisher(&[Some(10), Some(11)]);
        let subs = [sub("subscriber-1", &[(1, 100)])];
        let r = build(Mode::Fast, &publ, &subs);
        assert_eq!(r.counts.acknowledged_lost, 1);
        assert!(!r.lost_acknowledged_in_durable_mode());
        assert!(r.verdict.ok);
        assert!(
            r.verdict.text.contains("1 of 2 acknowledged"),
            "{}",
            r.verdict.text
        );
    }

    #[test]
    fn outages_are_tied_to_the_fault_before_them() {
        let mut publ = publisher(&[Some(10)]);
        publ.outages = vec![
            RawOutage {
                start_ms: 500,
                first_error_ms: 600,
                first_error: "before any fault".into(),
                end_ms: Some(700),
            },
            RawOutage {
                start_ms: 990,
                first_error_ms: 1100,
                first_error: "RPUSH: connection reset".into(),
                end_ms: Some(2990),
            },
            RawOutage {
                start_ms: 3000,
                first_error_ms: 3100,
                first_error: "x".into(),
                end_ms: None,
            },
        ];
        let r = build(Mode::Durable, &publ, &[sub("s", &[(1, 50)])]);
        assert_eq!(r.outages[0].fault_round, None);
        assert_eq!(r.outages[1].fault_round, Some(1));
        assert_eq!(r.outages[1].duration_ms, 2000);
        // Still open at the end: lasts until the end of the run.
        assert_eq!(r.outages[2].duration_ms, 500);
        let text = r.summary_text();
        assert!(text.contains("fault 1: RPUSH: connection reset"), "{text}");
        assert!(text.contains("(end)"), "{text}");
        assert!(
            text.contains("1  kill node-1 (127.0.0.1:9001) at 1.00 s; node-2 master at 1.40 s (+0.40 s); restored at 2.00 s"),
            "{text}"
        );
    }

    #[test]
    fn throughput_is_per_second() {
        let publ = publisher(&[Some(10), Some(20), Some(1500), None]);
        let subs = [sub("a", &[(1, 100), (2, 3400)]), sub("b", &[(3, 1600)])];
        let r = build(Mode::Fast, &publ, &subs);
        let t = &r.throughput;
        assert_eq!(t.bucket_ms, 1000);
        assert_eq!(t.publisher_acknowledged, vec![2.0, 1.0, 0.0, 0.0]);
        // The last bucket (3000-3500 ms) is half long: one message there is 2 per second.
        assert_eq!(t.subscribers[0], vec![1.0, 0.0, 0.0, 2.0]);
        assert_eq!(t.delivered_total, vec![1.0, 1.0, 0.0, 2.0]);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let publ = publisher(&[Some(10)]);
        let r = build(Mode::Durable, &publ, &[sub("s", &[(1, 50)])]);
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "report_version",
            "settings",
            "counts",
            "outages",
            "faults",
            "throughput",
            "verdict",
            "connection_events",
        ] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        assert_eq!(v["counts"]["acknowledged_lost"], 0);
        assert_eq!(v["settings"]["mode"], "durable");
        assert_eq!(v["faults"][0]["fault"], "kill");
        assert_eq!(v["verdict"]["ok"], true);
    }
}
