//! Seasonal baseline: compares a point with the same phase of the previous cycles.
//!
//! The period is found by autocorrelation among calendar candidates (hourly, daily,
//! weekly, converted to samples with the median sampling interval, searched ±2% around
//! each), re-estimated every `reestimate_every` points over a bounded history. The
//! expectation is the median of the same phase in up to `cycles` previous cycles, and the
//! residual is judged by median/MAD over a window of past residuals. A value inside the
//! band of what those cycles held within `phase_tolerance` points of this phase is no
//! deviation: a pattern arriving a point early or late is still the pattern.

use serde::{Deserialize, Serialize};

use super::window::{Ring, SortedWindow};
use super::{
    AnomalyMethod, ModelConfigError, Reason, Score, require, require_floors, require_positive,
    z_to_unit,
};

/// Parameters of [`Seasonal`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeasonalConfig {
    /// A fixed period in samples; when absent it is found by autocorrelation.
    pub period: Option<usize>,
    /// Points of history kept for the autocorrelation and the previous cycles.
    pub max_history: usize,
    /// Previous cycles whose same-phase median is the expectation (at most 8 are used).
    pub cycles: usize,
    /// Points a cycle's pattern may come early or late: a value within the lowest and
    /// highest the previous cycles held up to this many points either side of its phase
    /// deviates by nothing, and one beyond them by its distance from that band (at most
    /// 60; never more than a quarter of the period).
    pub phase_tolerance: usize,
    /// How often (in points) the period is re-estimated.
    pub reestimate_every: usize,
    /// Autocorrelation a candidate period needs to be believed.
    pub min_acf: f64,
    /// Residuals kept to learn the residual spread.
    pub residual_window: usize,
    pub min_points: usize,
    /// Share of the 5–95% spread the scale never goes below (0: MAD only).
    pub spread_share: f64,
    /// Multiple of the data's resolution (its smallest step between values, 1 for
    /// counts) the scale never goes below (0: off).
    pub resolution_share: f64,
    pub z_half: f64,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        Self {
            period: None,
            max_history: 4096,
            cycles: 3,
            // Measured on NAB (docs/research/nab.md): an hourly CPU burst arriving a point late was "a
            // drop below 100, robust z −50" then "a spike where 30 was expected".
            phase_tolerance: 1,
            reestimate_every: 288,
            min_acf: 0.3,
            residual_window: 288,
            min_points: 30,
            spread_share: 0.0,
            resolution_share: 0.0,
            z_half: 4.0,
        }
    }
}

/// Previous cycles the expectation and the phase band use at most.
const MAX_CYCLES: usize = 8;

/// Largest `phase_tolerance`: the band reads `2 × tolerance + 1` points per cycle.
const MAX_PHASE_TOLERANCE: usize = 60;

/// Calendar cycles we look for, in seconds.
const CANDIDATE_PERIODS_SECS: [i64; 3] = [3600, 86_400, 7 * 86_400];

const INTERVALS_KEPT: usize = 64;

/// How much more a period's autocorrelation must be than at half the period.
const MIN_HALF_PERIOD_CONTRAST: f64 = 0.2;

/// Lags tried on each side of a candidate period in the coarse pass of the period search.
const COARSE_STEPS: usize = 4;

/// Same-phase baseline with an automatically found period.
#[derive(Debug, Clone)]
pub struct Seasonal {
    cfg: SeasonalConfig,
    history: Ring,
    /// Recent sampling intervals; their median is only needed at re-estimation, so a plain
    /// ring (sorted then) is cheaper than keeping them sorted every point.
    intervals: Ring,
    residuals: SortedWindow,
    scratch: Vec<f64>,
    period: Option<usize>,
    /// Autocorrelation at `period` when it was found (1 for a fixed period).
    strength: f64,
    since_estimate: usize,
    last_t: Option<i64>,
}

impl Seasonal {
    pub fn new(cfg: SeasonalConfig) -> Result<Self, ModelConfigError> {
        require_floors(cfg.floors())?;
        require(
            cfg.max_history >= 16,
            "max_history",
            "must be at least 16 points",
        )?;
        require(cfg.cycles >= 1, "cycles", "must be at least 1")?;
        require(
            cfg.phase_tolerance <= MAX_PHASE_TOLERANCE,
            "phase_tolerance",
            "must be at most 60 points (a pattern a little early or late)",
        )?;
        require(
            cfg.reestimate_every >= 1,
            "reestimate_every",
            "must be at least 1",
        )?;
        require(
            cfg.min_acf.is_finite() && cfg.min_acf < 1.0,
            "min_acf",
            "must be a number below 1",
        )?;
        require(
            cfg.residual_window >= 3,
            "residual_window",
            "must be at least 3",
        )?;
        require(
            cfg.min_points >= 3 && cfg.min_points <= cfg.residual_window,
            "min_points",
            "must be in 3..=residual_window",
        )?;
        require_positive(cfg.z_half, "z_half")?;
        if let Some(p) = cfg.period {
            require(
                p >= 2 && p < cfg.max_history,
                "period",
                "must be in 2..max_history",
            )?;
        }
        Ok(Self {
            history: Ring::new(cfg.max_history),
            intervals: Ring::new(INTERVALS_KEPT),
            residuals: SortedWindow::new(cfg.residual_window),
            scratch: Vec::with_capacity(cfg.max_history),
            period: cfg.period,
            strength: if cfg.period.is_some() { 1.0 } else { 0.0 },
            since_estimate: 0,
            last_t: None,
            cfg,
        })
    }

