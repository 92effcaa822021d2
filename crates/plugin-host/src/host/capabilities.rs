//! The host functions a plugin may import (log, clock, http, kv, secrets, process, tcp),
//! each checked against the instance's grants and the call's mode before it acts.

use super::*;

pub(crate) struct CallCx {
    pub(super) plugin: Arc<PluginInfo>,
    pub(super) instance: String,
    pub(super) call: Call,
    pub(super) mode: Mode,
    pub(super) grants: Grants,
    pub(super) deadline: Instant,
    pub(super) services: Arc<Services>,
    pub(super) denials: Vec<String>,
    pub(super) log_lines: u32,
    pub(super) log_limit_hit: bool,
    pub(super) limits: Limits,
}

pub(super) fn need_kind(need: &Need<'_>) -> (CapabilityKind, String) {
    match need {
        Need::Http { url, .. } => (CapabilityKind::Http, url.as_str().to_string()),
        Need::KvRead | Need::KvWrite => (CapabilityKind::Kv, String::new()),
        Need::Secret(n) => (CapabilityKind::Secrets, (*n).to_string()),
        Need::Process { program, .. } => (CapabilityKind::Process, (*program).to_string()),
        Need::Tcp { addr } => (CapabilityKind::Tcp, addr.as_str().to_string()),
    }
}

pub(super) fn is_read_only(need: &Need<'_>) -> bool {
    match need {
        Need::Http { method, .. } => {
            method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")
        }
        Need::KvRead | Need::Secret(_) => true,
        // A raw connection may change anything the server behind it can.
        Need::KvWrite | Need::Process { .. } | Need::Tcp { .. } => false,
    }
}

pub(super) fn effect_string(need: &Need<'_>) -> String {
    match need {
        Need::Http { method, url } => format!("http:{} {url}", method.to_ascii_uppercase()),
        Need::Process { program, .. } => format!("process:{program}"),
        Need::KvWrite => "kv:write".into(),
        Need::KvRead => "kv:read".into(),
        Need::Secret(n) => format!("secret:{n}"),
        Need::Tcp { addr } => format!("tcp:{addr}"),
    }
}

impl CallCx {
    /// Checks a capability use: requested ∩ granted, then the call mode.
    /// A denial is recorded (it fails the call) and returned to the plugin.
    pub(super) fn check(&mut self, need: Need<'_>) -> Result<(), String> {
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
                    "{need} is a side effect; plan runs read-only (dry-run) and may only read (HTTP GET/HEAD, kv get; a TCP exchange counts as a write)"
                )),
                Mode::Execute { .. } if is_read_only(&need) => None,
                Mode::Execute { effects } if crate::effects::declared(effects, &need) => None,
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
    pub(super) fn deny(&mut self, reason: String) -> String {
        tracing::warn!(plugin = %self.plugin.name, instance = %self.instance, call = %self.call, "denied: {reason}");
        let told = format!("denied: {reason}");
        self.denials.push(reason);
        told
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

pub(super) fn describe_requests(info: &PluginInfo) -> String {
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
        let mut message = crate::convert::visible(message);
        crate::convert::truncate_chars(&mut message, 8192);
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
    pub(super) fn kv_namespace(&self) -> String {
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

impl imports::tcp::Host for State {
    fn exchange(&mut self, req: imports::tcp::Request) -> Result<imports::tcp::Response, String> {
        // The address is checked as normalised, and the host connects to what it checked.
        let addr = CheckedAddr::parse(&req.address).map_err(|e| self.cx.deny(e.to_string()))?;
        self.cx.check(Need::Tcp { addr: &addr })?;
        let remaining = self.cx.remaining();
        if remaining.is_zero() {
            return Err("call deadline reached".into());
        }
        let timeout = req
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(remaining))
            .unwrap_or(remaining);
        let max = self.cx.limits.io_kib as usize * 1024;
        if req.data.len() > max {
            return Err(format!(
                "tcp {addr}: {} bytes to send, more than the instance's io_kib ({max} bytes)",
                req.data.len()
            ));
        }
        let _span =
            tracing::debug_span!("plugin_tcp", plugin = %self.cx.plugin.name, %addr).entered();
        let out = services::tcp_exchange(&addr, &req.data, timeout, max)?;
        Ok(imports::tcp::Response {
            data: out.data,
            truncated: out.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_exchange_is_a_write_that_names_its_effect() {
        // Not read-only: `check` denies it in a plan (dry-run) and wants it declared in execute.
        let addr = CheckedAddr::parse("2130706433:9999").expect("addr");
        let need = Need::Tcp { addr: &addr };
        assert!(!is_read_only(&need));
        assert_eq!(effect_string(&need), "tcp:127.0.0.1:9999");
        assert_eq!(
            need_kind(&need),
            (CapabilityKind::Tcp, "127.0.0.1:9999".to_string())
        );
        assert!(crate::effects::declared(&[effect_string(&need)], &need));
        assert!(!crate::effects::declared(&[], &need));
    }
}
