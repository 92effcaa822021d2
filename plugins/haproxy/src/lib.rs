//! `haproxy`: servers behind HAProxy, through its runtime API (the stats socket bound
//! on TCP, `stats socket ipv4@127.0.0.1:9999 level admin`), with the host's `tcp`.
//!
//! Config: `{ address: "127.0.0.1:9999", timeout_ms?, max_response_kib? }`; the
//! instance needs `grants: { tcp: [{ address: "127.0.0.1:9999" }] }`.
//!
//! Actions:
//! - `servers` `{ backend, server? }` → `{ backend, servers: [{ name, address, admin
//!   (ready|drain|maint), operational, health (up|down), status, check_status, weight,
//!   initial_weight, sessions }], up, total }`, and `server` with that one's fields when
//!   a server is named (`show servers state` joined with `show stat`);
//! - `set-state` `{ backend, server, state: ready|drain|maint }` → the server after,
//!   `previous` (its admin state before), `changed`, and `undo`, the call that puts it
//!   back; it fails if HAProxy does not end in the state asked for (a server `disabled`
//!   in the configuration stays in maintenance);
//! - `set-weight` `{ backend, server, weight: 0..=256 }` → `weight`, `previous_weight`,
//!   `undo`.
//!
//! Plans: target `haproxy://host:port/<backend>/<server>`; risk none for `servers`,
//! low for `ready` and a non-zero weight, medium for `drain` and weight 0 (no new
//! traffic), high for `maint` (no traffic at all: if it is the last server, the backend
//! is down); every change is reversible and its plan names the undoing input (`drain`
//! and `maint` are undone by `ready`). Each declares the one effect it has,
//! `tcp:<host>:<port>`: the host cannot tell a `show` from a `set` on a raw connection,
//! so it treats every exchange as a write (at least low risk, and never in a plan: a plan
//! cannot read the current state; the step's output does).
//!
//! Names reach the socket only if they are HAProxy names (letters, digits, `_ . : -`),
//! so no `;` or newline can add a command. An answer is read only up to
//! `max_response_kib` (default 1024) and must be the table asked for.

pub mod runtime;

use serde::Deserialize;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Action, ActionDef, Capability, Error, Info, Plan, PlannedEffect, Plugin, Result, Risk,
    export_plugin, json, tcp,
};

pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
pub const DEFAULT_MAX_RESPONSE_KIB: u32 = 1024;
pub const MAX_RESPONSE_KIB: u32 = 8192;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The runtime API on TCP, `host:port`.
    pub address: String,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub max_response_kib: Option<u32>,
}

impl Config {
    pub fn check(&self) -> Result<()> {
        let ok = self
            .address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
            && !self
                .address
                .contains(|c: char| c.is_whitespace() || c.is_control() || c == '/');
        if !ok {
            return Err(Error::invalid_input(format!(
                "config address {:?}: write the stats socket's TCP address as host:port",
                self.address
            )));
        }
        let kib = self.max_response_kib.unwrap_or(DEFAULT_MAX_RESPONSE_KIB);
        if kib == 0 || kib > MAX_RESPONSE_KIB {
            return Err(Error::invalid_input(format!(
                "config max_response_kib {kib}: from 1 to {MAX_RESPONSE_KIB}"
            )));
        }
        Ok(())
    }

    fn max_bytes(&self) -> usize {
        self.max_response_kib.unwrap_or(DEFAULT_MAX_RESPONSE_KIB) as usize * 1024
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    backend: String,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

/// A checked request: what `plan` describes and `execute` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Servers {
        backend: String,
        server: Option<String>,
    },
    SetState {
        backend: String,
        server: String,
        state: String,
    },
    SetWeight {
        backend: String,
        server: String,
        weight: u32,
    },
}

