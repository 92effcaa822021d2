//! Extreme: a value beyond the lowest or the highest of the last weeks, measured in widths
//! of that range.
//!
//! The question an operator asks of a dashboard before any statistics: has this series,
//! in the last two months, ever been this low or this high? The other members judge a
//! point against a recent baseline (a median, the same phase of the last cycles, a
//! trend-following level) in units of its usual spread, so on a noisy series a fall to a
//! level not seen in weeks — a road's traffic speed dropping to a crawl — is no larger
//! than the noise around that baseline, and a second incident like a first is no larger
//! than the record the ensemble remembers. Here the
//! judgement is against the raw values of the whole window: leaving its range by a few
//! hundredths of its width is news.
//!
//! A drift slow enough that each point is only a hair beyond the one before moves the
//! range with it and scores little at each step: this member catches arrivals at a new
//! level, not trends (the capacity forecast judges those).
//!
//! Measured on NAB (docs/research/nab.md, "Extremes of the last weeks"): of the breaches beyond 0.05
//! widths (the first of each day), 47 fall in labelled anomaly windows and 9 outside,
//! and seven windows no other member reached are among them.
//!
//! Its range is what the member has seen. `vigil detect` on a CSV sees the whole file; a
//! scheduled detector keeps its state in memory between runs and learns from the history
//! its first run loads: six hours unless the detector says `history: 8w`. With less, the
//! member is silent for a week after a start and its range spans the weeks since.
//!
//! The window is a duration, not a count of points: eight weeks are eight weeks whether
//! the data comes every minute or with gaps of days. Its minimum and maximum are kept per
//! block of time (a 256th of the window) in two monotonic queues: O(1) amortised per
//! point and at most 257 entries each, whatever the sampling rate.

use serde::{Deserialize, Serialize};

use super::breach::{StepResolution, widths_outside};
use super::window::{BlockExtremes, ScaleFloors};
use super::{
    AnomalyMethod, ModelConfigError, Reason, Score, require, require_floors, require_positive,
    z_to_unit,
};
use vigil_core::duration::Duration;

/// Parameters of [`Extreme`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtremeConfig {
    /// How far back the lowest and highest values are remembered (e.g. `8w`).
    pub window: Duration,
    /// History needed before scoring: until then the range is still being learnt.
    pub warmup: Duration,
    /// Breach, in widths of the range, that scores 0.5.
    pub half: f64,
    /// Multiple of the data's resolution (its smallest step between consecutive values
    /// so far) the range's width never goes below: on a count, how many steps of one a
    /// range is at least as wide as.
    pub resolution_share: f64,
}

impl Default for ExtremeConfig {
    /// Measured on NAB's 58 files (docs/research/nab.md, "Extremes of the last weeks"): eight weeks
    /// against four and twelve, a week's warm-up against three days and two weeks. The
    /// half sits mid-plateau: 0.03–0.05 widths score within a point of each other, and
    /// from 0.055 windows whose breach is 0.05–0.06 widths fall under NAB's threshold.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(8 * 7 * 86_400),
            warmup: Duration::from_secs(7 * 86_400),
            half: 0.04,
            // One more than the most in weeks is no news on a count whose range is
            // narrower than 50 (a 4 where 3 was the most scores 0.2); two more score 0.5.
            // (No effect on NAB's scores.)
            resolution_share: 50.0,
        }
    }
}

/// Blocks of time the window is cut into.
const BLOCKS: i64 = 256;

/// Longest window: a block index must stay far from overflow for any timestamp.
const MAX_WINDOW_SECS: u64 = 100 * 365 * 86_400;

/// Sliding minimum and maximum over blocks of time: the window is the last `BLOCKS`
/// blocks plus the one filling, at most one entry per block in each queue.
#[derive(Debug, Clone)]
struct TimedExtremes {
    block_secs: i64,
    blocks: BlockExtremes,
}

impl TimedExtremes {
    fn new(window_secs: i64) -> Self {
        Self {
            block_secs: (window_secs / BLOCKS).max(1),
            blocks: BlockExtremes::with_capacity(BLOCKS as usize + 1),
        }
    }

    fn block(&self, t: i64) -> i64 {
        t.div_euclid(self.block_secs)
    }

    /// Drops the blocks that ended before the window reaching back from `t`.
    fn evict(&mut self, t: i64) {
        self.blocks.evict(self.block(t).saturating_sub(BLOCKS));
    }

