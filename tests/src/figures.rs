//! The benchmarks' arithmetic on measured durations, written once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::haproxy::WriteRecord;

/// (min, median, max) of `v`; `None` when nothing was measured.
pub fn min_median_max(v: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let mut v = v.to_vec();
    v.sort();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

/// "min | median | max" table cells, each formatted by `cell`, or dashes.
pub fn cells(v: &[Duration], cell: impl Fn(Duration) -> String) -> String {
    match min_median_max(v) {
        Some((a, b, c)) => format!("{} | {} | {}", cell(a), cell(b), cell(c)),
        None => "- | - | -".into(),
    }
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Whole milliseconds.
pub fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// `ours / classic`, or `None` when the classic figure is zero (no ratio to give).
pub fn ratio(ours: Duration, classic: Duration) -> Option<f64> {
    let c = classic.as_secs_f64();
    (c > 0.0).then(|| ours.as_secs_f64() / c)
}

/// A ratio cell: "0.57" or "-".
pub fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// ours / classic of the medians and of the maxes of two sets of figures measured in the same
/// run; `None` where either side measured nothing (or the classic figure is zero).
pub fn median_max_ratios(ours: &[Duration], classic: &[Duration]) -> (Option<f64>, Option<f64>) {
    match (min_median_max(ours), min_median_max(classic)) {
        (Some((_, om, ox)), Some((_, cm, cx))) => (ratio(om, cm), ratio(ox, cx)),
        _ => (None, None),
    }
}

/// What one SIGKILL of the master cost a client, read from its write records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverSample {
    /// Kill → the first write acknowledged by a node other than the killed one.
    pub outage: Option<Duration>,
    /// That node first answering `ROLE` = master → that write's acknowledgement (zero when
    /// the write was acknowledged before the poll saw the role).
    pub switch_lag: Option<Duration>,
    /// The Redis port that acknowledged that write.
    pub acked_by: Option<u16>,
    /// That node first answering `ROLE` = master → the first write after the kill that
    /// reached it through the proxy, acknowledged or not (a `NOREPLICAS` refusal too): when
    /// the proxy had switched, as against when the node took writes.
    pub routed_lag: Option<Duration>,
}

/// The sample of one kill: `records` the writer's attempts (any order), `killed` when the
/// SIGKILL was sent to the node on `old_port`, `became_master` when each node first answered
/// `ROLE` = master. A write counts only when it finished after the kill and came from another
/// node (one acknowledged by the old master before it died is no failover).
pub fn failover_sample(
    records: &[WriteRecord],
    killed: Instant,
    old_port: u16,
    became_master: &BTreeMap<u16, Instant>,
) -> FailoverSample {
    let first = records
        .iter()
        .filter(|r| r.acked && r.finished > killed && r.port.is_some_and(|p| p != old_port))
        .min_by_key(|r| r.finished);
    let Some(first) = first else {
        return FailoverSample::default();
    };
    let promoted = first.port;
    let routed = records
        .iter()
        .filter(|r| r.finished > killed && r.port == promoted)
        .min_by_key(|r| r.finished);
    FailoverSample {
        routed_lag: routed
            .zip(promoted.and_then(|p| became_master.get(&p)))
            .map(|(r, &became)| r.finished.saturating_duration_since(became)),
        outage: Some(first.finished - killed),
        switch_lag: first
            .port
            .and_then(|p| became_master.get(&p))
            .map(|&became| first.finished.saturating_duration_since(became)),
        acked_by: first.port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(finished: Instant, port: u16, acked: bool) -> WriteRecord {
        WriteRecord {
            key: "k".into(),
            started: finished,
            finished,
            acked,
            replied: acked,
            port: Some(port),
            error: None,
            finished_wall_ms: 0,
        }
    }

    #[test]
    fn failover_sample_takes_the_first_write_acknowledged_by_another_node_after_the_kill() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let killed = t0 + ms(100);
        let records = [
            // Before the kill: the old master, and another node (never counted).
            record(t0 + ms(50), 1, true),
            record(t0 + ms(60), 2, true),
            // After: the old master's last answer, a refused write, then two acknowledged.
            record(t0 + ms(101), 1, true),
            record(t0 + ms(1200), 2, false),
            record(t0 + ms(1400), 3, true),
            record(t0 + ms(1300), 2, true),
        ];
        let became = BTreeMap::from([(2, t0 + ms(1250)), (3, t0 + ms(1500))]);
        assert_eq!(
            failover_sample(&records, killed, 1, &became),
            FailoverSample {
                outage: Some(ms(1200)),
                switch_lag: Some(ms(50)),
                acked_by: Some(2),
                // The refused write at 1200 reached node 2 first: 50 ms before its promotion.
                routed_lag: Some(Duration::ZERO),
            }
        );
        // Acknowledged before the poll saw the role: zero, not negative; unknown role: none.
        let early = BTreeMap::from([(2, t0 + ms(1350))]);
        assert_eq!(
            failover_sample(&records, killed, 1, &early).switch_lag,
            Some(Duration::ZERO)
        );
        let before_refusal = BTreeMap::from([(2, t0 + ms(1150))]);
        let s = failover_sample(&records, killed, 1, &before_refusal);
        assert_eq!((s.routed_lag, s.switch_lag), (Some(ms(50)), Some(ms(150))));
        assert_eq!(
            failover_sample(&records, killed, 1, &BTreeMap::new()).switch_lag,
            None
        );
        // Nothing acknowledged by another node: nothing measured.
        assert_eq!(
            failover_sample(&records[..4], killed, 1, &became),
            FailoverSample::default()
        );
    }

    #[test]
    fn ratio_of_ours_to_classic() {
        let ms = Duration::from_millis;
        assert_eq!(ratio(ms(500), ms(2000)), Some(0.25));
        assert_eq!(ratio(ms(5), Duration::ZERO), None);
        assert_eq!(ratio_cell(Some(0.254)), "0.25");
        assert_eq!(ratio_cell(None), "-");
    }

    #[test]
    fn ratios_of_the_medians_and_of_the_maxes() {
        let ms = Duration::from_millis;
        let ours = [ms(30), ms(10), ms(20)];
        let classic = [ms(40), ms(120), ms(40)];
        assert_eq!(median_max_ratios(&ours, &classic), (Some(0.5), Some(0.25)));
        assert_eq!(median_max_ratios(&ours, &[]), (None, None));
        assert_eq!(median_max_ratios(&[], &classic), (None, None));
    }

    #[test]
    fn min_median_max_of_unsorted_figures() {
        let ms = Duration::from_millis;
        assert_eq!(min_median_max(&[]), None);
        assert_eq!(
            min_median_max(&[ms(30), ms(10), ms(20)]),
            Some((ms(10), ms(20), ms(30)))
        );
        assert_eq!(cells(&[ms(1500)], secs), "1.50 s | 1.50 s | 1.50 s");
        assert_eq!(cells(&[], millis), "- | - | -");
    }
}
