//! The documents a policy reads beside its script: the Rhai files of a bundle,
//! on-call rotations and change-freeze windows (from `vigil.yaml`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use vigil_core::Duration;

/// A Rhai policy file in the bundle.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyFile {
    pub name: String,
    pub file: PathBuf,
    #[serde(skip)]
    pub source: String,
}

/// An on-call rotation: members take shifts of `shift` length from `start`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotationDoc {
    pub members: Vec<String>,
    pub shift: Duration,
    /// RFC 3339 start of the first shift.
    pub start: String,
}

/// A change freeze from `start` to `end`: policies see it and may refuse to act alone.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// RFC 3339, e.g. `2026-12-20T00:00:00Z`.
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub reason: String,
}
