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
//!
//! This file holds the ensemble and its scoring; `config` what it is configured with.

mod config;
#[cfg(test)]
mod tests;

pub use config::{Calibration, EnsembleConfig, MethodWeights};

use serde::{Deserialize, Serialize};

use super::familiar::{DailyProfile, FamiliarConfig};
use super::window::Ring;
use super::{
    AnomalyMethod, Breach, BreachConfig, ContextConfig, ContextLearner, Cusum, CusumConfig,
    Extreme, ExtremeConfig, ModelConfigError, Novelty, NoveltyConfig, Reason, RobustConfig,
    RobustDeviation, Score, Seasonal, SeasonalConfig, Spike, SpikeConfig, require,
};

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
