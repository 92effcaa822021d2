//! The ensemble: runs the single-series methods side by side and combines their verdicts.
//!
//! Combination, in order, each step for a reason:
//! 1. **normalise**: each method's deviation is divided by its own "half" level (the
//!    deviation scoring 0.5), so a robust z of 8 and a CUSUM at 2× threshold compare;
//! 2. **season gate**: when the seasonal method has found a strong period, deviations from
//!    the recent level (robust, spike) are expected every cycle, so they count only
//!    `gated_weight` as much; the seasonal residual judges level and spikes instead;
//! 3. **weighted maximum**: the method that deviates most speaks (and explains). A
//!    value member's deviation counts for nothing (`familiar.damping`) when the series
//!    went as far, the same way, at about this time of day on three of the last seven
//!    days: a nightly job is no news, however far it lifts the series
//!    ([`FamiliarConfig`]; docs/research/nab.md, "Familiar at this time of day");
//! 4. **surprise**: the deviation is divided by a slowly decaying maximum of past
//!    deviations raised to `surprise`: on a series that is always spiky, a spike of the
//!    usual size is no news, while on a quiet series a modest one is;
//! 5. **alarm and refractory**: once the score reaches `alarm_level`, the next `refractory`
//!    points are damped by `suppressed_factor` unless they beat the alarm — one incident
//!    gives one alarm, not a burst, and a worse one still gets through;
//! 6. **context**: context learning ([`ContextLearner`]) judges the sequence of values
//!    and speaks when its score, scaled by `weights.context`, is the larger: it catches
//!    what no value deviation shows (a burst pattern getting denser, a flat stretch in a
//!    bursty series, a second anomaly soon after a first). It is the costly member: up
//!    to ~1.6 MB of state per series, and on a noisy series about 5× the time of all
//!    the others together (BENCHMARKS.md); `weights: { context: 0 }` leaves it out;
//! 7. **range breach**: [`Breach`] judges the value against the range of the last weeks
//!    around a trend, in widths of that range, and speaks when its score, scaled by
//!    `weights.breach`, is the larger. It skips steps 4 and 5 on purpose: those rank
//!    deviations against the series' own record, which is what NAB rewards and what
//!    lets a steady gauge's drop to zero score like a blip next to a week of noise;
//!    a value beyond everything the window held pages someone however quiet the
//!    series was (docs/research/nab.md, "Critical anomalies at a known onset"). [`Extreme`] then
//!    speaks the same way, scaled by `weights.extreme`: the raw value beyond the lowest
//!    or highest of the last eight weeks, which no baseline-following member and no
//!    record sees when a noisy series falls to a level it has not been at in weeks,
//!    or a second incident repeats a first (docs/research/nab.md, "Extremes of the last weeks");
//! 8. **combined refractory**: the value members and context learning each rest after
//!    their own alarms, and a breach widens the range the next value is judged against,
//!    but none rests after another's alarm, so one incident could still ring twice, a
//!    value alarm then a context alarm a few points later. Once the final score reaches
//!    `combined_alarm_level`, the next `combined_refractory` points are damped by
//!    `suppressed_factor` unless they beat it.
//!
//! With `reference_interval` set (the default: 300 s), `memory`, `refractory`,
//! `combined_refractory`, `smooth_points` and the breach's point counts count points *of
//! that interval* and are rescaled to the series' own median sampling interval: the record
//! forgets in a week and an alarm silences a day and a half whether the data comes every 5
//! minutes or every hour.

use serde::{Deserialize, Serialize};

use super::familiar::{DailyProfile, FamiliarConfig};
use super::window::Ring;
use super::{
    AnomalyMethod, Breach, BreachConfig, ContextConfig, ContextLearner, Cusum, CusumConfig,
    Extreme, ExtremeConfig, ModelConfigError, Novelty, NoveltyConfig, Reason, RobustConfig,
    RobustDeviation, Score, Seasonal, SeasonalConfig, Spike, SpikeConfig, require,
};

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

/// A member the season gate can weigh 0 (robust, spike).
trait Gateable: AnomalyMethod {
    /// Takes the point into the state without scoring it.
    fn learn(&mut self, x: f64);
}

impl Gateable for RobustDeviation {
    fn learn(&mut self, x: f64) {
        RobustDeviation::learn(self, x);
    }
}

impl Gateable for Spike {
    fn learn(&mut self, x: f64) {
        Spike::learn(self, x);
    }
}

