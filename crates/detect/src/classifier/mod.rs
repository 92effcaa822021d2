//! Failure prediction: a bagged ensemble of linfa decision trees over windowed host
//! metrics, with a lifecycle: train → validate against a baseline → evaluate on a hold-out
//! set → serve (a versioned, serialisable [`FailureModel`]).
//!
//! Predictions carry a confidence (the share of trees that agree) and only predictions at
//! or above `min_confidence` (default 0.8) raise.

pub mod features;

use linfa::prelude::*;
use linfa_ensemble::EnsembleLearnerParams;
use linfa_trees::DecisionTree;
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use features::{FEATURE_COUNT, FEATURE_METRICS, FeatureError, FeatureExtractor, Sample};

/// Version of the serialised model format; bumped on incompatible changes.
pub const MODEL_FORMAT: u32 = 1;

/// Training parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub trees: usize,
    pub max_depth: usize,
    /// Share of the training set each tree sees (bootstrap).
    pub bootstrap: f64,
    /// Share of the features each tree sees.
    pub feature_share: f64,
    /// Share of examples (the oldest) used to train; then validation, then hold-out.
    pub train_share: f64,
    pub validation_share: f64,
    /// Least confidence at which a prediction raises.
    pub min_confidence: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            trees: 25,
            max_depth: 8,
            bootstrap: 0.7,
            feature_share: 0.6,
            train_share: 0.6,
            validation_share: 0.2,
            min_confidence: 0.8,
            seed: 42,
        }
    }
}

/// Errors of the model lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("{0}")]
    Features(#[from] FeatureError),
    #[error("need {needed} examples, got {got}")]
    TooFewExamples { needed: usize, got: usize },
    #[error("the {split} set has only one class ({positives} failures of {total}); need both")]
    OneClass {
        split: &'static str,
        positives: usize,
        total: usize,
    },
    #[error("example {index}: feature {feature} is not finite")]
    NonFinite { index: usize, feature: usize },
    #[error("invalid training parameter {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("training failed: {0}")]
    Training(String),
    #[error(
        "validation failed: model F1 {model:.3} does not beat the baseline's {baseline:.3}; not promoting"
    )]
    WorseThanBaseline { model: f64, baseline: f64 },
    #[error("model format {found} is not supported (this build reads {MODEL_FORMAT})")]
    UnsupportedFormat { found: u32 },
    #[error("model bytes are not a model: {0}")]
    Decode(String),
    #[error("expected {expected} features, got {got}")]
    WrongFeatureCount { expected: usize, got: usize },
}

/// Binary classification quality.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quality {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub support: usize,
}

impl Quality {
    pub fn of(predicted: &[bool], actual: &[bool]) -> Self {
        let (mut tp, mut fp, mut fn_, mut tn) = (0usize, 0usize, 0usize, 0usize);
        for (p, a) in predicted.iter().zip(actual) {
            match (p, a) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        let ratio = |a: usize, b: usize| {
            if a + b == 0 {
                0.0
            } else {
                a as f64 / (a + b) as f64
            }
        };
        let precision = ratio(tp, fp);
        let recall = ratio(tp, fn_);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            f1,
            accuracy: ratio(tp + tn, fp + fn_),
            support: predicted.len(),
        }
    }
}

/// The baseline a model must beat: the best single-feature threshold rule learnt on the
/// training set (what an operator would write as an alert), or always-majority if better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRule {
    pub feature: usize,
    pub threshold: f64,
    /// True: failure predicted when the feature is above the threshold.
    pub above: bool,
}

impl ThresholdRule {
    pub fn predict(&self, x: &[f64]) -> bool {
        x.get(self.feature).is_some_and(|v| {
            if self.above {
                *v > self.threshold
            } else {
                *v <= self.threshold
            }
        })
    }

