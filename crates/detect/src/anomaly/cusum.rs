//! Level shifts and gradual degradation: a two-sided CUSUM on robust z-scores.
//!
//! Each point's deviation from the baseline median (clipped, so one spike cannot fake a
//! shift) is accumulated; a sustained shift or a steady drift grows the sum until it crosses
//! `threshold`. After an alarm the baseline is relearnt from the new level, so one change
//! raises one alarm instead of a stream of them.

use serde::{Deserialize, Serialize};

use super::window::SortedWindow;
use super::{AnomalyMethod, ModelConfigError, Reason, Score, require, require_window, z_to_unit};

/// Parameters of [`Cusum`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CusumConfig {
    /// Baseline window (points).
    pub window: usize,
    pub min_points: usize,
    /// Share of the 5–95% spread the scale never goes below (0: MAD only).
    pub spread_share: f64,
    /// Multiple of the data's resolution (its smallest step between values, 1 for
    /// counts) the scale never goes below (0: off).
    pub resolution_share: f64,
    /// Allowance k: deviations below k standard deviations do not accumulate.
    pub drift: f64,
    /// Decision threshold h on the cumulative sum; reaching it scores 0.5.
    pub threshold: f64,
    /// Per-point deviations are clipped to ±clip before summing.
    pub clip: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        Self {
            window: 288,
            min_points: 30,
            spread_share: 0.0,
            resolution_share: 0.0,
            drift: 0.5,
            threshold: 8.0,
            clip: 4.0,
        }
    }
}

/// Two-sided CUSUM with a relearnt baseline after each alarm.
#[derive(Debug, Clone)]
pub struct Cusum {
    cfg: CusumConfig,
    baseline: SortedWindow,
    upper: f64,
    lower: f64,
}

impl Cusum {
    pub fn new(cfg: CusumConfig) -> Result<Self, ModelConfigError> {
        require_window(cfg.window, cfg.min_points, cfg.floors())?;
        require(
            cfg.drift.is_finite() && cfg.drift >= 0.0,
            "drift",
            "must be a non-negative number",
        )?;
        require(
            cfg.threshold.is_finite() && cfg.threshold > 0.0,
            "threshold",
            "must be a positive number",
        )?;
        require(
            cfg.clip.is_finite() && cfg.clip > 0.0,
            "clip",
            "must be a positive number",
        )?;
        Ok(Self {
            baseline: SortedWindow::new(cfg.window),
            upper: 0.0,
            lower: 0.0,
            cfg,
        })
    }
}

impl AnomalyMethod for Cusum {
    fn name(&self) -> &'static str {
        "cusum"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        let warm = self.baseline.len() >= self.cfg.min_points;
        let (Some(median), true) = (self.baseline.median(), warm) else {
            self.baseline.push(x);
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        };
        let scale = self
            .baseline
            .robust_scale(median, median, self.cfg.floors());
        let z = ((x - median) / scale).clamp(-self.cfg.clip, self.cfg.clip);
        self.upper = (self.upper + z - self.cfg.drift).max(0.0);
        self.lower = (self.lower - z - self.cfg.drift).max(0.0);
        let (sum, sign) = if self.upper >= self.lower {
            (self.upper, 1.0)
        } else {
            (self.lower, -1.0)
        };
        let ratio = sum / self.cfg.threshold;
        let score = Score {
            t,
            value: z_to_unit(ratio, 1.0),
            observed: x,
            expected: Some(median),
            band: Some((median - 3.0 * scale, median + 3.0 * scale)),
            deviation: sign * ratio,
            method: self.name(),
            reason: Reason::LevelShift,
        };
        if ratio >= 1.0 {
            // A change was found: forget the old level and learn the new one.
            self.baseline = SortedWindow::new(self.cfg.window);
            self.upper = 0.0;
            self.lower = 0.0;
        }
        self.baseline.push(x);
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<SortedWindow>()
            + self.baseline.state_bytes()
    }
}
