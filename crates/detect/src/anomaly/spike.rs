//! Spikes: a step from the previous point much larger than the usual step.
//!
//! Judging steps instead of levels makes it blind to slow drifts and level plateaus but
//! quick on sudden jumps, which is what a spike is.

use serde::{Deserialize, Serialize};

use super::window::SortedWindow;
use super::{
    AnomalyMethod, ModelConfigError, Reason, Score, require_positive, require_window, z_to_unit,
};

/// Parameters of [`Spike`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    /// Steps kept to learn the usual step size.
    pub window: usize,
    pub min_points: usize,
    /// Share of the 5–95% spread the scale never goes below (0: MAD only).
    pub spread_share: f64,
    /// Multiple of the data's resolution (its smallest step between values, 1 for
    /// counts) the scale never goes below (0: off).
    pub resolution_share: f64,
    /// The step z that scores 0.5.
    pub z_half: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            window: 288,
            min_points: 30,
            spread_share: 0.0,
            resolution_share: 0.0,
            z_half: 6.0,
        }
    }
}

/// Step-size outliers against a median/MAD of recent steps.
#[derive(Debug, Clone)]
pub struct Spike {
    cfg: SpikeConfig,
    steps: SortedWindow,
    previous: Option<f64>,
}

impl Spike {
    pub fn new(cfg: SpikeConfig) -> Result<Self, ModelConfigError> {
        require_window(cfg.window, cfg.min_points, cfg.floors())?;
        require_positive(cfg.z_half, "z_half")?;
        Ok(Self {
            steps: SortedWindow::new(cfg.window),
            previous: None,
            cfg,
        })
    }
}

impl Spike {
    /// Takes `x` (its step from the previous point) without judging it: what
    /// [`AnomalyMethod::update`] does to the state, for a caller that would weigh the
    /// score 0 (the ensemble's season gate).
    pub(crate) fn learn(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if let Some(prev) = self.previous.replace(x) {
            let step = x - prev;
            if step.is_finite() {
                // Sorted again by the next `update` (see `RobustDeviation::learn`).
                self.steps.push_unsorted(step);
            }
        }
    }
}

impl AnomalyMethod for Spike {
    fn name(&self) -> &'static str {
        "spike"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        let Some(prev) = self.previous.replace(x) else {
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        };
        let step = x - prev;
        self.steps.sort_again();
        let score = match (self.steps.len() >= self.cfg.min_points, self.steps.median()) {
            (true, Some(typical)) => {
                let scale = self.steps.robust_scale(typical, prev, self.cfg.floors());
                let z = (step - typical) / scale;
                let expected = prev + typical;
                Score {
                    t,
                    value: z_to_unit(z, self.cfg.z_half),
                    observed: x,
                    expected: Some(expected),
                    band: Some((expected - 3.0 * scale, expected + 3.0 * scale)),
                    deviation: z,
                    method: self.name(),
                    reason: Reason::Spike,
                }
            }
            _ => Score::quiet(t, x, self.name(), Reason::Warmup),
        };
        if step.is_finite() {
            self.steps.push(step);
        }
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<SortedWindow>() + self.steps.state_bytes()
    }
}
