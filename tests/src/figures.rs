//! The benchmarks' arithmetic on measured durations, written once.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
