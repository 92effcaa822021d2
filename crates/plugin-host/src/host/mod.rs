//! The wasmtime host: one Engine and Linker per process, an `InstancePre` per
//! plugin, a fresh `Store` per call with a memory cap and an epoch deadline.
//!
//! This file loads and compiles components; `invoke` runs one call, `wasi` is the
//! sandboxed WASI a plugin sees, and `capabilities` the host functions it may import,
//! each checked against its grants.

mod capabilities;
mod invoke;
mod wasi;

use capabilities::*;
use invoke::trap_detail;
pub(crate) use invoke::{Bound, Invocation, Mode, reported};
pub(crate) use wasi::State;
use wasi::*;

use super::cache::{self, CacheOutcome};
use super::error::{Call, Limit, PluginError, ReportedKind};
use super::grants::{Grants, Need};
use super::http_policy::{self, CheckedUrl};
use super::limiter::{MemLimiter, count_limit};
use super::model::{self, CapabilityKind, PluginInfo};
use super::services::{self, EnvSecrets, HttpClient, KvStore, MemoryKv, SecretSource};
use super::tcp_policy::CheckedAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::wit;
use wit::connector::vigil::plugin as imports;

/// The largest component file read; anything larger is refused unread.
const MAX_COMPONENT_BYTES: u64 = 128 << 20;

/// Epoch tick: the granularity of call deadlines.
const TICK: Duration = Duration::from_millis(2);

/// Per-instance sandbox limits. In `vigil.yaml`:
/// `limits: { timeout: 10s, memory_mib: 64, output_kib: 4096, log_lines: 1000, io_kib: 8192 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per instance, MiB.
    pub memory_mib: u32,
    /// Wall-clock time per call (instantiation included), ms; `timeout: 5s` in YAML.
    #[serde(rename = "timeout", deserialize_with = "duration_ms")]
    pub timeout_ms: u64,
    /// Size of what a call may return, KiB.
    pub output_kib: u32,
    /// Log lines per call.
    pub log_lines: u32,
    /// HTTP response bodies and process stdout/stderr, KiB each.
    pub io_kib: u32,
}

fn duration_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let dur = <vigil_core::duration::Duration as serde::Deserialize>::deserialize(d)?;
    Ok(u64::try_from(dur.as_std().as_millis()).unwrap_or(u64::MAX))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 10_000,
            output_kib: 4096,
            log_lines: 1000,
            io_kib: 8192,
        }
    }
}

/// How a host is set up.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Where compiled `.cwasm` files are cached; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// Durable kv; default in memory.
    pub kv: Option<Arc<dyn KvStore>>,
    /// Secret resolution; default `VIGIL_SECRET_<NAME>` environment variables.
    pub secrets: Option<Arc<dyn SecretSource>>,
}

#[derive(Debug)]
pub(crate) struct Services {
    pub kv: Arc<dyn KvStore>,
    pub secrets: Arc<dyn SecretSource>,
    pub http: HttpClient,
}

/// The process-wide plugin host. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    pub(crate) services: Arc<Services>,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    pub fn new(opts: HostOptions) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(512 * 1024);
        config.parallel_compilation(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        wit::connector::Connector::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        cap_sleeps(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("vigil-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| PluginError::Engine(format!("epoch thread: {e}")))?;
        }
        let max_io = u64::from(Limits::default().io_kib) * 1024;
        let services = Arc::new(Services {
            kv: opts.kv.unwrap_or_else(|| Arc::new(MemoryKv::default())),
            secrets: opts.secrets.unwrap_or_else(|| Arc::new(EnvSecrets)),
            http: HttpClient::new(max_io),
        });
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                cache_dir: opts.cache_dir,
                services,
                stop_ticker,
            }),
        })
    }

    /// Loads a component file: compile (or cache hit), link, `describe`.
    pub fn load_file(&self, path: &Path) -> Result<Arc<LoadedPlugin>, PluginError> {
        use std::io::Read as _;
        let io = |e| PluginError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(PluginError::Load {
                path: path.to_path_buf(),
                detail: format!(
                    "larger than {} MiB; a plugin component is a few MiB (is this the file you meant?)",
                    MAX_COMPONENT_BYTES >> 20
                ),
            });
        }
        self.load_bytes(&bytes, path)
    }

    /// Loads a component from bytes; `origin` names it in errors.
    pub fn load_bytes(&self, wasm: &[u8], origin: &Path) -> Result<Arc<LoadedPlugin>, PluginError> {
        let inner = &self.inner;
        let (component, cache) =
            cache::load(&inner.engine, inner.cache_dir.as_deref(), wasm, origin)?;
        let pre = inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Load {
                path: origin.to_path_buf(),
                detail: format!("{e:#}"),
            })?;
        let connector = wit::connector::ConnectorPre::new(pre.clone()).ok();
        let action = wit::action::ActionPre::new(pre).ok();
        if connector.is_none() && action.is_none() {
            return Err(PluginError::Load {
                path: origin.to_path_buf(),
                detail: "exports neither the vigil:plugin connector nor the action world".into(),
            });
        }
        let mut plugin = LoadedPlugin {
            path: origin.to_path_buf(),
            hash: cache::content_hash(wasm),
            cache,
            info: Arc::new(placeholder_info(origin)),
            connector,
            action,
            host: self.clone(),
        };
        let probe = Invocation {
            plugin: &plugin,
            instance: &plugin.info.name.clone(),
            grants: &Grants::default(),
            limits: Limits {
                timeout_ms: 5_000,
                ..Limits::default()
            },
        };
        let raw = probe.run(Call::Describe, Mode::Describe, |store, b| match b {
            Bound::Connector(c) => c.vigil_plugin_meta().call_describe(store),
            Bound::Action(a) => a.vigil_plugin_meta().call_describe(store),
        })?;
        let info = super::convert::plugin_info(raw, &plugin.path)?;
        if info.kinds.connector && plugin.connector.is_none() {
            return Err(PluginError::BadInfo {
                plugin: info.name,
                detail: "says it is a connector but does not export connector-api".into(),
            });
        }
        if info.kinds.action && plugin.action.is_none() {
            return Err(PluginError::BadInfo {
                plugin: info.name,
                detail: "says it has actions but does not export action-api".into(),
            });
        }
        plugin.info = Arc::new(info);
        Ok(Arc::new(plugin))
    }

    /// Every `*.wasm` in `dirs` (not recursive), loaded; one bad file fails the lot,
    /// naming the file.
    pub fn load_dirs(&self, dirs: &[PathBuf]) -> Result<Vec<Arc<LoadedPlugin>>, PluginError> {
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(PluginError::Io {
                        path: dir.clone(),
                        source: e,
                    });
                }
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            files.sort();
            for f in files {
                out.push(self.load_file(&f)?);
            }
        }
        Ok(out)
    }
}

