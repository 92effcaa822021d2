//! `supervisor`: processes run by Supervisor (`supervisord`), through its XML-RPC API
//! (`[inet_http_server]`, the API `supervisorctl` speaks), with the host's `http`.
//!
//! Config: `{ url: "http://127.0.0.1:9001", username?, password_secret?, timeout_ms?,
//! max_response_kib? }` — `/RPC2` is added to `url` unless it is there; the instance
//! needs `grants: { http: [{ url: "http://127.0.0.1:9001/RPC2", methods: [POST] }] }`
//! (and the secret, with a password).
//!
//! Actions (a *process* is `group:name`, or `name` when the program is its own group):
//! - `status` `{ process? | group? }` (neither: every process) →
//!   `{ processes: [{ name, group, state, pid, description, … }], running, total,
//!   all_running, state?, pid? }` (`state`/`pid` when one process was asked for);
//! - `start` / `stop` `{ process | group, wait? = true }` → the state afterwards, and
//!   `changed` (false when it was already so: both are idempotent), with `undo`;
//! - `restart` `{ process | group, wait? = true }`: stop (already stopped is fine), then
//!   start; the output names the pid before and after;
//! - `tail` `{ process, stream? = stdout|stderr, bytes? = 4096 }` → `{ log, offset,
//!   overflow }`, at most 64 KiB.
//!
//! Plans, honestly: targets `supervisor://host:port/<process>` (`<group>:*` for a group,
//! `*` for all); risk none for `status` and `tail`, low for `start`, medium for `stop`
//! and `restart` of a process and high for a group (every process in it); `start` and
//! `stop` undo each other (the plan names the undoing call), a `restart` cannot be
//! undone but running it again does no more harm. Every action declares the one effect
//! it has on the host's side, `http:POST <url>/RPC2`: XML-RPC is always a POST, even
//! to read, so the host raises `status` and `tail` to its floor for a POST (low), and
//! a plan cannot ask supervisord for the current state (a plan may only GET or HEAD,
//! and supervisord's web pages that answer a GET can also stop processes). The plan
//! says what will be asked; the step's output says what was found.
//!
//! Answers are read by a small XML-RPC reader of our own (`xmlrpc`) bounded in size
//! (`max_response_kib`, default 1024), nesting and element count; faults come back as
//! errors naming Supervisor's fault (`BAD_NAME`, `SPAWN_ERROR`, …): a name that does
//! not exist is invalid input (not retried), a process that will not start a failure.

pub mod xmlrpc;

use serde::Deserialize;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Action, ActionDef, Capability, Error, Info, Plan, PlannedEffect, Plugin, Result, Risk,
    export_plugin, http, json, secrets,
};
use xmlrpc::{Fault, Param};

/// Per-request time (ms) unless the config says otherwise; the call's own limit and the
/// step's timeout still bound the whole action.
pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
/// What the plugin reads of an answer by default (KiB), and at most.
pub const DEFAULT_MAX_RESPONSE_KIB: u32 = 1024;
pub const MAX_RESPONSE_KIB: u32 = 8192;
/// `tail`: default and largest number of bytes.
pub const DEFAULT_TAIL_BYTES: u32 = 4096;
pub const MAX_TAIL_BYTES: u32 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// supervisord's HTTP server, e.g. `http://127.0.0.1:9001`.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    /// The secret holding the password (`grants: { secrets: [name] }`).
    #[serde(default)]
    pub password_secret: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub max_response_kib: Option<u32>,
}

/// Where supervisord is: the XML-RPC URL and `host:port` for targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub rpc_url: String,
    pub authority: String,
}

