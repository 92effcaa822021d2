//! Online anomaly detection: several methods behind [`AnomalyMethod`], picked by name.
//!
//! Every method is a streaming state machine over one series: [`AnomalyMethod::update`]
//! scores a point using only the points before it (and the point itself), then learns from
//! it. There is no look-ahead by construction: nothing about the future is ever passed in.
//! State per series is bounded by the configured windows, whatever the history length.
//!
//! Input handling, documented once for all methods:
//! - non-finite values (NaN, ±inf) are not learnt from and score 0 with
//!   [`Reason::Skipped`]; [`SeriesGuard`](crate::series::SeriesGuard) turns them,
//!   and unsorted or duplicate timestamps, into typed errors when the caller wants that;
//! - gaps are not filled: methods work on the sequence of samples (the seasonal method
//!   converts calendar periods to sample counts with the median sampling interval);
//! - a constant series has zero spread: methods fall back to a tiny scale floor relative to
//!   the level, so any departure from a flat line scores high and the flat line scores 0;
//! - until a method has seen its `min_points`, it scores 0 with [`Reason::Warmup`];
//! - huge values stay finite in the arithmetic (scores are clamped to [0, 1]).

pub mod breach;
pub mod context;
pub mod cusum;
pub mod ensemble;
pub mod extreme;
pub mod familiar;
pub mod multi;
pub mod novelty;
pub mod robust;
pub mod seasonal;
pub mod spike;
pub mod window;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use breach::{Breach, BreachConfig};
pub use context::{ContextConfig, ContextLearner};
pub use cusum::{Cusum, CusumConfig};
pub use ensemble::{Ensemble, EnsembleConfig};
pub use extreme::{Extreme, ExtremeConfig};
pub use familiar::FamiliarConfig;
pub use multi::{MultiMetric, MultiMetricConfig, MultiScore};
pub use novelty::{Novelty, NoveltyConfig};
pub use robust::{RobustConfig, RobustDeviation};
pub use seasonal::{Seasonal, SeasonalConfig};
pub use spike::{Spike, SpikeConfig};
use window::ScaleFloors;

/// Why a score has the value it has; with the numbers in [`Score`] it renders as a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not enough history yet to judge.
    Warmup,
    /// The point was not finite and was ignored.
    Skipped,
    /// Deviation from a robust (median/MAD) baseline.
    Deviation,
    /// Deviation from the same phase of the previous seasonal cycles.
    SeasonalDeviation,
    /// Deviation of the recent moving average (not of the point itself) from its
    /// robust baseline: a slow drift. `observed` is then that average.
    AverageDeviation,
    /// No seasonal period found (yet); the seasonal method abstains.
    NoSeason,
    /// Weighed 0 by the ensemble's season gate (a strong season judges instead), so
    /// not scored.
    Gated,
    /// A sustained shift of the level (CUSUM).
    LevelShift,
    /// A jump from the previous point larger than the usual step.
    Spike,
    /// A situation (recent values, quantised) never seen before.
    Novel,
    /// Beyond the range of the recent window (around its trend); `deviation` is how
    /// far, in widths of that range.
    Breach,
    /// Beyond the lowest or highest value of the last weeks (`band`); `deviation` is how
    /// far, in widths of that range.
    Extreme,
}

/// One point's verdict. `Copy` and allocation-free so scoring stays on the hot path;
/// [`Score::explanation`] renders the human sentence only when someone asks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Timestamp of the point (unix seconds).
    pub t: i64,
    /// Anomaly score in [0, 1]; 0 is normal.
    pub value: f64,
    /// The value judged: the point itself, or for [`Reason::AverageDeviation`] the
    /// moving average ending at it (what `expected` and `band` are about).
    pub observed: f64,
    /// What the method expected to see, when it has an expectation.
    pub expected: Option<f64>,
    /// The normal band (low, high) around `expected`.
    pub band: Option<(f64, f64)>,
    /// Signed standardised deviation (a robust z, or the CUSUM statistic over its threshold).
    pub deviation: f64,
    /// The method that produced the score (for the ensemble: the one that fired most).
    pub method: &'static str,
    pub reason: Reason,
}

