//! The data a plugin and its host exchange, defined once for both sides: the host
//! (`vigil-plugin-host`, `vigil-core`'s action contract) and the SDK plugins are
//! written with. It depends on serde only, so it builds for wasm32-wasip2.
//!
//! Series and events are not here: a plugin writes labels as an ordered list, and
//! the host keeps them as a map once it has checked them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A time range in ms since the Unix epoch; `start == end` asks for an instant value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
    /// Resolution in ms (0 = plugin default).
    pub step: u64,
}

impl TimeRange {
    pub fn instant(at_ms: i64) -> Self {
        TimeRange {
            start: at_ms,
            end: at_ms,
            step: 0,
        }
    }

    pub fn range(start: i64, end: i64, step: u64) -> Self {
        TimeRange { start, end, step }
    }

    pub fn is_instant(&self) -> bool {
        self.start == self.end
    }
}

/// One point of a series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub timestamp: i64,
    pub value: f64,
}

/// How risky a planned effect is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    None,
    Low,
    Medium,
    High,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::None => "none",
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        })
    }
}

/// One effect an action intends to have. Its `effects` are what the host will allow
/// in `execute`: `http:<METHOD> <url>`, `process:<program>`, `kv:write`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedEffect {
    /// What it acts on: a URL, a host, a service, a file.
    pub target: String,
    pub risk: Risk,
    pub reversible: bool,
    /// Declared effects, e.g. `http:POST https://hooks.example/x` or `process:systemctl`.
    pub effects: Vec<String>,
}

impl PlannedEffect {
    pub fn new(target: impl Into<String>, risk: Risk) -> Self {
        PlannedEffect {
            target: target.into(),
            risk,
            reversible: false,
            effects: Vec::new(),
        }
    }

    pub fn reversible(mut self, yes: bool) -> Self {
        self.reversible = yes;
        self
    }

    pub fn effect(mut self, e: impl Into<String>) -> Self {
        self.effects.push(e.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_orders_and_reads_as_written() {
        assert!(Risk::None < Risk::Low && Risk::Medium < Risk::High);
        let json = serde_json::to_string(&Risk::Medium).unwrap_or_default();
        assert_eq!(json, "\"medium\"");
        assert_eq!(Risk::High.to_string(), "high");
        let e = PlannedEffect::new("svc", Risk::Low)
            .reversible(true)
            .effect("process:systemctl");
        assert_eq!((e.reversible, e.effects.len()), (true, 1));
        assert!(TimeRange::instant(5).is_instant());
        assert!(!TimeRange::range(1, 2, 0).is_instant());
    }
}
