//! Range breach: a value beyond everything the recent window held, measured in widths of
//! that range, around a baseline that follows the trend.
//!
//! The other members judge a deviation against a typical spread (a MAD) and the ensemble
//! calibrates it against the series' own record, which is right for ranking subtle
//! anomalies and wrong for the ones that page someone: a steady gauge dropping to zero
//! is 20 noise deviations, yet on a log scale next to a week's record it scores like a
//! blip. A breach asks the operator's question instead: is this value outside anything
//! seen in the last days, and by how much? Outside by one width of that range is as far
//! again as the whole normal range spans, which noise essentially never does.
//!
//! The baseline is Holt's linear smoothing (a level and a trend), and the range is that
//! of its one-step-ahead residuals, so a disk filling steadily has a narrow range around
//! its trend, not one as wide as its growth. The window's minimum and maximum are kept
//! per block of points in two monotonic queues: O(1) amortised per point, and at most
//! 513 blocks' extremes in state whatever the window's length.

use serde::{Deserialize, Serialize};

use super::window::{BlockExtremes, ScaleFloors};
use super::{
    AnomalyMethod, ModelConfigError, Reason, Score, require, require_positive, require_window,
    z_to_unit,
};

/// Parameters of [`Breach`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreachConfig {
    /// Points whose residual range a value is judged against (kept in 256 blocks, so
    /// the range spans up to 1/256 more).
    pub window: usize,
    /// Points needed before scoring.
    pub min_points: usize,
    /// Time constant, in points, of the smoothed level (its smoothing factor is 1/this).
    pub level_points: f64,
    /// Time constant, in points, of the smoothed trend.
    pub trend_points: f64,
    /// Breach, in widths of the range, that scores 0.5.
    pub half: f64,
    /// Multiple of the data's resolution (its smallest step between consecutive values
    /// so far, 1 for counts) the range's width never goes below: a counter at 0 for days
    /// does not make its next 1 a breach of infinite widths. (A series flat since its
    /// first point has shown no resolution; any departure from it is a breach, as for
    /// the other methods.)
    pub resolution_share: f64,
}

impl Default for BreachConfig {
    /// Measured (docs/research/nab.md): on NAB's files, all shorter than the window, breaches were the
    /// first detection of 20 windows at the cost of 1 false positive; on generated
    /// critical anomalies (`tests/detect_targets.rs`) they lifted the ensemble from 84%
    /// to 98–100% detected within 5 minutes, with no false positive of their own.
    fn default() -> Self {
        Self {
            // Four weeks of 5-minute points: a weekly cycle's range is in it twice.
            window: 8064,
            // A day.
            min_points: 288,
            // Twenty minutes: the level follows a shift within a few points, so a
            // shift breaches once, at its onset.
            level_points: 4.0,
            // A day.
            trend_points: 288.0,
            half: 0.3,
            // One step of the resolution beyond the range is 1/4 width: a counter that
            // has counted before, then sat at 0 for weeks, scores 0.41 on its next 1,
            // 0.74 on a 2 and 0.86 on a 3.
            resolution_share: 4.0,
        }
    }
}

/// Largest window, in points.
const MAX_WINDOW: usize = 10_000_000;

/// Blocks a window is cut into when it is built; a rescaled window keeps its block length
/// while it holds between half and twice as many (so the state is at most 2 × 256 + 1
/// minima and maxima, whatever the window's length).
const BLOCKS: usize = 256;

/// Sliding minimum and maximum over blocks of points: the window is the last `blocks`
/// full blocks plus the one filling, so between `window` and `window + block` points.
/// Completed blocks' extremes sit in [`BlockExtremes`]' monotonic queues: O(1)
/// amortised per point, at most `blocks` + 1 entries each.
#[derive(Debug, Clone)]
struct Extremes {
    /// Points per block, and full blocks kept.
    block: usize,
    blocks: usize,
    /// Minimum, maximum and number of points of the block filling.
    filling: (f64, f64, usize),
    /// The completed blocks' minima and maxima.
    completed: BlockExtremes,
    /// Index of the block filling.
    index: u64,
    /// Points seen (saturating at the window).
    seen: usize,
}

impl Extremes {
    fn new(window: usize) -> Self {
        let block = window.div_ceil(BLOCKS).max(1);
        Self {
            block,
            blocks: window.div_ceil(block),
            filling: (f64::INFINITY, f64::NEG_INFINITY, 0),
            completed: BlockExtremes::with_capacity(BLOCKS + 1),
            index: 0,
            seen: 0,
        }
    }

