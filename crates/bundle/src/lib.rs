//! The bundle: runbooks, detectors, policies and the config as YAML resources,
//! parsed with spans, typed, and checked into resources with diagnostics that say
//! where, what and how to fix it.
//!
//! - [`yaml`] and [`de`]: a YAML reader that keeps positions and bounds what it expands;
//! - [`model`]: the documents as written and the checked resources;
//! - [`load`]: reading a directory or file into a [`Bundle`], checking every resource;
//! - [`template`]: `${{ }}` templates inside runbook values;
//! - [`detector`]: a detector's model section; [`graph`]: the step dependency graph.
//!
//! Loading does no I/O but reading the bundle's files.

pub mod de;
pub mod detector;
pub mod graph;
pub mod load;
pub mod model;
pub mod template;
pub mod yaml;
pub use load::Bundle;
