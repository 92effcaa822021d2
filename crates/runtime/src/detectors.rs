//! Scheduled detector runs: each run hands a detector the series its source
//! returned; the detector scores only the points it has not seen (state per series
//! is kept between runs and bounded) and turns findings into alerts.

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

    /// Feeds a classifier run: the series of each feature (by name, as in
    /// `features:`). Series of one host are joined on their labels (without
    /// `__name__`) and their samples on timestamps; each new timestamp where every
    /// feature has a value extends the host's window, and once the window is full the
    /// model predicts. A host alerts on its most confident predicted failure.
    pub fn observe_features(
        &mut self,
        served: &ServedModel,
        by_feature: &BTreeMap<String, Vec<Series>>,
    ) -> Vec<Detection> {
        let Some(spec) = self.detector.model.classifier().cloned() else {
            return Vec::new();
        };
        let min_confidence = spec.min_confidence.unwrap_or(served.model.min_confidence);
        join_hosts(by_feature)
            .into_iter()
            .filter_map(|h| self.observe_host(h, served, min_confidence))
            .collect()
    }

    fn observe_host(
        &mut self,
        joined: Host,
        served: &ServedModel,
        min_confidence: f64,
    ) -> Option<Detection> {
        let k = joined.key.as_str();
        if !self.hosts.contains_key(k) {
            if self.hosts.len() >= MAX_SERIES {
                tracing::warn!(detector = %self.detector.name, host = %k, "too many hosts; not tracking this one");
                return None;
            }
            self.hosts.insert(k.to_string(), HostState::default());
        }
        let host = self.hosts.get_mut(k)?;
        let window = served.model.extractor.window;
        let (mut xs, mut ts) = (Vec::new(), Vec::new());
        for (t, sample) in joined.samples {
            if host.last_t.is_some_and(|last| t <= last) {
                continue; // seen in an earlier run
            }
            host.window.push_back((t, sample));
            while host.window.len() > window {
                host.window.pop_front();
            }
            host.last_t = Some(t);
            if host.window.len() < window || self.alert_from.is_some_and(|from| t < from) {
                continue; // filling the window, or history: nothing to predict on
            }
            let samples: Vec<Sample> = host.window.iter().map(|(_, s)| *s).collect();
            if let Ok(x) = served.model.extractor.extract(&samples) {
                xs.push(x);
                ts.push(t);
            }
        }
        if xs.is_empty() {
            return None;
        }
        let step = sample_step(&host.window);
        let predictions = served.model.predict_batch(&xs);
        let mut worst: Option<(usize, f64)> = None;
        let mut quiet_tail = 0u32;
        for (i, p) in predictions.iter().enumerate() {
            if p.failure && p.probability >= min_confidence {
                quiet_tail = 0;
                if worst.is_none_or(|(_, w)| p.probability > w) {
                    worst = Some((i, p.probability));
                }
            } else {
                quiet_tail += 1;
            }
        }
        let series = Series {
            labels: joined.labels,
            points: Vec::new(),
        };
        let last_t = *ts.last()?;
        let Some((i, probability)) = worst else {
            return self.quiet(k, quiet_tail, &series, last_t);
        };
        self.firing.insert(k.to_string(), quiet_tail);
        let ahead = step * served.model.horizon as i64;
        let x = &xs[i];
        let mut notes = BTreeMap::new();
        notes.insert(
            "summary".to_string(),
            format!(
                "{} on {k}: failure predicted within {} ({:.0}% confidence)",
                self.detector.alert.name,
                human_secs(ahead),
                100.0 * probability
            ),
        );
        // Each feature's last value and its trend per sample over the window: what
        // the operator checks first.
        let names = vigil_detect::classifier::FeatureExtractor::names();
        let stats = names.len() / FEATURE_METRICS.len();
        let signs: Vec<String> = FEATURE_METRICS
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let (last, slope) = (x[m * stats], x[m * stats + stats - 1]);
                format!("{name} {} ({:+.3}/sample)", short(last), slope)
            })
            .collect();
        notes.insert(
            "description".to_string(),
            format!(
                "{} predicts a failure within {} samples: {}",
                served.id,
                served.model.horizon,
                signs.join(", ")
            ),
        );
        notes.insert("confidence".to_string(), format!("{probability:.3}"));
        notes.insert("model".to_string(), served.id.clone());
        notes.insert("lead_seconds".to_string(), ahead.to_string());
        Some(self.detection(&series, probability, probability, ts[i], notes))
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

/// One host's samples, its features joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// `k=v,…` of its labels.
    pub key: String,
    /// What identifies the host: its series' labels without `__name__`.
    pub labels: BTreeMap<String, String>,
    /// (unix seconds, sample), in time order: the timestamps where every feature
    /// has a finite value.
    pub samples: Vec<(i64, Sample)>,
}

