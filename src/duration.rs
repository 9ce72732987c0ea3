//! Prometheus duration syntax (`90s`, `1h30m`, `7d`), used for every time
//! span a user writes: horizons, steps, windows, timeouts.

use std::fmt;
use std::str::FromStr;

/// A non-negative span of time with millisecond resolution, written and
/// parsed the way Prometheus writes it.
///
/// A parsed duration displays in the units it was written in (`31d`, not
/// `4w3d`; `90m`, not `1h30m`): people recognise what they configured.
/// Equality, ordering and hashing go by length alone, so `60m == 1h`;
/// [`canonical`](Self::canonical) gives the one spelling per length where
/// text must be unique (the `horizon` label).
#[derive(Clone, Copy)]
pub struct PromDuration {
    ms: u64,
    /// Bit `i` set: `UNITS[i]` was written. Zero: canonical form.
    units: u8,
}

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit (ms, s, m, h, d, w, y), e.g. 90s or 1h30m"
    )]
    Syntax(String),
    #[error("invalid duration {0:?}: units must go from largest to smallest, each at most once")]
    Order(String),
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Every unit, as a mask over `UNITS`.
const ALL_UNITS: u8 = (1 << UNITS.len()) - 1;
/// Indices into `UNITS`.
const DAY: usize = 2;
const HOUR: usize = 3;

impl PromDuration {
    /// A duration of `ms` milliseconds, displayed in canonical form.
    pub const fn from_millis(ms: u64) -> Self {
        Self { ms, units: 0 }
    }

    /// A duration of `s` seconds, displayed in canonical form.
    pub const fn from_secs(s: u64) -> Self {
        Self::from_millis(s * 1_000)
    }

    /// `n` hours, displayed as such (`24h`, not `1d`).
    pub const fn hours(n: u64) -> Self {
        Self::written(n, HOUR)
    }

    /// `n` days, displayed as such (`31d`, not `4w3d`).
    pub const fn days(n: u64) -> Self {
        Self::written(n, DAY)
    }

    const fn written(n: u64, unit: usize) -> Self {
        Self {
            ms: n.saturating_mul(UNITS[unit].1),
            units: 1 << unit,
        }
    }

    /// Length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.ms
    }

    /// Length in milliseconds as a signed timestamp offset.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.ms).unwrap_or(i64::MAX)
    }

    /// The equivalent standard-library duration.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ms)
    }

    /// The same length, displayed in canonical form: each unit from the
    /// largest down at most once, none that is zero (`1h30m`, `4w3d`).
    pub const fn canonical(self) -> Self {
        Self::from_millis(self.ms)
    }

    /// What is left of the length after taking as much of each unit in
    /// `units` (a mask over `UNITS`) as fits, largest first.
    fn remainder_in(self, units: u8) -> u64 {
        UNITS
            .iter()
            .enumerate()
            .filter(|(i, _)| units & (1 << i) != 0)
            .fold(self.ms, |rest, (_, (_, size))| rest % size)
    }

    /// Writes the length in `units`, largest first; `skip_zero` leaves out
    /// units with a count of 0.
    fn write_in(self, f: &mut fmt::Formatter<'_>, units: u8, skip_zero: bool) -> fmt::Result {
        let mut rest = self.ms;
        for (i, (name, size)) in UNITS.iter().enumerate() {
            if units & (1 << i) == 0 || (skip_zero && rest < *size) {
                continue;
            }
            write!(f, "{}{name}", rest / size)?;
            rest %= size;
        }
        Ok(())
    }
}

impl PartialEq for PromDuration {
    fn eq(&self, other: &Self) -> bool {
        self.ms == other.ms
    }
}

impl Eq for PromDuration {}

impl PartialOrd for PromDuration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PromDuration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ms.cmp(&other.ms)
    }
}

impl std::hash::Hash for PromDuration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ms.hash(state);
    }
}

/// By length, like equality: a configuration's debug form does not depend
/// on how its durations were spelt.
impl fmt::Debug for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PromDuration").field(&self.ms).finish()
    }
}

impl FromStr for PromDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let bytes = s.as_bytes();
        let mut total: u64 = 0;
        let mut units: u8 = 0;
        let mut pos = 0;
        // Index into UNITS of the last unit seen: units must strictly descend.
        let mut last_unit: Option<usize> = None;
        while pos < bytes.len() {
            let digits_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos == digits_start {
                return Err(DurationError::Syntax(s.to_owned()));
            }
            let number: u64 = s[digits_start..pos]
                .parse()
                .map_err(|_| DurationError::Overflow(s.to_owned()))?;
            let rest = &s[pos..];
            // "ms" must be tried before "m".
            let (unit_index, unit) = UNITS
                .iter()
                .enumerate()
                .filter(|(_, (name, _))| rest.starts_with(name))
                .max_by_key(|(_, (name, _))| name.len())
                .ok_or_else(|| DurationError::Syntax(s.to_owned()))?;
            if last_unit.is_some_and(|last| unit_index <= last) {
                return Err(DurationError::Order(s.to_owned()));
            }
            last_unit = Some(unit_index);
            units |= 1 << unit_index;
            pos += unit.0.len();
            total = number
                .checked_mul(unit.1)
                .and_then(|v| v.checked_add(total))
                .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
        }
        Ok(Self { ms: total, units })
    }
}

/// In the units it was written in where they add up to the length
/// (`1y60w` cannot: it is `2y7w6d`), else canonical.
impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.units != 0 && self.remainder_in(self.units) == 0 {
            return self.write_in(f, self.units, false);
        }
        if self.ms == 0 {
            return f.write_str("0s");
        }
        self.write_in(f, ALL_UNITS, true)
    }
}

impl<'de> serde::Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("15m", 900_000),
            ("7d", 604_800_000),
            ("1w", 604_800_000),
            ("250ms", 250),
            ("1m500ms", 60_500),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                text.parse::<PromDuration>().unwrap().as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "h", "1", "1x", "1m1h", "1h1h", "-1h", "1.5h", "1h "] {
            assert!(text.parse::<PromDuration>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn formats_canonically_and_round_trips() {
        for (ms, text) in [
            (5_400_000, "1h30m"),
            (86_400_000, "1d"),
            (60_500, "1m500ms"),
        ] {
            let d = PromDuration::from_millis(ms);
            assert_eq!(d.to_string(), text);
            assert_eq!(text.parse::<PromDuration>().unwrap(), d);
        }
    }

    #[test]
    fn displays_as_written_and_compares_by_length() {
        let d = |text: &str| text.parse::<PromDuration>().unwrap();
        for text in ["31d", "90m", "24h", "1h30m", "1h0m", "0m", "7d", "3600s"] {
            assert_eq!(d(text).to_string(), text);
            assert_eq!(
                d(text).canonical(),
                PromDuration::from_millis(d(text).as_millis())
            );
        }
        assert_eq!(d("31d").canonical().to_string(), "4w3d");
        assert_eq!(d("60m").canonical().to_string(), "1h");
        assert_eq!(d("1h90m").to_string(), "2h30m");
        assert_eq!(d("1y60w").to_string(), "2y7w6d");
        assert_eq!(PromDuration::days(31).to_string(), "31d");
        assert_eq!(PromDuration::hours(24).to_string(), "24h");

        assert_eq!(d("60m"), d("1h"));
        assert!(d("90m") > d("1h") && d("1h") < d("1d"));
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(d("60m")), state.hash_one(d("1h")));
        assert_eq!(format!("{:?}", d("60m")), format!("{:?}", d("1h")));
    }
}
