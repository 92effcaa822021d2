//! Scheduled detector runs: each run hands a detector the series its source
//! returned; the detector scores only the points it has not seen (state per series
//! is kept between runs and bounded) and turns findings into alerts.

use crate::detect::anomaly::{AnomalyMethod, ModelConfig};
use crate::detect::forecast::{ForecastConfig, Forecaster};
use crate::detect::series::SeriesGuard;
use crate::runbook::duration::Duration;
use crate::runbook::model::Detector;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// At most this many series per detector keep state; past it, new series are
/// ignored (with a warning) rather than growing memory without bound.
pub const MAX_SERIES: usize = 10_000;

/// A detector's `model:` section: exactly one of `anomaly` or `forecast`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorModel {
    /// An online anomaly method and its parameters, e.g. `{ method: ensemble }`.
    #[serde(default)]
    pub anomaly: Option<ModelConfig>,
    /// A capacity forecast against a limit.
    #[serde(default)]
    pub forecast: Option<ForecastSpec>,
    /// Anomaly score (0–1) at or above which an alert fires.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Which departures alert: `up` (above the expected value: a leak, latency),
    /// `down` (traffic vanishing) or `both`.
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    #[default]
    Both,
}

impl Direction {
    /// Whether a score's departure is one this detector alerts on.
    fn admits(self, s: &crate::detect::anomaly::Score) -> bool {
        let above = match s.expected {
            Some(e) => s.observed > e,
            None => s.deviation > 0.0,
        };
        match self {
            Direction::Both => true,
            Direction::Up => above,
            Direction::Down => !above,
        }
    }
}

fn default_threshold() -> f64 {
    0.8
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSpec {
    /// The value that means "exhausted" (bytes of a disk, connections of a pool).
    pub limit: f64,
    /// Alert when the limit is forecast to be reached within this.
    pub within: Duration,
    #[serde(default)]
    pub config: ForecastConfig,
}

impl DetectorModel {
    /// Checks what serde cannot: one model kind, a threshold in (0, 1].
    pub fn check(&self) -> Result<(), String> {
        match (&self.anomaly, &self.forecast) {
            (Some(_), Some(_)) => {
                return Err("give either `anomaly` or `forecast`, not both".into());
            }
            (None, None) => {
                return Err(
                    "give `anomaly: { method: … }` or `forecast: { limit: …, within: … }`".into(),
                );
            }
            _ => {}
        }
        if let Some(a) = &self.anomaly {
            a.build().map_err(|e| e.to_string())?;
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!("threshold {} must be in (0, 1]", self.threshold));
        }
        Ok(())
    }
}

/// One labelled series from a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (unix seconds, value), in time order.
    pub points: Vec<(i64, f64)>,
}

/// Something worth an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub detector: String,
    pub alertname: String,
    pub severity: String,
    /// The alert's labels: the detector's, then the series' (series labels win).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The anomaly score, or for forecasts the forecast level.
    pub score: f64,
    pub value: f64,
    /// When the finding applies (unix seconds).
    pub at: i64,
    /// The series that fired is back to normal: the alert resolves.
    #[serde(default)]
    pub resolved: bool,
}

/// What a forecast said, kept so `vigil evaluate` can compare it with what came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRecord {
    pub detector: String,
    pub labels: BTreeMap<String, String>,
    /// When it was made (unix seconds: the series' last point).
    pub made_at: i64,
    pub horizon_secs: i64,
    /// The time forecast (unix seconds) and the value with its interval.
    pub t: i64,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The horizons every forecast run records: 1 hour, 6 hours, 1 day.
pub const FORECAST_HORIZONS: [i64; 3] = [3_600, 6 * 3_600, 86_400];

/// A firing series returns to normal after this many consecutive normal points
/// (anomaly models) or runs (forecasts): one quiet point is not a recovery.
pub const RESOLVE_AFTER: u32 = 5;

struct SeriesState {
    guard: SeriesGuard,
    method: Box<dyn AnomalyMethod>,
    last_t: Option<i64>,
}

/// A detector and what it remembers between runs.
pub struct DetectorRun {
    detector: Detector,
    model: DetectorModel,
    series: HashMap<String, SeriesState>,
    /// Series whose alert fires, with the count of normal points (or runs) since.
    firing: HashMap<String, u32>,
    /// Points before this (unix seconds) teach the model but never alert: the
    /// history a first run loads is the past, not news.
    alert_from: Option<i64>,
    /// Forecasts made since the last [`DetectorRun::take_forecasts`].
    forecasts: Vec<ForecastRecord>,
}

impl std::fmt::Debug for DetectorRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorRun")
            .field("detector", &self.detector.name)
            .field("series", &self.series.len())
            .finish()
    }
}

