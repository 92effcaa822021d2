//! Rolling-origin backtests: refit at many past origins, compare each horizon's forecast
//! with what actually happened.

use serde::Serialize;

use super::{ForecastConfig, ForecastError, Forecaster, format_duration};

/// Accuracy of one horizon over all origins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HorizonAccuracy {
    pub horizon_secs: i64,
    pub forecasts: usize,
    /// Share of forecasts within 10% / 15% / 20% of the actual value.
    pub within_10: f64,
    pub within_15: f64,
    pub within_20: f64,
    /// Share of actual values inside the prediction interval.
    pub coverage: f64,
    /// Mean absolute percentage error.
    pub mape: f64,
}

/// Accuracy per horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub level: f64,
    pub horizons: Vec<HorizonAccuracy>,
}

impl std::fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>10} {:>6} {:>7} {:>7} {:>7} {:>9} {:>7}",
            "horizon", "n", "≤10%", "≤15%", "≤20%", "coverage", "MAPE"
        )?;
        for h in &self.horizons {
            writeln!(
                f,
                "{:>10} {:>6} {:>6.1}% {:>6.1}% {:>6.1}% {:>8.1}% {:>6.1}%",
                format_duration(h.horizon_secs),
                h.forecasts,
                100.0 * h.within_10,
                100.0 * h.within_15,
                100.0 * h.within_20,
                100.0 * h.coverage,
                100.0 * h.mape
            )?;
        }
        Ok(())
    }
}

/// Refits at `origins` evenly spaced origins (the first after `min_train` points, the last
/// leaving room for the longest horizon) and scores each horizon in `horizons_secs`.
/// Actual values are the points closest to origin + horizon (within half a step).
pub fn backtest(
    points: &[(i64, f64)],
    cfg: &ForecastConfig,
    horizons_secs: &[i64],
    min_train: usize,
    origins: usize,
) -> Result<BacktestReport, ForecastError> {
    let n = points.len();
    let longest = horizons_secs.iter().copied().max().unwrap_or(0);
    let first_t = points.first().map_or(0, |p| p.0);
    let last_t = points.last().map_or(0, |p| p.0);
    // The last origin whose longest horizon is still inside the data.
    let last_origin = points.partition_point(|p| p.0 + longest <= last_t);
    if n < min_train.max(3)
        || last_origin <= min_train
        || origins == 0
        || last_t - first_t <= longest
    {
        return Err(ForecastError::TooShort {
            got: n,
            needed: min_train.max(3) + 1,
        });
    }
    let mut acc: Vec<(usize, usize, usize, usize, usize, f64)> =
        vec![(0, 0, 0, 0, 0, 0.0); horizons_secs.len()];
    let span = last_origin - min_train;
    for o in 0..origins {
        let origin = min_train + span * o / origins.max(1);
        let model = Forecaster::fit(&points[..origin], cfg)?;
        let half_step = model.step_secs / 2;
        for (k, &h) in horizons_secs.iter().enumerate() {
            let target = model.last_t + h;
            let i = points.partition_point(|p| p.0 < target - half_step);
            let Some(&(t, actual)) = points.get(i) else {
                continue;
            };
            if (t - target).abs() > half_step.max(0) {
                continue;
            }
            let fc = model.at(t - model.last_t);
            let rel = ((fc.value - actual) / actual.abs().max(1e-12)).abs();
            let a = &mut acc[k];
            a.0 += 1;
            a.1 += usize::from(rel <= 0.10);
            a.2 += usize::from(rel <= 0.15);
            a.3 += usize::from(rel <= 0.20);
            a.4 += usize::from(fc.low <= actual && actual <= fc.high);
            a.5 += rel;
        }
    }
    let horizons = horizons_secs
        .iter()
        .zip(acc)
        .map(|(&h, (cnt, w10, w15, w20, cov, err))| {
            let d = cnt.max(1) as f64;
            HorizonAccuracy {
                horizon_secs: h,
                forecasts: cnt,
                within_10: w10 as f64 / d,
                within_15: w15 as f64 / d,
                within_20: w20 as f64 / d,
                coverage: cov as f64 / d,
                mape: err / d,
            }
        })
        .collect();
    Ok(BacktestReport {
        level: cfg.level,
        horizons,
    })
}
