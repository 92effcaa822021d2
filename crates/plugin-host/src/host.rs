//! The wasmtime host: one Engine and Linker per process, an `InstancePre` per
//! plugin, a fresh `Store` per call with a memory cap and an epoch deadline.

use super::cache::{self, CacheOutcome};
use super::error::{Call, Limit, PluginError, ReportedKind};
use super::grants::{Grants, Need};
use super::http_policy::{self, CheckedUrl};
use super::limiter::{MemLimiter, count_limit};
use super::model::{self, CapabilityKind, PluginInfo};
use super::services::{self, EnvSecrets, HttpClient, KvStore, MemoryKv, SecretSource};
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

/// What a call may do, besides what is granted.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// `describe`, `validate`: logging only.
    Describe,
    /// `fetch`: everything granted.
    Fetch,
    /// `plan` (dry-run): read-only: HTTP GET/HEAD, kv read, secrets.
    Plan,
    /// `execute`: reads, plus the effects the plan declared.
    Execute { effects: Vec<String> },
}

pub(crate) enum Bound {
    Connector(wit::connector::Connector),
    Action(wit::action::Action),
}

/// One call of one plugin instance.
pub(crate) struct Invocation<'a> {
    pub plugin: &'a LoadedPlugin,
    pub instance: &'a str,
    pub grants: &'a Grants,
    pub limits: Limits,
}

impl Invocation<'_> {
    fn store(&self, call: Call, mode: Mode) -> Result<(Store<State>, StderrCapture), PluginError> {
        let host = &self.plugin.host.inner;
        let deadline = Instant::now() + Duration::from_millis(self.limits.timeout_ms);
        let stderr = StderrCapture::new(16 * 1024);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.grants.clock {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if self.plugin.info.requests(CapabilityKind::Files) {
            for f in &self.grants.files {
                if !self
                    .plugin
                    .info
                    .requests_scope(CapabilityKind::Files, &f.path)
                {
                    continue;
                }
                wasi.preopened_dir(&f.path, &f.path, FsPerms::ReadOnly)
                    .map_err(|e| PluginError::Host {
                        plugin: self.plugin.info.name.clone(),
                        call,
                        detail: format!("files grant {:?}: {e:#}", f.path),
                    })?;
            }
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemLimiter::new(u64::from(self.limits.memory_mib) * 1024 * 1024),
            cx: CallCx {
                plugin: self.plugin.info.clone(),
                instance: self.instance.to_string(),
                call,
                mode,
                grants: self.grants.clone(),
                deadline,
                services: host.services.clone(),
                denials: Vec::new(),
                log_lines: 0,
                limits: self.limits,
                log_limit_hit: false,
            },
        };
        let mut store = Store::new(&host.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick the callback compares the wall clock with the deadline, so the
        // limit holds however slowly the ticker runs or however long the guest blocked.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::from(Trap::Interrupt))
            } else {
                Ok(wasmtime::UpdateDeadline::Continue(1))
            }
        });
        Ok((store, stderr))
    }

    fn instantiate(&self, store: &mut Store<State>, call: Call) -> wasmtime::Result<Bound> {
        let action_call = matches!(call, Call::Validate | Call::Plan | Call::Execute);
        Ok(
            if let (Some(c), false) = (&self.plugin.connector, action_call) {
                Bound::Connector(c.instantiate(&mut *store)?)
            } else if let Some(a) = &self.plugin.action {
                Bound::Action(a.instantiate(&mut *store)?)
            } else if let Some(c) = &self.plugin.connector {
                Bound::Connector(c.instantiate(&mut *store)?)
            } else {
                return Err(wasmtime::Error::msg("plugin exports no usable world"));
            },
        )
    }

    /// Runs `f` against a fresh instance; every failure becomes a typed error.
    pub fn run<R>(
        &self,
        call: Call,
        mode: Mode,
        f: impl FnOnce(&mut Store<State>, &Bound) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let (mut store, stderr) = self.store(call, mode)?;
        let result = self
            .instantiate(&mut store, call)
            .and_then(|bound| f(&mut store, &bound));
        let plugin = self.plugin.info.name.clone();
        let data = store.data();
        if let Some(limit) = data.limiter.exceeded() {
            return Err(PluginError::LimitExceeded {
                plugin,
                call,
                limit,
            });
        }
        if data.cx.log_limit_hit {
            return Err(PluginError::LimitExceeded {
                plugin,
                call,
                limit: Limit::Log {
                    lines: self.limits.log_lines,
                },
            });
        }
        if let Some(first) = data.cx.denials.first() {
            let more = data.cx.denials.len() - 1;
            let detail = if more > 0 {
                format!("{first} (and {more} more denied calls)")
            } else {
                first.clone()
            };
            return Err(PluginError::Denied {
                plugin,
                call,
                detail,
            });
        }
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                if let Some(trap) = e.downcast_ref::<Trap>() {
                    match trap {
                        Trap::Interrupt => {
                            return Err(PluginError::LimitExceeded {
                                plugin,
                                call,
                                limit: Limit::Timeout {
                                    ms: self.limits.timeout_ms,
                                },
                            });
                        }
                        Trap::StackOverflow => {
                            return Err(PluginError::LimitExceeded {
                                plugin,
                                call,
                                limit: Limit::Stack,
                            });
                        }
                        _ => {}
                    }
                }
                if let Some(limit) = count_limit(&e) {
                    return Err(PluginError::LimitExceeded {
                        plugin,
                        call,
                        limit,
                    });
                }
                let mut detail = trap_detail(&e);
                let err_text = String::from_utf8_lossy(&stderr.contents())
                    .trim()
                    .to_string();
                if !err_text.is_empty() {
                    let tail: String = err_text
                        .chars()
                        .rev()
                        .take(2000)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    detail = format!("{detail}; plugin stderr: {tail}");
                }
                Err(PluginError::Trap {
                    plugin,
                    call,
                    detail,
                })
            }
        }
    }
}