pub fn parse(action: &str, input: &Value) -> Result<Request> {
    let i: Input = serde_json::from_value(input.clone())
        .map_err(|e| Error::invalid_input(format!("haproxy/{action} input: {e}")))?;
    let name = |what: &str, n: &str| {
        runtime::check_name(what, n)
            .map_err(|e| Error::invalid_input(format!("haproxy/{action}: {e}")))
    };
    name("backend", &i.backend)?;
    if let Some(s) = &i.server {
        name("server", s)?;
    }
    let server = || {
        i.server
            .clone()
            .ok_or_else(|| Error::invalid_input(format!("haproxy/{action}: name the `server`")))
    };
    let not = |field: &str, set: bool| {
        if set {
            Err(Error::invalid_input(format!(
                "haproxy/{action}: `{field}` does not belong here"
            )))
        } else {
            Ok(())
        }
    };
    match action {
        "servers" => {
            not("state", i.state.is_some())?;
            not("weight", i.weight.is_some())?;
            Ok(Request::Servers {
                backend: i.backend,
                server: i.server,
            })
        }
        "set-state" => {
            not("weight", i.weight.is_some())?;
            let state = i.state.clone().ok_or_else(|| {
                Error::invalid_input("haproxy/set-state: give `state`: ready, drain or maint")
            })?;
            if !matches!(state.as_str(), "ready" | "drain" | "maint") {
                return Err(Error::invalid_input(format!(
                    "haproxy/set-state: `state` is ready, drain or maint, not {state:?}"
                )));
            }
            Ok(Request::SetState {
                server: server()?,
                backend: i.backend,
                state,
            })
        }
        "set-weight" => {
            not("state", i.state.is_some())?;
            let weight = i.weight.ok_or_else(|| {
                Error::invalid_input("haproxy/set-weight: give `weight`, 0 to 256")
            })?;
            if weight > 256 {
                return Err(Error::invalid_input(format!(
                    "haproxy/set-weight: `weight` {weight}: HAProxy takes 0 to 256"
                )));
            }
            Ok(Request::SetWeight {
                server: server()?,
                backend: i.backend,
                weight,
            })
        }
        other => Err(Error::invalid_input(format!(
            "unknown action haproxy/{other} (servers, set-state, set-weight)"
        ))),
    }
}

fn target(cfg: &Config, backend: &str, server: Option<&str>) -> String {
    match server {
        Some(s) => format!("haproxy://{}/{backend}/{s}", cfg.address),
        None => format!("haproxy://{}/{backend}", cfg.address),
    }
}

/// The plan of a checked request; reads nothing.
pub fn plan_for(cfg: &Config, r: &Request) -> Result<Plan> {
    cfg.check()?;
    let at = format!("HAProxy at {}", cfg.address);
    let (summary, target, risk) = match r {
        Request::Servers { backend, server } => (
            match server {
                Some(s) => format!(
                    "read {backend}/{s}'s state, weight and health from {at} (changes nothing)"
                ),
                None => format!(
                    "read the servers of backend {backend} with state, weight and health from {at} (changes nothing)"
                ),
            },
            target(cfg, backend, server.as_deref()),
            Risk::None,
        ),
        Request::SetState {
            backend,
            server,
            state,
        } => {
            let undo =
                |s: &str| json!({ "backend": backend, "server": server, "state": s }).to_string();
            let (what, risk, undo) = match state.as_str() {
                "drain" => (
                    "drain (no new connections; those open finish)",
                    Risk::Medium,
                    format!("undo: haproxy/set-state {}", undo("ready")),
                ),
                "maint" => (
                    "put into maintenance (no traffic at all; checks stop)",
                    Risk::High,
                    format!("undo: haproxy/set-state {}", undo("ready")),
                ),
                _ => (
                    "make ready (back in rotation)",
                    Risk::Low,
                    "undo: haproxy/set-state with the state it had (the output's `previous`)"
                        .to_string(),
                ),
            };
            (
                format!("{what}: {backend}/{server} in {at}; {undo}"),
                target(cfg, backend, Some(server)),
                risk,
            )
        }
        Request::SetWeight {
            backend,
            server,
            weight,
        } => (
            format!(
                "set {backend}/{server}'s weight to {weight} in {at}{}; undo: haproxy/set-weight with the weight it had (the output's `previous_weight`)",
                if *weight == 0 {
                    " (no new traffic)"
                } else {
                    ""
                }
            ),
            target(cfg, backend, Some(server)),
            if *weight == 0 {
                Risk::Medium
            } else {
                Risk::Low
            },
        ),
    };
    Ok(Plan::new(summary).step(
        PlannedEffect::new(target, risk)
            .reversible(true)
            .effect(format!("tcp:{}", cfg.address)),
    ))
}