/// Joins the series of each feature (by name, as in `features:`) into hosts: series
/// of one host share their labels but `__name__`; samples join on timestamps. A
/// host missing a feature is left out (it cannot be judged).
pub fn join_hosts(by_feature: &BTreeMap<String, Vec<Series>>) -> Vec<Host> {
    // Host key → its labels and the series of each feature.
    type Parts<'a> = (BTreeMap<String, String>, [Option<&'a Series>; 4]);
    let mut joined: BTreeMap<String, Parts> = BTreeMap::new();
    for (f, name) in FEATURE_METRICS.iter().enumerate() {
        for s in by_feature.get(*name).into_iter().flatten() {
            let mut labels = s.labels.clone();
            labels.remove("__name__");
            let entry = joined
                .entry(key(&labels))
                .or_insert_with(|| (labels, [None; 4]));
            entry.1[f].get_or_insert(s);
        }
    }
    let mut hosts = Vec::new();
    for (key, (labels, parts)) in joined {
        if parts.iter().any(Option::is_none) {
            continue;
        }
        let mut rows: BTreeMap<i64, [Option<f64>; 4]> = BTreeMap::new();
        for (f, s) in parts.iter().flatten().enumerate() {
            for &(t, x) in &s.points {
                if x.is_finite() {
                    rows.entry(t).or_insert([None; 4])[f] = Some(x);
                }
            }
        }
        let samples = rows
            .into_iter()
            .filter_map(|(t, row)| match row {
                [Some(a), Some(b), Some(c), Some(d)] => {
                    Some((t, Sample::from_metrics([a, b, c, d])))
                }
                _ => None,
            })
            .collect();
        hosts.push(Host {
            key,
            labels,
            samples,
        });
    }
    hosts
}

/// The usual spacing of a window's samples (seconds), at least 1.
fn sample_step(window: &VecDeque<(i64, Sample)>) -> i64 {
    let mut gaps: Vec<i64> = window
        .iter()
        .zip(window.iter().skip(1))
        .map(|(a, b)| b.0 - a.0)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(60).max(1)
}

/// `90` → "1m30s", `3600` → "1h0m": for summaries.
fn human_secs(s: i64) -> String {
    match s {
        s if s >= 3_600 => format!("{}h{}m", s / 3_600, (s % 3_600) / 60),
        s if s >= 60 && s % 60 != 0 => format!("{}m{}s", s / 60, s % 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s}s"),
    }
}

