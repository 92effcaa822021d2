//! The detector runtime: detectors run on their schedules against their sources,
//! with state kept between runs, and what they find handed on as reports.
//!
//! - [`schedule`]: the scheduler (seconds, no overlap, per-job jitter, missed runs);
//! - [`detectors`]: one detector's runs, its per-series state and its detections;
//! - [`runner`]: the bundle's detectors from sources to reports, bounded between stages;
//! - [`models`]: the promoted classifier versions detectors serve;
//! - [`evaluate`]: stored predictions scored against labelled anomalies;
//! - [`store`]: models, detections and forecasts in the store.
//!
//! Never: an alert, an incident or a plugin; sources are a trait the binary fills.

pub mod detectors;
pub mod evaluate;
pub mod models;
pub mod runner;
pub mod schedule;
pub mod store;

pub use vigil_core::Clock;
