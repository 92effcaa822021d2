//! The ensemble: runs the single-series methods side by side and combines their verdicts.
//!
//! Combination, in order, each step for a reason:
//! 1. **normalise**: each method's deviation is divided by its own "half" level (the
//!    deviation scoring 0.5), so a robust z of 8 and a CUSUM at 2× threshold compare;
//! 2. **season gate**: when the seasonal method has found a strong period, deviations from
//!    the recent level (robust, spike) are expected every cycle, so they count only
//!    `gated_weight` as much; the seasonal residual judges level and spikes instead;
//! 3. **weighted maximum**: the method that deviates most speaks (and explains);
//! 4. **surprise**: the deviation is divided by a slowly decaying maximum of past
//!    deviations raised to `surprise`: on a series that is always spiky, a spike of the
//!    usual size is no news, while on a quiet series a modest one is;
//! 5. **alarm and refractory**: once the score reaches `alarm_level`, the next `refractory`
//!    points are damped by `suppressed_factor` unless they beat the alarm — one incident
//!    gives one alarm, not a burst, and a worse one still gets through.

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
    /// Seasonal strength (autocorrelation at the period) from which the season gate closes.
    pub season_gate: f64,
    /// Weight of robust and spike while the season gate is closed.
    pub gated_weight: f64,
    /// Exponent of the surprise normalisation (0: off, 1: fully relative to the past).
    pub surprise: f64,
    /// Half-life, in points, of the memory of past deviations.
    pub memory: f64,
    /// Cap on a normalised deviation (in "half levels").
    pub max_deviation: f64,
    /// Score from which an alarm starts a refractory period.
    pub alarm_level: f64,
    /// Points after an alarm during which scores are damped.
    pub refractory: usize,
    /// Factor applied to scores during the refractory period.
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
            season_gate: 0.6,
            gated_weight: 0.0,
            surprise: 0.5,
            memory: 1000.0,
            max_deviation: 1e9,
            alarm_level: 0.5,
            refractory: 100,
            suppressed_factor: 0.1,
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
    /// Decaying maximum of past normalised deviations.
    past_max: f64,
    decay: f64,
    /// Points left in the current refractory period.
    refractory_left: usize,
    /// Score of the alarm that started the refractory period.
    alarm_peak: f64,
}

fn unit_weight(field: &'static str, v: f64) -> Result<(), ModelConfigError> {
    require(v.is_finite() && (0.0..=1.0).contains(&v), field, "must be in 0..=1")
}

impl Ensemble {
    pub fn new(cfg: EnsembleConfig) -> Result<Self, ModelConfigError> {
        let w = &cfg.weights;
        unit_weight("weights.robust", w.robust)?;
        unit_weight("weights.seasonal", w.seasonal)?;
        unit_weight("weights.cusum", w.cusum)?;
        unit_weight("weights.spike", w.spike)?;
        unit_weight("season_gate", cfg.season_gate)?;
        unit_weight("gated_weight", cfg.gated_weight)?;
        unit_weight("surprise", cfg.surprise)?;
        unit_weight("alarm_level", cfg.alarm_level)?;
        unit_weight("suppressed_factor", cfg.suppressed_factor)?;
        require(cfg.max_deviation.is_finite() && cfg.max_deviation >= 1.0, "max_deviation", "must be at least 1")?;
        require(cfg.memory.is_finite() && cfg.memory >= 1.0, "memory", "must be at least 1 point")?;
        require(cfg.refractory <= 1_000_000, "refractory", "must be at most 1000000 points")?;
        Ok(Self {
            robust: RobustDeviation::new(cfg.robust.clone())?,
            seasonal: Seasonal::new(cfg.seasonal.clone())?,
            cusum: Cusum::new(cfg.cusum.clone())?,
            spike: Spike::new(cfg.spike.clone())?,
            past_max: 0.0,
            decay: 0.5f64.powf(1.0 / cfg.memory),
            refractory_left: 0,
            alarm_peak: 0.0,
            cfg,
        })
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
        let cfg = &self.cfg;
        let gate = if self.seasonal.strength() >= cfg.season_gate { cfg.gated_weight } else { 1.0 };
        let scores = [
            (cfg.weights.robust * gate / cfg.robust.z_half, self.robust.update(t, x)),
            (cfg.weights.seasonal / cfg.seasonal.z_half, self.seasonal.update(t, x)),
            (cfg.weights.cusum, self.cusum.update(t, x)),
            (cfg.weights.spike * gate / cfg.spike.z_half, self.spike.update(t, x)),
        ];
        let mut best = scores[0].1;
        let mut deviation = 0.0f64;
        for (weight, s) in scores {
            let d = weight * s.deviation.abs();
            if d > deviation {
                deviation = d;
                best = s;
            }
        }
        // Capped only against overflow: a huge deviation *should* make the next ones less
        // surprising for a while (measured on NAB: capping at 20-1000 half levels costs 5+ points).
        let deviation = deviation.min(cfg.max_deviation);
        // Surprise: relative to what this series usually does (never below the half level).
        let usual = self.past_max.max(1.0);
        let u = deviation / usual.powf(cfg.surprise);
        self.past_max = deviation.max(self.past_max * self.decay);
        let mut value = (u * u / (u * u + 1.0)).clamp(0.0, 1.0);
        if self.refractory_left > 0 && value <= self.alarm_peak {
            self.refractory_left -= 1;
            value *= cfg.suppressed_factor;
        } else if value >= cfg.alarm_level {
            // A new alarm, or one larger than the alarm in progress: let it through.
            self.refractory_left = cfg.refractory;
            self.alarm_peak = value;
        }
        Score { value, method: if deviation > 0.0 { best.method } else { self.name() }, ..best }
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
    }
}