impl Score {
    pub(crate) fn quiet(t: i64, observed: f64, method: &'static str, reason: Reason) -> Self {
        Self {
            t,
            value: 0.0,
            observed,
            expected: None,
            band: None,
            deviation: 0.0,
            method,
            reason,
        }
    }

    /// A sentence a human can read, e.g.
    /// "value 93.1 above expected 41 ± 6.2 (robust z 8.4)".
    pub fn explanation(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let obs = num(self.observed);
        match self.reason {
            Reason::Warmup => write!(
                f,
                "value {obs}: learning, not enough history yet ({})",
                self.method
            ),
            Reason::Skipped => write!(f, "value {obs} is not finite: ignored ({})", self.method),
            Reason::NoSeason => {
                write!(f, "value {obs}: no seasonal period found ({})", self.method)
            }
            Reason::Gated => write!(
                f,
                "value {obs}: judged by its season instead ({})",
                self.method
            ),
            Reason::Novel => match self.band {
                Some((lo, hi)) => write!(
                    f,
                    "value {obs}: a pattern never seen before (usual range {} to {}; {} score {:.2})",
                    num(lo),
                    num(hi),
                    self.method,
                    self.value
                ),
                None => write!(
                    f,
                    "value {obs}: a pattern never seen before ({} score {:.2})",
                    self.method, self.value
                ),
            },
            Reason::Breach => {
                let side = if self.deviation >= 0.0 {
                    "above"
                } else {
                    "below"
                };
                write!(f, "value {obs} {side} the recent range around its trend")?;
                if let Some((lo, hi)) = self.band {
                    write!(f, ", {} to {},", num(lo), num(hi))?;
                }
                write!(
                    f,
                    " by {:.1}× its width ({} score {:.2})",
                    self.deviation.abs(),
                    self.method,
                    self.value
                )
            }
            Reason::Extreme => {
                let (side, edge) = if self.deviation >= 0.0 {
                    ("above", "highest")
                } else {
                    ("below", "lowest")
                };
                // The window is the method's (eight weeks by default), not the score's:
                // named generically so a configured window reads true.
                write!(f, "value {obs} {side} the {edge} of its window")?;
                if let Some((lo, hi)) = self.band {
                    write!(f, ", range {} to {},", num(lo), num(hi))?;
                }
                write!(
                    f,
                    " by {:.2}× the range's width ({} score {:.2})",
                    self.deviation.abs(),
                    self.method,
                    self.value
                )
            }
            _ => {
                let side = if self.deviation >= 0.0 {
                    "above"
                } else {
                    "below"
                };
                let what = match self.reason {
                    Reason::LevelShift => "level shift",
                    Reason::Spike => "spike",
                    Reason::SeasonalDeviation => "seasonal",
                    Reason::AverageDeviation => "moving average",
                    _ => "value",
                };
                write!(f, "{what} {obs} {side} expected")?;
                if let Some(e) = self.expected {
                    write!(f, " {}", num(e))?;
                    if let Some((lo, hi)) = self.band {
                        write!(f, " ± {}", num((hi - lo) / 2.0))?;
                    }
                }
                let stat = match self.reason {
                    Reason::LevelShift => "CUSUM/threshold",
                    Reason::Spike => "step z",
                    _ => "robust z",
                };
                write!(
                    f,
                    " ({stat} {:.1}; {} score {:.2})",
                    self.deviation, self.method, self.value
                )
            }
        }
    }
}

/// Three significant digits, without noise like 41.000000001.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A streaming anomaly scorer for one series.
pub trait AnomalyMethod: Send + fmt::Debug {
    /// The name a detector selects it by.
    fn name(&self) -> &'static str;
    /// Scores the point `(t, x)` from the history before it, then learns from it.
    fn update(&mut self, t: i64, x: f64) -> Score;
    /// Bytes of state held for this series (bounded by the configuration).
    fn state_bytes(&self) -> usize;
}

