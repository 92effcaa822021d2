//! vigil's vocabulary: the small types every other crate speaks.
//!
//! Durations as authors write them, source spans and diagnostics that say where,
//! what and how to fix it, fingerprints, the clock, text made safe to show, and the
//! [`action`] contract between the executor and whatever performs a step. This crate
//! does no I/O beyond reading the wall clock, and depends on no vigil crate but
//! `vigil-plugin-types` (the data plugins exchange, shared with the SDK).

pub mod action;
pub mod audit;
pub mod clock;
pub mod diag;
pub mod digest;
pub mod duration;
pub mod fingerprint;
pub mod journal;
pub mod outcome;
pub mod span;
pub mod story;
pub mod suggest;
pub mod text;

pub use clock::{Clock, now_ms};
pub use duration::Duration;
pub use fingerprint::Fingerprint;
