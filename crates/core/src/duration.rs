//! Durations as runbook authors write them: `500ms`, `30s`, `5m`, `2h`, `7d`, `1h30m`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration as StdDuration;

/// A parsed duration that prints back the way it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

/// Why a duration did not parse, with a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    pub message: String,
}

pub const DURATION_HINT: &str = "write a whole number followed by a unit (ms, s, m, h, d, w), e.g. `500ms`, `30s`, `5m`, `1h30m`, `8w`";

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let err = || DurationError {
            message: format!("invalid duration `{text}`"),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(err());
        }
        let bytes = s.as_bytes();
        let mut total: u128 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err());
            }
            let n: u128 = s[start..i].parse().map_err(|_| err())?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let millis: u128 = match &s[unit_start..i] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => return Err(err()),
            };
            total = total
                .checked_add(n.checked_mul(millis).ok_or_else(err)?)
                .ok_or_else(err)?;
        }
        let millis = u64::try_from(total).map_err(|_| err())?;
        Ok(Duration(StdDuration::from_millis(millis)))
    }

    pub fn as_std(&self) -> StdDuration {
        self.0
    }

    pub fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{}{}{DURATION_HINT}",
                e.message,
                crate::diag::HINT_SEPARATOR
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(
            Duration::parse("500ms").unwrap().0,
            StdDuration::from_millis(500)
        );
        assert_eq!(
            Duration::parse("1h30m").unwrap().0,
            StdDuration::from_secs(5400)
        );
        assert_eq!(Duration::parse("7d").unwrap().to_string(), "7d");
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
        for bad in [
            "",
            "5",
            "5 mins",
            "m5",
            "5mins",
            "-1s",
            "99999999999999999999d",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }
}