    /// Points in the window.
    fn len(&self) -> usize {
        self.seen
    }

    /// Makes the window about `window` points long. The history stays when the block
    /// length can: the same length, or `window` in BLOCKS/2 to 2 × BLOCKS of them (a
    /// sampling interval that jitters moves the window by a point or two, and must not
    /// throw weeks away). Only a change of more than twofold starts the range again.
    fn resize(&mut self, window: usize) {
        let fresh = Extremes::new(window);
        let blocks = window.div_ceil(self.block);
        if fresh.block != self.block && !(BLOCKS / 2..=2 * BLOCKS).contains(&blocks) {
            *self = fresh;
            return;
        }
        self.blocks = blocks;
        self.seen = self.seen.min(self.block * self.blocks);
        self.evict();
    }

    /// Drops the blocks that left the window.
    fn evict(&mut self) {
        let oldest = self.index.saturating_sub(self.blocks as u64);
        self.completed.evict(oldest as i64);
    }

    fn min_max(&self) -> Option<(f64, f64)> {
        let (low, high, n) = self.filling;
        match self.completed.min_max() {
            Some((l, h)) => Some((low.min(l), high.max(h))),
            None => (n > 0).then_some((low, high)),
        }
    }

    fn push(&mut self, x: f64) {
        let (low, high, n) = &mut self.filling;
        *low = low.min(x);
        *high = high.max(x);
        *n += 1;
        self.seen = (self.seen + 1).min(self.block * self.blocks);
        if *n < self.block {
            return;
        }
        let (low, high, _) =
            std::mem::replace(&mut self.filling, (f64::INFINITY, f64::NEG_INFINITY, 0));
        // A block index counts blocks of points: far from i64's end.
        self.completed.push(self.index as i64, low, high);
        self.index += 1;
        self.evict();
    }

    fn state_bytes(&self) -> usize {
        self.completed.state_bytes()
    }
}

/// The data's resolution as the range members learn it: the smallest positive step
/// between consecutive values so far (1 for counts). It never grows: a resolution seen
/// once is the data's.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepResolution {
    previous: Option<f64>,
    smallest: f64,
}

impl StepResolution {
    pub(super) fn new() -> Self {
        Self {
            previous: None,
            smallest: f64::INFINITY,
        }
    }

    /// Learns the step to `x`. Called after `x` is judged: a flat line's first step must
    /// not set the resolution that excuses it.
    pub(super) fn learn(&mut self, x: f64) {
        if let Some(previous) = self.previous.replace(x) {
            let step = (x - previous).abs();
            if step > 0.0 && step < self.smallest {
                self.smallest = step;
            }
        }
    }

    /// `share` steps of the resolution; 0 before the data has moved.
    pub(super) fn times(&self, share: f64) -> f64 {
        if self.smallest.is_finite() {
            share * self.smallest
        } else {
            0.0
        }
    }
}

/// How far `x` lies outside `[low, high]`, in widths of that range (0 inside, negative
/// below). The width is at least `min_width`, and never 0 (at least a tiny share of
/// `level`, the value's scale), so a flat range breached scores high rather than
/// dividing by 0.
pub(super) fn widths_outside(x: f64, low: f64, high: f64, min_width: f64, level: f64) -> f64 {
    let width = (high - low).max(min_width).max(super::scale_floor(level));
    if x > high {
        (x - high) / width
    } else if x < low {
        -(low - x) / width
    } else {
        0.0
    }
}

/// Values beyond the range of recent residuals around a trend-following baseline.
#[derive(Debug, Clone)]
pub struct Breach {
    cfg: BreachConfig,
    residuals: Extremes,
    min_points: usize,
    /// Smoothing factors of the level and the trend.
    alpha: f64,
    beta: f64,
    /// Holt's level and trend; `None` before the first point.
    holt: Option<(f64, f64)>,
    resolution: StepResolution,
}

impl Breach {
    pub fn new(cfg: BreachConfig) -> Result<Self, ModelConfigError> {
        // The windowed methods' checks (window, min_points, resolution_share), and a
        // bound of its own: the block length grows with the window.
        require_window(
            cfg.window,
            cfg.min_points,
            ScaleFloors {
                spread_share: 0.0,
                resolution_share: cfg.resolution_share,
            },
        )?;
        require(
            cfg.window <= MAX_WINDOW,
            "window",
            "must be at most 10000000 points",
        )?;
        for (v, field) in [
            (cfg.level_points, "level_points"),
            (cfg.trend_points, "trend_points"),
        ] {
            require(v.is_finite() && v >= 1.0, field, "must be at least 1 point")?;
        }
        require_positive(cfg.half, "half")?;
        let mut breach = Self {
            residuals: Extremes::new(cfg.window),
            min_points: cfg.min_points,
            alpha: 0.0,
            beta: 0.0,
            holt: None,
            resolution: StepResolution::new(),
            cfg,
        };
        breach.rescale(1.0);
        Ok(breach)
    }

