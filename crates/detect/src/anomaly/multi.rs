//! Multi-metric correlation: several series of one service judged together.
//!
//! Each series is standardised robustly (median/MAD over its own window); the vector of
//! z-scores is then judged by its Mahalanobis distance under an exponentially weighted
//! covariance of past z-vectors. Metrics that normally move together (requests and CPU)
//! make a joint move cheap and a broken relation (CPU up, requests flat) expensive, which
//! per-series scores cannot see.

use serde::{Deserialize, Serialize};

use super::window::{ScaleFloors, SortedWindow};
use super::{ModelConfigError, require, require_positive, z_to_unit};

/// Parameters of [`MultiMetric`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiMetricConfig {
    /// Per-series baseline window.
    pub window: usize,
    pub min_points: usize,
    /// Half-life, in points, of the covariance estimate.
    pub half_life: f64,
    /// Added to the covariance diagonal so a degenerate metric cannot make it singular.
    pub ridge: f64,
    /// Per-metric-equivalent z that scores 0.5.
    pub z_half: f64,
}

impl Default for MultiMetricConfig {
    fn default() -> Self {
        Self {
            window: 288,
            min_points: 30,
            half_life: 288.0,
            ridge: 0.05,
            z_half: 4.0,
        }
    }
}

/// The joint verdict on one timestamp of several series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiScore {
    pub t: i64,
    /// Score in [0, 1].
    pub value: f64,
    /// Mahalanobis distance of the z-vector.
    pub distance: f64,
    /// Per-series robust z, in the order of the names.
    pub z: Vec<f64>,
    /// The series contributing most to the distance.
    pub main_contributor: Option<String>,
}

impl MultiScore {
    pub fn explanation(&self) -> String {
        match &self.main_contributor {
            None => "learning, not enough history yet (multi)".to_string(),
            Some(name) => format!(
                "joint deviation {:.1} (score {:.2}); mostly {name}",
                self.distance, self.value
            ),
        }
    }
}

/// Errors specific to feeding several series at once.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MultiMetricError {
    #[error("expected {expected} values (one per series), got {got}")]
    WrongArity { expected: usize, got: usize },
}

/// Joint scorer for a fixed set of named series sampled at the same timestamps.
#[derive(Debug, Clone)]
pub struct MultiMetric {
    cfg: MultiMetricConfig,
    names: Vec<String>,
    windows: Vec<SortedWindow>,
    mean: Vec<f64>,
    cov: Vec<f64>,
    chol: Vec<f64>,
    solved: Vec<f64>,
    z: Vec<f64>,
    seen: usize,
    alpha: f64,
}

