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

/// What one planned move of the master (a switchover, a graceful stop, a plain failover) cost
/// a writer, read from its records of the move's window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveSample {
    /// Writes acknowledged in the window.
    pub acked: usize,
    /// Of those, how many the master does not hold once everything settled.
    pub lost: usize,
    /// Attempts that were not acknowledged (a failed connection or an error reply).
    pub errors: usize,
    /// Of those, `NOREPLICAS` replies (a new master no replica acknowledges yet).
    pub noreplicas: usize,
    /// The longest time between two acknowledged writes.
    pub longest_gap: Duration,
}

/// The keys of the acknowledged writes of `window`: what the final master must hold.
pub fn acked_keys(window: &[WriteRecord]) -> Vec<String> {
    window
        .iter()
        .filter(|r| r.acked)
        .map(|r| r.key.clone())
        .collect()
}

/// The sample of one move: `window` the writer's attempts in it (any order), `missing` the
/// keys of [`acked_keys`] the settled master does not hold.
pub fn move_sample(window: &[WriteRecord], missing: &[String]) -> MoveSample {
    let missing: std::collections::HashSet<&str> = missing.iter().map(String::as_str).collect();
    let acked: Vec<&WriteRecord> = window.iter().filter(|r| r.acked).collect();
    let mut finished: Vec<Instant> = acked.iter().map(|r| r.finished).collect();
    finished.sort_unstable();
    let errors: Vec<&WriteRecord> = window.iter().filter(|r| !r.acked).collect();
    MoveSample {
        acked: acked.len(),
        lost: acked
            .iter()
            .filter(|r| missing.contains(r.key.as_str()))
            .count(),
        errors: errors.len(),
        noreplicas: errors
            .iter()
            .filter(|r| r.error.as_deref().is_some_and(|e| e.contains("NOREPLICAS")))
            .count(),
        longest_gap: finished
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default(),
    }
}

/// "min / median / max" of counts, or a dash.
pub fn count_cells(v: &[usize]) -> String {
    let mut s = v.to_vec();
    s.sort_unstable();
    match (s.first(), s.get(s.len() / 2), s.last()) {
        (Some(a), Some(b), Some(c)) => format!("{a} / {b} / {c}"),
        _ => "-".into(),
    }
}

/// The header of the table [`move_row`] fills.
pub const MOVE_TABLE_HEADER: &str = "| operation | acknowledged writes lost | client errors | \
    of which NOREPLICAS | longest write pause | writes acknowledged in the window |\n\
    |---|---:|---:|---:|---:|---:|\n";

/// One row of the moves' table: `label`, then min / median / max of each figure of `samples`
/// (and the total of lost writes).
pub fn move_row(label: &str, samples: &[&MoveSample]) -> String {
    let pick =
        |f: fn(&MoveSample) -> usize| -> Vec<usize> { samples.iter().map(|s| f(s)).collect() };
    let lost = pick(|s| s.lost);
    let gaps: Vec<Duration> = samples.iter().map(|s| s.longest_gap).collect();
    format!(
        "| {label} | {} (total {}) | {} | {} | {} | {} |\n",
        count_cells(&lost),
        lost.iter().sum::<usize>(),
        count_cells(&pick(|s| s.errors)),
        count_cells(&pick(|s| s.noreplicas)),
        cells(&gaps, millis).replace(" | ", " / "),
        count_cells(&pick(|s| s.acked)),
    )
}

/// A benchmark's `main` (they run without the test harness): `parse` the arguments (an error:
/// exit 2), then `run` on a two-worker runtime (an error: exit 1), each said as `name: error`.
pub fn bench_main<A, F, Fut>(name: &str, parse: impl FnOnce() -> Result<A, String>, run: F)
where
    F: FnOnce(A) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
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

    #[test]
    fn a_move_counts_lost_writes_errors_and_the_longest_pause() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut records = vec![
            record(t0 + ms(10), 1, true),
            record(t0 + ms(400), 2, true),
            record(t0 + ms(30), 1, true),
            record(t0 + ms(200), 1, false),
            record(t0 + ms(300), 2, false),
        ];
        for (i, r) in records.iter_mut().enumerate() {
            r.key = format!("k{i}");
        }
        records[4].error = Some("NOREPLICAS Not enough good replicas to write.".into());
        assert_eq!(acked_keys(&records), ["k0", "k1", "k2"]);
        // A missing key that was never acknowledged is no lost write.
        let s = move_sample(&records, &["k2".into(), "k3".into()]);
        assert_eq!(
            s,
            MoveSample {
                acked: 3,
                lost: 1,
                errors: 2,
                noreplicas: 1,
                longest_gap: ms(370),
            }
        );
        assert_eq!(move_sample(&[], &[]), MoveSample::default());
        assert_eq!(count_cells(&[3, 1, 2]), "1 / 2 / 3");
        assert_eq!(count_cells(&[]), "-");
        let quiet = MoveSample::default();
        assert_eq!(
            move_row("op", &[&s, &quiet]),
            "| op | 0 / 1 / 1 (total 1) | 0 / 2 / 2 | 0 / 1 / 1 | 0 ms / 370 ms / 370 ms | 0 / 3 / 3 |\n"
        );
    }
}