impl Config {
    pub fn endpoint(&self) -> Result<Endpoint> {
        let url = self.url.trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "config url {:?}: write supervisord's address as http://host:port",
                    self.url
                ))
            })?;
        if rest.is_empty() || url.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid_input(format!(
                "config url {:?} has no host",
                self.url
            )));
        }
        let authority = rest.split('/').next().unwrap_or(rest).to_string();
        let rpc_url = if url.ends_with("/RPC2") {
            url.to_string()
        } else {
            format!("{url}/RPC2")
        };
        Ok(Endpoint { rpc_url, authority })
    }

    fn limits(&self) -> Result<xmlrpc::Limits> {
        let kib = self.max_response_kib.unwrap_or(DEFAULT_MAX_RESPONSE_KIB);
        if kib == 0 || kib > MAX_RESPONSE_KIB {
            return Err(Error::invalid_input(format!(
                "config max_response_kib {kib}: from 1 to {MAX_RESPONSE_KIB}"
            )));
        }
        Ok(xmlrpc::Limits {
            max_bytes: kib as usize * 1024,
            ..xmlrpc::Limits::default()
        })
    }
}

/// What an action acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Process(String),
    Group(String),
    All,
}

impl Scope {
    pub fn target(&self, ep: &Endpoint) -> String {
        match self {
            Scope::Process(p) => format!("supervisor://{}/{p}", ep.authority),
            Scope::Group(g) => format!("supervisor://{}/{g}:*", ep.authority),
            Scope::All => format!("supervisor://{}/*", ep.authority),
        }
    }

    fn input(&self) -> Value {
        match self {
            Scope::Process(p) => json!({ "process": p }),
            Scope::Group(g) => json!({ "group": g }),
            Scope::All => json!({}),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Process(p) => p.clone(),
            Scope::Group(g) => format!("every process of group {g}"),
            Scope::All => "every process".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeInput {
    #[serde(default)]
    process: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    bytes: Option<u32>,
}

/// A checked request: what `plan` describes and `execute` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub action: String,
    pub scope: Scope,
    pub wait: bool,
    /// `tail`: `stdout` or `stderr`, and how many bytes.
    pub stream: String,
    pub bytes: u32,
}

/// A process or group name as supervisord knows it. `*` is refused: supervisord reads
/// `group:*` as the whole group, which would act on more than the plan said.
fn check_name(what: &str, name: &str) -> Result<String> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::invalid_input(format!(
            "`{what}` must be 1 to 255 characters"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '*')
    {
        return Err(Error::invalid_input(format!(
            "`{what}` {name:?}: no spaces, control characters or `*` (name one process, or use `group`)"
        )));
    }
    if what == "group" && name.contains(':') {
        return Err(Error::invalid_input(format!(
            "`group` {name:?}: a group name has no `:` (`group:name` is a process)"
        )));
    }
    Ok(name.to_string())
}

pub fn parse(action: &str, input: &Value) -> Result<Request> {
    let input = if input.is_null() {
        ScopeInput::default()
    } else {
        serde_json::from_value::<ScopeInput>(input.clone())
            .map_err(|e| Error::invalid_input(format!("supervisor/{action} input: {e}")))?
    };
    let scope = match (&input.process, &input.group) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_input(format!(
                "supervisor/{action}: give `process` or `group`, not both"
            )));
        }
        (Some(p), None) => Scope::Process(check_name("process", p)?),
        (None, Some(g)) => Scope::Group(check_name("group", g)?),
        (None, None) => Scope::All,
    };
    let only = |field: &str, set: bool, allowed: &[&str]| -> Result<()> {
        if set && !allowed.contains(&action) {
            return Err(Error::invalid_input(format!(
                "supervisor/{action}: `{field}` is for {}",
                allowed.join(", ")
            )));
        }
        Ok(())
    };
    only("wait", input.wait.is_some(), &["start", "stop", "restart"])?;
    only("stream", input.stream.is_some(), &["tail"])?;
    only("bytes", input.bytes.is_some(), &["tail"])?;
    match action {
        "status" => {}
        "start" | "stop" | "restart" if scope == Scope::All => {
            return Err(Error::invalid_input(format!(
                "supervisor/{action}: name a `process` or a `group` (acting on every process at once is not offered)"
            )));
        }
        "start" | "stop" | "restart" => {}
        "tail" if !matches!(scope, Scope::Process(_)) => {
            return Err(Error::invalid_input("supervisor/tail: name one `process`"));
        }
        "tail" => {}
        other => {
            return Err(Error::invalid_input(format!(
                "unknown action supervisor/{other} (status, start, stop, restart, tail)"
            )));
        }
    }
    let stream = input.stream.unwrap_or_else(|| "stdout".into());
    if stream != "stdout" && stream != "stderr" {
        return Err(Error::invalid_input(format!(
            "supervisor/tail: `stream` is stdout or stderr, not {stream:?}"
        )));
    }
    let bytes = input.bytes.unwrap_or(DEFAULT_TAIL_BYTES);
    if bytes == 0 || bytes > MAX_TAIL_BYTES {
        return Err(Error::invalid_input(format!(
            "supervisor/tail: `bytes` from 1 to {MAX_TAIL_BYTES}"
        )));
    }
    Ok(Request {
        action: action.to_string(),
        scope,
        wait: input.wait.unwrap_or(true),
        stream,
        bytes,
    })
}