/// One command over the socket; its answer as text, within the limits.
fn exchange(cfg: &Config, command: &str) -> Result<String> {
    let at = format!("HAProxy at {}", cfg.address);
    let answer = tcp::exchange(
        &cfg.address,
        format!("{command}\n").as_bytes(),
        Some(cfg.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
    )
    .map_err(|e| {
        if e.kind == vigil_plugin_sdk::ErrorKind::Denied {
            return e;
        }
        let host = format!("tcp {}: ", cfg.address);
        let why = e.message.strip_prefix(&host).unwrap_or(&e.message);
        Error::failed(format!("{at}: `{command}`: {why}"))
    })?;
    let max = cfg.max_bytes();
    if answer.truncated || answer.data.len() > max {
        return Err(Error::failed(format!(
            "{at}: `{command}`: the answer is larger than the {max} bytes this plugin reads (max_response_kib){}",
            if answer.truncated {
                "; the host cut it at its io_kib limit"
            } else {
                ""
            }
        )));
    }
    String::from_utf8(answer.data).map_err(|_| {
        Error::failed(format!(
            "{at}: `{command}`: the answer is not text; is this HAProxy's runtime API?"
        ))
    })
}

fn not_runtime_api(cfg: &Config, command: &str, why: &str, text: &str) -> Error {
    let said = runtime::clip(text.trim());
    // HAProxy's refusals are one short sentence ("Can't find backend."): quoted as
    // they are; anything longer is not HAProxy's runtime API.
    if !said.is_empty() && said.len() < 200 && !said.contains('\n') && said.is_ascii() {
        Error::failed(format!(
            "HAProxy at {}: `{command}` answered {said:?}",
            cfg.address
        ))
    } else {
        Error::failed(format!(
            "HAProxy at {}: `{command}`: the answer is not HAProxy's runtime API ({why}); it starts with {:?}",
            cfg.address,
            runtime::clip(&text.chars().take(80).collect::<String>())
        ))
    }
}

/// The backend's servers, both tables joined.
fn servers(cfg: &Config, backend: &str) -> Result<Vec<Value>> {
    let cmd = format!("show servers state {backend}");
    let text = exchange(cfg, &cmd)?;
    let state = runtime::parse_servers_state(&text)
        .map_err(|why| not_runtime_api(cfg, &cmd, &why, &text))?;
    let cmd = format!("show stat {backend} 4 -1");
    let text = exchange(cfg, &cmd)?;
    let stat = runtime::parse_stat(&text).map_err(|why| not_runtime_api(cfg, &cmd, &why, &text))?;
    state
        .iter()
        .filter(|r| r.get("be_name").map(String::as_str) == Some(backend))
        .map(|r| {
            let name = r.get("srv_name").map(String::as_str);
            let s = stat
                .iter()
                .find(|s| s.get("svname").map(String::as_str) == name);
            runtime::server_view(r, s).map_err(|why| {
                Error::failed(format!(
                    "HAProxy at {}: `show servers state {backend}`: {why}",
                    cfg.address
                ))
            })
        })
        .collect()
}

fn one(cfg: &Config, backend: &str, server: &str) -> Result<Value> {
    servers(cfg, backend)?
        .into_iter()
        .find(|s| s["name"] == server)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "HAProxy at {}: backend {backend} has no server {server}",
                cfg.address
            ))
        })
}

