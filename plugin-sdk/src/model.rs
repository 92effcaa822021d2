//! Plain-Rust mirrors of the WIT types.

use crate::wit;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which host capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A capability the plugin requests; the operator must also grant it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    pub kind: CapabilityKind,
    /// Narrows the request: secret name, program, URL pattern; empty = any.
    pub scope: String,
    pub reason: String,
}

impl Capability {
    pub fn new(kind: CapabilityKind, scope: &str, reason: &str) -> Self {
        Capability {
            kind,
            scope: scope.to_string(),
            reason: reason.to_string(),
        }
    }
    pub fn log() -> Self {
        Self::new(CapabilityKind::Log, "", "diagnostics")
    }
    pub fn clock(reason: &str) -> Self {
        Self::new(CapabilityKind::Clock, "", reason)
    }
    pub fn http(reason: &str) -> Self {
        Self::new(CapabilityKind::Http, "", reason)
    }
    pub fn kv(reason: &str) -> Self {
        Self::new(CapabilityKind::Kv, "", reason)
    }
    pub fn secret(name: &str, reason: &str) -> Self {
        Self::new(CapabilityKind::Secrets, name, reason)
    }
    pub fn process(program: &str, reason: &str) -> Self {
        Self::new(CapabilityKind::Process, program, reason)
    }
    /// Read-only access to directories the operator grants (`grants: { files: [...] }`).
    pub fn files(reason: &str) -> Self {
        Self::new(CapabilityKind::Files, "", reason)
    }
    /// TCP exchanges with `host:port` addresses matching `scope` (empty = any the
    /// operator grants with `grants: { tcp: [{ address: "host:port" }] }`).
    pub fn tcp(scope: &str, reason: &str) -> Self {
        Self::new(CapabilityKind::Tcp, scope, reason)
    }
}

/// One action the plugin offers (`uses: <plugin>/<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionDef {
    pub name: String,
    pub description: String,
    pub idempotent: bool,
    pub pure: bool,
}

impl ActionDef {
    /// A new action, non-idempotent and impure until said otherwise.
    pub fn new(name: &str, description: &str) -> Self {
        ActionDef {
            name: name.into(),
            description: description.into(),
            idempotent: false,
            pure: false,
        }
    }
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
    pub fn pure(mut self, yes: bool) -> Self {
        self.pure = yes;
        self
    }
}

/// What a plugin says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema of the config.
    pub config_schema: Value,
    pub capabilities: Vec<Capability>,
    pub actions: Vec<ActionDef>,
}

impl Info {
    pub fn new(name: &str, version: &str) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            config_schema: serde_json::json!({ "type": "object" }),
            capabilities: Vec::new(),
            actions: Vec::new(),
        }
    }
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.config_schema = schema;
        self
    }
    pub fn capability(mut self, c: Capability) -> Self {
        self.capabilities.push(c);
        self
    }
    pub fn action(mut self, a: ActionDef) -> Self {
        self.actions.push(a);
        self
    }

    pub(crate) fn into_wit(self, kinds: wit::PluginKinds) -> wit::PluginInfo {
        wit::PluginInfo {
            name: self.name,
            version: self.version,
            kinds,
            sdk_version: crate::SDK_VERSION.to_string(),
            description: self.description,
            config_schema: self.config_schema.to_string(),
            capabilities: self
                .capabilities
                .into_iter()
                .map(|c| wit::CapabilityRequest {
                    kind: match c.kind {
                        CapabilityKind::Log => wit::CapabilityKind::Log,
                        CapabilityKind::Clock => wit::CapabilityKind::Clock,
                        CapabilityKind::Http => wit::CapabilityKind::Http,
                        CapabilityKind::Kv => wit::CapabilityKind::Kv,
                        CapabilityKind::Secrets => wit::CapabilityKind::Secrets,
                        CapabilityKind::Process => wit::CapabilityKind::Process,
                        CapabilityKind::Files => wit::CapabilityKind::Files,
                        CapabilityKind::Tcp => wit::CapabilityKind::Tcp,
                    },
                    scope: c.scope,
                    reason: c.reason,
                })
                .collect(),
            actions: self
                .actions
                .into_iter()
                .map(|a| wit::ActionInfo {
                    name: a.name,
                    description: a.description,
                    idempotent: a.idempotent,
                    pure: a.pure,
                })
                .collect(),
        }
    }
}

pub use vigil_plugin_types::{PlannedEffect, Risk, Sample, TimeRange};

impl From<wit::TimeRange> for TimeRange {
    fn from(r: wit::TimeRange) -> Self {
        TimeRange {
            start: r.start,
            end: r.end,
            step: r.step,
        }
    }
}

/// A labelled time series. Labels keep their order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
    pub fn push(&mut self, timestamp: i64, value: f64) {
        self.samples.push(Sample { timestamp, value });
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: i64,
    pub labels: Vec<(String, String)>,
    pub message: String,
}

/// What a connector returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub series: Vec<Series>,
    pub events: Vec<Event>,
}

fn labels(l: Vec<(String, String)>) -> Vec<wit::Label> {
    l.into_iter()
        .map(|(name, value)| wit::Label { name, value })
        .collect()
}

impl From<Batch> for wit::Batch {
    fn from(b: Batch) -> Self {
        wit::Batch {
            series: b
                .series
                .into_iter()
                .map(|s| wit::Series {
                    labels: labels(s.labels),
                    samples: s
                        .samples
                        .into_iter()
                        .map(|p| wit::Sample {
                            timestamp: p.timestamp,
                            value: p.value,
                        })
                        .collect(),
                })
                .collect(),
            events: b
                .events
                .into_iter()
                .map(|e| wit::Event {
                    timestamp: e.timestamp,
                    labels: labels(e.labels),
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// What an action would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub summary: String,
    pub steps: Vec<PlannedEffect>,
    pub preview: Option<Value>,
}

impl Plan {
    pub fn new(summary: impl Into<String>) -> Self {
        Plan {
            summary: summary.into(),
            steps: Vec::new(),
            preview: None,
        }
    }
    pub fn step(mut self, s: PlannedEffect) -> Self {
        self.steps.push(s);
        self
    }
    pub fn preview(mut self, v: Value) -> Self {
        self.preview = Some(v);
        self
    }
}

impl From<Plan> for wit::ActionPlan {
    fn from(p: Plan) -> Self {
        wit::ActionPlan {
            summary: p.summary,
            steps: p
                .steps
                .into_iter()
                .map(|s| wit::PlannedEffect {
                    target: s.target,
                    risk: match s.risk {
                        Risk::None => wit::Risk::None,
                        Risk::Low => wit::Risk::Low,
                        Risk::Medium => wit::Risk::Medium,
                        Risk::High => wit::Risk::High,
                    },
                    reversible: s.reversible,
                    effects: s.effects,
                })
                .collect(),
            preview: p.preview.map(|v| v.to_string()),
        }
    }
}

impl From<wit::ActionPlan> for Plan {
    fn from(p: wit::ActionPlan) -> Self {
        Plan {
            summary: p.summary,
            steps: p
                .steps
                .into_iter()
                .map(|s| PlannedEffect {
                    target: s.target,
                    risk: match s.risk {
                        wit::Risk::None => Risk::None,
                        wit::Risk::Low => Risk::Low,
                        wit::Risk::Medium => Risk::Medium,
                        wit::Risk::High => Risk::High,
                    },
                    reversible: s.reversible,
                    effects: s.effects,
                })
                .collect(),
            preview: p.preview.and_then(|t| serde_json::from_str(&t).ok()),
        }
    }
}