    /// The best rule over every feature and every threshold between its values: one
    /// sort per feature, then a sweep that keeps the confusion counts (O(n log n),
    /// not a pass over the data per candidate threshold).
    fn learn(xs: &[[f64; FEATURE_COUNT]], ys: &[bool]) -> Self {
        let positives = ys.iter().filter(|y| **y).count();
        let f1 = |tp: usize, fp: usize| {
            let fn_ = positives - tp;
            if tp == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
            }
        };
        let mut best = (
            Self {
                feature: 0,
                threshold: f64::INFINITY,
                above: true,
            },
            -1.0,
        );
        let mut pairs: Vec<(f64, bool)> = Vec::with_capacity(xs.len());
        for f in 0..FEATURE_COUNT {
            pairs.clear();
            pairs.extend(xs.iter().zip(ys).map(|(x, y)| (x[f], *y)));
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let n = pairs.len();
            // `at_or_below` counts (positives, all) among values ≤ the threshold.
            let (mut pos_le, mut all_le) = (0usize, 0usize);
            let mut i = 0;
            while i < n {
                let thr = pairs[i].0;
                while i < n && pairs[i].0 == thr {
                    pos_le += usize::from(pairs[i].1);
                    all_le += 1;
                    i += 1;
                }
                // above: failure when value > thr; below: when value ≤ thr.
                let (tp_above, fp_above) =
                    (positives - pos_le, (n - all_le) - (positives - pos_le));
                let (tp_below, fp_below) = (pos_le, all_le - pos_le);
                for (above, tp, fp) in [(true, tp_above, fp_above), (false, tp_below, fp_below)] {
                    let score = f1(tp, fp);
                    if score > best.1 {
                        best = (
                            Self {
                                feature: f,
                                threshold: thr,
                                above,
                            },
                            score,
                        );
                    }
                }
            }
        }
        best.0
    }
}

/// A prediction for one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// The model's verdict: a failure is coming within the horizon.
    pub failure: bool,
    /// Share of trees voting "failure": 0..1.
    pub probability: f64,
    /// Confidence in the verdict (`probability` or `1 - probability`).
    pub confidence: f64,
    /// True when the verdict is "failure" with at least `min_confidence`.
    pub raise: bool,
}

/// Validation and hold-out results recorded with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub validation_model: Quality,
    pub validation_baseline: Quality,
    pub holdout_model: Quality,
    pub holdout_baseline: Quality,
    pub holdout_majority: Quality,
}

/// A trained, versioned failure model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureModel {
    pub format: u32,
    /// Caller-chosen version label (e.g. "disk-failure@3").
    pub version: String,
    pub extractor: FeatureExtractor,
    pub horizon: usize,
    pub min_confidence: f64,
    pub feature_names: Vec<String>,
    trees: Vec<DecisionTree<f64, usize>>,
    tree_features: Vec<Vec<usize>>,
    pub baseline: ThresholdRule,
    pub evaluation: Evaluation,
}

fn to_array(xs: &[[f64; FEATURE_COUNT]]) -> Array2<f64> {
    let mut a = Array2::zeros((xs.len(), FEATURE_COUNT));
    for (i, x) in xs.iter().enumerate() {
        for (j, v) in x.iter().enumerate() {
            a[[i, j]] = *v;
        }
    }
    a
}