    /// The period in samples currently believed, if any.
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    /// How strongly seasonal the series is: the autocorrelation at the period (0 if none).
    pub fn strength(&self) -> f64 {
        if self.period.is_some() {
            self.strength
        } else {
            0.0
        }
    }

    fn reestimate(&mut self) {
        let mut dts = [0.0f64; INTERVALS_KEPT];
        let kept = self.intervals.len();
        for (i, slot) in dts.iter_mut().enumerate().take(kept) {
            *slot = self.intervals.get_back(i).unwrap_or(0.0);
        }
        let dts = &mut dts[..kept];
        dts.sort_by(f64::total_cmp);
        let Some(dt) = dts.get(kept / 2).copied().filter(|d| *d > 0.0) else {
            return;
        };
        self.history.copy_in_order(&mut self.scratch);
        let n = self.scratch.len();
        let mean = sum(&self.scratch) / n as f64;
        // Centred once, so each lag below is a plain dot product.
        for v in &mut self.scratch {
            *v -= mean;
        }
        let var = dot(&self.scratch, &self.scratch);
        if var.is_nan() || var <= 0.0 || !var.is_finite() {
            return;
        }
        // Candidates shortest first; a longer cycle must be clearly better to win, because a
        // daily pattern also repeats weekly.
        let mut best: Option<(usize, f64)> = None;
        for secs in CANDIDATE_PERIODS_SECS {
            let center = (secs as f64 / dt).round();
            if center < 2.0 || center * 2.0 > n as f64 {
                continue;
            }
            let spread = (center * 0.02).ceil() as usize;
            let center = center as usize;
            // Coarse to fine: autocorrelation is smooth in the lag, so a strided pass and a
            // climb from its best to the nearest peak find the period at a fraction of the
            // cost of trying every lag (a weekly search at 5-minute steps is ±40 lags over
            // 4000 points; this tries about 15).
            let (first, last) = (
                center.saturating_sub(spread).max(2),
                (center + spread).min(n / 2),
            );
            if first > last {
                continue;
            }
            let stride = (spread / COARSE_STEPS).max(1);
            let acf = |lag: usize| autocorrelation(&self.scratch, var, lag);
            let local = match self.period.filter(|p| (first..=last).contains(p)) {
                // The period believed so far is the best start: it rarely moves, and
                // a climb from it costs two or three lags instead of a strided pass.
                Some(p) => Some(climb(&acf, p, acf(p), first, last)),
                None => {
                    let mut coarse: Option<(usize, f64)> = None;
                    for lag in (first..=last).step_by(stride) {
                        let a = acf(lag);
                        if coarse.is_none_or(|(_, b)| a > b) {
                            coarse = Some((lag, a));
                        }
                    }
                    // The peak is within a stride of the best coarse lag.
                    coarse.map(|(lag, a)| {
                        if stride > 1 {
                            let lo = lag.saturating_sub(stride - 1).max(first);
                            climb(&acf, lag, a, lo, (lag + stride - 1).min(last))
                        } else {
                            (lag, a)
                        }
                    })
                }
            };
            // A true period repeats at its lag but not at half of it; a smooth series is
            // merely similar to itself an hour later, and also at half an hour. (Tested
            // last: it costs a lag of its own, and a candidate that cannot win needs none.)
            if let Some((lag, acf)) = local
                && acf >= self.cfg.min_acf
                && best.is_none_or(|(_, b)| acf > b + 0.05)
                && acf - autocorrelation(&self.scratch, var, lag / 2) >= MIN_HALF_PERIOD_CONTRAST
            {
                best = Some((lag, acf));
            }
        }
        self.period = best.map(|(lag, _)| lag);
        self.strength = best.map_or(0.0, |(_, acf)| acf);
    }