/// The plan of a checked request; reads nothing.
pub fn plan_for(cfg: &Config, r: &Request) -> Result<Plan> {
    let ep = cfg.endpoint()?;
    cfg.limits()?;
    let target = r.scope.target(&ep);
    let at = format!("supervisord at {}", ep.authority);
    let what = r.scope.describe();
    let group = !matches!(r.scope, Scope::Process(_));
    let undo = |action: &str| {
        format!(
            "undo: supervisor/{action} {}",
            serde_json::to_string(&r.scope.input()).unwrap_or_default()
        )
    };
    let waits = if r.wait {
        " and wait until it is RUNNING"
    } else {
        ""
    };
    let (summary, risk, reversible) = match r.action.as_str() {
        "status" => (
            format!("read the state of {what} from {at} (changes nothing)"),
            Risk::None,
            true,
        ),
        "tail" => (
            format!(
                "read the last {} bytes of {what}'s {} log from {at} (changes nothing)",
                r.bytes, r.stream
            ),
            Risk::None,
            true,
        ),
        "start" => (
            format!(
                "start {what} under {at}{waits}; already running is success (idempotent); {}",
                undo("stop")
            ),
            Risk::Low,
            true,
        ),
        "stop" => (
            format!(
                "stop {what} under {at}; already stopped is success (idempotent); {}",
                undo("start")
            ),
            if group { Risk::High } else { Risk::Medium },
            true,
        ),
        _ => (
            format!(
                "restart {what} under {at} (stop, then start{waits}); cannot be undone, but running it again leaves it running (idempotent)"
            ),
            if group { Risk::High } else { Risk::Medium },
            false,
        ),
    };
    Ok(Plan::new(summary).step(
        PlannedEffect::new(target, risk)
            .reversible(reversible)
            .effect(format!("http:POST {}", ep.rpc_url)),
    ))
}

/// The standard base64 alphabet, for Basic authentication.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The start of a body, for error messages.
fn head(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    if body.len() > 120 {
        format!("{text}…")
    } else {
        text
    }
}

/// One connection to supervisord.
struct Client {
    ep: Endpoint,
    auth: Option<String>,
    timeout_ms: u32,
    limits: xmlrpc::Limits,
}

/// A call's outcome: a value, or the fault supervisord answered with.
type Answer = std::result::Result<Value, Fault>;

impl Client {
    fn new(cfg: &Config) -> Result<Client> {
        let auth = match (&cfg.username, &cfg.password_secret) {
            (Some(u), Some(s)) => {
                let p = secrets::get(s)?;
                Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
            }
            (None, None) => None,
            _ => {
                return Err(Error::invalid_input(
                    "config: give both username and password_secret, or neither",
                ));
            }
        };
        Ok(Client {
            ep: cfg.endpoint()?,
            auth,
            timeout_ms: cfg.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            limits: cfg.limits()?,
        })
    }

