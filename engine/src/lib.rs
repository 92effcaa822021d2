//! vigil: a rules-and-runbook automation engine.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and invariants.

pub mod alert;
pub mod api;
pub mod daemon;
pub mod exec;
pub mod learn;
pub mod schedule;
pub mod store;
pub mod telemetry;