fn set(cfg: &Config, command: &str) -> Result<()> {
    let text = exchange(cfg, command)?;
    runtime::set_answer(&text).map_err(|said| {
        Error::failed(format!(
            "HAProxy at {} refused `{command}`: {said}",
            cfg.address
        ))
    })
}

pub fn run(cfg: &Config, r: &Request) -> Result<Value> {
    cfg.check()?;
    match r {
        Request::Servers { backend, server } => {
            let all = servers(cfg, backend)?;
            let up = all.iter().filter(|s| s["health"] == "up").count();
            let mut out = json!({ "backend": backend, "up": up, "total": all.len() });
            if let Some(name) = server {
                let s = all.iter().find(|s| &s["name"] == name).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "HAProxy at {}: backend {backend} has no server {name}",
                        cfg.address
                    ))
                })?;
                out["server"] = s.clone();
            }
            out["servers"] = Value::Array(all);
            Ok(out)
        }
        Request::SetState {
            backend,
            server,
            state,
        } => {
            let before = one(cfg, backend, server)?;
            set(cfg, &format!("set server {backend}/{server} state {state}"))?;
            let after = one(cfg, backend, server)?;
            if after["admin"] != state.as_str() {
                let flags = after["admin_flags"].as_i64().unwrap_or(0);
                let why = runtime::sticky_maint(flags).unwrap_or("HAProxy did not say why");
                return Err(Error::failed(format!(
                    "HAProxy at {}: {backend}/{server} is {} after `set server … state {state}`: {why}",
                    cfg.address, after["admin"]
                )));
            }
            let previous = before["admin"].clone();
            Ok(json!({
                "backend": backend,
                "server": after,
                "state": state,
                "previous": previous,
                "changed": previous != state.as_str(),
                "undo": { "action": "set-state", "input": { "backend": backend, "server": server, "state": previous } },
            }))
        }
        Request::SetWeight {
            backend,
            server,
            weight,
        } => {
            let before = one(cfg, backend, server)?;
            set(
                cfg,
                &format!("set server {backend}/{server} weight {weight}"),
            )?;
            let after = one(cfg, backend, server)?;
            let previous = before["weight"].clone();
            Ok(json!({
                "backend": backend,
                "server": after,
                "weight": weight,
                "previous_weight": previous,
                "changed": previous != *weight,
                "undo": { "action": "set-weight", "input": { "backend": backend, "server": server, "weight": previous } },
            }))
        }
    }
}

pub struct Haproxy;

impl Plugin for Haproxy {
    type Config = Config;
    fn info() -> Info {
        Info::new("haproxy", env!("CARGO_PKG_VERSION"))
            .description("Servers behind HAProxy, through its runtime API (the stats socket on TCP).")
            .capability(Capability::tcp(
                "",
                "sends runtime API commands to HAProxy's stats socket",
            ))
            .action(
                ActionDef::new(
                    "servers",
                    "Reads a backend's servers with their state, weight and health.",
                )
                .idempotent(true),
            )
            .action(
                ActionDef::new(
                    "set-state",
                    "Sets a server ready, drain or maint; fails unless HAProxy ends in that state.",
                )
                .idempotent(true),
            )
            .action(
                ActionDef::new("set-weight", "Sets a server's weight (0 to 256).").idempotent(true),
            )
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["address"],
                "properties": {
                    "address": { "type": "string", "description": "the stats socket's TCP address, host:port" },
                    "timeout_ms": { "type": "integer", "minimum": 1 },
                    "max_response_kib": { "type": "integer", "minimum": 1, "maximum": MAX_RESPONSE_KIB }
                }
            }))
    }
}