/// Maps a standardised deviation to [0, 1]: z²/(z² + z_half²), so |z| = `z_half` scores 0.5.
/// Unlike a normal tail probability it does not saturate at 1 for moderately large z, so
/// scores still rank large anomalies against each other.
pub(crate) fn z_to_unit(z: f64, z_half: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    let a = z.abs().min(1e150);
    let h = z_half.max(1e-9);
    (a * a / (a * a + h * h)).clamp(0.0, 1.0)
}

/// The smallest spread we divide by: a flat series would otherwise give 0/0 or x/0.
pub(crate) fn scale_floor(level: f64) -> f64 {
    (level.abs() * 1e-6).max(1e-9)
}

/// Which method a detector uses, with its parameters. Deserialises from a detector's
/// `model:` section, e.g. `{ method: robust, window: 288 }`; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ModelConfig {
    Robust(RobustConfig),
    Seasonal(SeasonalConfig),
    Cusum(CusumConfig),
    Spike(SpikeConfig),
    Novelty(NoveltyConfig),
    Context(ContextConfig),
    Breach(BreachConfig),
    Extreme(ExtremeConfig),
    Ensemble(Box<EnsembleConfig>),
}

/// A configuration or name that does not describe a valid method.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelConfigError {
    #[error("unknown anomaly method {name:?}; expected one of {}", METHOD_NAMES.join(", "))]
    UnknownMethod { name: String },
    #[error("invalid parameter {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The names [`ModelConfig::by_name`] accepts.
pub const METHOD_NAMES: &[&str] = &[
    "robust", "seasonal", "cusum", "spike", "novelty", "context", "breach", "extreme", "ensemble",
];

impl ModelConfig {
    /// The default configuration of the method called `name`.
    pub fn by_name(name: &str) -> Result<Self, ModelConfigError> {
        Ok(match name {
            "robust" => Self::Robust(RobustConfig::default()),
            "seasonal" => Self::Seasonal(SeasonalConfig::default()),
            "cusum" => Self::Cusum(CusumConfig::default()),
            "spike" => Self::Spike(SpikeConfig::default()),
            "novelty" => Self::Novelty(NoveltyConfig::default()),
            "context" => Self::Context(ContextConfig::default()),
            "breach" => Self::Breach(BreachConfig::default()),
            "extreme" => Self::Extreme(ExtremeConfig::default()),
            "ensemble" => Self::Ensemble(Box::default()),
            other => {
                return Err(ModelConfigError::UnknownMethod {
                    name: other.to_string(),
                });
            }
        })
    }

    /// The score a detector alerts at when its YAML names no `threshold`. The ensemble's
    /// scores are calibrated around 0.5 ("as large as the largest deviation of the last
    /// week", 0.3 of the range beyond anything of the last four weeks around its trend,
    /// or 0.04 of the range beyond the lowest or highest of the last eight), where NAB's
    /// optimised threshold lies (0.51); 0.5 catches 97.7–99.6% of the generated critical
    /// anomalies in `tests/detect_targets.rs` within 5 minutes, 0.8 about 93–96% (docs/research/nab.md).
    /// A single method scores 0.5 at its half level and 0.8 at twice it, the default.
    pub fn operating_threshold(&self) -> f64 {
        match self {
            Self::Ensemble(_) => 0.5,
            _ => 0.8,
        }
    }

    /// Builds a fresh method for one series.
    pub fn build(&self) -> Result<Box<dyn AnomalyMethod>, ModelConfigError> {
        Ok(match self {
            Self::Robust(c) => Box::new(RobustDeviation::new(c.clone())?),
            Self::Seasonal(c) => Box::new(Seasonal::new(c.clone())?),
            Self::Cusum(c) => Box::new(Cusum::new(c.clone())?),
            Self::Spike(c) => Box::new(Spike::new(c.clone())?),
            Self::Novelty(c) => Box::new(Novelty::new(c.clone())?),
            Self::Context(c) => Box::new(ContextLearner::new(c.clone())?),
            Self::Breach(c) => Box::new(Breach::new(c.clone())?),
            Self::Extreme(c) => Box::new(Extreme::new(c.clone())?),
            Self::Ensemble(c) => Box::new(Ensemble::new(EnsembleConfig::clone(c))?),
        })
    }
}

