//! Typed plugin errors: each names the plugin, the call, and what stopped it.

use std::fmt;
use std::path::PathBuf;

/// Which export was being called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Describe,
    Fetch,
    Validate,
    Plan,
    Execute,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Describe => "describe",
            Call::Fetch => "fetch",
            Call::Validate => "validate",
            Call::Plan => "plan",
            Call::Execute => "execute",
        })
    }
}

/// A sandbox limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Wall-clock deadline (epoch interruption).
    Timeout { ms: u64 },
    /// Linear memory cap.
    Memory { bytes: u64 },
    /// Size of what the plugin returned.
    Output { bytes: u64 },
    /// WebAssembly stack.
    Stack,
    /// Log lines per call.
    Log { lines: u32 },
    /// How many memories, tables or core instances one plugin instance may create.
    Count { what: &'static str, max: usize },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Timeout { ms } => write!(f, "time limit of {ms} ms"),
            Limit::Memory { bytes } => write!(f, "memory limit of {} MiB", bytes / (1024 * 1024)),
            Limit::Output { bytes } => write!(f, "output limit of {bytes} bytes"),
            Limit::Stack => f.write_str("stack limit (recursion too deep)"),
            Limit::Log { lines } => write!(f, "log limit of {lines} lines per call"),
            Limit::Count { what, max } => write!(f, "limit of {max} {what} per instance"),
        }
    }
}

/// The error kind a plugin itself reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportedKind {
    InvalidInput,
    Failed,
    Denied,
    Unsupported,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {path}: not a valid vigil component: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("plugin {plugin}: {detail}")]
    BadInfo { plugin: String, detail: String },
    #[error("plugin {plugin}: {call}: stopped by the {limit}")]
    LimitExceeded {
        plugin: String,
        call: Call,
        limit: Limit,
    },
    #[error("plugin {plugin}: {call}: trapped: {detail}")]
    Trap {
        plugin: String,
        call: Call,
        detail: String,
    },
    #[error("plugin {plugin}: {call}: capability denied: {detail}")]
    Denied {
        plugin: String,
        call: Call,
        detail: String,
    },
    #[error("plugin {plugin}: {call}: {message}")]
    Reported {
        plugin: String,
        call: Call,
        kind: ReportedKind,
        message: String,
    },
    #[error("plugin {plugin}: {call}: bad output: {detail}")]
    BadOutput {
        plugin: String,
        call: Call,
        detail: String,
    },
    #[error("plugin {plugin}: {call}: {detail}")]
    Host {
        plugin: String,
        call: Call,
        detail: String,
    },
    #[error("plugin config: {0}")]
    Config(String),
    #[error("compile cache {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
    #[error("wasmtime engine: {0}")]
    Engine(String),
}

impl PluginError {
    /// The limit that stopped the call, if one did.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            PluginError::LimitExceeded { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// Maps to the executor's error type.
    pub fn into_action_error(self) -> vigil_core::action::ActionError {
        use vigil_core::action::ActionError;
        match &self {
            PluginError::Reported {
                kind: ReportedKind::InvalidInput,
                ..
            } => ActionError::InvalidInput(self.to_string()),
            PluginError::Reported {
                kind: ReportedKind::Failed,
                ..
            }
            | PluginError::Host { .. }
            | PluginError::Io { .. } => ActionError::Failed(self.to_string()),
            PluginError::Reported {
                kind: ReportedKind::Unsupported,
                ..
            }
            | PluginError::Config(_) => ActionError::InvalidInput(self.to_string()),
            _ => ActionError::Sandbox(self.to_string()),
        }
    }
}
