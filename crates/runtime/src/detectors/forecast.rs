//! Forecast detectors: a trend and seasonality fitted over the window, and an alert
//! when the limit is forecast to be reached within the horizon.

use super::*;

/// The horizons every forecast run records: 1 hour, 6 hours, 1 day.
pub const FORECAST_HORIZONS: [i64; 3] = [3_600, 6 * 3_600, 86_400];

impl DetectorRun {
    /// Fits a forecast and alerts when the limit is due within the horizon.
    pub(super) fn observe_forecast(
        &mut self,
        spec: &ForecastSpec,
        series: &Series,
    ) -> Option<Detection> {
        let k = key(&series.labels);
        let &(last_t, last_x) = series.points.last()?;
        if self.alert_from.is_some_and(|from| last_t < from) {
            return None;
        }
        let model = Forecaster::fit(&series.points, &spec.config).ok()?;
        if self.forecasts.len() < MAX_SERIES * FORECAST_HORIZONS.len() {
            for h in FORECAST_HORIZONS {
                let p = model.at(h);
                self.forecasts.push(ForecastRecord {
                    detector: self.detector.name.clone(),
                    labels: series.labels.clone(),
                    made_at: last_t,
                    horizon_secs: h,
                    t: p.t,
                    value: p.value,
                    low: p.low,
                    high: p.high,
                });
            }
        }
        let ex = model.time_to_exhaustion(spec.limit, spec.config.level);
        let within = (spec.within.as_std().as_millis() / 1000) as i64;
        let Some(eta) = ex.eta_secs.filter(|&e| e <= within) else {
            return self.quiet(&k, 1, series, last_t);
        };
        if !self.firing.contains_key(&k) && self.firing.len() >= MAX_SERIES {
            return None;
        }
        self.firing.insert(k.clone(), 0);
        let mut notes = BTreeMap::new();
        notes.insert(
            "summary".to_string(),
            format!(
                "{} on {}: {ex}",
                self.detector.alert.name,
                key(&series.labels)
            ),
        );
        notes.insert("description".to_string(), ex.to_string());
        notes.insert("eta_seconds".to_string(), eta.to_string());
        Some(self.detection(series, spec.config.level, last_x, last_t, notes))
    }
}