    fn call(&self, method: &str, params: &[Param]) -> Result<Answer> {
        let at = format!("supervisord at {}", self.ep.rpc_url);
        let mut req = http::Request::post(&self.ep.rpc_url)
            .header("content-type", "text/xml")
            .body(xmlrpc::encode_call(method, params))
            .timeout_ms(self.timeout_ms);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().map_err(|e| self.unreachable(method, e))?;
        if resp.status == 401 {
            return Err(Error::invalid_input(format!(
                "{at}: {method}: HTTP 401 — supervisord wants a username and password (config username, password_secret)"
            )));
        }
        if resp.status != 200 {
            return Err(Error::failed(format!(
                "{at}: {method}: HTTP {} (it starts with: {})",
                resp.status,
                head(&resp.body)
            )));
        }
        xmlrpc::decode_response(&resp.body, self.limits).map_err(|e| {
            let start = match e {
                xmlrpc::DecodeError::TooLarge { .. } => String::new(),
                _ => format!(" (it starts with: {})", head(&resp.body)),
            };
            Error::failed(format!("{at}: {method}: {e}{start}"))
        })
    }

    /// A request that got no answer: denials pass as they are (they name the grant),
    /// the rest say where and what, once.
    fn unreachable(&self, method: &str, e: Error) -> Error {
        if e.kind == vigil_plugin_sdk::ErrorKind::Denied {
            return e;
        }
        let prefix = format!("POST {}: ", self.ep.rpc_url);
        let mut why = e.message.as_str();
        while let Some(rest) = why.strip_prefix(&prefix) {
            why = rest;
        }
        let why = if why.contains("timeout") {
            format!(
                "no answer within {} ms (timeout_ms; {why})",
                self.timeout_ms
            )
        } else {
            why.to_string()
        };
        Error::failed(format!(
            "supervisord at {}: {method}: {why}",
            self.ep.rpc_url
        ))
    }

    /// A call whose fault is an error.
    fn expect(&self, method: &str, params: &[Param], about: &str) -> Result<Value> {
        self.call(method, params)?
            .map_err(|f| fault_error(&self.ep, about, &f))
    }
}

/// A fault as an error: a name that does not exist is invalid input, the rest failures.
fn fault_error(ep: &Endpoint, about: &str, f: &Fault) -> Error {
    let msg = format!("supervisord at {}: {about}: {f}", ep.authority);
    match f.name() {
        "BAD_NAME" => Error::invalid_input(format!(
            "{msg} (no such process or group; a process in a group is named `group:name`)"
        )),
        "UNKNOWN_METHOD" | "INCORRECT_PARAMETERS" | "BAD_ARGUMENTS" | "SIGNATURE_UNSUPPORTED" => {
            Error::invalid_input(format!("{msg} (is this supervisord's XML-RPC endpoint?)"))
        }
        _ => Error::failed(msg),
    }
}

/// A process as the step output shows it.
fn process_view(info: &Value) -> Value {
    let group = info.get("group").and_then(Value::as_str).unwrap_or("");
    let name = info.get("name").and_then(Value::as_str).unwrap_or("");
    let full = if group.is_empty() || group == name {
        name.to_string()
    } else {
        format!("{group}:{name}")
    };
    let state = info
        .get("statename")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    let int = |k: &str| info.get(k).and_then(Value::as_i64).unwrap_or(0);
    let uptime = if state == "RUNNING" {
        (int("now") - int("start")).max(0)
    } else {
        0
    };
    json!({
        "name": full,
        "group": group,
        "state": state,
        "pid": int("pid"),
        "description": info.get("description").cloned().unwrap_or(Value::Null),
        "uptime_s": uptime,
        "exitstatus": int("exitstatus"),
        "spawnerr": info.get("spawnerr").cloned().unwrap_or(Value::Null),
    })
}

fn status_of(c: &Client, scope: &Scope) -> Result<Value> {
    let infos: Vec<Value> = match scope {
        Scope::Process(p) => vec![c.expect(
            "supervisor.getProcessInfo",
            &[Param::Str(p.clone())],
            &format!("status of {p}"),
        )?],
        Scope::Group(_) | Scope::All => {
            let all = c.expect("supervisor.getAllProcessInfo", &[], "status")?;
            let Value::Array(all) = all else {
                return Err(Error::failed(format!(
                    "supervisord at {}: getAllProcessInfo did not answer a list",
                    c.ep.authority
                )));
            };
            match scope {
                Scope::Group(g) => {
                    let mine: Vec<Value> = all
                        .into_iter()
                        .filter(|i| i.get("group").and_then(Value::as_str) == Some(g))
                        .collect();
                    if mine.is_empty() {
                        return Err(Error::invalid_input(format!(
                            "supervisord at {}: no group named {g:?} (BAD_NAME)",
                            c.ep.authority
                        )));
                    }
                    mine
                }
                _ => all,
            }
        }
    };
    let processes: Vec<Value> = infos.iter().map(process_view).collect();
    let running = processes.iter().filter(|p| p["state"] == "RUNNING").count();
    let mut out = json!({
        "processes": processes,
        "running": running,
        "total": processes.len(),
        "all_running": running == processes.len() && !processes.is_empty(),
    });
    if let (Scope::Process(_), Some(p)) = (scope, processes.first()) {
        out["process"] = p["name"].clone();
        out["state"] = p["state"].clone();
        out["pid"] = p["pid"].clone();
    }
    Ok(out)
}