/// The member's score of the point, weighed `weight`. Weighed 0 (a closed season
/// gate, by default), it learns the point, as it must to judge once the gate opens,
/// but is not scored: a MAD and two quantiles saved.
fn judge<M: Gateable>(
    member: Option<&mut M>,
    weight: f64,
    name: &'static str,
    t: i64,
    x: f64,
) -> Score {
    match member {
        None => Score::quiet(t, x, name, Reason::Warmup),
        Some(m) if weight > 0.0 => m.update(t, x),
        Some(m) => {
            m.learn(x);
            Score::quiet(t, x, name, Reason::Gated)
        }
    }
}

/// Several methods on one series, combined.
#[derive(Debug)]
pub struct Ensemble {
    cfg: EnsembleConfig,
    // Members with weight 0 are not built: no state, no time.
    robust: Option<RobustDeviation>,
    seasonal: Option<Seasonal>,
    cusum: Option<Cusum>,
    spike: Option<Spike>,
    novelty: Option<Novelty>,
    context: Option<ContextLearner>,
    breach: Option<Breach>,
    extreme: Option<Extreme>,
    /// Moving-average scorer, its ring and running sum (present when weighted).
    smooth: Option<(RobustDeviation, Ring, f64)>,
    /// The time-of-day profiles of the values and of the moving average (`familiar`).
    days: Option<(DailyProfile, DailyProfile)>,
    /// Decaying maximum of past normalised deviations.
    past_max: f64,
    decay: f64,
    /// Recent raw scores (likelihood calibration).
    short: Ring,
    short_sum: f64,
    /// Exponentially weighted mean and variance of the recent mean raw score.
    long_mean: f64,
    long_var: f64,
    seen: u64,
    /// The value members' refractory period (step 5).
    refractory: Refractory,
    /// Recent sampling intervals and the time of the last point (`reference_interval`).
    intervals: Ring,
    last_t: Option<i64>,
    /// The refractory period over the final score (step 8).
    combined: Refractory,
    /// Intervals learnt since the last rescaling.
    since_rescale: usize,
}

/// A refractory period: after an alarm, scores are damped unless they beat it, so one
/// incident gives one alarm while a worse one still gets through.
#[derive(Debug)]
struct Refractory {
    /// The period, in this series' points (rescaled with the sampling interval); 0: off.
    points: usize,
    /// Points left in the current period.
    left: usize,
    /// Score of the alarm that started it.
    peak: f64,
}

impl Refractory {
    fn new(points: usize) -> Self {
        Self {
            points,
            left: 0,
            peak: 0.0,
        }
    }

    /// Damps `value` by `factor` inside the period; an alarm (at least `alarm_level`)
    /// that is new, or larger than the one in progress, gets through and starts a period.
    fn damp(&mut self, value: f64, alarm_level: f64, factor: f64) -> f64 {
        if self.left > 0 && value <= self.peak {
            self.left -= 1;
            value * factor
        } else {
            if value >= alarm_level {
                self.left = self.points;
                self.peak = value;
            }
            value
        }
    }
}

/// Share of the record (in the ensemble's deviation scale) below which a value member's
/// deviation is not checked for familiarity: it scores under 0.09 (u = 0.3), far from
/// any alarm, whether damped or not.
const FAMILIAR_FLOOR: f64 = 0.3;

/// Sampling intervals kept to rescale `memory`, `refractory` and `smooth_points`.
const INTERVALS_KEPT: usize = 16;

/// Bound of the rescaling by `reference_interval`, either way (a 1-second series does
/// not get 300-fold windows).
const MAX_RESCALE: f64 = 100.0;

/// Largest moving average after rescaling (as `smooth_points` itself: bounded state).
const MAX_SMOOTH_POINTS: f64 = 100_000.0;

fn member<M>(
    weight: f64,
    build: impl FnOnce() -> Result<M, ModelConfigError>,
) -> Result<Option<M>, ModelConfigError> {
    if weight > 0.0 {
        build().map(Some)
    } else {
        Ok(None)
    }
}

/// Lets a member that speaks beside the combined score (past the record and the value
/// refractory) judge the point: its score, scaled by `weight`, replaces `score` when
/// larger, and explains it.
fn beside<M: AnomalyMethod>(
    score: Score,
    member: Option<&mut M>,
    weight: f64,
    t: i64,
    x: f64,
) -> Score {
    let Some(member) = member else {
        return score;
    };
    let s = member.update(t, x);
    let v = weight * s.value;
    if v > score.value {
        Score { value: v, ..s }
    } else {
        score
    }
}

