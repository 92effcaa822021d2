//! vigil: a rules-and-runbook automation engine.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and invariants.

pub mod api;
pub mod compose;
pub mod daemon;
pub mod learn;
pub mod ops;
