//! Capacity forecasting: trend + seasonality, prediction intervals, time to exhaustion.
//!
//! The model is deliberately simple and robust, because capacity questions are asked at
//! horizons (weeks, months) where fancy short-term dynamics do not survive:
//! 1. the period (daily or weekly) is found by autocorrelation of the detrended series;
//! 2. a linear trend and a per-phase seasonal profile are fitted alternately (backfitting),
//!    with Huber weights so outages and spikes do not bend the trend;
//! 3. intervals combine the residual spread with the uncertainty of the trend extrapolated
//!    to the horizon, inflated for autocorrelated residuals (fewer effective points).
//!
//! [`backtest()`] checks the model the way it is used: rolling origins, per horizon.

pub mod backtest;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use backtest::{BacktestReport, HorizonAccuracy, backtest};

/// Forecasting parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Central probability of the prediction intervals (0.8 = 10%–90%).
    pub level: f64,
    /// A fixed seasonal period in samples; found automatically when absent.
    pub period: Option<usize>,
    /// Fit on the last `fit_window` points only (recent behaviour matters most).
    pub fit_window: Option<usize>,
    /// Model seasonality at all.
    pub seasonal: bool,
    /// Least points to fit.
    pub min_points: usize,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            level: 0.8,
            period: None,
            fit_window: None,
            seasonal: true,
            min_points: 10,
        }
    }
}

/// Why a series cannot be forecast.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("series too short: {got} points, need at least {needed}")]
    TooShort { got: usize, needed: usize },
    #[error("point {index}: value is not finite")]
    NonFinite { index: usize },
    #[error("point {index}: timestamps must strictly increase")]
    NotIncreasing { index: usize },
    #[error("invalid forecast parameter {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastPoint {
    pub t: i64,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// A fitted trend + seasonal model.
#[derive(Debug, Clone, Serialize)]
pub struct Forecaster {
    /// Sampling interval in seconds (median of the input's).
    pub step_secs: i64,
    /// Timestamp of the last fitted point.
    pub last_t: i64,
    /// Index origin of the trend (the mean fitted index), and the fit size.
    center: f64,
    n: usize,
    sxx: f64,
    pub intercept: f64,
    /// Trend per sample.
    pub slope: f64,
    /// Seasonal profile, indexed by phase; empty when no seasonality.
    pub profile: Vec<f64>,
    /// Phase of sample index 0.
    phase0: usize,
    /// Residual standard deviation (robust).
    pub sigma: f64,
    /// Variance inflation for autocorrelated residuals.
    inflation: f64,
    level: f64,
    z: f64,
}

/// Time until a limit is reached, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Exhaustion {
    pub limit: f64,
    /// Central interval probability of `earliest`/`latest`.
    pub level: f64,
    /// Seconds from the last point until the forecast reaches the limit; `Some(0)` if the
    /// last fitted level already does; `None` if not within the search horizon.
    pub eta_secs: Option<i64>,
    /// When the optimistic bound (upper for a rising series) reaches it.
    pub earliest_secs: Option<i64>,
    /// When the pessimistic bound does; `None` if not within the search horizon.
    pub latest_secs: Option<i64>,
    /// Search horizon in seconds.
    pub searched_secs: i64,
}

impl fmt::Display for Exhaustion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = (self.level * 100.0).round();
        match self.eta_secs {
            Some(0) => write!(f, "limit {} already reached", self.limit),
            Some(eta) => {
                write!(
                    f,
                    "limit {} reached in {}, {pct}% interval ",
                    self.limit,
                    format_duration(eta)
                )?;
                let lo = self
                    .earliest_secs
                    .map_or("now".to_string(), format_duration);
                let hi = self.latest_secs.map_or(
                    format!("beyond {}", format_duration(self.searched_secs)),
                    format_duration,
                );
                write!(f, "{lo} – {hi}")
            }
            None => match self.earliest_secs {
                Some(e) => write!(
                    f,
                    "limit {} not expected within {} (could be as early as {} at {pct}%)",
                    self.limit,
                    format_duration(self.searched_secs),
                    format_duration(e)
                ),
                None => write!(
                    f,
                    "limit {} not reached within {}",
                    self.limit,
                    format_duration(self.searched_secs)
                ),
            },
        }
    }
}