    fn min_max(&self) -> Option<(f64, f64)> {
        self.blocks.min_max()
    }

    /// Takes `x` at `t`; `t` never goes back (the caller's clock only moves forward).
    fn push(&mut self, t: i64, x: f64) {
        self.blocks.push(self.block(t), x, x);
        self.evict(t);
    }

    fn state_bytes(&self) -> usize {
        self.blocks.state_bytes()
    }
}

/// Values beyond the lowest or highest of the last weeks.
#[derive(Debug, Clone)]
pub struct Extreme {
    cfg: ExtremeConfig,
    extremes: TimedExtremes,
    /// Time of the first point learnt, and of the latest (the clock never goes back).
    first: Option<i64>,
    now: i64,
    resolution: StepResolution,
}

impl Extreme {
    pub fn new(cfg: ExtremeConfig) -> Result<Self, ModelConfigError> {
        let window = cfg.window.as_std().as_secs();
        require(
            (1..=MAX_WINDOW_SECS).contains(&window),
            "window",
            "must be between 1s and 100 years (e.g. `8w`)",
        )?;
        require(
            cfg.warmup.as_std().as_secs() <= window,
            "warmup",
            "must not be longer than the window",
        )?;
        require_positive(cfg.half, "half")?;
        // The same resolution floor as the windowed methods' (no spread floor here).
        require_floors(ScaleFloors {
            spread_share: 0.0,
            resolution_share: cfg.resolution_share,
        })?;
        Ok(Self {
            extremes: TimedExtremes::new(window as i64),
            first: None,
            now: i64::MIN,
            resolution: StepResolution::new(),
            cfg,
        })
    }
}

impl AnomalyMethod for Extreme {
    fn name(&self) -> &'static str {
        "extreme"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        // Out-of-order timestamps count as "now": the window's blocks only move forward.
        self.now = self.now.max(t);
        let first = *self.first.get_or_insert(self.now);
        self.extremes.evict(self.now);
        let score = match self.extremes.min_max() {
            Some((low, high))
                if self.now.saturating_sub(first) as u64 >= self.cfg.warmup.as_std().as_secs() =>
            {
                let min_width = self.resolution.times(self.cfg.resolution_share);
                let edge = if x > high { high } else { low };
                let widths = widths_outside(x, low, high, min_width, edge);
                Score {
                    t,
                    value: z_to_unit(widths, self.cfg.half),
                    observed: x,
                    expected: None,
                    band: Some((low, high)),
                    deviation: widths,
                    method: self.name(),
                    reason: Reason::Extreme,
                }
            }
            _ => Score::quiet(t, x, self.name(), Reason::Warmup),
        };
        // Learn after judging: the point must not excuse itself.
        self.resolution.learn(x);
        self.extremes.push(self.now, x);
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.extremes.state_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::noise;

    const DAY: i64 = 86_400;

    /// Five-minute points from `xs`.
    fn scores(cfg: ExtremeConfig, xs: &[f64]) -> Vec<Score> {
        let mut e = Extreme::new(cfg).expect("valid");
        xs.iter()
            .enumerate()
            .map(|(i, &x)| e.update(i as i64 * 300, x))
            .collect()
    }

