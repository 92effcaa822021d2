//! WASM plugins: the only home of wasmtime.
//!
//! - [`PluginHost`]: one wasmtime `Engine` + `Linker` per process, compile cache,
//!   epoch ticker, host services (HTTP, process, kv, secrets).
//! - [`LoadedPlugin`]: a compiled component with its `InstancePre` and `describe()` info.
//! - [`PluginInstance`]: a plugin + config + [`Grants`] + [`Limits`] (one `sources:` entry).
//! - [`PluginCatalog`]: all of them; an [`ActionCatalog`](vigil_core::action::ActionCatalog)
//!   resolving `uses: <instance>/<action>`, and [`PluginCatalog::connector`] for detectors.
//!
//! Every call runs in a fresh `Store` with a memory cap and an epoch deadline;
//! a trap, timeout or limit becomes a [`PluginError`] naming plugin, call and limit.
//! In a dry-run only `plan` runs, with read-only capabilities; `execute` may use
//! only the effects declared by the plan it is given.

mod cache;
mod catalog;
mod convert;
mod effects;
mod error;
mod glob;
pub mod grants;
mod host;
pub mod http_policy;
mod limiter;
mod model;
mod services;
pub mod tcp_policy;
mod wit;

pub use cache::{CacheOutcome, content_hash};
pub use catalog::{
    Connector, InstanceConfig, PluginAction, PluginCatalog, PluginInstance, VALIDATE_TIMEOUT_MS,
};
pub use error::{Call, Limit, PluginError, ReportedKind};
pub use grants::Grants;
pub use host::{HostOptions, Limits, LoadedPlugin, PluginHost, WarmInstance};
pub use model::{
    Batch, CapabilityKind, CapabilityRequest, Event, Kinds, PluginActionInfo, PluginInfo, Sample,
    Series, TimeRange,
};
pub use services::{EnvSecrets, KvStore, MemoryKv, SecretSource, StaticSecrets};

/// The SDK version this host was built alongside.
pub const ABI_VERSION: &str = "vigil:plugin@0.1.0";