/// The window parameters the windowed methods share.
pub(crate) fn require_window(
    window: usize,
    min_points: usize,
    floors: ScaleFloors,
) -> Result<(), ModelConfigError> {
    require_floors(floors)?;
    require(window >= 3, "window", "must be at least 3 points")?;
    require(
        min_points >= 3 && min_points <= window,
        "min_points",
        "must be in 3..=window",
    )
}

/// The scale floors the windowed methods share.
pub(crate) fn require_floors(floors: ScaleFloors) -> Result<(), ModelConfigError> {
    require(
        floors.spread_share.is_finite() && (0.0..=1.0).contains(&floors.spread_share),
        "spread_share",
        "must be in 0..=1",
    )?;
    require(
        floors.resolution_share.is_finite() && (0.0..=100.0).contains(&floors.resolution_share),
        "resolution_share",
        "must be in 0..=100",
    )
}

/// The scale floors of each windowed method's config, as its window reads them.
macro_rules! scale_floors_of {
    ($($config:ty),*) => {$(
        impl $config {
            pub(crate) fn floors(&self) -> ScaleFloors {
                ScaleFloors {
                    spread_share: self.spread_share,
                    resolution_share: self.resolution_share,
                }
            }
        }
    )*};
}
scale_floors_of!(RobustConfig, SpikeConfig, CusumConfig, SeasonalConfig);

/// Uniform noise in [0, 1) from a seed (xorshift64): reproducible test series.
#[cfg(test)]
pub(crate) fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A finite, strictly positive parameter.
pub(crate) fn require_positive(value: f64, field: &'static str) -> Result<(), ModelConfigError> {
    require(
        value.is_finite() && value > 0.0,
        field,
        "must be a positive number",
    )
}

pub(crate) fn require(ok: bool, field: &'static str, reason: &str) -> Result<(), ModelConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ModelConfigError::Invalid {
            field,
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_reads_like_a_sentence() {
        let s = Score {
            t: 0,
            value: 0.8,
            observed: 93.1,
            expected: Some(41.0),
            band: Some((34.8, 47.2)),
            deviation: 8.4,
            method: "robust",
            reason: Reason::Deviation,
        };
        assert_eq!(
            s.explanation(),
            "value 93.1 above expected 41 ± 6.2 (robust z 8.4; robust score 0.80)"
        );
    }

    #[test]
    fn a_breach_says_which_range_and_how_far_beyond_it() {
        let s = Score {
            t: 0,
            value: 0.97,
            observed: 0.0,
            expected: Some(40.2),
            band: Some((33.9, 46.1)),
            deviation: -2.8,
            method: "breach",
            reason: Reason::Breach,
        };
        assert_eq!(
            s.explanation(),
            "value 0 below the recent range around its trend, 33.9 to 46.1, by 2.8× its \
             width (breach score 0.97)"
        );
    }

    #[test]
    fn an_extreme_says_which_edge_of_which_range() {
        let s = Score {
            t: 0,
            value: 1.0,
            observed: 25.1,
            expected: None,
            band: Some((5.19, 7.916)),
            deviation: 6.3,
            method: "extreme",
            reason: Reason::Extreme,
        };
        assert_eq!(
            s.explanation(),
            "value 25.1 above the highest of its window, range 5.19 to 7.916, by 6.30× the \
             range's width (extreme score 1.00)"
        );
    }

    #[test]
    fn z_map_is_monotone_and_bounded() {
        assert_eq!(z_to_unit(0.0, 4.0), 0.0);
        assert!((z_to_unit(4.0, 4.0) - 0.5).abs() < 1e-12);
        assert!(z_to_unit(8.0, 4.0) > z_to_unit(5.0, 4.0));
        assert!(z_to_unit(f64::INFINITY, 4.0) <= 1.0);
        assert_eq!(z_to_unit(f64::NAN, 4.0), 0.0);
    }
}