    /// A daily cycle between 40 and 60 with noise, for `days`.
    fn daily(days: i64, seed: u64) -> Vec<f64> {
        let mut u = noise(seed);
        (0..days * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                50.0 + 10.0 * phase.sin() + 2.0 * (u() - 0.5)
            })
            .collect()
    }

    #[test]
    fn a_value_beyond_the_lowest_of_the_weeks_scores_by_how_far() {
        let xs = daily(14, 5);
        let normal_max = scores(ExtremeConfig::default(), &xs)
            .iter()
            .map(|s| s.value)
            .fold(0.0, f64::max);
        assert!(
            normal_max < 0.5,
            "two weeks of the usual cycle scored {normal_max}"
        );
        let low = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let width = high - low;
        let judged = |x: f64| {
            let mut ys = xs.clone();
            ys.push(x);
            *scores(ExtremeConfig::default(), &ys)
                .last()
                .expect("scored")
        };
        // At the low, and a hair below it: nothing, and little.
        assert_eq!(judged(low).value, 0.0);
        assert!(judged(low - 0.01 * width).value < 0.1);
        // A tenth of the range's width below it: news, explained.
        let fall = judged(low - 0.1 * width);
        assert!(fall.value > 0.8, "{fall:?}");
        assert!((fall.deviation + 0.1).abs() < 1e-9, "{fall:?}");
        assert_eq!(fall.band, Some((low, high)));
        assert!(fall.explanation().contains("below the lowest"), "{fall:?}");
        // The same above the high.
        assert!(judged(high + 0.1 * width).value > 0.8);
    }

    #[test]
    fn nothing_scores_during_the_warmup() {
        let mut xs = daily(6, 1);
        xs.push(1000.0);
        let s = scores(ExtremeConfig::default(), &xs);
        assert!(s.iter().all(|s| s.value == 0.0));
        assert_eq!(s.last().map(|s| s.reason), Some(Reason::Warmup));
    }

    #[test]
    fn the_range_forgets_what_left_the_window() {
        let cfg = ExtremeConfig {
            window: Duration::from_secs(7 * DAY as u64),
            warmup: Duration::from_secs(DAY as u64),
            ..ExtremeConfig::default()
        };
        // A spike to 100 on day 1, then two weeks of the cycle, then 75.
        let mut xs = daily(15, 2);
        xs[300] = 100.0;
        xs.push(75.0);
        let last = *scores(cfg.clone(), &xs).last().expect("scored");
        // The spike is gone from the week: 75 is beyond 60 by 15 / 20 widths.
        assert!(last.value > 0.99, "{last:?}");
        let (low, high) = last.band.expect("a range");
        assert!(low > 35.0 && high < 62.0, "{last:?}");
        // Within the window the spike still bounds the range.
        xs.truncate(5 * 288);
        xs.push(75.0);
        let inside = *scores(cfg, &xs).last().expect("scored");
        assert_eq!(inside.value, 0.0, "{inside:?}");
    }

    #[test]
    fn extremes_match_a_scan_of_the_window() {
        // Irregular steps (1 s to 2 days) and clock going back now and then: against a
        // scan of every point whose block is still in the window.
        let window = 10 * DAY;
        let mut e = TimedExtremes::new(window);
        let mut u = noise(9);
        let (mut t, mut now) = (0i64, i64::MIN);
        let mut kept: Vec<(i64, f64)> = Vec::new();
        for i in 0..20_000 {
            t += match i % 97 {
                0 => -3_600,
                1 => 2 * DAY,
                _ => 1 + (u() * 600.0) as i64,
            };
            now = now.max(t);
            let x = u() * 100.0 + (i % 500) as f64;
            e.push(now, x);
            kept.push((e.block(now), x));
            let oldest = e.block(now) - BLOCKS;
            kept.retain(|&(b, _)| b >= oldest);
            let scan = (
                kept.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
                kept.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            );
            assert_eq!(e.min_max(), Some(scan), "point {i}");
            let (lows, highs) = e.blocks.lens();
            assert!(lows <= BLOCKS as usize + 1);
            assert!(highs <= BLOCKS as usize + 1);
        }
    }

    #[test]
    fn a_counter_that_rarely_moves_needs_more_than_one_step() {
        // Zero for two weeks bar one error: the range is one step wide, floored at 50
        // steps. One error is inside it, two are one step out (0.02 widths), ten are
        // news.
        let mut xs = vec![0.0; 14 * 288];
        xs[10] = 1.0;
        let last = |x: f64| {
            let mut ys = xs.clone();
            ys.push(x);
            *scores(ExtremeConfig::default(), &ys)
                .last()
                .expect("scored")
        };
        assert_eq!(last(1.0).value, 0.0);
        let two = last(2.0);
        assert!(two.value > 0.0 && two.value < 0.5, "{two:?}");
        let ten = last(10.0);
        assert!(ten.value > 0.9, "{ten:?}");
    }

    #[test]
    fn invalid_parameters_are_named() {
        for (cfg, field) in [
            (
                ExtremeConfig {
                    window: Duration::from_secs(0),
                    ..ExtremeConfig::default()
                },
                "window",
            ),
            (
                ExtremeConfig {
                    warmup: Duration::from_secs(100 * DAY as u64),
                    ..ExtremeConfig::default()
                },
                "warmup",
            ),
            (
                ExtremeConfig {
                    half: f64::NAN,
                    ..ExtremeConfig::default()
                },
                "half",
            ),
        ] {
            match Extreme::new(cfg) {
                Err(ModelConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
