//! Features over a window of host metrics, the classifier's input.

use serde::{Deserialize, Serialize};

/// One observation of a host or service.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Sample {
    /// CPU utilisation, percent.
    pub cpu: f64,
    /// Memory utilisation, percent.
    pub memory: f64,
    /// Disk I/O, any consistent unit (e.g. MB/s).
    pub disk_io: f64,
    /// Errors per request (0..1) or per second; any consistent unit.
    pub error_rate: f64,
}

impl Sample {
    /// A sample from values in the order of [`FEATURE_METRICS`].
    pub fn from_metrics(v: [f64; METRICS]) -> Sample {
        Sample {
            cpu: v[0],
            memory: v[1],
            disk_io: v[2],
            error_rate: v[3],
        }
    }

    fn metrics(&self) -> [f64; METRICS] {
        [self.cpu, self.memory, self.disk_io, self.error_rate]
    }
}

const METRICS: usize = 4;
const METRIC_NAMES: [&str; METRICS] = ["cpu", "memory", "disk_io", "error_rate"];

/// The metrics a [`Sample`] holds, by the names detectors give their queries.
pub const FEATURE_METRICS: [&str; METRICS] = METRIC_NAMES;
const STATS: [&str; 5] = ["last", "mean", "max", "std", "slope"];

/// Number of features per window.
pub const FEATURE_COUNT: usize = METRICS * STATS.len();

/// Feature extraction problems.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("window needs {needed} samples, got {got}")]
    ShortWindow { needed: usize, got: usize },
    #[error("sample {index}: {metric} is not finite")]
    NonFinite { index: usize, metric: &'static str },
    #[error("window must be at least 2 samples")]
    BadWindow,
}

/// Turns the last `window` samples into [`FEATURE_COUNT`] numbers: per metric the last
/// value, mean, max, standard deviation and slope per sample. The slope is what sees a leak
/// or a filling disk before the level alone looks wrong.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct FeatureExtractor {
    pub window: usize,
}

impl FeatureExtractor {
    pub fn new(window: usize) -> Result<Self, FeatureError> {
        if window < 2 {
            return Err(FeatureError::BadWindow);
        }
        Ok(Self { window })
    }

    /// Feature names, in the order of [`FeatureExtractor::extract`].
    pub fn names() -> Vec<String> {
        METRIC_NAMES
            .iter()
            .flat_map(|m| STATS.iter().map(move |s| format!("{m}_{s}")))
            .collect()
    }

    /// Features of the last `window` samples of `history`.
    pub fn extract(&self, history: &[Sample]) -> Result<[f64; FEATURE_COUNT], FeatureError> {
        if history.len() < self.window {
            return Err(FeatureError::ShortWindow {
                needed: self.window,
                got: history.len(),
            });
        }
        let start = history.len() - self.window;
        let win = &history[start..];
        for (i, s) in win.iter().enumerate() {
            for (m, v) in s.metrics().iter().enumerate() {
                if !v.is_finite() {
                    return Err(FeatureError::NonFinite {
                        index: start + i,
                        metric: METRIC_NAMES[m],
                    });
                }
            }
        }
        let n = win.len() as f64;
        let x_mean = (n - 1.0) / 2.0;
        let sxx: f64 = (0..win.len()).map(|i| (i as f64 - x_mean).powi(2)).sum();
        let mut out = [0.0; FEATURE_COUNT];
        for m in 0..METRICS {
            let vals = win.iter().map(|s| s.metrics()[m]);
            let mean = vals.clone().sum::<f64>() / n;
            let max = vals.clone().fold(f64::NEG_INFINITY, f64::max);
            let var = vals.clone().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let sxy: f64 = vals
                .clone()
                .enumerate()
                .map(|(i, v)| (i as f64 - x_mean) * (v - mean))
                .sum();
            let last = win[win.len() - 1].metrics()[m];
            let base = m * STATS.len();
            out[base..base + STATS.len()].copy_from_slice(&[
                last,
                mean,
                max,
                var.sqrt(),
                sxy / sxx,
            ]);
        }
        Ok(out)
    }

    /// Labelled examples from one host's history: the features at each sample (once the
    /// window is full) and whether a failure happens within the next `horizon` samples.
    pub fn examples(
        &self,
        history: &[Sample],
        failures: &[bool],
        horizon: usize,
    ) -> Result<(Vec<[f64; FEATURE_COUNT]>, Vec<bool>), FeatureError> {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let n = history.len().min(failures.len());
        for end in self.window..=n {
            let ahead = &failures[end.min(n)..(end + horizon).min(n)];
            xs.push(self.extract(&history[..end])?);
            ys.push(ahead.iter().any(|f| *f));
        }
        Ok((xs, ys))
    }
}