/// The error chain without the long wasm backtrace: the cause plus the top frames.
fn trap_detail(e: &wasmtime::Error) -> String {
    let full = format!("{e:#}");
    let cause = e.root_cause().to_string();
    let frames: Vec<&str> = full
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .take(4)
        .collect();
    let mut out = cause.clone();
    if cause.contains("out of bounds memory access") {
        out.push_str(
            " (a guest's shadow stack overflowing from deep recursion also shows as this)",
        );
    }
    if !frames.is_empty() {
        out.push_str("; top frames: ");
        out.push_str(
            &frames
                .iter()
                .map(|f| f.trim())
                .collect::<Vec<_>>()
                .join(" | "),
        );
    }
    out
}

pub(crate) fn reported(plugin: &str, call: Call, e: wit::types::PluginError) -> PluginError {
    let kind = match e.kind {
        wit::types::ErrorKind::InvalidInput => ReportedKind::InvalidInput,
        wit::types::ErrorKind::Failed => ReportedKind::Failed,
        wit::types::ErrorKind::Denied => ReportedKind::Denied,
        wit::types::ErrorKind::Unsupported => ReportedKind::Unsupported,
    };
    let mut message = super::convert::visible(e.message);
    super::convert::truncate_chars(&mut message, 4096);
    PluginError::Reported {
        plugin: plugin.to_string(),
        call,
        kind,
        message,
    }
}