impl MultiMetric {
    pub fn new(names: Vec<String>, cfg: MultiMetricConfig) -> Result<Self, ModelConfigError> {
        require(
            !names.is_empty() && names.len() <= 64,
            "series",
            "need 1 to 64 series",
        )?;
        require(cfg.window >= 3, "window", "must be at least 3 points")?;
        require(
            cfg.min_points >= 3 && cfg.min_points <= cfg.window,
            "min_points",
            "must be in 3..=window",
        )?;
        require(
            cfg.half_life.is_finite() && cfg.half_life >= 1.0,
            "half_life",
            "must be at least 1",
        )?;
        require(
            cfg.ridge.is_finite() && cfg.ridge > 0.0,
            "ridge",
            "must be a positive number",
        )?;
        require_positive(cfg.z_half, "z_half")?;
        let n = names.len();
        let mut cov = vec![0.0; n * n];
        for i in 0..n {
            cov[i * n + i] = 1.0;
        }
        Ok(Self {
            windows: (0..n).map(|_| SortedWindow::new(cfg.window)).collect(),
            mean: vec![0.0; n],
            cov,
            chol: vec![0.0; n * n],
            solved: vec![0.0; n],
            z: vec![0.0; n],
            seen: 0,
            alpha: 1.0 - 0.5f64.powf(1.0 / cfg.half_life),
            names,
            cfg,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Scores one timestamp. Non-finite values count as "no deviation" for that series and
    /// are not learnt from.
    pub fn update(&mut self, t: i64, xs: &[f64]) -> Result<MultiScore, MultiMetricError> {
        let n = self.names.len();
        if xs.len() != n {
            return Err(MultiMetricError::WrongArity {
                expected: n,
                got: xs.len(),
            });
        }
        let warm = self.seen >= self.cfg.min_points;
        for (i, &x) in xs.iter().enumerate() {
            let w = &self.windows[i];
            self.z[i] = match w.median() {
                Some(m) if x.is_finite() => {
                    let scale = w.robust_scale(m, m, ScaleFloors::default());
                    ((x - m) / scale).clamp(-1e6, 1e6)
                }
                _ => 0.0,
            };
        }
        let result = if warm {
            let (distance, contributor) = self.mahalanobis();
            let per_metric = distance / (n as f64).sqrt();
            MultiScore {
                t,
                value: z_to_unit(per_metric, self.cfg.z_half),
                distance,
                z: self.z.clone(),
                main_contributor: contributor.and_then(|i| self.names.get(i).cloned()),
            }
        } else {
            MultiScore {
                t,
                value: 0.0,
                distance: 0.0,
                z: self.z.clone(),
                main_contributor: None,
            }
        };
        // Learn: covariance of z-vectors (clipped, so one outage does not wreck it).
        let a = self.alpha;
        for i in 0..n {
            let zi = self.z[i].clamp(-10.0, 10.0);
            self.mean[i] += a * (zi - self.mean[i]);
        }
        for i in 0..n {
            let di = self.z[i].clamp(-10.0, 10.0) - self.mean[i];
            for j in 0..n {
                let dj = self.z[j].clamp(-10.0, 10.0) - self.mean[j];
                let c = &mut self.cov[i * n + j];
                *c = (1.0 - a) * *c + a * di * dj;
            }
        }
        for (i, &x) in xs.iter().enumerate() {
            self.windows[i].push(x);
        }
        self.seen += 1;
        Ok(result)
    }

    /// sqrt(dᵀ Σ⁻¹ d) via a Cholesky factor of the ridged covariance, and the index of the
    /// largest term of the whitened vector.
    fn mahalanobis(&mut self) -> (f64, Option<usize>) {
        let n = self.names.len();
        for i in 0..n {
            for j in 0..=i {
                let mut s = self.cov[i * n + j] + if i == j { self.cfg.ridge } else { 0.0 };
                for k in 0..j {
                    s -= self.chol[i * n + k] * self.chol[j * n + k];
                }
                self.chol[i * n + j] = if i == j {
                    s.max(1e-12).sqrt()
                } else {
                    s / self.chol[j * n + j]
                };
            }
        }
        // Forward substitution: L y = z - mean.
        let mut best = None;
        let mut best_v = 0.0;
        let mut total = 0.0;
        for i in 0..n {
            let mut s = self.z[i] - self.mean[i];
            for k in 0..i {
                s -= self.chol[i * n + k] * self.solved[k];
            }
            self.solved[i] = s / self.chol[i * n + i];
            let term = self.solved[i] * self.solved[i];
            total += term;
            if term > best_v {
                best_v = term;
                best = Some(i);
            }
        }
        let d = total.sqrt();
        (if d.is_finite() { d } else { f64::MAX }, best.or(Some(0)))
    }

    pub fn state_bytes(&self) -> usize {
        let n = self.names.len();
        std::mem::size_of::<Self>()
            + self
                .windows
                .iter()
                .map(SortedWindow::state_bytes)
                .sum::<usize>()
            + (2 * n * n + 3 * n) * std::mem::size_of::<f64>()
            + self
                .names
                .iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_correlation_scores_higher_than_a_joint_move() {
        let names = vec!["requests".to_string(), "cpu".to_string()];
        let mut m = MultiMetric::new(names, MultiMetricConfig::default()).expect("valid");
        let mut seed = 7u64;
        let mut noise = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for i in 0..600 {
            let load = 100.0 + 30.0 * ((i % 50) as f64 / 50.0) + noise();
            m.update(i, &[load, load * 0.5 + noise() * 0.2])
                .expect("arity");
        }
        let joint = m.update(600, &[160.0, 80.0]).expect("arity");
        let broken = m.update(601, &[100.0, 80.0]).expect("arity");
        assert!(
            broken.value > joint.value,
            "{} vs {}",
            broken.explanation(),
            joint.explanation()
        );
        assert_eq!(broken.main_contributor.as_deref(), Some("cpu"));
        assert!(matches!(
            m.update(602, &[1.0]),
            Err(MultiMetricError::WrongArity { .. })
        ));
    }
}
