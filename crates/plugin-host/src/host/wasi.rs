//! The WASI a plugin sees: no files, no sockets, no environment; stderr captured and
//! capped, clocks frozen in a dry-run, sleeps capped by the call's deadline.

use super::*;

/// The version of `wasi:clocks` that `wasmtime-wasi` links (semver-compatible
/// imports of older 0.2.x versions resolve to it).
pub(super) const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A sleep that ends no later than the call's deadline.
pub(super) struct CappedSleep(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CappedSleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

pub(super) fn capped_sleep(
    state: &mut State,
    nanos: u64,
) -> wasmtime::Result<Resource<DynPollable>> {
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
pub(super) fn cap_sleeps(linker: &mut Linker<State>) -> wasmtime::Result<()> {
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
    pub(super) buf: Arc<std::sync::Mutex<Vec<u8>>>,
    pub(super) cap: usize,
}

impl StderrCapture {
    pub(super) fn new(cap: usize) -> Self {
        StderrCapture {
            buf: Arc::new(std::sync::Mutex::new(Vec::new())),
            cap,
        }
    }
    pub(super) fn contents(&self) -> Vec<u8> {
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
pub(super) struct FrozenClock;

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
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemLimiter,
    pub(super) cx: CallCx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