/// The version of `wasi:clocks` that `wasmtime-wasi` links (semver-compatible
/// imports of older 0.2.x versions resolve to it).
const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A sleep that ends no later than the call's deadline.
struct CappedSleep(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CappedSleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

fn capped_sleep(state: &mut State, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
    // A little past the deadline, so the epoch interrupt fires as soon as the guest resumes.
    let cap = state.cx.remaining() + TICK * 2;
    let d = Duration::from_nanos(nanos).min(cap);
    let r = state
        .table
        .push(CappedSleep(tokio::time::Instant::now() + d))?;
    wasmtime_wasi::p2::subscribe(&mut state.table, r)
}

/// Replaces WASI's `subscribe-duration`/`subscribe-instant` so that a guest
/// blocking in a sleep or poll cannot outlive its call deadline: the epoch
/// interrupt only stops running wasm, not a host future.
fn cap_sleeps(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clocks = linker.instance(WASI_CLOCKS)?;
    clocks.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, State>, (nanos,): (u64,)| {
            Ok((capped_sleep(store.data_mut(), nanos)?,))
        },
    )?;
    clocks.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, State>, (when,): (u64,)| {
            use wasmtime_wasi::p2::bindings::sync::clocks::monotonic_clock::Host as _;
            let state = store.data_mut();
            let now = wasmtime_wasi::clocks::WasiClocksView::clocks(state).now()?;
            Ok((capped_sleep(state, when.saturating_sub(now))?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Guest stderr: accepts everything, keeps the first `cap` bytes (a panic
/// message comes first), so a chatty plugin never fails on a full pipe.
#[derive(Clone)]
pub(crate) struct StderrCapture {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    cap: usize,
}

impl StderrCapture {
    fn new(cap: usize) -> Self {
        StderrCapture {
            buf: Arc::new(std::sync::Mutex::new(Vec::new())),
            cap,
        }
    }
    fn contents(&self) -> Vec<u8> {
        self.buf.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrCapture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrCapture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Ok(mut b) = self.buf.lock() {
            let room = self.cap.saturating_sub(b.len());
            b.extend_from_slice(&data[..data.len().min(room)]);
        }
        std::task::Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A clock stuck at the Unix epoch, for plugins without the `clock` grant.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Store data: WASI (no ambient authority) plus the call context.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemLimiter,
    cx: CallCx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub(crate) struct CallCx {
    plugin: Arc<PluginInfo>,
    instance: String,
    call: Call,
    mode: Mode,
    grants: Grants,
    deadline: Instant,
    services: Arc<Services>,
    denials: Vec<String>,
    log_lines: u32,
    log_limit_hit: bool,
    limits: Limits,
}

fn need_kind(need: &Need<'_>) -> (CapabilityKind, String) {
    match need {
        Need::Http { url, .. } => (CapabilityKind::Http, url.as_str().to_string()),
        Need::KvRead | Need::KvWrite => (CapabilityKind::Kv, String::new()),
        Need::Secret(n) => (CapabilityKind::Secrets, (*n).to_string()),
        Need::Process { program, .. } => (CapabilityKind::Process, (*program).to_string()),
    }
}

fn is_read_only(need: &Need<'_>) -> bool {
    match need {
        Need::Http { method, .. } => {
            method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")
        }
        Need::KvRead | Need::Secret(_) => true,
        Need::KvWrite | Need::Process { .. } => false,
    }
}

fn effect_string(need: &Need<'_>) -> String {
    match need {
        Need::Http { method, url } => format!("http:{} {url}", method.to_ascii_uppercase()),
        Need::Process { program, .. } => format!("process:{program}"),
        Need::KvWrite => "kv:write".into(),
        Need::KvRead => "kv:read".into(),
        Need::Secret(n) => format!("secret:{n}"),
    }
}

impl CallCx {
    /// Checks a capability use: requested ∩ granted, then the call mode.
    /// A denial is recorded (it fails the call) and returned to the plugin.
    fn check(&mut self, need: Need<'_>) -> Result<(), String> {
        let (kind, scope) = need_kind(&need);
        let reason = if !self.plugin.requests_scope(kind, &scope) {
            Some(format!(
                "{need}: plugin {:?} did not request this capability in describe() (requested: {})",
                self.plugin.name,
                describe_requests(&self.plugin)
            ))
        } else if !self.grants.allows(&need) {
            Some(format!(
                "{need} is not granted to plugin instance {:?}; the grant that would allow it: `{}`",
                self.instance,
                need.grant_line()
            ))
        } else {
            match &self.mode {
                Mode::Describe => Some(format!(
                    "{need}: {} may not use host capabilities",
                    self.call
                )),
                Mode::Fetch => None,
                Mode::Plan if is_read_only(&need) => None,
                Mode::Plan => Some(format!(
                    "{need} is a side effect; plan runs read-only (dry-run) and may only read (HTTP GET/HEAD, kv get)"
                )),
                Mode::Execute { .. } if is_read_only(&need) => None,
                Mode::Execute { effects } if super::effects::declared(effects, &need) => None,
                Mode::Execute { .. } => Some(format!(
                    "{need} was not declared by the plan; execute may only use declared effects (the plan would need `{}`)",
                    effect_string(&need)
                )),
            }
        };
        match reason {
            None => Ok(()),
            Some(r) => Err(self.deny(r)),
        }
    }

    /// Records a denial (it fails the call, even if the plugin swallows the error)
    /// and returns what the plugin is told.
    fn deny(&mut self, reason: String) -> String {
        tracing::warn!(plugin = %self.plugin.name, instance = %self.instance, call = %self.call, "denied: {reason}");
        let told = format!("denied: {reason}");
        self.denials.push(reason);
        told
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

fn describe_requests(info: &PluginInfo) -> String {
    if info.capabilities.is_empty() {
        return "none".into();
    }
    info.capabilities
        .iter()
        .map(|c| {
            if c.scope.is_empty() {
                format!("{:?}", c.kind).to_lowercase()
            } else {
                format!("{:?}:{}", c.kind, c.scope).to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl wit::types::Host for State {}

impl imports::log::Host for State {
    fn log(&mut self, level: imports::log::Level, message: String) {
        let cx = &mut self.cx;
        if !cx.grants.log || !cx.plugin.requests(CapabilityKind::Log) {
            return;
        }
        cx.log_lines += 1;
        if cx.log_lines > cx.limits.log_lines {
            cx.log_limit_hit = true;
            return;
        }
        let mut message = super::convert::visible(message);
        super::convert::truncate_chars(&mut message, 8192);
        let (p, i, c) = (&cx.plugin.name, &cx.instance, cx.call);
        use imports::log::Level;
        match level {
            Level::Trace => tracing::trace!(plugin = %p, instance = %i, call = %c, "{message}"),
            Level::Debug => tracing::debug!(plugin = %p, instance = %i, call = %c, "{message}"),
            Level::Info => tracing::info!(plugin = %p, instance = %i, call = %c, "{message}"),
            Level::Warn => tracing::warn!(plugin = %p, instance = %i, call = %c, "{message}"),
            Level::Error => tracing::error!(plugin = %p, instance = %i, call = %c, "{message}"),
        }
    }
}

impl imports::clock::Host for State {
    fn now_ms(&mut self) -> i64 {
        if self.cx.grants.clock && self.cx.plugin.requests(CapabilityKind::Clock) {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        } else {
            0
        }
    }
}

impl imports::http::Host for State {
    fn send(&mut self, req: imports::http::Request) -> Result<imports::http::Response, String> {
        let method = req.method.to_ascii_uppercase();
        // The URL is checked as the server will read it, and sent as it was checked.
        let url = CheckedUrl::parse(&req.url).map_err(|e| self.cx.deny(e.to_string()))?;
        http_policy::check_request(&method, &req.headers, req.body.is_some())
            .map_err(|e| self.cx.deny(e))?;
        self.cx.check(Need::Http {
            method: &method,
            url: &url,
        })?;
        let remaining = self.cx.remaining();
        if remaining.is_zero() {
            return Err("call deadline reached".into());
        }
        let timeout = req
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(remaining))
            .unwrap_or(remaining);
        let _span =
            tracing::debug_span!("plugin_http", plugin = %self.cx.plugin.name, %method, %url)
                .entered();
        let resp = self.cx.services.http.send(services::HttpRequest {
            method,
            url: url.as_str().to_string(),
            headers: req.headers,
            body: req.body,
            timeout,
        })?;
        Ok(imports::http::Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }
}

impl State {
    /// The kv namespace this plugin instance was granted (empty when none).
    fn kv_namespace(&self) -> String {
        self.cx
            .grants
            .kv
            .as_ref()
            .map(|k| k.namespace.clone())
            .unwrap_or_default()
    }
}

impl imports::kv::Host for State {
    fn get(&mut self, key: String) -> Result<Option<String>, String> {
        self.cx.check(Need::KvRead)?;
        let ns = self.kv_namespace();
        self.cx.services.kv.get(&ns, &key)
    }
    fn set(&mut self, key: String, value: String) -> Result<(), String> {
        self.cx.check(Need::KvWrite)?;
        let ns = self.kv_namespace();
        self.cx.services.kv.set(&ns, &key, &value)
    }
    fn delete(&mut self, key: String) -> Result<(), String> {
        self.cx.check(Need::KvWrite)?;
        let ns = self.kv_namespace();
        self.cx.services.kv.delete(&ns, &key)
    }
}

impl imports::secrets::Host for State {
    fn get(&mut self, name: String) -> Result<String, String> {
        self.cx.check(Need::Secret(&name))?;
        self.cx
            .services
            .secrets
            .get(&name)
            .ok_or_else(|| format!("secret {name:?} is granted but not set"))
    }
}

impl imports::process::Host for State {
    fn run(&mut self, cmd: imports::process::Command) -> Result<imports::process::Output, String> {
        self.cx.check(Need::Process {
            program: &cmd.program,
            args: &cmd.args,
        })?;
        let remaining = self.cx.remaining();
        let timeout = cmd
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(remaining))
            .unwrap_or(remaining);
        let max = self.cx.limits.io_kib as usize * 1024;
        let _span = tracing::info_span!("plugin_process", plugin = %self.cx.plugin.name, program = %cmd.program).entered();
        let out = services::run_process(&cmd.program, &cmd.args, cmd.stdin, timeout, max)?;
        Ok(imports::process::Output {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
            timed_out: out.timed_out,
        })
    }
}
