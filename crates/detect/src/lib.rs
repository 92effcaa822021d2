//! Detectors: online anomaly detection, capacity forecasting and failure prediction.
//!
//! - [`anomaly`]: streaming scorers (robust, seasonal, cusum, spike, novelty, context, breach,
//!   ensemble, multi-metric);
//! - [`forecast`]: trend + seasonality forecasts, prediction intervals, time to exhaustion,
//!   rolling-origin backtests;
//! - [`classifier`]: failure prediction with linfa decision trees, with a train / validate /
//!   evaluate / serve lifecycle;
//! - [`series`] and [`input`]: validating and reading the points everything above consumes.

pub mod anomaly;
pub mod classifier;
pub mod forecast;
pub mod input;
pub mod series;