/// A value with the digits that matter (ratios stay readable, percentages short).
fn short(v: f64) -> String {
    if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use vigil_bundle::Bundle;

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
            DetectorRun::new(&detector("{ anomaly: { method: robust }, threshold: 0.9 }"));
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
        let run = DetectorRun::new(&detector("{ forecast: { limit: 1000, within: 2d } }"));
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
    fn the_default_threshold_is_the_methods_operating_point() {
        let threshold = |model: &str| detector(model).model.threshold;
        // The ensemble is calibrated around 0.5; a single method alerts at twice its half
        // level; a threshold in the YAML wins.
        assert_eq!(threshold("{ anomaly: { method: ensemble } }"), 0.5);
        assert_eq!(threshold("{ anomaly: { method: robust } }"), 0.8);
        assert_eq!(
            threshold("{ anomaly: { method: ensemble }, threshold: 0.9 }"),
            0.9
        );
    }

    #[test]
    fn bad_models_are_refused_with_a_reason() {
        for (model, why) in [
            ("{ threshold: 0.5 }", "anomaly"),
            (
                "{ anomaly: { method: robust }, forecast: { limit: 1, within: 1d } }",
                "not several",
            ),
            ("{ anomaly: { method: robust }, threshold: 2 }", "threshold"),
        ] {
            // Loading reports it, and leaves the detector out of the bundle.
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
            assert!(b.detectors.is_empty(), "{model}");
        }
    }

    const CLASSIFIER: &str = "apiVersion: vigil/v1\nkind: Detector\nname: hf\nschedule: \"*/15 * * * * *\"\nsource: sim\nfeatures: { cpu: c, memory: m, disk_io: d, error_rate: e }\nmodel: { classifier: { model: hf } }\nalert: { name: HostFailurePredicted }\n";

    fn served() -> ServedModel {
        use vigil_detect::classifier::{FeatureExtractor, TrainConfig, synthetic_fleet};
        let (history, failures) = synthetic_fleet(6000, 7, 12);
        let fx = FeatureExtractor::new(12).expect("valid");
        let (xs, ys) = fx.examples(&history, &failures, 6).expect("finite");
        let model =
            FailureModel::train("hf@1", fx, 6, &xs, &ys, &TrainConfig::default()).expect("trains");
        ServedModel {
            id: "hf@1".into(),
            model,
        }
    }

    /// The series of each feature for `samples` of host `instance`, a minute apart.
    fn features_of(instance: &str, samples: &[Sample]) -> BTreeMap<String, Vec<Series>> {
        FEATURE_METRICS
            .iter()
            .enumerate()
            .map(|(f, name)| {
                let points = samples
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let v = [s.cpu, s.memory, s.disk_io, s.error_rate][f];
                        (i as i64 * 60, v)
                    })
                    .collect();
                let labels = BTreeMap::from([
                    ("__name__".to_string(), format!("host_{name}")),
                    ("instance".to_string(), instance.to_string()),
                ]);
                (name.to_string(), vec![Series { labels, points }])
            })
            .collect()
    }

    #[test]
    fn a_classifier_joins_a_hosts_features_and_predicts_its_failures() {
        let b = Bundle::from_source(Path::new("hf.yaml"), CLASSIFIER);
        assert!(!b.has_errors(), "{:?}", b.diagnostics);
        let mut run = DetectorRun::new(&b.detectors[0]);
        let served = served();
        let (samples, failures) = vigil_detect::classifier::synthetic_fleet(1500, 99, 12);
        let mut by_feature = features_of("db-1", &samples);
        // A second host with no error-rate series cannot be judged, and is left out.
        for (name, series) in features_of("db-2", &samples) {
            if name != "error_rate" {
                by_feature.get_mut(&name).expect("feature").extend(series);
            }
        }
        // Feed the run a minute at a time, as the scheduler would.
        let mut found = Vec::new();
        for end in 1..=samples.len() {
            let slice: BTreeMap<String, Vec<Series>> = by_feature
                .iter()
                .map(|(k, ss)| {
                    let cut = ss
                        .iter()
                        .map(|s| Series {
                            labels: s.labels.clone(),
                            points: s.points[..end].to_vec(),
                        })
                        .collect();
                    (k.clone(), cut)
                })
                .collect();
            found.extend(run.observe_features(&served, &slice));
        }
        let fired: Vec<&Detection> = found.iter().filter(|d| !d.resolved).collect();
        assert!(!fired.is_empty(), "failures are predicted");
        let failure_minutes: Vec<i64> = failures
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .map(|(i, _)| i as i64)
            .collect();
        for d in &fired {
            assert_eq!(d.labels["instance"], "db-1", "only the judged host");
            assert!(!d.labels.contains_key("__name__"));
            let minute = d.at / 60;
            // Each alert comes before a failure, within its precursor (12 samples).
            assert!(
                failure_minutes
                    .iter()
                    .any(|&f| minute <= f && f - minute <= 12),
                "alert at minute {minute} predicts no failure: {failure_minutes:?}"
            );
            let confidence: f64 = d.annotations["confidence"].parse().expect("number");
            assert!(confidence >= 0.8, "{confidence}");
            assert!(d.annotations["summary"].contains("failure predicted within 6 min"));
        }
        // Most failures were seen coming.
        let caught = failure_minutes
            .iter()
            .filter(|&&f| {
                fired
                    .iter()
                    .any(|d| f - d.at / 60 >= 0 && f - d.at / 60 <= 12)
            })
            .count();
        assert!(
            caught * 10 >= failure_minutes.len() * 6,
            "{caught} of {} failures predicted",
            failure_minutes.len()
        );
        assert!(
            found.iter().any(|d| d.resolved),
            "alerts resolve after the failure"
        );
        // The window is all the state a host keeps.
        assert!(run.state_bytes() <= 2 * 12 * std::mem::size_of::<(i64, Sample)>() + 64);
    }

    #[test]
    fn a_detector_reads_what_its_model_needs() {
        let cases = [
            // A classifier with one query.
            (
                CLASSIFIER.replace(
                    "features: { cpu: c, memory: m, disk_io: d, error_rate: e }",
                    "query: q",
                ),
                "give `features:`",
                6,
            ),
            // An anomaly model with features.
            (
                CLASSIFIER.replace(
                    "{ classifier: { model: hf } }",
                    "{ anomaly: { method: robust } }",
                ),
                "`features:` is for a classifier",
                6,
            ),
            // A feature missing, and one misspelt.
            (
                CLASSIFIER.replace("error_rate: e", "error_rat: e"),
                "unknown feature `error_rat`",
                6,
            ),
            (
                CLASSIFIER.replace("error_rate: e", "error_rat: e"),
                "feature `error_rate` has no query",
                6,
            ),
        ];
        for (text, why, line) in cases {
            let b = Bundle::from_source(Path::new("hf.yaml"), &text);
            assert!(
                b.diagnostics
                    .iter()
                    .any(|d| d.message.contains(why) && d.line == line),
                "{why}: {:?}",
                b.diagnostics
            );
        }
        let b = Bundle::from_source(
            Path::new("hf.yaml"),
            &CLASSIFIER.replace("error_rate: e", "error_rat: e"),
        );
        let d = b
            .diagnostics
            .iter()
            .find(|d| d.message.contains("unknown feature"))
            .expect("diagnostic");
        assert_eq!(d.hint.as_deref(), Some("did you mean `error_rate`?"));
    }
}