fn unit_weight(field: &'static str, v: f64) -> Result<(), ModelConfigError> {
    require(
        v.is_finite() && (0.0..=1.0).contains(&v),
        field,
        "must be in 0..=1",
    )
}

impl Ensemble {
    pub fn new(cfg: EnsembleConfig) -> Result<Self, ModelConfigError> {
        let w = &cfg.weights;
        unit_weight("weights.robust", w.robust)?;
        unit_weight("weights.seasonal", w.seasonal)?;
        unit_weight("weights.cusum", w.cusum)?;
        unit_weight("weights.spike", w.spike)?;
        unit_weight("weights.novelty", w.novelty)?;
        unit_weight("weights.smooth", w.smooth)?;
        unit_weight("weights.context", w.context)?;
        unit_weight("weights.breach", w.breach)?;
        unit_weight("weights.extreme", w.extreme)?;
        require(
            (1..=100_000).contains(&cfg.smooth_points),
            "smooth_points",
            "must be in 1..=100000",
        )?;
        require(
            cfg.novelty_gain.is_finite() && cfg.novelty_gain >= 0.0,
            "novelty_gain",
            "must be a non-negative number",
        )?;
        unit_weight("season_gate", cfg.season_gate)?;
        unit_weight("gated_weight", cfg.gated_weight)?;
        unit_weight("surprise", cfg.surprise)?;
        unit_weight("alarm_level", cfg.alarm_level)?;
        unit_weight("suppressed_factor", cfg.suppressed_factor)?;
        unit_weight("combined_alarm_level", cfg.combined_alarm_level)?;
        require(
            cfg.max_deviation.is_finite() && cfg.max_deviation >= 1.0,
            "max_deviation",
            "must be at least 1",
        )?;
        require(
            (1..=10_000).contains(&cfg.short_window),
            "short_window",
            "must be in 1..=10000",
        )?;
        require(
            cfg.memory.is_finite() && cfg.memory >= 1.0,
            "memory",
            "must be at least 1 point",
        )?;
        require(
            cfg.refractory <= 1_000_000,
            "refractory",
            "must be at most 1000000 points",
        )?;
        require(
            cfg.combined_refractory <= 1_000_000,
            "combined_refractory",
            "must be at most 1000000 points",
        )?;
        cfg.familiar.validate()?;
        if let Some(r) = cfg.reference_interval {
            require(
                r.is_finite() && r >= 1e-3,
                "reference_interval",
                "must be a number of seconds (at least 0.001)",
            )?;
        }
        Ok(Self {
            robust: member(cfg.weights.robust, || {
                RobustDeviation::new(cfg.robust.clone())
            })?,
            seasonal: member(cfg.weights.seasonal, || Seasonal::new(cfg.seasonal.clone()))?,
            cusum: member(cfg.weights.cusum, || Cusum::new(cfg.cusum.clone()))?,
            spike: member(cfg.weights.spike, || Spike::new(cfg.spike.clone()))?,
            // Only kept (and paid for) when it counts.
            novelty: if cfg.weights.novelty > 0.0 {
                Some(Novelty::new(cfg.novelty.clone())?)
            } else {
                None
            },
            context: if cfg.weights.context > 0.0 {
                Some(ContextLearner::new(cfg.context.clone())?)
            } else {
                None
            },
            breach: member(cfg.weights.breach, || Breach::new(cfg.breach.clone()))?,
            extreme: member(cfg.weights.extreme, || Extreme::new(cfg.extreme.clone()))?,
            smooth: if cfg.weights.smooth > 0.0 {
                Some((
                    RobustDeviation::new(cfg.smooth.clone())?,
                    Ring::new(cfg.smooth_points),
                    0.0,
                ))
            } else {
                None
            },
            days: cfg.familiar.is_on().then(|| {
                (
                    DailyProfile::new(&cfg.familiar),
                    DailyProfile::new(&cfg.familiar),
                )
            }),
            past_max: 0.0,
            short: Ring::new(cfg.short_window.max(1)),
            short_sum: 0.0,
            long_mean: 0.0,
            long_var: 0.0,
            seen: 0,
            decay: 0.5f64.powf(1.0 / cfg.memory),
            refractory: Refractory::new(cfg.refractory),
            intervals: Ring::new(INTERVALS_KEPT),
            last_t: None,
            combined: Refractory::new(cfg.combined_refractory),
            since_rescale: 0,
            cfg,
        })
    }
}