impl FailureModel {
    /// Trains on time-ordered examples (oldest first): the oldest `train_share` trains, the
    /// next `validation_share` validates against the baseline (a model that does not beat
    /// it is refused), the rest is the hold-out set whose figures are recorded.
    pub fn train(
        version: &str,
        extractor: FeatureExtractor,
        horizon: usize,
        xs: &[[f64; FEATURE_COUNT]],
        ys: &[bool],
        cfg: &TrainConfig,
    ) -> Result<Self, ClassifierError> {
        let invalid = |field, reason| Err(ClassifierError::Invalid { field, reason });
        if cfg.trees == 0 || cfg.trees > 1000 {
            return invalid("trees", "must be in 1..=1000");
        }
        if cfg.max_depth == 0 {
            return invalid("max_depth", "must be at least 1");
        }
        let share = |v: f64| v > 0.0 && v <= 1.0;
        if !share(cfg.bootstrap) || !share(cfg.feature_share) {
            return invalid("bootstrap/feature_share", "must be in (0, 1]");
        }
        if !(cfg.train_share > 0.0
            && cfg.validation_share > 0.0
            && cfg.train_share + cfg.validation_share < 1.0)
        {
            return invalid(
                "train_share/validation_share",
                "must be positive and sum below 1",
            );
        }
        if !(cfg.min_confidence >= 0.5 && cfg.min_confidence <= 1.0) {
            return invalid("min_confidence", "must be in 0.5..=1");
        }
        let n = xs.len().min(ys.len());
        if n < 30 {
            return Err(ClassifierError::TooFewExamples { needed: 30, got: n });
        }
        for (i, x) in xs.iter().enumerate() {
            if let Some(f) = x.iter().position(|v| !v.is_finite()) {
                return Err(ClassifierError::NonFinite {
                    index: i,
                    feature: f,
                });
            }
        }
        let a = (n as f64 * cfg.train_share) as usize;
        let b = (n as f64 * (cfg.train_share + cfg.validation_share)) as usize;
        let splits = [("training", 0, a), ("validation", a, b), ("hold-out", b, n)];
        for (split, lo, hi) in splits {
            let positives = ys[lo..hi].iter().filter(|y| **y).count();
            if positives == 0 || positives == hi - lo {
                return Err(ClassifierError::OneClass {
                    split,
                    positives,
                    total: hi - lo,
                });
            }
        }
        let targets: Array1<usize> = ys[..a].iter().map(|y| usize::from(*y)).collect();
        let train = Dataset::new(to_array(&xs[..a]), targets);
        let params = EnsembleLearnerParams::new_fixed_rng(
            DecisionTree::params().max_depth(Some(cfg.max_depth)),
            StdRng::seed_from_u64(cfg.seed),
        )
        .ensemble_size(cfg.trees)
        .bootstrap_proportion(cfg.bootstrap)
        .feature_proportion(cfg.feature_share);
        let learnt = params
            .fit(&train)
            .map_err(|e| ClassifierError::Training(e.to_string()))?;
        let baseline = ThresholdRule::learn(&xs[..a], &ys[..a]);
        let mut model = Self {
            format: MODEL_FORMAT,
            version: version.to_string(),
            extractor,
            horizon,
            min_confidence: cfg.min_confidence,
            feature_names: FeatureExtractor::names(),
            trees: learnt.models,
            tree_features: learnt.model_features,
            baseline,
            evaluation: Evaluation {
                validation_model: Quality::default(),
                validation_baseline: Quality::default(),
                holdout_model: Quality::default(),
                holdout_baseline: Quality::default(),
                holdout_majority: Quality::default(),
            },
        };
        let quality = |m: &Self, lo: usize, hi: usize| {
            let pred: Vec<bool> = m
                .predict_batch(&xs[lo..hi])
                .iter()
                .map(|p| p.raise)
                .collect();
            let base: Vec<bool> = xs[lo..hi].iter().map(|x| m.baseline.predict(x)).collect();
            (
                Quality::of(&pred, &ys[lo..hi]),
                Quality::of(&base, &ys[lo..hi]),
            )
        };
        let (vm, vb) = quality(&model, a, b);
        if vm.f1 <= vb.f1 {
            return Err(ClassifierError::WorseThanBaseline {
                model: vm.f1,
                baseline: vb.f1,
            });
        }
        let (hm, hb) = quality(&model, b, n);
        let majority_failure = ys[..a].iter().filter(|y| **y).count() * 2 > a;
        let majority = vec![majority_failure; n - b];
        model.evaluation = Evaluation {
            validation_model: vm,
            validation_baseline: vb,
            holdout_model: hm,
            holdout_baseline: hb,
            holdout_majority: Quality::of(&majority, &ys[b..n]),
        };
        Ok(model)
    }

    /// Predictions for many windows at once (one matrix per tree, no per-row allocation).
    pub fn predict_batch(&self, xs: &[[f64; FEATURE_COUNT]]) -> Vec<Prediction> {
        let all = to_array(xs);
        let mut votes = vec![0usize; xs.len()];
        for (tree, feats) in self.trees.iter().zip(&self.tree_features) {
            let sub = all.select(Axis(1), feats);
            let pred: Array1<usize> = tree.predict(&sub);
            for (v, p) in votes.iter_mut().zip(pred.iter()) {
                *v += usize::from(*p == 1);
            }
        }
        let total = self.trees.len().max(1) as f64;
        votes
            .into_iter()
            .map(|v| self.verdict(v as f64 / total))
            .collect()
    }

    /// Prediction for one window's features.
    pub fn predict(&self, x: &[f64]) -> Result<Prediction, ClassifierError> {
        let row: [f64; FEATURE_COUNT] =
            x.try_into()
                .map_err(|_| ClassifierError::WrongFeatureCount {
                    expected: FEATURE_COUNT,
                    got: x.len(),
                })?;
        if let Some(f) = row.iter().position(|v| !v.is_finite()) {
            return Err(ClassifierError::NonFinite {
                index: 0,
                feature: f,
            });
        }
        Ok(self.predict_batch(&[row])[0])
    }

