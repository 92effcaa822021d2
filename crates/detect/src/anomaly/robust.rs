//! Robust deviation: how far a point is from the median of the recent window, in MADs.

use serde::{Deserialize, Serialize};

use super::window::SortedWindow;
use super::{
    AnomalyMethod, ModelConfigError, Reason, Score, require, require_positive, require_window,
    z_to_unit,
};

/// Parameters of [`RobustDeviation`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RobustConfig {
    /// Points in the baseline window (bounded state: 2 floats per point).
    pub window: usize,
    /// Points needed before scoring.
    pub min_points: usize,
    /// Share of the 5–95% spread the scale never goes below (0: MAD only).
    pub spread_share: f64,
    /// Multiple of the data's resolution (its smallest step between values, 1 for
    /// counts) the scale never goes below (0: off).
    pub resolution_share: f64,
    /// The robust z that scores 0.5.
    pub z_half: f64,
    /// Width of the reported normal band, in robust standard deviations.
    pub band_z: f64,
}

impl Default for RobustConfig {
    fn default() -> Self {
        Self {
            window: 288,
            min_points: 30,
            spread_share: 0.0,
            resolution_share: 0.0,
            z_half: 4.0,
            band_z: 3.0,
        }
    }
}

/// Median/MAD deviation over a bounded sliding window.
#[derive(Debug, Clone)]
pub struct RobustDeviation {
    cfg: RobustConfig,
    window: SortedWindow,
}

impl RobustDeviation {
    pub fn new(cfg: RobustConfig) -> Result<Self, ModelConfigError> {
        require_window(cfg.window, cfg.min_points, cfg.floors())?;
        require_positive(cfg.z_half, "z_half")?;
        require(
            cfg.band_z.is_finite() && cfg.band_z > 0.0,
            "band_z",
            "must be a positive number",
        )?;
        Ok(Self {
            window: SortedWindow::new(cfg.window),
            cfg,
        })
    }

    /// Takes `x` into the window without judging it: what [`AnomalyMethod::update`]
    /// does to the state, for a caller that would weigh the score 0 (the ensemble's
    /// season gate).
    pub(crate) fn learn(&mut self, x: f64) {
        // Nothing reads the window until the next `update`, which sorts it again: one
        // sort when the gate opens instead of a search and a `memmove` every point.
        self.window.push_unsorted(x);
    }

    /// The robust z of `x` against the current window, with the median and scale used.
    /// `None` while warming up.
    fn z_of(&self, x: f64) -> Option<(f64, f64, f64)> {
        if self.window.len() < self.cfg.min_points {
            return None;
        }
        let median = self.window.median()?;
        let scale = self.window.robust_scale(median, median, self.cfg.floors());
        Some(((x - median) / scale, median, scale))
    }
}

impl AnomalyMethod for RobustDeviation {
    fn name(&self) -> &'static str {
        "robust"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        self.window.sort_again();
        let score = match self.z_of(x) {
            None => Score::quiet(t, x, self.name(), Reason::Warmup),
            Some((z, median, scale)) => Score {
                t,
                value: z_to_unit(z, self.cfg.z_half),
                observed: x,
                expected: Some(median),
                band: Some((
                    median - self.cfg.band_z * scale,
                    median + self.cfg.band_z * scale,
                )),
                deviation: z,
                method: self.name(),
                reason: Reason::Deviation,
            },
        };
        self.window.push(x);
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<SortedWindow>()
            + self.window.state_bytes()
    }
}