impl Ensemble {
    /// Learns the sampling interval and rescales the point-counted memory, refractory
    /// period and moving average to it: after 4, 8, 12 and 16 intervals, then every 64
    /// points (the interval rarely changes, and then the median follows it).
    fn rescale(&mut self, t: i64, reference: f64) {
        let Some(prev) = self.last_t.replace(t) else {
            return;
        };
        let dt = t.saturating_sub(prev);
        if dt <= 0 {
            return;
        }
        self.intervals.push(dt as f64);
        self.since_rescale += 1;
        let n = self.intervals.len();
        let due = if n < INTERVALS_KEPT {
            n.is_multiple_of(4)
        } else {
            self.since_rescale >= 64
        };
        if !due {
            return;
        }
        self.since_rescale = 0;
        let mut dts = [0.0f64; INTERVALS_KEPT];
        for (i, slot) in dts.iter_mut().enumerate().take(n) {
            *slot = self.intervals.get_back(i).unwrap_or(0.0);
        }
        let dts = &mut dts[..n];
        dts.sort_by(f64::total_cmp);
        let ratio = (reference / dts[n / 2]).clamp(1.0 / MAX_RESCALE, MAX_RESCALE);
        let points = |p: f64| (p * ratio).round().max(1.0);
        self.decay = 0.5f64.powf(1.0 / points(self.cfg.memory));
        self.refractory.points = points(self.cfg.refractory as f64) as usize;
        // 0 stays 0: off (`points` never rounds below 1).
        self.combined.points = if self.cfg.combined_refractory == 0 {
            0
        } else {
            points(self.cfg.combined_refractory as f64) as usize
        };
        if let Some(breach) = self.breach.as_mut() {
            breach.rescale(ratio);
        }
        let smooth_points = points(self.cfg.smooth_points as f64).min(MAX_SMOOTH_POINTS) as usize;
        if let Some((_, ring, sum)) = self.smooth.as_mut()
            && ring.capacity() != smooth_points
        {
            // Keep the newest values that fit; the moving average goes on from them.
            let mut resized = Ring::new(smooth_points);
            for back in (0..ring.len().min(smooth_points)).rev() {
                resized.push(ring.get_back(back).unwrap_or(0.0));
            }
            *sum = (0..resized.len())
                .filter_map(|back| resized.get_back(back))
                .sum();
            *ring = resized;
        }
    }

    /// Step 4's bar: what this series usually does (the decaying record, never below
    /// the half level), raised to `surprise`.
    fn record_bar(&self) -> f64 {
        let usual = self.past_max.max(1.0);
        // x^1 is x exactly: the default skips a `powf` per point.
        if self.cfg.surprise == 1.0 {
            usual
        } else {
            usual.powf(self.cfg.surprise)
        }
    }

    /// Step 8: damps a final score inside the combined refractory period, or starts one.
    fn combined_refractory(&mut self, value: f64) -> f64 {
        self.combined.damp(
            value,
            self.cfg.combined_alarm_level,
            self.cfg.suppressed_factor,
        )
    }

    /// Anomaly likelihood of the recent mean raw score, as 0..1 on a log scale:
    /// 0.5 ≈ 1-in-3000 tail, 1 ≈ 1-in-10¹⁰.
    fn likelihood(&mut self, deviation: f64) -> f64 {
        let raw = deviation * deviation / (deviation * deviation + 1.0);
        if self.short.len() == self.short.capacity() {
            self.short_sum -= self
                .short
                .get_back(self.short.capacity() - 1)
                .unwrap_or(0.0);
        }
        self.short.push(raw);
        self.short_sum += raw;
        let recent = self.short_sum / self.short.len().max(1) as f64;
        let sd = self.long_var.sqrt().max(LIKELIHOOD_SD_FLOOR);
        let z = (recent - self.long_mean) / sd;
        let warm = self.seen >= self.short.capacity() as u64 * 2;
        // Learn after judging: the point must not explain itself.
        let a = 1.0 - self.decay;
        let d = recent - self.long_mean;
        self.long_mean += a * d;
        self.long_var = (1.0 - a) * (self.long_var + a * d * d);
        self.seen += 1;
        if !warm || z.is_nan() || z <= 0.0 {
            return 0.0;
        }
        let tail = 0.5 * erfc(z / std::f64::consts::SQRT_2);
        ((tail + 1e-10).ln() / (1e-10f64).ln()).clamp(0.0, 1.0)
    }
}

/// Smallest spread of the recent mean raw score (a perfectly quiet series would make any
/// blip infinitely unlikely).
const LIKELIHOOD_SD_FLOOR: f64 = 0.01;

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7,
/// good in the far tail, which is what matters here).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

