//! Familiar: a deviation the series made at the same time of day on most of the last days.
//!
//! The false alarm every operator knows: the nightly backup lifts a host's CPU from 0.07
//! to 1.5 at about three every morning, a few minutes earlier or later each day. Against
//! a median baseline that is a robust z of 500 every night. The seasonal member does not
//! see it as a season: one point a day, never at the same sample, makes no
//! autocorrelation. Here the ensemble asks what a person reading the graph would: did
//! the series go this far, the same way, at about this time, on most of the last days?
//! If so, the value members' deviation is damped (`damping`) before the ensemble
//! calibrates it. What is damped is only the value members' judgement: a pattern never
//! seen (context), a value beyond the recent range (breach) or beyond the weeks' lowest
//! or highest (extreme) still speak.
//!
//! State: the lowest and highest value of each `bin` of the last `days` days (plus the
//! tolerance), in a ring indexed by bin: for the defaults (15-minute bins, a week, an
//! hour's tolerance) 677 slots of 24 bytes, 16 kB, allocated once.

use serde::{Deserialize, Serialize};

use super::{ModelConfigError, require};
use crate::runbook::duration::Duration;

const DAY_SECS: i64 = 86_400;

/// Parameters of the familiarity check ([`DailyProfile`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamiliarConfig {
    /// Days looked back on.
    pub days: usize,
    /// Of those, how many must have gone as far at about this time.
    pub min_days: usize,
    /// How far from this time of day a past day's value may be (e.g. `1h`).
    pub tolerance: Duration,
    /// The time of day is kept in bins this long (e.g. `15m`); it divides a day.
    pub bin: Duration,
    /// Share of the deviation (from the member's expected value to the point) a past
    /// day may fall short by and still count: 0.1 means it reached 90% of the way.
    pub slack: f64,
    /// Factor on a familiar deviation; 1 turns the check off.
    pub damping: f64,
}

impl Default for FamiliarConfig {
    /// Measured on NAB (NAB.md, "Familiar at this time of day"): three of the last seven
    /// days, within an hour and a half, 90% of the way, each in the middle of a plateau
    /// (two or four days, one or two hours, 85% or 95% score within 0.3 of it). A familiar
    /// deviation is not news at all (damping 0 against 0.1 and 0.3).
    fn default() -> Self {
        Self {
            days: 7,
            min_days: 3,
            tolerance: Duration::from_secs(5400),
            bin: Duration::from_secs(900),
            slack: 0.1,
            damping: 0.0,
        }
    }
}

impl FamiliarConfig {
    pub(crate) fn is_on(&self) -> bool {
        self.damping < 1.0
    }

    pub(crate) fn validate(&self) -> Result<(), ModelConfigError> {
        require(
            (1..=60).contains(&self.days),
            "familiar.days",
            "must be in 1..=60",
        )?;
        require(
            (1..=self.days).contains(&self.min_days),
            "familiar.min_days",
            "must be in 1..=days",
        )?;
        let bin = self.bin.as_std().as_secs() as i64;
        require(
            bin >= 60 && DAY_SECS % bin == 0,
            "familiar.bin",
            "must divide a day and be at least a minute (e.g. `15m`)",
        )?;
        require(
            (self.tolerance.as_std().as_secs() as i64) < DAY_SECS / 2,
            "familiar.tolerance",
            "must be shorter than half a day (e.g. `1h`)",
        )?;
        require(
            self.slack.is_finite() && (0.0..1.0).contains(&self.slack),
            "familiar.slack",
            "must be in 0..1",
        )?;
        require(
            self.damping.is_finite() && (0.0..=1.0).contains(&self.damping),
            "familiar.damping",
            "must be in 0..=1",
        )
    }
}

/// The lowest and highest value of each time bin of the last days.
#[derive(Debug, Clone)]
pub(crate) struct DailyProfile {
    bin_secs: i64,
    bins_per_day: i64,
    tolerance_bins: i64,
    days: usize,
    min_days: usize,
    /// `(bin, low, high)`, at `bin mod len`; a slot whose bin is not the one asked for
    /// is stale (that bin saw no point).
    slots: Vec<(i64, f64, f64)>,
}

impl DailyProfile {
    pub(crate) fn new(cfg: &FamiliarConfig) -> Self {
        let bin_secs = cfg.bin.as_std().as_secs().max(1) as i64;
        let bins_per_day = DAY_SECS / bin_secs;
        let tolerance_bins = cfg.tolerance.as_std().as_secs() as i64 / bin_secs;
        let len = cfg.days as i64 * bins_per_day + tolerance_bins + 1;
        Self {
            bin_secs,
            bins_per_day,
            tolerance_bins,
            days: cfg.days,
            min_days: cfg.min_days,
            slots: vec![(i64::MIN, 0.0, 0.0); len as usize],
        }
    }

    fn slot(&self, bin: i64) -> Option<&(i64, f64, f64)> {
        let s = &self.slots[bin.rem_euclid(self.slots.len() as i64) as usize];
        (s.0 == bin).then_some(s)
    }

    /// Learns `x` at `t`.
    pub(crate) fn push(&mut self, t: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        let bin = t.div_euclid(self.bin_secs);
        let len = self.slots.len() as i64;
        let slot = &mut self.slots[bin.rem_euclid(len) as usize];
        if slot.0 == bin {
            slot.1 = slot.1.min(x);
            slot.2 = slot.2.max(x);
        } else {
            *slot = (bin, x, x);
        }
    }

    /// Whether, on at least `min_days` of the last `days` days, the series reached
    /// `level` (at or above it when `above`, else at or below) within the tolerance of
    /// `t`'s time of day.
    pub(crate) fn is_familiar(&self, t: i64, level: f64, above: bool) -> bool {
        let bin = t.div_euclid(self.bin_secs);
        let mut days = 0;
        for day in 1..=self.days as i64 {
            let centre = bin.saturating_sub(day.saturating_mul(self.bins_per_day));
            let reached = (centre.saturating_sub(self.tolerance_bins)
                ..=centre.saturating_add(self.tolerance_bins))
                .filter_map(|b| self.slot(b))
                .any(|&(_, low, high)| if above { high >= level } else { low <= level });
            if reached {
                days += 1;
                if days >= self.min_days {
                    return true;
                }
            }
        }
        false
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(i64, f64, f64)>()
    }
}
