//! Small formatting helpers for times and durations (UTC; no time-zone database needed).

const MS_PER_DAY: i64 = 86_400_000;

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in 400 Gregorian years: the calendar repeats after them.
const DAYS_PER_400_YEARS: i64 = 146_097;

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01: whole 400-year cycles first
/// (so a huge timestamp from the wire costs at most 400 steps), then year by year.
fn civil_from_days(mut days: i64) -> (i64, u32, u32) {
    let mut year = 1970 + 400 * (days / DAYS_PER_400_YEARS);
    days %= DAYS_PER_400_YEARS;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let feb = if is_leap(year) { 29 } else { 28 };
    let months = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in months {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    // days < 31 here, month <= 12.
    (year, month, u32::try_from(days + 1).unwrap_or(1))
}

/// `2025-11-25T12:31:05.123Z`. Times before 1970 print as the epoch.
pub fn iso_utc(ms: i64) -> String {
    let ms = ms.max(0);
    let (y, mo, d) = civil_from_days(ms / MS_PER_DAY);
    format!("{y:04}-{mo:02}-{d:02}T{}", time_of_day_utc(ms))
}

/// `12:31:05.123Z`, for one-line-per-change output.
pub fn time_of_day_utc(ms: i64) -> String {
    let in_day = ms.max(0) % MS_PER_DAY;
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `850ms`, `4.2s`, `3m05s`, `2h07m`: short enough for a table column.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{}.{}s", ms / 1000, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// A PING round trip: `0.18ms`, `12.4ms`, `1.2s`.
pub fn ping_micros(us: u64) -> String {
    match us {
        0..=9_999 => format!("{}.{:02}ms", us / 1000, (us % 1000) / 10),
        10_000..=999_999 => format!("{}.{}ms", us / 1000, (us % 1000) / 100),
        _ => duration_ms(us / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_timestamp_prints_at_once() {
        assert_eq!(iso_utc(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert!(iso_utc(i64::MAX).ends_with("Z"));
        // 400 years later is the same day of the year.
        assert_eq!(
            iso_utc(DAYS_PER_400_YEARS * MS_PER_DAY),
            "2370-01-01T00:00:00.000Z"
        );
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century year divisible by 400) 12:00:00.5
        assert_eq!(iso_utc(951_825_600_500), "2000-02-29T12:00:00.500Z");
        // 2024-12-31T23:59:59.999Z, the last day of a leap year
        assert_eq!(iso_utc(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(iso_utc(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations() {
        for (ms, want) in [
            (0, "0ms"),
            (999, "999ms"),
            (4_250, "4.2s"),
            (185_000, "3m05s"),
            (7_620_000, "2h07m"),
        ] {
            assert_eq!(duration_ms(ms), want, "{ms} ms");
        }
        for (us, want) in [(180, "0.18ms"), (12_450, "12.4ms"), (1_200_000, "1.2s")] {
            assert_eq!(ping_micros(us), want, "{us} us");
        }
    }
}
