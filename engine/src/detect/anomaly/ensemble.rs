//! The ensemble: runs the single-series methods side by side and combines their scores.
//!
//! The combined score is the largest weighted method score, then sharpened in two ways that
//! matter to whoever gets paged (and to NAB's scoring, which rewards the earliest detection
//! per anomaly and charges every false alarm):
//! - **refractory period**: within `refractory` points after a score, a new score is only
//!   let through when it beats the largest recent one; one incident gives one alarm, not a
//!   burst;
//! - the explanation is the one of the method that fired most.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{
    AnomalyMethod, Cusum, CusumConfig, ModelConfigError, Reason, RobustConfig, RobustDeviation, Score, Seasonal,
    SeasonalConfig, Spike, SpikeConfig, require,
};

/// How much each method counts in the ensemble (0 switches it off).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodWeights {
    pub robust: f64,
    pub seasonal: f64,
    pub cusum: f64,
    pub spike: f64,
}

impl Default for MethodWeights {
    fn default() -> Self {
        Self { robust: 1.0, seasonal: 1.0, cusum: 1.0, spike: 1.0 }
    }
}

/// Parameters of [`Ensemble`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    pub robust: RobustConfig,
    pub seasonal: SeasonalConfig,
    pub cusum: CusumConfig,
    pub spike: SpikeConfig,
    pub weights: MethodWeights,
    /// Points after a score during which only a larger score gets through.
    pub refractory: usize,
    /// Factor applied to scores that do not beat the recent maximum.
    pub suppressed_factor: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        Self {
            robust: RobustConfig::default(),
            seasonal: SeasonalConfig::default(),
            cusum: CusumConfig::default(),
            spike: SpikeConfig::default(),
            weights: MethodWeights::default(),
            refractory: 100,
            suppressed_factor: 0.0,
        }
    }
}

/// Several methods on one series, combined.
#[derive(Debug)]
pub struct Ensemble {
    cfg: EnsembleConfig,
    robust: RobustDeviation,
    seasonal: Seasonal,
    cusum: Cusum,
    spike: Spike,
    /// Sliding maximum of recent combined scores: (point index, score), decreasing scores.
    recent: VecDeque<(u64, f64)>,
    index: u64,
}

impl Ensemble {
    pub fn new(cfg: EnsembleConfig) -> Result<Self, ModelConfigError> {
        let w = &cfg.weights;
        for (field, v) in [
            ("weights.robust", w.robust),
            ("weights.seasonal", w.seasonal),
            ("weights.cusum", w.cusum),
            ("weights.spike", w.spike),
        ] {
            require(v.is_finite() && (0.0..=1.0).contains(&v), field, "must be in 0..=1")?;
        }
        require(
            cfg.suppressed_factor.is_finite() && (0.0..=1.0).contains(&cfg.suppressed_factor),
            "suppressed_factor",
            "must be in 0..=1",
        )?;
        require(cfg.refractory <= 100_000, "refractory", "must be at most 100000 points")?;
        Ok(Self {
            robust: RobustDeviation::new(cfg.robust.clone())?,
            seasonal: Seasonal::new(cfg.seasonal.clone())?,
            cusum: Cusum::new(cfg.cusum.clone())?,
            spike: Spike::new(cfg.spike.clone())?,
            recent: VecDeque::with_capacity(cfg.refractory + 1),
            index: 0,
            cfg,
        })
    }

    /// Applies the refractory rule to a combined score.
    fn refract(&mut self, raw: f64) -> f64 {
        let i = self.index;
        self.index += 1;
        if self.cfg.refractory == 0 {
            return raw;
        }
        let horizon = self.cfg.refractory as u64;
        while self.recent.front().is_some_and(|(at, _)| at + horizon < i) {
            self.recent.pop_front();
        }
        let recent_max = self.recent.front().map_or(0.0, |(_, v)| *v);
        while self.recent.back().is_some_and(|(_, v)| *v <= raw) {
            self.recent.pop_back();
        }
        self.recent.push_back((i, raw));
        if raw > recent_max { raw } else { raw * self.cfg.suppressed_factor }
    }
}

impl AnomalyMethod for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        let w = &self.cfg.weights;
        let (wr, ws, wc, wp) = (w.robust, w.seasonal, w.cusum, w.spike);
        let scores = [
            (wr, self.robust.update(t, x)),
            (ws, self.seasonal.update(t, x)),
            (wc, self.cusum.update(t, x)),
            (wp, self.spike.update(t, x)),
        ];
        let mut best = scores[0].1;
        let mut best_v = f64::NEG_INFINITY;
        for (weight, s) in scores {
            let v = weight * s.value;
            if v > best_v {
                best_v = v;
                best = s;
            }
        }
        let value = self.refract(best_v.max(0.0)).clamp(0.0, 1.0);
        Score { value, ..best }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            - std::mem::size_of::<RobustDeviation>()
            - std::mem::size_of::<Seasonal>()
            - std::mem::size_of::<Cusum>()
            - std::mem::size_of::<Spike>()
            + self.robust.state_bytes()
            + self.seasonal.state_bytes()
            + self.cusum.state_bytes()
            + self.spike.state_bytes()
            + self.recent.capacity() * std::mem::size_of::<(u64, f64)>()
    }
}
