//! What the ensemble is configured with: member weights, calibration, and the tuned
//! operating point (alarm levels, refractory periods, the reference interval).

use super::*;

/// How much each method counts in the ensemble (0 switches it off).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodWeights {
    pub robust: f64,
    pub seasonal: f64,
    pub cusum: f64,
    pub spike: f64,
    pub novelty: f64,
    /// Robust deviation of the moving average (regime changes in bursty series).
    pub smooth: f64,
    /// Context learning (sequences never seen), judged beside the combined score: the
    /// score is the larger of the two, the context score scaled by this weight.
    pub context: f64,
    /// Range breach (beyond everything in the recent window), judged beside the
    /// combined score like context learning.
    pub breach: f64,
    /// Extreme (beyond the lowest or highest of the last weeks), judged beside the
    /// combined score like the range breach.
    pub extreme: f64,
}

/// The ensemble's tuned weights (see [`EnsembleConfig`]'s defaults), so that
/// `weights: { context: 0 }` switches one member off and keeps the others as tuned.
impl Default for MethodWeights {
    fn default() -> Self {
        Self {
            robust: 0.75,
            seasonal: 0.95,
            cusum: 0.0,
            spike: 1.0,
            novelty: 0.0,
            smooth: 1.0,
            context: 0.7,
            breach: 1.0,
            extreme: 1.0,
        }
    }
}

/// How the combined deviation becomes a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// Relative to a decaying record of past deviations (`surprise`, `memory`).
    Record,
    /// The tail probability of the recent mean raw score under its long-run
    /// distribution (an "anomaly likelihood"), on a log scale.
    Likelihood,
}

/// Parameters of [`Ensemble`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    pub robust: RobustConfig,
    pub seasonal: SeasonalConfig,
    pub cusum: CusumConfig,
    pub spike: SpikeConfig,
    pub novelty: NoveltyConfig,
    pub context: ContextConfig,
    pub breach: BreachConfig,
    pub extreme: ExtremeConfig,
    /// Damps the value members' deviation when the series went as far, the same way, at
    /// about this time of day on most of the last days (a nightly job).
    pub familiar: FamiliarConfig,
    /// Robust deviation applied to the moving average of `smooth_points` points.
    pub smooth: RobustConfig,
    pub smooth_points: usize,
    pub weights: MethodWeights,
    /// Normalised deviation a fully novel context counts as.
    pub novelty_gain: f64,
    /// Compare deviations on a log scale (ln(1 + d)): tames series whose scale estimate is
    /// tiny and whose deviations are therefore astronomically large.
    pub log_deviation: bool,
    /// Seasonal strength (autocorrelation at the period) from which the season gate closes.
    pub season_gate: f64,
    /// Weight of robust and spike while the season gate is closed.
    pub gated_weight: f64,
    pub calibration: Calibration,
    /// Points averaged into the recent raw score (likelihood calibration).
    pub short_window: usize,
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
    /// Factor applied to scores during the refractory periods.
    pub suppressed_factor: f64,
    /// Final score (value members and context learning combined) from which an alarm
    /// starts the combined refractory period.
    pub combined_alarm_level: f64,
    /// Points after a combined alarm during which final scores are damped (0: off).
    pub combined_refractory: usize,
    /// Sampling interval (seconds) that `memory`, `refractory`, `combined_refractory` and
    /// `smooth_points` are counted in; they are rescaled to the series' median interval (at most
    /// `MAX_RESCALE`-fold either way). `None`: plain point counts.
    pub reference_interval: Option<f64>,
}

/// The defaults are one configuration for every series, tuned on the shared NAB files by
/// a greedy random local search over these parameters (`scripts/nab_search.py`, docs/research/nab.md);
/// no per-file tuning, and the many decimals are where that search stopped, not insight.
/// The `resolution_share`s are the value members' resolution floor: one step of the data's
/// resolution (a count going 0 → 1) is never more than 1/share of a robust sigma; on NAB's
/// sparse Twitter counts MAD 0 made every 3 or 4 "a hundred sigmas".
///
/// A user config that sets e.g. `robust: {window: 500}` gets the *stand-alone* defaults for
/// the other robust fields, not these: start from `vigil detect --print-config` instead.
impl Default for EnsembleConfig {
    fn default() -> Self {
        Self {
            robust: RobustConfig {
                window: 900,
                min_points: 200,
                spread_share: 0.1103,
                resolution_share: 1.425,
                z_half: 11.0,
                ..RobustConfig::default()
            },
            seasonal: SeasonalConfig {
                min_acf: 0.441,
                residual_window: 274,
                spread_share: 0.088,
                resolution_share: 1.5,
                z_half: 4.5,
                ..SeasonalConfig::default()
            },
            cusum: CusumConfig {
                window: 500,
                threshold: 9.7,
                drift: 0.72,
                ..CusumConfig::default()
            },
            spike: SpikeConfig {
                window: 750,
                spread_share: 0.072,
                resolution_share: 2.1656,
                z_half: 14.5,
                ..SpikeConfig::default()
            },
            novelty: NoveltyConfig::default(),
            // CAD OSE's own rest threshold is 0.75; beside the combined refractory, 0.76
            // scores better (docs/research/nab.md).
            context: ContextConfig {
                rest_threshold: 0.76,
                ..ContextConfig::default()
            },
            breach: BreachConfig::default(),
            extreme: ExtremeConfig::default(),
            familiar: FamiliarConfig::default(),
            smooth: RobustConfig {
                window: 1100,
                z_half: 3.1201,
                resolution_share: 1.4175,
                ..RobustConfig::default()
            },
            smooth_points: 48,
            weights: MethodWeights::default(),
            novelty_gain: 2.0,
            log_deviation: true,
            season_gate: 0.37,
            gated_weight: 0.0,
            calibration: Calibration::Record,
            short_window: 10,
            surprise: 1.0,
            memory: 2000.0,
            max_deviation: 1e300,
            alarm_level: 0.33,
            refractory: 407,
            suppressed_factor: 0.1,
            combined_alarm_level: 0.5,
            combined_refractory: 158,
            // The tuned point counts are for NAB's 5-minute data.
            reference_interval: Some(300.0),
        }
    }
}