/// "3 d 4 h", "2 h 5 m", "45 s".
pub fn format_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} m")
    } else if m > 0 {
        format!("{m} m")
    } else {
        format!("{s} s")
    }
}

/// `500ms` is not a forecast horizon; accepts `30s`, `5m`, `2h`, `7d`, `4w` (and bare seconds).
pub fn parse_duration(text: &str) -> Option<i64> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Standard normal quantile for a central interval probability (Acklam's rational
/// approximation of the inverse CDF; error < 1.2e-9, plenty for intervals).
pub fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

fn median_of(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn acf(x: &[f64], lag: usize) -> f64 {
    let n = x.len();
    if lag >= n {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    if var.is_nan() || var <= 0.0 {
        return 0.0;
    }
    (0..n - lag)
        .map(|i| (x[i] - mean) * (x[i + lag] - mean))
        .sum::<f64>()
        / var
}

impl Forecaster {
    /// Fits the model to points with strictly increasing timestamps and finite values.
    pub fn fit(points: &[(i64, f64)], cfg: &ForecastConfig) -> Result<Self, ForecastError> {
        if !(cfg.level > 0.0 && cfg.level < 1.0) {
            return Err(ForecastError::Invalid {
                field: "level",
                reason: "must be between 0 and 1",
            });
        }
        let needed = cfg.min_points.max(3);
        if points.len() < needed {
            return Err(ForecastError::TooShort {
                got: points.len(),
                needed,
            });
        }
        for (i, w) in points.windows(2).enumerate() {
            if w[1].0 <= w[0].0 {
                return Err(ForecastError::NotIncreasing { index: i + 1 });
            }
        }
        if let Some(i) = points.iter().position(|p| !p.1.is_finite()) {
            return Err(ForecastError::NonFinite { index: i });
        }
        let start = cfg
            .fit_window
            .map_or(0, |w| points.len().saturating_sub(w.max(needed)));
        let pts = &points[start..];
        let n = pts.len();
        let mut dts: Vec<f64> = pts.windows(2).map(|w| (w[1].0 - w[0].0) as f64).collect();
        let step = median_of(&mut dts).max(1.0);
        // Sample index from time, so gaps keep the phase right.
        let t0 = pts[0].0;
        let idx: Vec<f64> = pts
            .iter()
            .map(|p| ((p.0 - t0) as f64 / step).round())
            .collect();
        let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
        // Work on the regular grid implied by idx: positions may skip (gaps).
        let span = idx.last().copied().unwrap_or(0.0) as usize + 1;

        // Trend first, then look for a period in the detrended series.
        let mut w = vec![1.0; n];
        let line = |seasonal: &[f64], w: &[f64]| {
            // Fit y - seasonal on the true indices (not positions) by mapping through idx.
            let sw: f64 = w.iter().sum::<f64>().max(1e-12);
            let mx = idx.iter().zip(w).map(|(i, wi)| wi * i).sum::<f64>() / sw;
            let my = y
                .iter()
                .zip(seasonal)
                .zip(w)
                .map(|((yi, si), wi)| wi * (yi - si))
                .sum::<f64>()
                / sw;
            let (mut sxx, mut sxy) = (0.0, 0.0);
            for k in 0..n {
                let dx = idx[k] - mx;
                sxx += w[k] * dx * dx;
                sxy += w[k] * dx * (y[k] - seasonal[k] - my);
            }
            (my, if sxx > 0.0 { sxy / sxx } else { 0.0 }, mx, sxx)
        };
        let zeros = vec![0.0; n];
        let (mut my, mut slope, mut mx, mut sxx) = line(&zeros, &w);
        let period = if !cfg.seasonal {
            None
        } else if let Some(p) = cfg.period {
            (p >= 2 && p * 2 <= span).then_some(p)
        } else {
            let mut grid = vec![f64::NAN; span];
            for k in 0..n {
                grid[idx[k] as usize] = y[k] - (my + slope * (idx[k] - mx));
            }
            // Fill gaps with 0 (the detrended mean) so the ACF stays defined.
            for g in grid.iter_mut() {
                if !g.is_finite() {
                    *g = 0.0;
                }
            }
            let mut best: Option<(usize, f64)> = None;
            for secs in [86_400.0, 7.0 * 86_400.0] {
                let c = (secs / step).round();
                if c < 2.0 || c * 2.0 > span as f64 {
                    continue;
                }
                let r = acf(&grid, c as usize);
                if r >= 0.2 && best.is_none_or(|(_, b)| r > b) {
                    best = Some((c as usize, r));
                }
            }
            best.map(|(p, _)| p)
        };
        let mut profile = vec![0.0; period.unwrap_or(0)];
        let mut seasonal = vec![0.0; n];
        for _round in 0..4 {
            if let Some(p) = period {
                // Weighted mean residual per phase, centred to sum to 0.
                let mut sum = vec![0.0; p];
                let mut cnt = vec![0.0; p];
                for k in 0..n {
                    let ph = idx[k] as usize % p;
                    sum[ph] += w[k] * (y[k] - (my + slope * (idx[k] - mx)));
                    cnt[ph] += w[k];
                }
                for ph in 0..p {
                    profile[ph] = if cnt[ph] > 0.0 {
                        sum[ph] / cnt[ph]
                    } else {
                        0.0
                    };
                }
                let mean = profile.iter().sum::<f64>() / p as f64;
                profile.iter_mut().for_each(|v| *v -= mean);
                for k in 0..n {
                    seasonal[k] = profile[idx[k] as usize % p];
                }
            }
            (my, slope, mx, sxx) = line(&seasonal, &w);
            // Huber weights from the residuals.
            let resid: Vec<f64> = (0..n)
                .map(|k| y[k] - seasonal[k] - (my + slope * (idx[k] - mx)))
                .collect();
            let mut abs: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
            let s = (1.4826 * median_of(&mut abs)).max(1e-12);
            for k in 0..n {
                let u = resid[k].abs() / (1.345 * s);
                w[k] = if u <= 1.0 { 1.0 } else { 1.0 / u };
            }
        }
        let resid: Vec<f64> = (0..n)
            .map(|k| y[k] - seasonal[k] - (my + slope * (idx[k] - mx)))
            .collect();
        let mut abs: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
        let robust_sigma = 1.4826 * median_of(&mut abs);
        let rms = (resid.iter().map(|r| r * r).sum::<f64>() / n as f64).sqrt();
        // Robust spread, but never below half the RMS (heavy tails still widen intervals).
        let sigma = robust_sigma.max(0.5 * rms).max(1e-12 * (1.0 + my.abs()));
        let rho = if n > 2 {
            let num: f64 = resid.windows(2).map(|w| w[0] * w[1]).sum();
            let den: f64 = resid.iter().map(|r| r * r).sum();
            if den > 0.0 {
                (num / den).clamp(0.0, 0.99)
            } else {
                0.0
            }
        } else {
            0.0
        };
        let last_idx = idx.last().copied().unwrap_or(0.0);
        Ok(Self {
            step_secs: step as i64,
            last_t: pts[n - 1].0,
            center: mx - last_idx, // relative to the last point
            n,
            sxx,
            intercept: my + slope * (last_idx - mx),
            slope,
            phase0: (last_idx as usize) % period.unwrap_or(1).max(1),
            profile,
            sigma,
            inflation: (1.0 + rho) / (1.0 - rho),
            level: cfg.level,
            z: normal_quantile(0.5 + cfg.level / 2.0),
        })
    }

    /// Seasonal period in samples, if any.
    pub fn period(&self) -> Option<usize> {
        (!self.profile.is_empty()).then_some(self.profile.len())
    }

    /// Forecast `h` samples after the last point (h ≥ 1).
    pub fn at_step(&self, h: i64) -> ForecastPoint {
        let hf = h as f64;
        let seasonal = match self.profile.len() {
            0 => 0.0,
            p => self.profile[((self.phase0 as i64 + h).rem_euclid(p as i64)) as usize],
        };
        let value = self.intercept + self.slope * hf + seasonal;
        // Variance of the extrapolated trend plus the noise, inflated for autocorrelation.
        let dx = hf - self.center;
        let trend_var = self.sigma.powi(2) * (1.0 / self.n as f64 + dx * dx / self.sxx.max(1e-12));
        let sd = ((self.sigma.powi(2) + trend_var) * self.inflation).sqrt();
        let half = self.z * sd;
        ForecastPoint {
            t: self.last_t + h * self.step_secs,
            value,
            low: value - half,
            high: value + half,
        }
    }

    /// The forecast from the next sample up to `horizon_secs`, thinned to at most ~500 points.
    pub fn forecast(&self, horizon_secs: i64) -> Vec<ForecastPoint> {
        let steps = (horizon_secs / self.step_secs.max(1)).max(1);
        let stride = (steps / 500).max(1);
        let mut out: Vec<ForecastPoint> = (1..=steps)
            .step_by(stride as usize)
            .map(|h| self.at_step(h))
            .collect();
        if out
            .last()
            .is_none_or(|p| p.t != self.last_t + steps * self.step_secs)
        {
            out.push(self.at_step(steps));
        }
        out
    }

    /// The forecast `secs` after the last point.
    pub fn at(&self, secs: i64) -> ForecastPoint {
        self.at_step(
            (secs as f64 / self.step_secs.max(1) as f64)
                .round()
                .max(1.0) as i64,
        )
    }

    /// When the series reaches `limit` (upwards if it is above the current level, downwards
    /// otherwise), with the interval from the bounds at `level`, searched up to 5 years.
    pub fn time_to_exhaustion(&self, limit: f64, level: f64) -> Exhaustion {
        let step = self.step_secs.max(1);
        let max_steps = (5 * 365 * 86_400 / step).clamp(1, 2_000_000);
        let z = normal_quantile(0.5 + level.clamp(0.01, 0.99) / 2.0);
        let rising = limit >= self.intercept;
        let reached = |v: f64| if rising { v >= limit } else { v <= limit };
        let mut eta = None;
        let mut earliest = None;
        let mut latest = None;
        if reached(self.intercept) {
            eta = Some(0);
        }
        for h in 1..=max_steps {
            if eta.is_some() && earliest.is_some() && latest.is_some() {
                break;
            }
            let p = self.at_step(h);
            let half = (p.high - p.value) / self.z.max(1e-12) * z;
            let (optimistic, pessimistic) = if rising {
                (p.value + half, p.value - half)
            } else {
                (p.value - half, p.value + half)
            };
            if eta.is_none() && reached(p.value) {
                eta = Some(h * step);
            }
            if earliest.is_none() && reached(optimistic) {
                earliest = Some(h * step);
            }
            if latest.is_none() && reached(pessimistic) {
                latest = Some(h * step);
            }
        }
        Exhaustion {
            limit,
            level,
            eta_secs: eta,
            earliest_secs: earliest,
            latest_secs: latest,
            searched_secs: max_steps * step,
        }
    }

    /// One line describing the fitted model.
    pub fn summary(&self) -> String {
        let per_day = self.slope * 86_400.0 / self.step_secs.max(1) as f64;
        let season = match self.period() {
            Some(p) => format!(
                "seasonal period {}",
                format_duration(p as i64 * self.step_secs)
            ),
            None => "no seasonality".to_string(),
        };
        format!(
            "level {:.3}, trend {per_day:+.4}/day, {season}, noise σ {:.3}, {} points every {}",
            self.intercept,
            self.sigma,
            self.n,
            format_duration(self.step_secs)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_format() {
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("7x"), None);
        assert_eq!(format_duration(3 * 86_400 + 4 * 3600), "3 d 4 h");
        assert!((normal_quantile(0.9) - 1.281_551_6).abs() < 1e-6);
    }

    #[test]
    fn bad_series_are_refused() {
        let cfg = ForecastConfig::default();
        assert!(matches!(
            Forecaster::fit(&[(1, 1.0)], &cfg),
            Err(ForecastError::TooShort { .. })
        ));
        let mut pts: Vec<(i64, f64)> = (0..20).map(|i| (i, 1.0)).collect();
        pts[5].1 = f64::NAN;
        assert_eq!(
            Forecaster::fit(&pts, &cfg).err(),
            Some(ForecastError::NonFinite { index: 5 })
        );
        pts[5] = (4, 1.0);
        assert_eq!(
            Forecaster::fit(&pts, &cfg).err(),
            Some(ForecastError::NotIncreasing { index: 5 })
        );
        // Constant series: forecasts the constant with a tiny band, never reaches a higher limit.
        let flat: Vec<(i64, f64)> = (0..50).map(|i| (i * 60, 5.0)).collect();
        let m = Forecaster::fit(&flat, &cfg).expect("fits");
        assert!((m.at(3600).value - 5.0).abs() < 1e-9);
        assert_eq!(m.time_to_exhaustion(10.0, 0.8).eta_secs, None);
    }
}