impl AnomalyMethod for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        if let Some(reference) = self.cfg.reference_interval {
            self.rescale(t, reference);
        }
        let cfg = &self.cfg;
        let strength = self.seasonal.as_ref().map_or(0.0, Seasonal::strength);
        let gate = if strength >= cfg.season_gate {
            cfg.gated_weight
        } else {
            1.0
        };
        let quiet = |name| Score::quiet(t, x, name, Reason::Warmup);
        let (robust_weight, spike_weight) = (
            cfg.weights.robust * gate / cfg.robust.z_half,
            cfg.weights.spike * gate / cfg.spike.z_half,
        );
        let scores = [
            (
                robust_weight,
                judge(self.robust.as_mut(), robust_weight, "robust", t, x),
            ),
            (
                cfg.weights.seasonal / cfg.seasonal.z_half,
                self.seasonal
                    .as_mut()
                    .map_or_else(|| quiet("seasonal"), |m| m.update(t, x)),
            ),
            (
                cfg.weights.cusum,
                self.cusum
                    .as_mut()
                    .map_or_else(|| quiet("cusum"), |m| m.update(t, x)),
            ),
            (
                spike_weight,
                judge(self.spike.as_mut(), spike_weight, "spike", t, x),
            ),
        ];
        // What a point no member deviates on is explained by: the robust baseline, or
        // the seasonal one while the gate is closed.
        let mut best = if robust_weight > 0.0 || self.seasonal.is_none() {
            scores[0].1
        } else {
            scores[1].1
        };
        let smooth = self.smooth.as_mut().map(|(scorer, ring, sum)| {
            if ring.len() == ring.capacity() {
                *sum -= ring.get_back(ring.capacity() - 1).unwrap_or(0.0);
            }
            ring.push(x);
            *sum += x;
            let mean = *sum / ring.len().max(1) as f64;
            let s = scorer.update(t, mean);
            let d = cfg.weights.smooth / cfg.smooth.z_half * s.deviation.abs();
            // The average is what was judged, so it is what the explanation and a
            // detector's direction compare with the expected level: the raw point can
            // sit on the other side of it.
            let s = Score {
                method: "smooth",
                reason: Reason::AverageDeviation,
                ..s
            };
            (mean, if d.is_finite() { d } else { 0.0 }, s)
        });
        // The value members' weighted deviations, the moving average's last: the largest
        // speaks unless it is familiar at this time of day, and then the next may. Sorted
        // (stably: ties keep this order) so the familiarity check, ~100 reads, runs only
        // for a deviation that could still win.
        let (value_members, judged_average) = (
            scores.map(|(weight, s)| (weight * s.deviation.abs(), s, false)),
            smooth.map_or((0.0, best, true), |(_, d, s)| (d, s, true)),
        );
        let candidates = [
            value_members[0],
            value_members[1],
            value_members[2],
            value_members[3],
            judged_average,
        ]
        .map(|(d, s, on_average)| (if d.is_nan() { 0.0 } else { d }, s, on_average));
        let mut order = [0, 1, 2, 3, 4];
        order.sort_by(|&a, &b| candidates[b].0.total_cmp(&candidates[a].0));
        // Below a share of the record a deviation scores too little to alarm either way,
        // and it is not worth the look back (up to 91 bins): the check is about alarms.
        let (bar, log_deviation) = (self.record_bar(), cfg.log_deviation);
        let worth_a_look = |d: f64| match cfg.calibration {
            Calibration::Record => {
                let d = if log_deviation { d.ln_1p() } else { d };
                d >= FAMILIAR_FLOOR * bar
            }
            Calibration::Likelihood => true,
        };
        let mut deviation = 0.0f64;
        for (d, s, on_average) in order.map(|i| candidates[i]) {
            if d <= deviation {
                break;
            }
            let d = match (self.days.as_ref(), s.expected) {
                (Some((values, averages)), Some(expected)) if worth_a_look(d) => {
                    let days = if on_average { averages } else { values };
                    let level = expected + (1.0 - cfg.familiar.slack) * (s.observed - expected);
                    if days.is_familiar(t, level, s.observed > expected) {
                        d * cfg.familiar.damping
                    } else {
                        d
                    }
                }
                _ => d,
            };
            if d > deviation {
                deviation = d;
                best = s;
            }
        }
        if let Some((values, averages)) = self.days.as_mut() {
            values.push(t, x);
            if let Some((mean, _, _)) = smooth {
                averages.push(t, mean);
            }
        }
        if let Some(n) = self.novelty.as_mut() {
            let s = n.update(t, x);
            let d = cfg.weights.novelty * cfg.novelty_gain * s.value;
            if d > deviation {
                deviation = d;
                best = s;
            }
        }
        if cfg.log_deviation {
            deviation = deviation.ln_1p();
        }
        // Capped only against overflow: a huge deviation *should* make the next ones less
        // surprising for a while (measured on NAB: capping at 20-1000 half levels costs 5+ points).
        // Also kept finite: an infinite deviation (values near f64::MAX) would make the
        // calibration below inf/inf = NaN and blind the series' history.
        let deviation = deviation.min(cfg.max_deviation).min(1e150);
        let (calibration, suppressed_factor, alarm_level) =
            (cfg.calibration, cfg.suppressed_factor, cfg.alarm_level);
        let value = match calibration {
            Calibration::Record => {
                // Surprise: relative to what this series usually does.
                let u = deviation / bar;
                self.past_max = deviation.max(self.past_max * self.decay);
                (u * u / (u * u + 1.0)).clamp(0.0, 1.0)
            }
            Calibration::Likelihood => self.likelihood(deviation),
        };
        let value = self.refractory.damp(value, alarm_level, suppressed_factor);
        // Context learning speaks beside the value-deviation members, after their
        // calibration and refractory: it has its own (a rest after each alarm), and a
        // sequence never seen is news however large the values have been.
        let weight = self.cfg.weights.context;
        let context = self.context.as_mut().and_then(|c| {
            let s = c.update(t, x);
            let v = weight * s.value;
            (v > value).then_some(Score { value: v, ..s })
        });
        let mut score = context.unwrap_or(Score {
            value,
            method: if deviation > 0.0 {
                best.method
            } else {
                self.name()
            },
            ..best
        });
        // The breach speaks beside both, past the record and the value refractory: a
        // value beyond everything the window held is news however quiet the series was.
        score = beside(score, self.breach.as_mut(), self.cfg.weights.breach, t, x);
        // So does an extreme, for the same reason: a value beyond the lowest or highest
        // of the last weeks is news however noisy the series, and however like an
        // earlier incident.
        score = beside(score, self.extreme.as_mut(), self.cfg.weights.extreme, t, x);
        Score {
            value: self.combined_refractory(score.value),
            ..score
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.robust.as_ref().map_or(0, |m| m.state_bytes())
            + self.seasonal.as_ref().map_or(0, |m| m.state_bytes())
            + self.cusum.as_ref().map_or(0, |m| m.state_bytes())
            + self.spike.as_ref().map_or(0, |m| m.state_bytes())
            + self.short.state_bytes()
            + self.intervals.state_bytes()
            + self.novelty.as_ref().map_or(0, |n| n.state_bytes())
            + self.context.as_ref().map_or(0, |c| c.state_bytes())
            + self.breach.as_ref().map_or(0, |b| b.state_bytes())
            + self.extreme.as_ref().map_or(0, |e| e.state_bytes())
            + self
                .days
                .as_ref()
                .map_or(0, |(a, b)| a.state_bytes() + b.state_bytes())
            + self
                .smooth
                .as_ref()
                .map_or(0, |(r, ring, _)| r.state_bytes() + ring.state_bytes())
            - 2 * std::mem::size_of::<Ring>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default ensemble with these member weights.
    fn weighted(weights: MethodWeights) -> Ensemble {
        Ensemble::new(EnsembleConfig {
            weights,
            ..EnsembleConfig::default()
        })
        .expect("valid")
    }

    fn fed(interval: i64, points: i64) -> Ensemble {
        let mut e = Ensemble::new(EnsembleConfig::default()).expect("valid");
        for i in 0..points {
            e.update(1_400_000_000 + i * interval, (i % 7) as f64);
        }
        e
    }

    #[test]
    fn point_counts_follow_the_sampling_interval() {
        let cfg = EnsembleConfig::default();
        // 5-minute data: the reference, nothing changes.
        let five = fed(300, 200);
        assert_eq!(five.refractory.points, cfg.refractory);
        assert_eq!(five.smooth.as_ref().map(|s| s.1.capacity()), Some(48));
        // Hourly data: a day is 24 points, not 288 (the 407 five-minute points of the
        // defaults are 33.9 h: 34 hourly points).
        let hourly = fed(3600, 200);
        assert_eq!(cfg.refractory, 407, "the comment above needs updating");
        assert_eq!(hourly.refractory.points, 34);
        assert_eq!(hourly.smooth.as_ref().map(|s| s.1.capacity()), Some(4));
        assert!((hourly.decay.powf(167.0) - 0.5).abs() < 1e-9);
        // Plain point counts when asked.
        let mut plain = Ensemble::new(EnsembleConfig {
            reference_interval: None,
            ..EnsembleConfig::default()
        })
        .expect("valid");
        for i in 0..200 {
            plain.update(i * 3600, (i % 7) as f64);
        }
        assert_eq!(plain.refractory.points, cfg.refractory);
    }

    #[test]
    fn a_combined_alarm_damps_what_follows_unless_it_is_worse() {
        let mut e = Ensemble::new(EnsembleConfig {
            combined_refractory: 3,
            reference_interval: None,
            ..EnsembleConfig::default()
        })
        .expect("valid");
        assert_eq!(e.combined_refractory(0.4), 0.4, "below the alarm level");
        assert_eq!(e.combined_refractory(0.6), 0.6, "the alarm");
        assert!(
            (e.combined_refractory(0.55) - 0.055).abs() < 1e-12,
            "damped"
        );
        assert_eq!(e.combined_refractory(0.8), 0.8, "a worse one gets through");
        for _ in 0..3 {
            assert!(
                e.combined_refractory(0.7) < 0.1,
                "damped after the new peak"
            );
        }
        assert_eq!(e.combined_refractory(0.7), 0.7, "the period is over");
    }

    /// Sparse counts (mostly 0, now and then 1 to 3) must not alarm on a 4, as MAD 0
    /// alone would make it; a burst of 40 still does.
    #[test]
    fn sparse_counts_alarm_on_bursts_not_on_their_usual_ones() {
        let mut e = weighted(MethodWeights {
            context: 0.0,
            ..MethodWeights::default()
        });
        let t0 = 1_400_000_000;
        let mut r = super::super::noise(7);
        let mut worst = 0.0f64;
        for i in 0..3000 {
            let x = match (r() * 20.0) as u32 {
                0 => 3.0,
                1 | 2 => 2.0,
                3..=5 => 1.0,
                _ => 0.0,
            };
            let s = e.update(t0 + i * 300, x);
            if i > 1000 {
                worst = worst.max(s.value);
            }
        }
        let four = e.update(t0 + 3000 * 300, 4.0).value;
        assert!(worst.max(four) < 0.5, "usual ones {worst}, a 4 {four}");
        let burst = e.update(t0 + 3001 * 300, 40.0).value;
        assert!(burst > 0.5, "a burst of 40 scored {burst}");
    }

    /// A nightly job lifts a quiet host's CPU from about 0.07 to 1.5 at about 03:00, up
    /// to 40 minutes earlier or later each night (as NAB's `ec2_cpu_utilization_c6585a`
    /// does). Judged against its median, every night is a robust z of hundreds; once
    /// three of the last seven nights went as high at about that hour, it is familiar
    /// and no alarm. The same spike at noon is still news.
    #[test]
    fn a_nightly_job_is_familiar_but_not_at_noon() {
        let run = |damping: f64, noon_spike: bool| {
            let mut e = Ensemble::new(EnsembleConfig {
                familiar: FamiliarConfig {
                    damping,
                    ..FamiliarConfig::default()
                },
                ..EnsembleConfig::default()
            })
            .expect("valid");
            let mut r = super::super::noise(11);
            let jitter: [i64; 14] = [0, 35, -40, 10, 25, -15, 40, -30, 5, 20, -25, 15, -5, 30];
            let (mut nights, mut noon) = (0.0f64, 0.0f64);
            for i in 0..14 * 288 {
                let t = i * 300;
                let (day, minute) = (t / 86_400, t % 86_400 / 60);
                let night = (minute - 180 - jitter[day as usize]).abs() < 3;
                let midday = noon_spike && day == 13 && minute == 12 * 60;
                let x = if night || midday {
                    1.5
                } else {
                    0.066 + 0.01 * r()
                };
                let s = e.update(t, x).value;
                if night && day >= 4 {
                    nights = nights.max(s);
                }
                if midday {
                    noon = s;
                }
            }
            (nights, noon)
        };
        let (unfamiliar, _) = run(1.0, false);
        assert!(
            unfamiliar > 0.5,
            "without the check a night scores {unfamiliar}"
        );
        let (nights, noon) = run(0.0, true);
        assert!(nights < 0.5, "a familiar night scored {nights}");
        assert!(noon > 0.5, "the same spike at noon scored {noon}");
    }

    /// On a noisy gauge (uniform between 40 and 90 for two weeks), a 30 is 10 below
    /// anything seen but well inside the noise for the baseline members (robust z ~2.4):
    /// without the extreme member the ensemble scores it like any point; with it, it is
    /// news, explained by the range it left. Normal points stay under 0.5 either way.
    #[test]
    fn a_noisy_gauge_below_anything_of_the_weeks_is_news() {
        let judged = |extreme: f64| {
            let mut e = weighted(MethodWeights {
                extreme,
                ..MethodWeights::default()
            });
            let mut r = super::super::noise(3);
            let t0 = 1_400_000_000;
            let n = 14 * 288;
            let mut normal = 0.0f64;
            for i in 0..n {
                let s = e.update(t0 + i * 300, 40.0 + 50.0 * r());
                if i > 8 * 288 {
                    normal = normal.max(s.value);
                }
            }
            (normal, e.update(t0 + n * 300, 30.0))
        };
        let (normal, without) = judged(0.0);
        assert!(normal < 0.5 && without.value < 0.5, "{normal} {without:?}");
        let (normal, with) = judged(1.0);
        assert!(normal < 0.5, "{normal}");
        assert!(with.value > 0.9, "{with:?}");
        assert_eq!(with.method, "extreme");
        assert!(
            with.explanation()
                .contains("below the lowest of its window"),
            "{}",
            with.explanation()
        );
    }

    #[test]
    fn the_moving_average_survives_a_resize() {
        // After the resize, the sum is that of the values kept.
        let e = fed(3600, 103);
        let (_, ring, sum) = e.smooth.as_ref().expect("smooth member");
        let kept: f64 = (0..ring.len()).filter_map(|b| ring.get_back(b)).sum();
        assert!((kept - sum).abs() < 1e-9, "{kept} vs {sum}");
    }

    /// When the moving-average member speaks, the explanation and the direction are
    /// about the average it judged, not the raw point, which can sit on the other side
    /// of the expected level (the demo once read "value 6.04e8 below expected 5.59e8").
    #[test]
    fn a_drift_is_explained_by_the_moving_average_that_saw_it() {
        let mut e = weighted(MethodWeights {
            robust: 0.0,
            seasonal: 0.0,
            spike: 0.0,
            context: 0.0,
            ..MethodWeights::default()
        });
        let t0 = 1_400_000_000;
        let mut r = super::super::noise(11);
        let mut drift = None;
        for i in 0..2000i64 {
            let ramp = (i - 1000).max(0) as f64 * 0.05;
            let s = e.update(t0 + i * 300, 100.0 + 10.0 * (r() - 0.5) + ramp);
            if i > 1000 && s.value > 0.5 {
                drift = Some(s);
                break;
            }
        }
        let s = drift.expect("the ramp is caught");
        assert_eq!((s.method, s.reason), ("smooth", Reason::AverageDeviation));
        let expected = s.expected.expect("an expected level");
        assert!(s.observed > expected && s.deviation > 0.0, "{s:?}");
        assert!(
            s.explanation().starts_with("moving average ")
                && s.explanation().contains(" above expected "),
            "{}",
            s.explanation()
        );
    }

    #[test]
    fn members_the_gate_skips_learn_as_if_they_had_scored() {
        // Robust and spike only learn while the season gate is closed; once it opens
        // they must judge exactly as if they had scored every point.
        let mut r = super::super::noise(5);
        let xs: Vec<f64> = (0..3000)
            .map(|i| 50.0 + 10.0 * r() + (i / 700) as f64)
            .collect();
        let closed = |i: usize| (i / 250).is_multiple_of(2);
        let mut robust =
            [0, 1].map(|_| RobustDeviation::new(RobustConfig::default()).expect("valid"));
        let mut spike = [0, 1].map(|_| Spike::new(SpikeConfig::default()).expect("valid"));
        let mut judged = 0;
        for (i, &x) in xs.iter().enumerate() {
            let t = i as i64;
            let (r0, s0) = (robust[0].update(t, x), spike[0].update(t, x));
            if closed(i) {
                robust[1].learn(x);
                spike[1].learn(x);
                continue;
            }
            let (r1, s1) = (robust[1].update(t, x), spike[1].update(t, x));
            assert_eq!(r0, r1, "robust at {i}");
            assert_eq!(s0, s1, "spike at {i}");
            judged += usize::from(r0.reason == Reason::Deviation && s0.reason == Reason::Spike);
        }
        assert!(judged > 1000, "{judged} points judged after warm-up");
    }
}