/// The end of a process's stderr log, best effort, for an error message.
fn stderr_tail(c: &Client, process: &str) -> String {
    match c.call(
        "supervisor.tailProcessStderrLog",
        &[Param::Str(process.into()), Param::Int(0), Param::Int(400)],
    ) {
        Ok(Ok(Value::Array(v))) => match v.first().and_then(Value::as_str) {
            Some(log) if !log.trim().is_empty() => {
                format!("; its stderr ends with: {}", log.trim())
            }
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// Results of a group call: `[{ name, group, status, description }]`, 80 = success.
fn group_failures(results: &Value, skip: i64) -> Vec<String> {
    results
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let status = r.get("status").and_then(Value::as_i64).unwrap_or(-1);
                    (status != 80 && status != skip).then(|| {
                        let f = Fault {
                            code: status,
                            message: r
                                .get("description")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        };
                        format!(
                            "{}:{}: {f}",
                            r.get("group").and_then(Value::as_str).unwrap_or("?"),
                            r.get("name").and_then(Value::as_str).unwrap_or("?")
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts (or stops) a scope; `Ok(changed)`.
fn switch(c: &Client, scope: &Scope, start: bool, wait: bool) -> Result<bool> {
    let (verb, already) = if start {
        ("start", "ALREADY_STARTED")
    } else {
        ("stop", "NOT_RUNNING")
    };
    match scope {
        Scope::Process(p) => {
            let method = if start {
                "supervisor.startProcess"
            } else {
                "supervisor.stopProcess"
            };
            match c.call(method, &[Param::Str(p.clone()), Param::Bool(wait)])? {
                Ok(_) => Ok(true),
                Err(f) if f.name() == already => Ok(false),
                Err(f) => {
                    let mut e = fault_error(&c.ep, &format!("{verb} {p}"), &f);
                    if start {
                        e.message.push_str(&stderr_tail(c, p));
                    }
                    Err(e)
                }
            }
        }
        Scope::Group(g) => {
            let method = if start {
                "supervisor.startProcessGroup"
            } else {
                "supervisor.stopProcessGroup"
            };
            let results = c.expect(
                method,
                &[Param::Str(g.clone()), Param::Bool(wait)],
                &format!("{verb} group {g}"),
            )?;
            let skip = if start { 60 } else { 70 };
            let failures = group_failures(&results, skip);
            if !failures.is_empty() {
                return Err(Error::failed(format!(
                    "supervisord at {}: {verb} group {g}: {}",
                    c.ep.authority,
                    failures.join("; ")
                )));
            }
            Ok(results.as_array().is_some_and(|r| !r.is_empty()))
        }
        Scope::All => Err(Error::invalid_input("name a process or a group")),
    }
}

fn pids(status: &Value) -> Value {
    status["processes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("").to_string(),
                        p["pid"].clone(),
                    )
                })
                .collect::<serde_json::Map<String, Value>>()
        })
        .map_or(Value::Null, Value::Object)
}

pub fn run(cfg: &Config, r: &Request) -> Result<Value> {
    let c = Client::new(cfg)?;
    match r.action.as_str() {
        "status" => status_of(&c, &r.scope),
        "tail" => {
            let Scope::Process(p) = &r.scope else {
                return Err(Error::invalid_input("supervisor/tail: name one process"));
            };
            let method = if r.stream == "stderr" {
                "supervisor.tailProcessStderrLog"
            } else {
                "supervisor.tailProcessStdoutLog"
            };
            let v = c.expect(
                method,
                &[
                    Param::Str(p.clone()),
                    Param::Int(0),
                    Param::Int(i32::try_from(r.bytes).unwrap_or(i32::MAX)),
                ],
                &format!("tail of {p}'s {}", r.stream),
            )?;
            let (Some(log), Some(offset), Some(overflow)) = (
                v.get(0).and_then(Value::as_str),
                v.get(1).and_then(Value::as_i64),
                v.get(2).and_then(Value::as_bool),
            ) else {
                return Err(Error::failed(format!(
                    "supervisord at {}: {method} did not answer [log, offset, overflow]",
                    c.ep.authority
                )));
            };
            Ok(json!({
                "process": p, "stream": r.stream, "log": log, "offset": offset, "overflow": overflow,
            }))
        }
        "start" | "stop" => {
            let start = r.action == "start";
            let changed = switch(&c, &r.scope, start, r.wait)?;
            let mut out = status_of(&c, &r.scope)?;
            out["changed"] = json!(changed);
            out["undo"] = json!({
                "action": if start { "stop" } else { "start" },
                "input": r.scope.input(),
            });
            Ok(out)
        }
        _ => {
            let before = status_of(&c, &r.scope)?;
            switch(&c, &r.scope, false, true)?;
            switch(&c, &r.scope, true, r.wait).map_err(|e| {
                e.context(format!(
                    "restart of {}: it was stopped and did not start again",
                    r.scope.describe()
                ))
            })?;
            let mut out = status_of(&c, &r.scope)?;
            out["pids_before"] = pids(&before);
            out["pids_after"] = pids(&out);
            out["changed"] = json!(true);
            Ok(out)
        }
    }
}

pub struct Supervisor;

const ACTIONS: &[(&str, &str)] = &[
    (
        "status",
        "Reads the state of a process, a group or every process.",
    ),
    (
        "start",
        "Starts a process or group and waits until it runs; already running is success.",
    ),
    (
        "stop",
        "Stops a process or group; already stopped is success.",
    ),
    (
        "restart",
        "Stops, then starts a process or group; fails if it does not run again.",
    ),
    ("tail", "Reads the end of a process's stdout or stderr log."),
];

impl Plugin for Supervisor {
    type Config = Config;
    fn info() -> Info {
        let mut info = Info::new("supervisor", env!("CARGO_PKG_VERSION"))
            .description("Processes under Supervisor (supervisord), through its XML-RPC API.")
            .capability(Capability::http(
                "POSTs XML-RPC calls to supervisord's /RPC2",
            ))
            .capability(Capability::secret(
                "",
                "the password named by password_secret, if supervisord asks for one",
            ))
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": {
                    "url": { "type": "string", "description": "supervisord's [inet_http_server], e.g. http://127.0.0.1:9001" },
                    "username": { "type": "string" },
                    "password_secret": { "type": "string" },
                    "timeout_ms": { "type": "integer", "minimum": 1 },
                    "max_response_kib": { "type": "integer", "minimum": 1, "maximum": MAX_RESPONSE_KIB }
                }
            }));
        for (name, description) in ACTIONS {
            info = info.action(ActionDef::new(name, description).idempotent(true));
        }
        info
    }
}