    /// Counts the configured point numbers `ratio` times as many points (the ensemble's
    /// `reference_interval`: a window of four weeks whatever the sampling interval).
    pub(crate) fn rescale(&mut self, ratio: f64) {
        let points = |p: f64| (p * ratio).round().max(1.0);
        let window = points(self.cfg.window as f64).min(MAX_WINDOW as f64) as usize;
        self.residuals.resize(window);
        self.min_points = (points(self.cfg.min_points as f64) as usize).min(window);
        self.alpha = 1.0 / points(self.cfg.level_points);
        self.beta = 1.0 / points(self.cfg.trend_points);
    }
}

impl AnomalyMethod for Breach {
    fn name(&self) -> &'static str {
        "breach"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        let Some((level, trend)) = self.holt else {
            self.holt = Some((x, 0.0));
            self.resolution.learn(x);
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        };
        let forecast = level + trend;
        let residual = x - forecast;
        let score = match self.residuals.min_max() {
            Some((low, high)) if self.residuals.len() >= self.min_points => {
                let min_width = self.resolution.times(self.cfg.resolution_share);
                let widths = widths_outside(residual, low, high, min_width, forecast);
                Score {
                    t,
                    value: z_to_unit(widths, self.cfg.half),
                    observed: x,
                    expected: Some(forecast),
                    band: Some((forecast + low, forecast + high)),
                    deviation: widths,
                    method: self.name(),
                    reason: Reason::Breach,
                }
            }
            _ => Score::quiet(t, x, self.name(), Reason::Warmup),
        };
        // Learn after judging: the point must not explain itself.
        self.resolution.learn(x);
        if residual.is_finite() {
            self.residuals.push(residual);
            let new_level = forecast + self.alpha * residual;
            let new_trend = trend + self.beta * (new_level - level - trend);
            if new_level.is_finite() && new_trend.is_finite() {
                self.holt = Some((new_level, new_trend));
            }
        }
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.residuals.state_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::noise;

    fn scores(cfg: BreachConfig, xs: impl IntoIterator<Item = f64>) -> Vec<Score> {
        let mut b = Breach::new(cfg).expect("valid");
        xs.into_iter()
            .enumerate()
            .map(|(i, x)| b.update(i as i64 * 300, x))
            .collect()
    }

