//! A detector's `model:` section: which detector it runs and when a score alerts.

use serde::{Deserialize, Serialize};
use vigil_core::Duration;
use vigil_detect::anomaly::ModelConfig;
use vigil_detect::forecast::ForecastConfig;

/// A detector's `model:` section as written: exactly one of `anomaly`, `forecast` or
/// `classifier`, and when a score alerts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelDoc {
    /// An online anomaly method and its parameters, e.g. `{ method: ensemble }`.
    #[serde(default)]
    anomaly: Option<ModelConfig>,
    /// A capacity forecast against a limit.
    #[serde(default)]
    forecast: Option<ForecastSpec>,
    /// A failure classifier from the store, judging a host's `features:` together.
    #[serde(default)]
    classifier: Option<ClassifierSpec>,
    /// Anomaly score (0–1) at or above which an alert fires; by default the method's
    /// operating point ([`ModelConfig::operating_threshold`]: 0.5 for the ensemble).
    #[serde(default)]
    threshold: Option<f64>,
    /// Which departures alert: `up` (above the expected value: a leak, latency),
    /// `down` (traffic vanishing) or `both`.
    #[serde(default)]
    direction: Direction,
}

/// A checked detector model, decoded once when the bundle loads.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorModel {
    pub kind: ModelKind,
    /// The score at or above which an alert fires, in (0, 1]: the YAML's `threshold`,
    /// or the anomaly method's operating point (0.8 for the other kinds).
    pub threshold: f64,
    pub direction: Direction,
}

/// What a detector runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// An online anomaly method and its parameters, e.g. `{ method: ensemble }`.
    Anomaly(ModelConfig),
    /// A capacity forecast against a limit.
    Forecast(ForecastSpec),
    /// A failure classifier from the store, judging a host's `features:` together.
    Classifier(ClassifierSpec),
}

/// Which departures of a score alert.
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
    pub fn admits(self, s: &vigil_detect::anomaly::Score) -> bool {
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
    pub fn anomaly(&self) -> Option<&ModelConfig> {
        match &self.kind {
            ModelKind::Anomaly(m) => Some(m),
            _ => None,
        }
    }

    pub fn forecast(&self) -> Option<&ForecastSpec> {
        match &self.kind {
            ModelKind::Forecast(f) => Some(f),
            _ => None,
        }
    }

    pub fn classifier(&self) -> Option<&ClassifierSpec> {
        match &self.kind {
            ModelKind::Classifier(c) => Some(c),
            _ => None,
        }
    }
}

/// `classifier:` — which stored model serves, and how sure it must be to alert.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSpec {
    /// The model's name in the store (`vigil model list`); its promoted version serves,
    /// and a newly promoted one takes over at the next run.
    pub model: String,
    /// Least confidence (0.5–1) at which a predicted failure alerts; by default the
    /// model's own (80 % unless trained otherwise).
    #[serde(default)]
    pub min_confidence: Option<f64>,
    /// How `vigil model retrain` (and `vigil evaluate --retrain`) builds new versions.
    #[serde(default)]
    pub training: TrainingSpec,
}

/// How a classifier learns from what happened.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSpec {
    /// How far back the training data goes.
    pub history: Duration,
    /// Samples per feature window.
    pub window: usize,
    /// A window is labelled "failure" when one comes within this many samples.
    pub horizon: usize,
    /// The `anomaly=<kind>` of the source's events that mean "it failed".
    pub failure_kind: String,
    /// The trees' parameters (trees, max_depth, min_confidence, seed, …).
    pub params: vigil_detect::classifier::TrainConfig,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            history: Duration(std::time::Duration::from_secs(7 * 86_400)),
            window: 12,
            horizon: 10,
            failure_kind: "failure".into(),
            params: vigil_detect::classifier::TrainConfig::default(),
        }
    }
}

impl DetectorModel {
    /// Checks what serde cannot (one model kind, a threshold in (0, 1]) and types it.
    pub(crate) fn check(doc: ModelDoc) -> Result<DetectorModel, String> {
        let kind = match (doc.anomaly, doc.forecast, doc.classifier) {
            (Some(a), None, None) => {
                a.build().map_err(|e| e.to_string())?;
                ModelKind::Anomaly(a)
            }
            (None, Some(f), None) => ModelKind::Forecast(f),
            (None, None, Some(c)) => {
                if c.model.trim().is_empty() {
                    return Err("`classifier.model` names the model in the store".into());
                }
                let t = &c.training;
                if t.window < 2 || t.horizon == 0 {
                    return Err("training needs `window` ≥ 2 and `horizon` ≥ 1 (samples)".into());
                }
                if let Some(m) = c.min_confidence
                    && !(0.5..=1.0).contains(&m)
                {
                    return Err(format!("min_confidence {m} must be in 0.5..=1"));
                }
                ModelKind::Classifier(c)
            }
            (None, None, None) => {
                return Err(
                    "give `anomaly: { method: … }`, `forecast: { limit: …, within: … }` or `classifier: { model: … }`".into(),
                );
            }
            _ => {
                return Err(
                    "give one of `anomaly`, `forecast` or `classifier`, not several".into(),
                );
            }
        };
        let threshold = doc.threshold.unwrap_or(match &kind {
            ModelKind::Anomaly(a) => a.operating_threshold(),
            _ => 0.8,
        });
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(format!("threshold {threshold} must be in (0, 1]"));
        }
        Ok(DetectorModel {
            kind,
            threshold,
            direction: doc.direction,
        })
    }
}