impl Action for Haproxy {
    fn validate(config: &Config, action: &str, input: &Value) -> Result<()> {
        config.check()?;
        parse(action, input).map(|_| ())
    }
    fn plan(config: &Config, action: &str, input: &Value) -> Result<Plan> {
        plan_for(config, &parse(action, input)?)
    }
    fn execute(config: &Config, action: &str, input: &Value, _: &Plan) -> Result<Value> {
        run(config, &parse(action, input)?)
    }
}

export_plugin!(Haproxy: action);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        serde_json::from_value(json!({ "address": "127.0.0.1:9999" })).expect("config")
    }

    fn plan(action: &str, input: Value) -> Plan {
        plan_for(&cfg(), &parse(action, &input).expect("input")).expect("plan")
    }

    #[test]
    fn plans_are_honest() {
        let p = plan("servers", json!({ "backend": "app" }));
        assert_eq!(p.steps[0].target, "haproxy://127.0.0.1:9999/app");
        assert_eq!(p.steps[0].risk, Risk::None);
        assert_eq!(p.steps[0].effects, vec!["tcp:127.0.0.1:9999"]);
        let p = plan(
            "set-state",
            json!({ "backend": "app", "server": "web1", "state": "drain" }),
        );
        assert_eq!(p.steps[0].target, "haproxy://127.0.0.1:9999/app/web1");
        assert_eq!(
            (p.steps[0].risk, p.steps[0].reversible),
            (Risk::Medium, true)
        );
        assert!(
            p.summary.contains(
                r#"undo: haproxy/set-state {"backend":"app","server":"web1","state":"ready"}"#
            ),
            "{}",
            p.summary
        );
        let p = plan(
            "set-state",
            json!({ "backend": "app", "server": "web1", "state": "maint" }),
        );
        assert_eq!(p.steps[0].risk, Risk::High);
        let p = plan(
            "set-state",
            json!({ "backend": "app", "server": "web1", "state": "ready" }),
        );
        assert_eq!(p.steps[0].risk, Risk::Low);
        assert!(p.summary.contains("`previous`"), "{}", p.summary);
        let p = plan(
            "set-weight",
            json!({ "backend": "app", "server": "web1", "weight": 0 }),
        );
        assert_eq!(p.steps[0].risk, Risk::Medium);
        let p = plan(
            "set-weight",
            json!({ "backend": "app", "server": "web1", "weight": 10 }),
        );
        assert_eq!(p.steps[0].risk, Risk::Low);
    }

    #[test]
    fn inputs_are_checked() {
        for (action, input, why) in [
            ("servers", json!({}), "missing field `backend`"),
            (
                "servers",
                json!({ "backend": "app;shutdown sessions server app/web2" }),
                "not allowed",
            ),
            (
                "set-state",
                json!({ "backend": "app", "server": "web1" }),
                "give `state`",
            ),
            (
                "set-state",
                json!({ "backend": "app", "state": "drain" }),
                "name the `server`",
            ),
            (
                "set-state",
                json!({ "backend": "app", "server": "web1", "state": "down" }),
                "ready, drain or maint",
            ),
            (
                "set-state",
                json!({ "backend": "app", "server": "web1\nshow info", "state": "drain" }),
                "not allowed",
            ),
            (
                "set-weight",
                json!({ "backend": "app", "server": "web1", "weight": 257 }),
                "0 to 256",
            ),
            (
                "set-weight",
                json!({ "backend": "app", "server": "web1", "weight": 1, "state": "ready" }),
                "does not belong",
            ),
            ("reload", json!({ "backend": "app" }), "unknown action"),
        ] {
            let e = parse(action, &input).expect_err(why).to_string();
            assert!(e.contains(why), "{action} {input}: {e}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "a b:1",
            "tcp://127.0.0.1:1",
            ":1",
        ] {
            let c: Config = serde_json::from_value(json!({ "address": bad })).expect("shape");
            assert!(c.check().is_err(), "{bad}");
        }
    }
}