    #[test]
    fn extremes_follow_the_window() {
        let mut e = Extremes::new(3);
        assert_eq!(e.min_max(), None);
        for x in [5.0, 1.0, 4.0, 3.0, 2.0] {
            e.push(x);
        }
        // Blocks of one point: the window holds 4, 3, 2.
        assert_eq!(e.min_max(), Some((2.0, 4.0)));
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn extremes_in_blocks_match_a_scan_and_stay_bounded() {
        // 1000 points in blocks of 4: the window is the last 250 full blocks plus the
        // one filling.
        let mut e = Extremes::new(1000);
        assert_eq!((e.block, e.blocks), (4, 250));
        let mut u = noise(11);
        let xs: Vec<f64> = (0..5000).map(|i| u() + (i % 700) as f64 * 0.01).collect();
        for (i, &x) in xs.iter().enumerate() {
            e.push(x);
            let filling = (i + 1) % 4;
            let from = (i + 1).saturating_sub(1000 + filling);
            let kept = &xs[from..=i];
            let scan = (
                kept.iter().copied().fold(f64::INFINITY, f64::min),
                kept.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            assert_eq!(e.min_max(), Some(scan), "point {i}");
        }
        let (lows, highs) = e.completed.lens();
        assert!(lows <= 251 && highs <= 251);
    }

    proptest::proptest! {
        /// Against a scan of the points the window holds (the last `blocks` full blocks
        /// and the one filling, each point remembered with its block), through pushes and
        /// resizes at random: the same extremes, and the state in bounds.
        #[test]
        fn extremes_match_a_scan_through_resizes(
            window in 3usize..3000,
            steps in proptest::collection::vec((-1e6f64..1e6, 0u8..40, 3usize..6000), 1..1500),
        ) {
            let mut e = Extremes::new(window);
            // (block index, value) of every point since the range last started.
            let mut kept: Vec<(u64, f64)> = Vec::new();
            for (x, resize, new_window) in steps {
                if resize == 0 {
                    let block = e.block;
                    e.resize(new_window);
                    if e.block != block {
                        // A new block length: the range started again.
                        kept.clear();
                    }
                }
                kept.push((e.index, x));
                e.push(x);
                // What left the window is gone, also when a resize grows it again.
                let oldest = e.index.saturating_sub(e.blocks as u64);
                kept.retain(|(b, _)| *b >= oldest);
                let held: Vec<f64> = kept.iter().map(|(_, v)| *v).collect();
                let scan = (
                    held.iter().copied().fold(f64::INFINITY, f64::min),
                    held.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                proptest::prop_assert_eq!(e.min_max(), Some(scan));
                let (lows, highs) = e.completed.lens();
                proptest::prop_assert!(lows <= 2 * BLOCKS + 1);
                proptest::prop_assert!(highs <= 2 * BLOCKS + 1);
            }
        }
    }

    #[test]
    fn an_outage_of_a_steady_gauge_breaches_by_widths() {
        let mut u = noise(7);
        let mut xs: Vec<f64> = (0..1000).map(|_| 40.0 + 4.0 * (u() - 0.5)).collect();
        xs.push(0.0);
        let s = scores(BreachConfig::default(), xs);
        let normal_max = s[300..1000].iter().map(|s| s.value).fold(0.0, f64::max);
        let outage = s[1000];
        assert!(normal_max < 0.2, "noise scored {normal_max}");
        assert!(outage.value > 0.8, "{outage:?}");
        assert!(outage.deviation < -2.0, "{outage:?}");
        assert!(
            outage.explanation().contains("below"),
            "{}",
            outage.explanation()
        );
    }

    #[test]
    fn the_baseline_follows_a_trend() {
        let mut u = noise(3);
        // Growing 0.1 a point with noise ±0.5: the raw range of these points is 100 wide,
        // the residual range about 1.
        let mut xs: Vec<f64> = (0..1000).map(|i| i as f64 * 0.1 + (u() - 0.5)).collect();
        let normal_max = scores(BreachConfig::default(), xs.clone())[300..]
            .iter()
            .map(|s| s.value)
            .fold(0.0, f64::max);
        assert!(normal_max < 0.2, "noise scored {normal_max}");
        xs.push(1000.0 * 0.1 + 3.0);
        let shifted = *scores(BreachConfig::default(), xs).last().expect("scored");
        assert!(shifted.value > 0.5, "{shifted:?}");
    }

    #[test]
    fn one_count_beyond_a_quiet_counter_is_no_alarm() {
        // An error counter at 0 for three days (the window), bar one error a week ago
        // that taught the data's resolution, then one error: 1/4 of the floored width.
        let cfg = BreachConfig {
            window: 864,
            ..BreachConfig::default()
        };
        let mut xs = vec![0.0; 900];
        xs[10] = 1.0;
        xs.push(1.0);
        let one = *scores(cfg.clone(), xs.clone()).last().expect("scored");
        assert!(one.value < 0.5, "{one:?}");
        // Ten errors at once are news.
        *xs.last_mut().expect("a point") = 10.0;
        let ten = *scores(cfg, xs).last().expect("scored");
        assert!(ten.value > 0.9, "{ten:?}");
    }

    #[test]
    fn a_jittering_interval_keeps_the_range() {
        let mut b = Breach::new(BreachConfig::default()).expect("valid");
        for i in 0..3000 {
            b.update(i * 300, (i % 10) as f64);
        }
        let range = b.residuals.min_max();
        let seen = b.residuals.len();
        // The ensemble rescales as the median interval wobbles around 5 minutes.
        for ratio in [1.004, 0.996, 1.0] {
            b.rescale(ratio);
            assert_eq!(b.residuals.len(), seen);
            assert_eq!(b.residuals.min_max(), range);
        }
        // A real change (hourly data becoming minutely) starts the range again.
        b.rescale(60.0);
        assert_eq!(b.residuals.len(), 0);
    }

    #[test]
    fn invalid_parameters_are_named() {
        for (cfg, field) in [
            (
                BreachConfig {
                    window: 2,
                    ..BreachConfig::default()
                },
                "window",
            ),
            (
                BreachConfig {
                    half: 0.0,
                    ..BreachConfig::default()
                },
                "half",
            ),
            (
                BreachConfig {
                    level_points: f64::NAN,
                    ..BreachConfig::default()
                },
                "level_points",
            ),
        ] {
            match Breach::new(cfg) {
                Err(ModelConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