fn placeholder_info(origin: &Path) -> PluginInfo {
    PluginInfo {
        name: origin
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        version: String::new(),
        kinds: model::Kinds::default(),
        sdk_version: String::new(),
        description: String::new(),
        config_schema: serde_json::Value::Null,
        capabilities: Vec::new(),
        actions: Vec::new(),
    }
}

/// A compiled, linked plugin and what it said about itself.
pub struct LoadedPlugin {
    path: PathBuf,
    hash: String,
    cache: CacheOutcome,
    info: Arc<PluginInfo>,
    connector: Option<wit::connector::ConnectorPre<State>>,
    action: Option<wit::action::ActionPre<State>>,
    host: PluginHost,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.info.name)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Hex SHA-256 of the component bytes.
    pub fn content_hash(&self) -> &str {
        &self.hash
    }
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// Instantiates once in a fresh store and drops it — what every call pays
    /// before it runs (for benchmarks and health checks).
    pub fn instantiate_only(&self) -> Result<(), PluginError> {
        let inv = Invocation {
            plugin: self,
            instance: &self.info.name,
            grants: &Grants::default(),
            limits: Limits::default(),
        };
        inv.run(Call::Describe, Mode::Describe, |_, _| Ok(()))
    }

    /// Calls `describe` again in a fresh instance (cheapest export: benchmarks).
    pub fn describe(&self) -> Result<PluginInfo, PluginError> {
        let inv = Invocation {
            plugin: self,
            instance: &self.info.name,
            grants: &Grants::default(),
            limits: Limits::default(),
        };
        let raw = inv.run(Call::Describe, Mode::Describe, |store, b| match b {
            Bound::Connector(c) => c.vigil_plugin_meta().call_describe(store),
            Bound::Action(a) => a.vigil_plugin_meta().call_describe(store),
        })?;
        super::convert::plugin_info(raw, &self.path)
    }
}

/// One instance kept alive across calls — for benchmarks only (the engine
/// always uses a fresh store per call).
#[doc(hidden)]
pub struct WarmInstance {
    store: Store<State>,
    bound: Bound,
}

impl std::fmt::Debug for WarmInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WarmInstance")
    }
}

impl WarmInstance {
    /// Calls `validate(config "{}", action, input)` on the live instance.
    pub fn call_validate(&mut self, action: &str, input: &str) -> Result<(), PluginError> {
        let r = match &self.bound {
            Bound::Action(a) => {
                a.vigil_plugin_action_api()
                    .call_validate(&mut self.store, "{}", action, input)
            }
            Bound::Connector(_) => return Err(PluginError::Engine("not an action plugin".into())),
        };
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(reported("bench", Call::Validate, e)),
            Err(e) => Err(PluginError::Trap {
                plugin: "bench".into(),
                call: Call::Validate,
                detail: trap_detail(&e),
            }),
        }
    }
}

impl LoadedPlugin {
    #[doc(hidden)]
    pub fn warm_instance(&self) -> Result<WarmInstance, PluginError> {
        let inv = Invocation {
            plugin: self,
            instance: &self.info.name,
            grants: &Grants::default(),
            limits: Limits {
                timeout_ms: 24 * 3_600_000,
                ..Limits::default()
            },
        };
        let (mut store, _) = inv.store(Call::Validate, Mode::Describe)?;
        let bound = inv
            .instantiate(&mut store, Call::Validate)
            .map_err(|e| PluginError::Trap {
                plugin: self.info.name.clone(),
                call: Call::Validate,
                detail: trap_detail(&e),
            })?;
        Ok(WarmInstance { store, bound })
    }
}