    /// The expectation at this phase and the band around it (`PhaseBand`).
    fn phase_band(&self, period: usize) -> Option<PhaseBand> {
        let expected = self.expectation(period)?;
        let tolerance = self.cfg.phase_tolerance.min(period / 4);
        let (mut low, mut high) = (expected, expected);
        for c in 1..=self.cfg.cycles.min(MAX_CYCLES) {
            // This phase in cycle `c` back is `c * period` points back (counting the
            // value being judged, not yet in history, as 0).
            let at = c * period;
            for back in at.saturating_sub(tolerance).max(1)..=at + tolerance {
                if let Some(v) = self.history.get_back(back - 1) {
                    low = low.min(v);
                    high = high.max(v);
                }
            }
        }
        Some(PhaseBand {
            expected,
            low,
            high,
        })
    }

    /// Median of the same phase in the previous cycles held in history.
    fn expectation(&self, period: usize) -> Option<f64> {
        let mut same_phase = [0.0f64; MAX_CYCLES];
        let mut k = 0;
        for c in 1..=self.cfg.cycles.min(MAX_CYCLES) {
            match self.history.get_back(c * period - 1) {
                Some(v) => {
                    same_phase[k] = v;
                    k += 1;
                }
                None => break,
            }
        }
        if k == 0 {
            return None;
        }
        if k == 3 {
            // The default (three cycles): a median of three, without a sort.
            let [a, b, c] = [same_phase[0], same_phase[1], same_phase[2]];
            return Some(a.max(b).min(a.min(b).max(c)));
        }
        let seen = &mut same_phase[..k];
        seen.sort_by(f64::total_cmp);
        Some(if k % 2 == 1 {
            seen[k / 2]
        } else {
            0.5 * (seen[k / 2 - 1] + seen[k / 2])
        })
    }
}

/// What the previous cycles held at a value's phase.
#[derive(Debug, Clone, Copy)]
struct PhaseBand {
    /// Median of the same phase in the previous cycles.
    expected: f64,
    /// Lowest and highest value within the phase tolerance in those cycles.
    low: f64,
    high: f64,
}

/// From `start` (whose value is `at_start`), climbs towards the better neighbour
/// while it keeps improving, within `lo..=hi`: the nearest peak of a smooth curve.
fn climb(
    f: &impl Fn(usize) -> f64,
    start: usize,
    at_start: f64,
    lo: usize,
    hi: usize,
) -> (usize, f64) {
    let left = if start > lo {
        f(start - 1)
    } else {
        f64::NEG_INFINITY
    };
    let right = if start < hi {
        f(start + 1)
    } else {
        f64::NEG_INFINITY
    };
    let (mut at, mut value, step): (usize, f64, isize) = if left > at_start && left >= right {
        (start - 1, left, -1)
    } else if right > at_start {
        (start + 1, right, 1)
    } else {
        return (start, at_start);
    };
    loop {
        let next = at.wrapping_add_signed(step);
        if next < lo || next > hi {
            return (at, value);
        }
        let a = f(next);
        if a <= value {
            return (at, value);
        }
        (at, value) = (next, a);
    }
}

/// Autocorrelation at `lag` of the centred series `x`, normalised per overlapping pair (so
/// longer lags are not penalised for having fewer pairs; `var` is the sum of squares of `x`).
fn autocorrelation(x: &[f64], var: f64, lag: usize) -> f64 {
    let pairs = x.len().saturating_sub(lag);
    if pairs == 0 {
        return 0.0;
    }
    let acc = dot(&x[..pairs], &x[lag..]);
    (acc / pairs as f64) / (var / x.len() as f64)
}

/// Dot product over the common length, with independent partial sums so the compiler can
/// keep several multiply-adds in flight (and vectorise): the period search is most of
/// the seasonal method's work.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f64>() + tail
}

