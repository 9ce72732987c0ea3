//! Civil-time arithmetic on Unix millisecond timestamps (UTC): the calendar
//! inputs the model sees, the RFC 3339 stamps the API shows, and the
//! timestamps operators type.

/// A minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// An hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// A day in milliseconds (UTC days have no leap seconds in Unix time).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Fraction of the UTC day elapsed at `ms`, in `[0, 1)`.
pub fn day_fraction(ms: i64) -> f64 {
    ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64
}

/// Fraction of the week elapsed at `ms`, in `[0, 1)`, weeks starting Monday 00:00 UTC.
pub fn week_fraction(ms: i64) -> f64 {
    // 1970-01-01 was a Thursday: shift by three days so weeks start on Monday.
    let week = 7 * DAY_MS;
    (ms + 3 * DAY_MS).rem_euclid(week) as f64 / week as f64
}

/// Formats `ms` as an RFC 3339 UTC timestamp with second resolution.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses a UTC timestamp: RFC 3339 with `Z` (`2024-05-01T12:00:00Z`,
/// fractional seconds allowed), the same with a space for the `T` and no
/// zone (`2024-05-01 12:00:00`, as NAB's CSV files write it), or Unix
/// seconds (`1714564800`, `1714564800.5`). Returns Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let seconds: f64 = t.next()?.parse().ok()?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0.0..61.0).contains(&seconds);
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * DAY_MS + (hour * 3600 + minute * 60) * 1000 + (seconds * 1000.0).round() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil` algorithm, the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_700_000_000_000, -86_400_000] {
            assert_eq!(parse_timestamp(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(
            parse_timestamp("2015-09-01 11:00:00"),
            Some(1_441_105_200_000)
        );
        assert_eq!(parse_timestamp("1700000000.25"), Some(1_700_000_000_250));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500)
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T25:00:00Z",
            "2023-11-14",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn calendar_fractions() {
        // 2023-11-13 was a Monday.
        let monday = 1_699_833_600_000;
        assert_eq!(week_fraction(monday), 0.0);
        assert!((week_fraction(monday + DAY_MS) - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(day_fraction(monday + DAY_MS / 4), 0.25);
    }
}
