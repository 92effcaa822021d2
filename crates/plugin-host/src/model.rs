//! Host-side plugin data: what `describe` said, and connector batches.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a plugin provides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kinds {
    pub connector: bool,
    pub action: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapabilityKind {
    Log,
    Clock,
    Http,
    Kv,
    Secrets,
    Process,
    Files,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityRequest {
    pub kind: CapabilityKind,
    pub scope: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginActionInfo {
    pub name: String,
    pub description: String,
    pub idempotent: bool,
    pub pure: bool,
}

/// What a plugin's `describe` returned, checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kinds: Kinds,
    pub sdk_version: String,
    pub description: String,
    /// JSON Schema of the config.
    pub config_schema: serde_json::Value,
    pub capabilities: Vec<CapabilityRequest>,
    pub actions: Vec<PluginActionInfo>,
}

impl PluginInfo {
    pub fn requests(&self, kind: CapabilityKind) -> bool {
        self.capabilities.iter().any(|c| c.kind == kind)
    }
    /// Whether the plugin requested `kind` for `scope` (an empty requested scope covers all).
    pub fn requests_scope(&self, kind: CapabilityKind, scope: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.kind == kind && (c.scope.is_empty() || crate::grants::glob_match(&c.scope, scope))
        })
    }
}

pub use vigil_plugin_types::{Sample, TimeRange};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: i64,
    pub labels: BTreeMap<String, String>,
    pub message: String,
}

/// What a connector returned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub series: Vec<Series>,
    pub events: Vec<Event>,
}

impl Batch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}