/// Sum with independent partial sums, as [`dot`]: a plain `sum()` is one chain of
/// dependent additions, which over the 4,096-point history cost as much as every
/// autocorrelation of a re-estimate together.
fn sum(x: &[f64]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += chunk[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

impl AnomalyMethod for Seasonal {
    fn name(&self) -> &'static str {
        "seasonal"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        if let Some(prev) = self.last_t.replace(t) {
            let dt = t.saturating_sub(prev);
            if dt > 0 {
                self.intervals.push(dt as f64);
            }
        }
        let score = match self.period.and_then(|p| self.phase_band(p)) {
            None => Score::quiet(t, x, self.name(), Reason::NoSeason),
            Some(PhaseBand {
                expected,
                low,
                high,
            }) => {
                // The spread is learnt around the expectation, so a pattern that jitters
                // widens it as it should; the value is judged by how far it lies beyond
                // the band (both moved by the residuals' median, the usual offset).
                let residual = x - expected;
                let score = match self.residuals.median() {
                    Some(mid) if self.residuals.len() >= self.cfg.min_points => {
                        let scale = self
                            .residuals
                            .robust_scale(mid, expected, self.cfg.floors());
                        let shifted = x - mid;
                        // `max`/`min`, not `clamp`: no panic whatever the floats.
                        let z = (shifted - shifted.max(low).min(high)) / scale;
                        let centre = expected + mid;
                        Score {
                            t,
                            value: z_to_unit(z, self.cfg.z_half),
                            observed: x,
                            expected: Some(centre),
                            band: Some((centre - 3.0 * scale, centre + 3.0 * scale)),
                            deviation: z,
                            method: self.name(),
                            reason: Reason::SeasonalDeviation,
                        }
                    }
                    _ => Score::quiet(t, x, self.name(), Reason::Warmup),
                };
                self.residuals.push(residual);
                score
            }
        };
        self.history.push(x);
        self.since_estimate += 1;
        if self.cfg.period.is_none() && self.since_estimate >= self.cfg.reestimate_every {
            self.since_estimate = 0;
            let before = self.period;
            self.reestimate();
            if before != self.period {
                // Residuals against another period are not comparable.
                self.residuals = SortedWindow::new(self.cfg.residual_window);
            }
        }
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            - std::mem::size_of::<Ring>()
            - std::mem::size_of::<SortedWindow>()
            - std::mem::size_of::<Ring>()
            + self.history.state_bytes()
            + self.intervals.state_bytes()
            + self.residuals.state_bytes()
            + self.scratch.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_daily_period_in_hourly_data() {
        let mut s = Seasonal::new(SeasonalConfig {
            reestimate_every: 24,
            ..Default::default()
        })
        .expect("valid");
        for i in 0..24 * 20 {
            let x = 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 24.0).sin();
            s.update(i * 3600, x);
        }
        assert_eq!(s.period(), Some(24));
        let normal = s.update(24 * 20 * 3600, 50.0);
        let odd = s.update(24 * 20 * 3600 + 3600, 10.0);
        assert!(normal.value < 0.5, "{normal}");
        assert!(odd.value > 0.9, "{odd}");
    }

    /// 5-minute points with a 15-minute burst to 100 every hour (period 12) over a base
    /// of 30, on time or a point late, at random from one hour to the next.
    fn jittery_bursts(hours: usize) -> Vec<f64> {
        let mut xs = Vec::new();
        let mut rng = 12345u64;
        for _ in 0..hours {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = 4 + (rng >> 33) as usize % 2;
            for phase in 0..12 {
                let noise = ((phase * 31 + xs.len() * 17) % 7) as f64 * 0.3;
                let burst = (start..start + 3).contains(&phase);
                xs.push(if burst { 100.0 - noise } else { 30.0 + noise });
            }
        }
        xs
    }

    /// Scores of a seasonal method with this phase tolerance over the points, from the
    /// third day on, and the method.
    fn after_two_days(tolerance: usize, xs: &[f64]) -> (Seasonal, Vec<Score>) {
        let mut s = Seasonal::new(SeasonalConfig {
            phase_tolerance: tolerance,
            ..Default::default()
        })
        .expect("valid");
        let scores: Vec<Score> = (0..).zip(xs).map(|(i, &x)| s.update(i * 300, x)).collect();
        (s, scores.into_iter().skip(2 * 288).collect())
    }

    #[test]
    fn a_pattern_arriving_a_point_early_or_late_is_no_deviation() {
        let xs = jittery_bursts(24 * 6);
        let alarms = |scores: &[Score]| scores.iter().filter(|s| s.value >= 0.8).count();
        let (mut tolerant, scores) = after_two_days(1, &xs);
        assert_eq!(tolerant.period(), Some(12));
        let worst = scores.iter().max_by(|a, b| a.value.total_cmp(&b.value));
        assert_eq!(alarms(&scores), 0, "{worst:?}");
        // Without the tolerance, a late burst is a drop where 100 was expected and a
        // spike where 30 was (28 alarms in these four days).
        let (_, strict) = after_two_days(0, &xs);
        assert!(alarms(&strict) > 20, "{}", alarms(&strict));
        // Beyond the band is still a deviation: the base dropping to 0, a burst to 200.
        let t = xs.len() as i64 * 300;
        let outage = tolerant.update(t, 0.0);
        assert!(outage.value > 0.9, "{outage}");
        let twice = tolerant.update(t + 300, 200.0);
        assert!(twice.value > 0.9, "{twice}");
        let too_loose = Seasonal::new(SeasonalConfig {
            phase_tolerance: 61,
            ..Default::default()
        });
        assert!(too_loose.is_err());
    }
}