fn key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl DetectorRun {
    pub fn new(detector: &Detector) -> Result<DetectorRun, String> {
        let model: DetectorModel =
            crate::runbook::de::from_node(&detector.model).map_err(|e| e.message)?;
        model.check()?;
        Ok(DetectorRun {
            detector: detector.clone(),
            model,
            series: HashMap::new(),
            firing: HashMap::new(),
            alert_from: None,
            forecasts: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.detector.name
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Whether this is a forecast (it needs the whole window every run, not just new points).
    pub fn is_forecast(&self) -> bool {
        self.model.forecast.is_some()
    }

    /// Points before `t` (unix seconds) only train the model.
    pub fn alert_from(&mut self, t: i64) {
        self.alert_from = Some(t);
    }

    /// The forecasts made by the runs since the last call (for the store).
    pub fn take_forecasts(&mut self) -> Vec<ForecastRecord> {
        std::mem::take(&mut self.forecasts)
    }

    /// How many series currently fire.
    pub fn firing(&self) -> usize {
        self.firing.len()
    }

    /// Bytes of scoring state held, across series.
    pub fn state_bytes(&self) -> usize {
        self.series.values().map(|s| s.method.state_bytes()).sum()
    }

    fn detection(
        &self,
        series: &Series,
        score: f64,
        value: f64,
        at: i64,
        annotations: BTreeMap<String, String>,
    ) -> Detection {
        let alert = &self.detector.alert;
        let mut labels = alert.labels.clone();
        labels.extend(series.labels.clone());
        labels.insert("alertname".into(), alert.name.clone());
        labels.insert("severity".into(), alert.severity.clone());
        labels.insert("detector".into(), self.detector.name.clone());
        let mut all = alert.annotations.clone();
        all.extend(annotations);
        Detection {
            detector: self.detector.name.clone(),
            alertname: alert.name.clone(),
            severity: alert.severity.clone(),
            labels,
            annotations: all,
            score,
            value,
            at,
            resolved: false,
        }
    }

    /// Counts a quiet observation of a firing series; at [`RESOLVE_AFTER`] it resolves.
    fn quiet(&mut self, k: &str, n: u32, series: &Series, at: i64) -> Option<Detection> {
        let count = self.firing.get_mut(k)?;
        *count += n;
        if *count < RESOLVE_AFTER {
            return None;
        }
        self.firing.remove(k);
        let value = series.points.last().map_or(0.0, |p| p.1);
        let mut notes = BTreeMap::new();
        notes.insert(
            "summary".to_string(),
            format!("{} on {}: back to normal", self.detector.alert.name, k),
        );
        let mut d = self.detection(series, 0.0, value, at, notes);
        d.resolved = true;
        Some(d)
    }

    /// Feeds a run's series; returns what should alert.
    pub fn observe(&mut self, batch: &[Series]) -> Vec<Detection> {
        match (&self.model.anomaly, &self.model.forecast) {
            (Some(cfg), _) => {
                let cfg = cfg.clone();
                batch
                    .iter()
                    .filter_map(|s| self.observe_anomaly(&cfg, s))
                    .collect()
            }
            (None, Some(spec)) => {
                let spec = spec.clone();
                batch
                    .iter()
                    .filter_map(|s| self.observe_forecast(&spec, s))
                    .collect()
            }
            (None, None) => Vec::new(),
        }
    }

    /// Scores the new points of one series; alerts on the worst one over the threshold.
    fn observe_anomaly(&mut self, cfg: &ModelConfig, series: &Series) -> Option<Detection> {
        let k = key(&series.labels);
        if !self.series.contains_key(&k) {
            if self.series.len() >= MAX_SERIES {
                tracing::warn!(detector = %self.detector.name, series = %k, "too many series; not tracking this one");
                return None;
            }
            let method = cfg.build().ok()?;
            self.series.insert(
                k.clone(),
                SeriesState {
                    guard: SeriesGuard::new(),
                    method,
                    last_t: None,
                },
            );
        }
        let state = self.series.get_mut(&k)?;
        let mut worst: Option<crate::detect::anomaly::Score> = None;
        // Normal points since the last anomalous one, in this run.
        let mut quiet_tail = 0u32;
        let mut scored = false;
        for &(t, x) in &series.points {
            if state.last_t.is_some_and(|last| t <= last) {
                continue; // seen in an earlier run
            }
            let Ok(score) = state.guard.score(state.method.as_mut(), t, x) else {
                continue;
            };
            state.last_t = Some(t);
            if self.alert_from.is_some_and(|from| t < from) {
                continue; // history: learn, do not alert
            }
            scored = true;
            if score.value >= self.model.threshold && self.model.direction.admits(&score) {
                quiet_tail = 0;
                if worst.is_none_or(|w| score.value > w.value) {
                    worst = Some(score);
                }
            } else {
                quiet_tail += 1;
            }
        }
        let last_t = state.last_t.unwrap_or_default();
        let Some(w) = worst else {
            return if scored {
                self.quiet(&k, quiet_tail, series, last_t)
            } else {
                None
            };
        };
        // Still anomalous at the end of this run: the count of quiet points restarts.
        self.firing.insert(k.clone(), quiet_tail);
        let mut notes = BTreeMap::new();
        notes.insert(
            "summary".to_string(),
            format!("{} on {}", self.detector.alert.name, k),
        );
        notes.insert("description".to_string(), w.explanation());
        notes.insert("score".to_string(), format!("{:.3}", w.value));
        Some(self.detection(series, w.value, w.observed, w.t, notes))
    }

    /// Fits a forecast and alerts when the limit is due within the horizon.
    fn observe_forecast(&mut self, spec: &ForecastSpec, series: &Series) -> Option<Detection> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Bundle;
    use std::path::Path;

    fn detector(model: &str) -> Detector {
        let text = format!(
            "apiVersion: vigil/v1\nkind: Detector\nname: d\nschedule: \"*/30 * * * * *\"\nsource: sim\nquery: mem\nmodel: {model}\nalert: {{ name: Odd, severity: warning, labels: {{ team: sre }} }}\n"
        );
        let b = Bundle::from_source(Path::new("d.yaml"), &text);
        assert!(!b.has_errors(), "{:?}", b.diagnostics);
        b.detectors[0].clone()
    }

    fn series(points: Vec<(i64, f64)>) -> Series {
        Series {
            labels: BTreeMap::from([("service".to_string(), "api".to_string())]),
            points,
        }
    }

    #[test]
    fn scores_only_new_points_and_alerts_on_a_spike() {
        let mut run =
            DetectorRun::new(&detector("{ anomaly: { method: robust }, threshold: 0.9 }")).unwrap();
        let calm: Vec<(i64, f64)> = (0..300).map(|i| (i * 60, 100.0 + (i % 7) as f64)).collect();
        assert!(run.observe(&[series(calm.clone())]).is_empty());
        // The same points again, plus a spike: only the spike is new, and it alerts.
        let mut more = calm;
        more.push((300 * 60, 900.0));
        let found = run.observe(&[series(more)]);
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(d.at, 300 * 60);
        assert_eq!(d.labels["alertname"], "Odd");
        assert_eq!(d.labels["service"], "api");
        assert_eq!(d.labels["team"], "sre");
        assert!(
            d.annotations["description"].contains("900"),
            "{:?}",
            d.annotations
        );
        assert!(run.state_bytes() > 0);
    }

    #[test]
    fn forecasts_time_to_exhaustion_within_the_horizon() {
        let run = DetectorRun::new(&detector("{ forecast: { limit: 1000, within: 2d } }")).unwrap();
        // +10 per hour from 500: reaches 1000 in ~50 h.
        let rising: Vec<(i64, f64)> = (0..100)
            .map(|i| {
                (
                    i * 3600,
                    500.0 + 10.0 * i as f64 - 10.0 * 99.0 + 0.5 * ((i % 3) as f64),
                )
            })
            .collect();
        let near: Vec<(i64, f64)> = rising.iter().map(|&(t, x)| (t, x + 440.0)).collect();
        let mut run = run;
        assert!(
            run.observe(&[series(rising)]).is_empty(),
            "far from the limit: no alert"
        );
        let found = run.observe(&[series(near)]);
        assert_eq!(found.len(), 1, "close to the limit: alert");
        let eta: i64 = found[0].annotations["eta_seconds"].parse().unwrap();
        assert!(eta <= 2 * 86_400);
    }

    #[test]
    fn bad_models_are_refused_with_a_reason() {
        for (model, why) in [
            ("{ threshold: 0.5 }", "anomaly"),
            (
                "{ anomaly: { method: robust }, forecast: { limit: 1, within: 1d } }",
                "not both",
            ),
            ("{ anomaly: { method: robust }, threshold: 2 }", "threshold"),
        ] {
            // Loading reports it, and a run refuses to start from it.
            let text = format!(
                "apiVersion: vigil/v1\nkind: Detector\nname: d\nschedule: \"* * * * * *\"\nsource: s\nquery: q\nmodel: {model}\nalert: {{ name: X }}\n"
            );
            let b = Bundle::from_source(Path::new("d.yaml"), &text);
            assert!(
                b.diagnostics
                    .iter()
                    .any(|d| d.message.contains(why) && d.line == 7),
                "{model}: {:?}",
                b.diagnostics
            );
            let err = DetectorRun::new(&b.detectors[0]).unwrap_err();
            assert!(err.contains(why), "{model}: {err}");
        }
    }
}