impl Action for Supervisor {
    fn validate(config: &Config, action: &str, input: &Value) -> Result<()> {
        config.endpoint()?;
        config.limits()?;
        parse(action, input).map(|_| ())
    }
    fn plan(config: &Config, action: &str, input: &Value) -> Result<Plan> {
        plan_for(config, &parse(action, input)?)
    }
    fn execute(config: &Config, action: &str, input: &Value, _: &Plan) -> Result<Value> {
        run(config, &parse(action, input)?)
    }
}

export_plugin!(Supervisor: action);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> Config {
        serde_json::from_value(json!({ "url": url })).expect("config")
    }

    #[test]
    fn the_endpoint_is_rpc2_and_targets_name_host_and_port() {
        let ep = cfg("http://127.0.0.1:9001/").endpoint().expect("ok");
        assert_eq!(ep.rpc_url, "http://127.0.0.1:9001/RPC2");
        assert_eq!(ep.authority, "127.0.0.1:9001");
        let ep = cfg("http://127.0.0.1:9001/RPC2").endpoint().expect("ok");
        assert_eq!(ep.rpc_url, "http://127.0.0.1:9001/RPC2");
        assert!(cfg("127.0.0.1:9001").endpoint().is_err());
        assert!(cfg("http://").endpoint().is_err());
        assert_eq!(
            Scope::Group("web".into()).target(&ep),
            "supervisor://127.0.0.1:9001/web:*"
        );
    }

    #[test]
    fn plans_are_honest() {
        let c = cfg("http://127.0.0.1:9001");
        let plan = |action: &str, input: Value| {
            plan_for(&c, &parse(action, &input).expect("input")).expect("plan")
        };
        let p = plan("status", json!({ "process": "web:web1" }));
        assert_eq!(p.steps[0].risk, Risk::None);
        assert_eq!(p.steps[0].target, "supervisor://127.0.0.1:9001/web:web1");
        assert_eq!(
            p.steps[0].effects,
            vec!["http:POST http://127.0.0.1:9001/RPC2"]
        );
        let p = plan("start", json!({ "process": "web:web1" }));
        assert_eq!((p.steps[0].risk, p.steps[0].reversible), (Risk::Low, true));
        assert!(
            p.summary
                .contains(r#"undo: supervisor/stop {"process":"web:web1"}"#),
            "{}",
            p.summary
        );
        let p = plan("stop", json!({ "process": "web:web1" }));
        assert_eq!(
            (p.steps[0].risk, p.steps[0].reversible),
            (Risk::Medium, true)
        );
        assert!(
            p.summary.contains("undo: supervisor/start"),
            "{}",
            p.summary
        );
        let p = plan("restart", json!({ "process": "web:web1" }));
        assert_eq!(
            (p.steps[0].risk, p.steps[0].reversible),
            (Risk::Medium, false)
        );
        assert!(p.summary.contains("cannot be undone"), "{}", p.summary);
        let p = plan("restart", json!({ "group": "web" }));
        assert_eq!(p.steps[0].risk, Risk::High);
        assert_eq!(p.steps[0].target, "supervisor://127.0.0.1:9001/web:*");
        let p = plan("tail", json!({ "process": "web:web1", "stream": "stderr" }));
        assert_eq!(p.steps[0].risk, Risk::None);
    }

    #[test]
    fn inputs_are_checked() {
        for (action, input, why) in [
            ("start", json!({}), "name a `process` or a `group`"),
            ("start", json!({ "process": "a", "group": "b" }), "not both"),
            ("start", json!({ "process": "web:*" }), "`*`"),
            ("stop", json!({ "process": "a b" }), "no spaces"),
            ("stop", json!({ "group": "web:web1" }), "has no `:`"),
            ("status", json!({ "wait": true }), "`wait` is for"),
            ("tail", json!({ "group": "web" }), "name one `process`"),
            (
                "tail",
                json!({ "process": "a", "bytes": 0 }),
                "`bytes` from 1",
            ),
            (
                "tail",
                json!({ "process": "a", "stream": "both" }),
                "stdout or stderr",
            ),
            ("reload", json!({}), "unknown action"),
            ("start", json!({ "proces": "a" }), "unknown field"),
        ] {
            let e = parse(action, &input).expect_err(why).to_string();
            assert!(e.contains(why), "{action} {input}: {e}");
        }
        assert_eq!(
            parse("status", &Value::Null).expect("all").scope,
            Scope::All
        );
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn group_results_name_each_failure() {
        let results = json!([
            { "name": "web1", "group": "web", "status": 80, "description": "OK" },
            { "name": "web2", "group": "web", "status": 50, "description": "SPAWN_ERROR: web2" },
            { "name": "web3", "group": "web", "status": 60, "description": "ALREADY_STARTED" },
        ]);
        assert_eq!(
            group_failures(&results, 60),
            vec!["web:web2: SPAWN_ERROR: web2 (fault 50)"]
        );
    }
}
