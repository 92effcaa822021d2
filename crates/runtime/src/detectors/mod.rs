//! Scheduled detector runs: each run hands a detector the series its source
//! returned; the detector scores only the points it has not seen (state per series
//! is kept between runs and bounded) and turns findings into alerts.
//!
//! This file holds a run's state and the anomaly path; `classifier` joins features
//! per host and predicts failures, `forecast` alerts on exhaustion ahead.

mod classifier;
mod forecast;
#[cfg(test)]
mod tests;

pub use classifier::{Host, join_hosts};
pub use forecast::FORECAST_HORIZONS;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use vigil_bundle::detector::{ClassifierSpec, ForecastSpec, ModelKind};
use vigil_bundle::model::Detector;
use vigil_detect::anomaly::{AnomalyMethod, ModelConfig};
use vigil_detect::classifier::{FEATURE_METRICS, FailureModel, Sample};
use vigil_detect::forecast::Forecaster;
use vigil_detect::series::SeriesGuard;

/// At most this many series per detector keep state; past it, new series are
/// ignored (with a warning) rather than growing memory without bound.
pub const MAX_SERIES: usize = 10_000;

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

/// A firing series returns to normal after this many consecutive normal points
/// (anomaly models) or runs (forecasts): one quiet point is not a recovery.
pub const RESOLVE_AFTER: u32 = 5;

struct SeriesState {
    guard: SeriesGuard,
    method: Box<dyn AnomalyMethod>,
    last_t: Option<i64>,
}

/// A host a classifier judges: its last samples (at most the model's window).
#[derive(Default)]
struct HostState {
    window: VecDeque<(i64, Sample)>,
    last_t: Option<i64>,
}

/// A served classifier version, as the runner hands it to a run.
#[derive(Debug)]
pub struct ServedModel {
    /// `name@version`.
    pub id: String,
    pub model: FailureModel,
}

/// A detector and what it remembers between runs.
pub struct DetectorRun {
    detector: Detector,
    series: HashMap<String, SeriesState>,
    hosts: HashMap<String, HostState>,
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
    pub fn new(detector: &Detector) -> DetectorRun {
        DetectorRun {
            detector: detector.clone(),
            series: HashMap::new(),
            hosts: HashMap::new(),
            firing: HashMap::new(),
            alert_from: None,
            forecasts: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.detector.name
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Whether this is a forecast (it needs the whole window every run, not just new points).
    pub fn is_forecast(&self) -> bool {
        self.detector.model.forecast().is_some()
    }

    /// The stored model a classifier detector serves (`None` for other models).
    pub fn classifier(&self) -> Option<&ClassifierSpec> {
        self.detector.model.classifier()
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
        let hosts: usize = self
            .hosts
            .values()
            .map(|h| h.window.capacity() * std::mem::size_of::<(i64, Sample)>())
            .sum();
        self.series
            .values()
            .map(|s| s.method.state_bytes())
            .sum::<usize>()
            + hosts
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
        match &self.detector.model.kind {
            ModelKind::Anomaly(cfg) => {
                let cfg = cfg.clone();
                batch
                    .iter()
                    .filter_map(|s| self.observe_anomaly(&cfg, s))
                    .collect()
            }
            ModelKind::Forecast(spec) => {
                let spec = spec.clone();
                batch
                    .iter()
                    .filter_map(|s| self.observe_forecast(&spec, s))
                    .collect()
            }
            // A classifier reads features together: `observe_features`.
            ModelKind::Classifier(_) => Vec::new(),
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
        let mut worst: Option<vigil_detect::anomaly::Score> = None;
        // Normal points since the last anomalous one, in this run.
        let mut quiet_tail = 0u32;
        let mut scored = false;
        let threshold = self.detector.model.threshold;
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
            if score.value >= threshold && self.detector.model.direction.admits(&score) {
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
}
