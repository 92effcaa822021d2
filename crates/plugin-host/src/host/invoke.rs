//! One call into a plugin: a fresh store under the instance's limits and an epoch
//! deadline, the component instantiated, the call run, and a trap turned into a
//! typed error.

use super::*;

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
    pub(super) fn store(
        &self,
        call: Call,
        mode: Mode,
    ) -> Result<(Store<State>, StderrCapture), PluginError> {
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

    pub(super) fn instantiate(
        &self,
        store: &mut Store<State>,
        call: Call,
    ) -> wasmtime::Result<Bound> {
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
pub(super) fn trap_detail(e: &wasmtime::Error) -> String {
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
    let mut message = crate::convert::visible(e.message);
    crate::convert::truncate_chars(&mut message, 4096);
    PluginError::Reported {
        plugin: plugin.to_string(),
        call,
        kind,
        message,
    }
}