    /// Prediction from raw samples (the last `extractor.window` of them).
    pub fn predict_samples(&self, history: &[Sample]) -> Result<Prediction, ClassifierError> {
        let x = self.extractor.extract(history)?;
        self.predict(&x)
    }

    fn verdict(&self, probability: f64) -> Prediction {
        let failure = probability >= 0.5;
        let confidence = if failure {
            probability
        } else {
            1.0 - probability
        };
        Prediction {
            failure,
            probability,
            confidence,
            raise: failure && confidence >= self.min_confidence,
        }
    }

    /// Serialised bytes (JSON) for the store.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ClassifierError> {
        serde_json::to_vec(self).map_err(|e| ClassifierError::Decode(e.to_string()))
    }

    /// Reads bytes written by [`FailureModel::to_bytes`], refusing other format versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClassifierError> {
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| ClassifierError::Decode(e.to_string()))?;
        if header.format != MODEL_FORMAT {
            return Err(ClassifierError::UnsupportedFormat {
                found: header.format,
            });
        }
        let model: Self =
            serde_json::from_slice(bytes).map_err(|e| ClassifierError::Decode(e.to_string()))?;
        if model.trees.len() != model.tree_features.len()
            || model
                .tree_features
                .iter()
                .flatten()
                .any(|f| *f >= FEATURE_COUNT)
        {
            return Err(ClassifierError::Decode(
                "trees and their feature lists do not match".to_string(),
            ));
        }
        Ok(model)
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }
}

/// Deterministic synthetic fleet data with a known failure signature, for tests, benches
/// and the demo: before each failure memory climbs and the error rate rises over
/// `lead` samples; normal noise includes harmless CPU bursts that fool a CPU threshold.
pub fn synthetic_fleet(samples: usize, seed: u64, lead: usize) -> (Vec<Sample>, Vec<bool>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut history = Vec::with_capacity(samples);
    let mut failures = vec![false; samples];
    let mut i = 0;
    while i < samples {
        // A healthy stretch, then (maybe) a degradation leading to a failure.
        let healthy = 40 + (rnd() * 120.0) as usize;
        for _ in 0..healthy.min(samples - i) {
            let burst = if rnd() < 0.05 { 40.0 } else { 0.0 };
            history.push(Sample {
                cpu: 35.0 + 10.0 * rnd() + burst,
                memory: 50.0 + 8.0 * rnd(),
                disk_io: 20.0 + 10.0 * rnd(),
                error_rate: 0.01 * rnd() + if rnd() < 0.03 { 0.05 } else { 0.0 },
            });
            i += 1;
        }
        if i >= samples {
            break;
        }
        for k in 0..lead.min(samples - i) {
            let p = (k + 1) as f64 / lead as f64;
            history.push(Sample {
                cpu: 40.0 + 10.0 * rnd() + 10.0 * p,
                memory: 52.0 + 8.0 * rnd() + 35.0 * p,
                disk_io: 20.0 + 10.0 * rnd(),
                error_rate: 0.01 * rnd() + 0.08 * p * rnd(),
            });
            i += 1;
        }
        if i < samples {
            failures[i - 1] = true;
        }
    }
    (history, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_counts() {
        let q = Quality::of(&[true, true, false, false], &[true, false, true, false]);
        assert!((q.precision - 0.5).abs() < 1e-12 && (q.recall - 0.5).abs() < 1e-12);
        assert!((q.accuracy - 0.5).abs() < 1e-12);
    }

    #[test]
    fn features_have_names_and_refuse_bad_windows() {
        assert_eq!(FeatureExtractor::names().len(), FEATURE_COUNT);
        let fx = FeatureExtractor::new(3).expect("valid");
        let s = Sample {
            cpu: 1.0,
            memory: 2.0,
            disk_io: 3.0,
            error_rate: 0.0,
        };
        assert!(matches!(
            fx.extract(&[s]),
            Err(FeatureError::ShortWindow { .. })
        ));
        let bad = Sample { cpu: f64::NAN, ..s };
        assert!(matches!(
            fx.extract(&[s, s, bad]),
            Err(FeatureError::NonFinite { index: 2, .. })
        ));
        let rising = [s, Sample { memory: 4.0, ..s }, Sample { memory: 6.0, ..s }];
        let f = fx.extract(&rising).expect("valid");
        assert!(
            (f[5 + 4] - 2.0).abs() < 1e-12,
            "memory slope is 2 per sample"
        );
        assert!(FeatureExtractor::new(1).is_err());
    }
}
