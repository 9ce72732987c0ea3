//! Prometheus duration syntax (`90s`, `1h30m`, `7d`), used for every time
//! span a user writes: horizons, steps, windows, timeouts.

use std::fmt;
use std::str::FromStr;

/// A non-negative span of time with millisecond resolution, written and
/// parsed the way Prometheus writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(u64);

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

impl PromDuration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1_000)
    }

    /// Length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Length in milliseconds as a signed timestamp offset.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The equivalent standard-library duration.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
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
            pos += unit.0.len();
            total = number
                .checked_mul(unit.1)
                .and_then(|v| v.checked_add(total))
                .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (name, size) in UNITS {
            if rest >= size {
                write!(f, "{}{}", rest / size, name)?;
                rest %= size;
            }
        }
        Ok(())
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
}
