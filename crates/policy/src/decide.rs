//! Escalation policies: `policies/<name>.rhai` defines `decide(incident, plan)`,
//! which says whether automation may act on its own.
//!
//! Scripts are compiled once and run sandboxed: operation, call-depth and size
//! limits, a wall-clock deadline, no file or network access, and only read-only
//! host functions. A script that misbehaves yields a clear error naming the file
//! and line, and the safe default: page a human.

use crate::docs::{FreezeWindow, PolicyFile, RotationDoc};
use chrono::{Datelike, TimeZone, Timelike};
use rhai::packages::Package as _;
use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Position};
use serde::Serialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use vigil_core::duration::Duration;

const MAX_OPERATIONS: u64 = 1_000_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 1 << 20;
const MAX_ARRAY: usize = 100_000;
const MAX_MAP: usize = 10_000;
/// Wall-clock limit of one decision.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_millis(250);

/// What a policy allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Remediate now, without a human.
    Auto,
    /// Ask a human; the execution waits for approval.
    Approve,
    /// Do not act; page a human.
    Page,
    /// Do nothing.
    Ignore,
}

impl Verdict {
    pub const NAMES: [&'static str; 4] = ["auto", "approve", "page", "ignore"];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Auto => "auto",
            Verdict::Approve => "approve",
            Verdict::Page => "page",
            Verdict::Ignore => "ignore",
        }
    }
}

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub policy: String,
    pub action: Verdict,
    pub reason: String,
    pub notify: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The policy failed and this is the safe default.
    pub fallback: bool,
}

impl Decision {
    fn safe_default(policy: &str, why: &str) -> Decision {
        Decision {
            policy: policy.to_string(),
            action: Verdict::Page,
            reason: format!("{why}; paging a human as the safe default"),
            notify: Vec::new(),
            approvers: Vec::new(),
            timeout: None,
            fallback: true,
        }
    }
}

/// One host function call made by a policy, for `vigil policy test`'s trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostCall {
    pub call: String,
    pub result: String,
}

/// Read-only facts from the store that policies may ask about.
pub trait History: Send + Sync {
    /// Executions of `runbook` started since `since_ms`.
    fn executions_since(&self, runbook: &str, since_ms: i64) -> i64;
    /// Failed executions of `runbook` since `since_ms`.
    fn failures_since(&self, runbook: &str, since_ms: i64) -> i64;
    /// Incidents (executions' incidents) whose label `label` equals `value` since `since_ms`.
    fn incidents_since(&self, label: &str, value: &str, since_ms: i64) -> i64;
}

/// Everything a decision may consult besides its arguments.
#[derive(Clone)]
pub struct Facts {
    pub now_ms: i64,
    pub oncall: BTreeMap<String, RotationDoc>,
    pub freeze: Vec<FreezeWindow>,
    pub history: Option<Arc<dyn History>>,
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

/// A compile error in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

struct CallState {
    facts: Facts,
    trace: Vec<HostCall>,
    deadline: Instant,
}

thread_local! {
    /// The decision running on this thread: host functions read their facts here.
    static CALL: RefCell<Option<CallState>> = const { RefCell::new(None) };
}

fn with_facts<T>(f: impl FnOnce(&Facts) -> T) -> Option<T> {
    CALL.with(|c| c.borrow().as_ref().map(|s| f(&s.facts)))
}

fn record(call: String, result: &dyn std::fmt::Display) {
    CALL.with(|c| {
        if let Some(s) = c.borrow_mut().as_mut()
            && s.trace.len() < 1000
        {
            s.trace.push(HostCall {
                call,
                result: result.to_string(),
            });
        }
    });
}

type HostResult<T> = Result<T, Box<EvalAltResult>>;

fn host_error(msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg),
        Position::NONE,
    ))
}

fn now_ms() -> i64 {
    with_facts(|f| f.now_ms).unwrap_or_else(vigil_core::now_ms)
}

fn parse_tz(tz: &str) -> HostResult<chrono_tz::Tz> {
    tz.parse::<chrono_tz::Tz>().map_err(|_| {
        host_error(format!(
            "unknown time zone `{tz}`; use an IANA name such as `Europe/Paris` or `UTC`"
        ))
    })
}

fn local(tz: &str) -> HostResult<chrono::DateTime<chrono_tz::Tz>> {
    let zone = parse_tz(tz)?;
    zone.timestamp_millis_opt(now_ms())
        .single()
        .ok_or_else(|| host_error("time out of range".into()))
}

fn window_ms(text: &str) -> HostResult<i64> {
    Duration::parse(text)
        .map(|d| d.as_std().as_millis() as i64)
        .map_err(|e| host_error(format!("{}; e.g. `1h`", e.message)))
}

fn hhmm(text: &str) -> HostResult<u32> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| host_error(format!("`{text}` is not HH:MM")))?;
    let (h, m): (u32, u32) = (
        h.parse()
            .map_err(|_| host_error(format!("`{text}` is not HH:MM")))?,
        m.parse()
            .map_err(|_| host_error(format!("`{text}` is not HH:MM")))?,
    );
    if h > 24 || m > 59 {
        return Err(host_error(format!("`{text}` is not a time of day")));
    }
    Ok(h * 60 + m)
}

fn register_host_functions(engine: &mut Engine) {
    engine.register_fn("now", || -> i64 {
        let v = now_ms() / 1000;
        record("now()".into(), &v);
        v
    });
    engine.register_fn("hour", |tz: &str| -> HostResult<i64> {
        let v = i64::from(local(tz)?.hour());
        record(format!("hour({tz:?})"), &v);
        Ok(v)
    });
    engine.register_fn("weekday", |tz: &str| -> HostResult<ImmutableString> {
        let v = local(tz)?.weekday().to_string();
        record(format!("weekday({tz:?})"), &v);
        Ok(v.into())
    });
    engine.register_fn("business_hours", |tz: &str| -> HostResult<bool> {
        let t = local(tz)?;
        let v = t.weekday().num_days_from_monday() < 5 && (9..17).contains(&t.hour());
        record(format!("business_hours({tz:?})"), &v);
        Ok(v)
    });
    engine.register_fn(
        "in_window",
        |start: &str, end: &str, tz: &str| -> HostResult<bool> {
            let t = local(tz)?;
            let (s, e, now) = (hhmm(start)?, hhmm(end)?, t.hour() * 60 + t.minute());
            // A window may wrap past midnight (22:00–06:00).
            let v = if s <= e {
                now >= s && now < e
            } else {
                now >= s || now < e
            };
            record(format!("in_window({start:?}, {end:?}, {tz:?})"), &v);
            Ok(v)
        },
    );
    engine.register_fn("in_freeze", || -> bool {
        let now = now_ms();
        let v = with_facts(|f| f.freeze.iter().any(|w| freeze_contains(w, now))).unwrap_or(false);
        record("in_freeze()".into(), &v);
        v
    });
    engine.register_fn("freeze_reason", || -> ImmutableString {
        let now = now_ms();
        let v = with_facts(|f| {
            f.freeze
                .iter()
                .find(|w| freeze_contains(w, now))
                .map(|w| w.reason.clone())
        })
        .flatten()
        .unwrap_or_default();
        record("freeze_reason()".into(), &v);
        v.into()
    });
    engine.register_fn("oncall", |team: &str| -> ImmutableString {
        let now = now_ms();
        let v = with_facts(|f| f.oncall.get(team).and_then(|r| on_shift(r, now)))
            .flatten()
            .unwrap_or_default();
        record(format!("oncall({team:?})"), &v);
        v.into()
    });
    engine.register_fn(
        "recent_executions",
        |runbook: &str, window: &str| -> HostResult<i64> {
            let since = now_ms() - window_ms(window)?;
            let v = with_facts(|f| {
                f.history
                    .as_ref()
                    .map_or(0, |h| h.executions_since(runbook, since))
            })
            .unwrap_or(0);
            record(format!("recent_executions({runbook:?}, {window:?})"), &v);
            Ok(v)
        },
    );
    engine.register_fn(
        "recent_failures",
        |runbook: &str, window: &str| -> HostResult<i64> {
            let since = now_ms() - window_ms(window)?;
            let v = with_facts(|f| {
                f.history
                    .as_ref()
                    .map_or(0, |h| h.failures_since(runbook, since))
            })
            .unwrap_or(0);
            record(format!("recent_failures({runbook:?}, {window:?})"), &v);
            Ok(v)
        },
    );
    engine.register_fn(
        "incident_count",
        |label: &str, value: &str, window: &str| -> HostResult<i64> {
            let since = now_ms() - window_ms(window)?;
            let v = with_facts(|f| {
                f.history
                    .as_ref()
                    .map_or(0, |h| h.incidents_since(label, value, since))
            })
            .unwrap_or(0);
            record(
                format!("incident_count({label:?}, {value:?}, {window:?})"),
                &v,
            );
            Ok(v)
        },
    );
    engine.register_fn(
        "flapping",
        |label: &str, value: &str, window: &str, threshold: i64| -> HostResult<bool> {
            let since = now_ms() - window_ms(window)?;
            let n = with_facts(|f| {
                f.history
                    .as_ref()
                    .map_or(0, |h| h.incidents_since(label, value, since))
            })
            .unwrap_or(0);
            let v = n >= threshold;
            record(
                format!("flapping({label:?}, {value:?}, {window:?}, {threshold})"),
                &v,
            );
            Ok(v)
        },
    );
}

fn freeze_contains(w: &FreezeWindow, now_ms: i64) -> bool {
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.timestamp_millis())
    };
    matches!((parse(&w.start), parse(&w.end)), (Some(s), Some(e)) if now_ms >= s && now_ms < e)
}

/// Who is on shift at `now_ms` in a rotation.
pub fn on_shift(r: &RotationDoc, now_ms: i64) -> Option<String> {
    let start = chrono::DateTime::parse_from_rfc3339(&r.start)
        .ok()?
        .timestamp_millis();
    let shift = r.shift.as_std().as_millis() as i64;
    if r.members.is_empty() || shift == 0 || now_ms < start {
        return r.members.first().cloned().filter(|_| now_ms >= start);
    }
    let idx = ((now_ms - start) / shift) as usize % r.members.len();
    r.members.get(idx).cloned()
}

/// Compiled policies, ready to decide.
pub struct PolicyEngine {
    engine: Engine,
    policies: HashMap<String, (Arc<AST>, PathBuf)>,
    deadline: std::time::Duration,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PolicyEngine {
    /// Compiles every policy of a bundle. Other policy files can be imported by
    /// name (`import "common" as c;`); nothing else is reachable.
    pub fn load(files: &[PolicyFile]) -> Result<PolicyEngine, Vec<PolicyError>> {
        let mut engine = Engine::new_raw();
        engine.register_global_module(rhai::packages::StandardPackage::new().as_shared_module());
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(MAX_STRING)
            .set_max_array_size(MAX_ARRAY)
            .set_max_map_size(MAX_MAP)
            .set_max_modules(16)
            .set_fail_on_invalid_map_property(false);
        engine.disable_symbol("eval");
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        engine.on_progress(|ops| {
            if ops % 256 != 0 {
                return None;
            }
            let late = CALL.with(|c| {
                c.borrow()
                    .as_ref()
                    .is_some_and(|s| Instant::now() > s.deadline)
            });
            late.then(|| Dynamic::from("deadline"))
        });
        register_host_functions(&mut engine);

        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for f in files {
            match engine.compile(&f.source) {
                Ok(ast) => compiled.push((f, ast)),
                Err(e) => errors.push(PolicyError {
                    file: f.file.clone(),
                    line: e.1.line().unwrap_or(0),
                    col: e.1.position().unwrap_or(0),
                    message: e.0.to_string(),
                }),
            }
        }
        // Policies may import each other by file name, from memory only.
        let mut resolver = rhai::module_resolvers::StaticModuleResolver::new();
        for (f, ast) in &compiled {
            if let Ok(module) = rhai::Module::eval_ast_as_new(rhai::Scope::new(), ast, &engine) {
                resolver.insert(f.name.clone(), module);
            }
        }
        engine.set_module_resolver(resolver);
        let mut policies = HashMap::new();
        for (f, ast) in compiled {
            let has_decide = ast
                .iter_functions()
                .any(|func| func.name == "decide" && func.params.len() == 2);
            if !has_decide {
                errors.push(PolicyError {
                    file: f.file.clone(),
                    line: 1,
                    col: 1,
                    message: "no `decide(incident, plan)` function; define `fn decide(incident, plan) { … }`".into(),
                });
                continue;
            }
            policies.insert(f.name.clone(), (Arc::new(ast), f.file.clone()));
        }
        if errors.is_empty() {
            Ok(PolicyEngine {
                engine,
                policies,
                deadline: DEFAULT_DEADLINE,
            })
        } else {
            Err(errors)
        }
    }

    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn names(&self) -> Vec<&str> {
        self.policies.keys().map(String::as_str).collect()
    }

    /// Runs `decide(incident, plan)`. Never fails: errors become the safe default
    /// (page), with the error in the reason. Returns the host calls made.
    pub fn decide(
        &self,
        policy: &str,
        incident: &Value,
        plan: &Value,
        facts: &Facts,
    ) -> (Decision, Vec<HostCall>) {
        let Some((ast, file)) = self.policies.get(policy) else {
            return (
                Decision::safe_default(policy, &format!("no policy `{policy}`")),
                Vec::new(),
            );
        };
        CALL.with(|c| {
            *c.borrow_mut() = Some(CallState {
                facts: facts.clone(),
                trace: Vec::new(),
                deadline: Instant::now() + self.deadline,
            });
        });
        let args = (to_dynamic(incident), to_dynamic(plan));
        let result = self
            .engine
            .call_fn::<Dynamic>(&mut rhai::Scope::new(), ast, "decide", args);
        let trace = CALL.with(|c| c.borrow_mut().take().map(|s| s.trace).unwrap_or_default());
        let decision = match result {
            Ok(value) => interpret(policy, value).unwrap_or_else(|why| {
                Decision::safe_default(
                    policy,
                    &format!("{}: decide() returned {why}", file.display()),
                )
            }),
            Err(e) => Decision::safe_default(policy, &describe_error(file, &e)),
        };
        (decision, trace)
    }
}

fn to_dynamic(v: &Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

fn describe_error(file: &std::path::Path, e: &EvalAltResult) -> String {
    let pos = e.position();
    let at = match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", file.display()),
        (Some(l), None) => format!("{}:{l}", file.display()),
        _ => file.display().to_string(),
    };
    let what = match e {
        EvalAltResult::ErrorTerminated(..) => {
            format!("ran past its {} ms deadline", DEFAULT_DEADLINE.as_millis())
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("exceeded {MAX_OPERATIONS} operations (an endless loop?)")
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("recursed deeper than {MAX_CALL_LEVELS} calls")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => format!("built a {what} larger than allowed"),
        other => {
            let text = other.to_string();
            text.split(" (line ").next().unwrap_or(&text).to_string()
        }
    };
    format!("policy failed at {at}: {what}")
}

/// Checks and converts what `decide` returned.
fn interpret(policy: &str, value: Dynamic) -> Result<Decision, String> {
    let type_name = value.type_name();
    let Some(map) = value.try_cast::<rhai::Map>() else {
        return Err(format!(
            "{type_name}; return a map: #{{ action: \"auto\", reason: \"…\" }}"
        ));
    };
    let action = map.get("action").ok_or("a map without `action`")?;
    let action = action
        .clone()
        .into_immutable_string()
        .map_err(|t| format!("`action` of type {t}, expected a string"))?;
    let verdict = match action.as_str() {
        "auto" => Verdict::Auto,
        "approve" => Verdict::Approve,
        "page" => Verdict::Page,
        "ignore" => Verdict::Ignore,
        other => {
            return Err(format!(
                "action `{other}`; {}",
                vigil_core::suggest::hint(other, Verdict::NAMES)
            ));
        }
    };
    let reason = match map.get("reason") {
        Some(r) => r
            .clone()
            .into_immutable_string()
            .map_err(|t| format!("`reason` of type {t}, expected a string"))?
            .to_string(),
        None => return Err("a map without `reason`; say why".into()),
    };
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match map.get(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .clone()
                .into_array()
                .map_err(|t| format!("`{key}` of type {t}, expected an array of strings"))?
                .into_iter()
                .map(|item| {
                    item.into_immutable_string()
                        .map(|s| s.to_string())
                        .map_err(|t| format!("`{key}` holds a {t}, expected strings"))
                })
                .collect(),
        }
    };
    let timeout = match map.get("timeout") {
        None => None,
        Some(t) => {
            let text = t
                .clone()
                .into_immutable_string()
                .map_err(|t| format!("`timeout` of type {t}, expected a duration like \"30m\""))?;
            Some(Duration::parse(&text).map_err(|e| format!("`timeout`: {}", e.message))?)
        }
    };
    Ok(Decision {
        policy: policy.to_string(),
        action: verdict,
        reason,
        notify: strings("notify")?,
        approvers: strings("approvers")?,
        timeout,
        fallback: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(src: &str) -> PolicyEngine {
        PolicyEngine::load(&[PolicyFile {
            name: "p".into(),
            file: "policies/p.rhai".into(),
            source: src.into(),
        }])
        .unwrap()
    }

    fn facts() -> Facts {
        // 2026-11-24 (a Tuesday) 10:00 UTC.
        Facts {
            now_ms: 1_795_514_400_000,
            oncall: BTreeMap::new(),
            freeze: Vec::new(),
            history: None,
        }
    }

    #[test]
    fn decides_and_traces_host_calls() {
        let e = engine(
            r#"fn decide(incident, plan) {
                if incident.labels.severity == "critical" && business_hours("UTC") {
                    return #{ action: "auto", reason: "critical in hours", notify: ["oncall"] };
                }
                #{ action: "page", reason: "otherwise" }
            }"#,
        );
        let (d, trace) = e.decide(
            "p",
            &json!({"labels": {"severity": "critical"}}),
            &json!({}),
            &facts(),
        );
        assert_eq!(d.action, Verdict::Auto);
        assert_eq!(d.notify, vec!["oncall"]);
        assert!(!d.fallback);
        assert_eq!(trace[0].call, "business_hours(\"UTC\")");
        assert_eq!(trace[0].result, "true");
    }

    #[test]
    fn hostile_scripts_get_the_safe_default_with_file_and_line() {
        let cases = [
            ("fn decide(i, p) {\n  loop { }\n}", "operations"),
            (
                "fn f(n) { f(n + 1) + f(n + 1) }\nfn decide(i, p) {\n  f(0)\n}",
                "recursed",
            ),
            (
                "fn decide(i, p) {\n  let s = \"x\";\n  loop { s += s; }\n}",
                "larger than allowed",
            ),
            ("fn decide(i, p) {\n  throw \"nope\";\n}", "nope"),
            ("fn decide(i, p) {\n  42\n}", "return a map"),
            (
                "fn decide(i, p) {\n  #{ action: \"autoo\", reason: \"x\" }\n}",
                "did you mean `auto`?",
            ),
        ];
        for (src, expect) in cases {
            let (d, _) = engine(src).decide("p", &json!({}), &json!({}), &facts());
            assert_eq!(d.action, Verdict::Page, "{src}");
            assert!(d.fallback);
            assert!(d.reason.contains(expect), "{src}: {}", d.reason);
            assert!(d.reason.contains("policies/p.rhai"), "{}", d.reason);
        }
    }

    #[test]
    fn a_slow_script_hits_the_wall_clock_deadline() {
        let e = engine("fn decide(i, p) {\n let n = 0;\n while n < 900000 { n += 1; }\n #{ action: \"auto\", reason: \"x\" }\n}")
            .with_deadline(std::time::Duration::from_millis(1));
        let (d, _) = e.decide("p", &json!({}), &json!({}), &facts());
        assert_eq!(d.action, Verdict::Page);
        assert!(
            d.reason.contains("deadline") || d.reason.contains("operations"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn compile_errors_name_file_and_line() {
        let err = PolicyEngine::load(&[PolicyFile {
            name: "bad".into(),
            file: "policies/bad.rhai".into(),
            source: "fn decide(i, p) {\n  let = 3;\n}".into(),
        }])
        .unwrap_err();
        assert_eq!(err[0].line, 2);
        let missing = PolicyEngine::load(&[PolicyFile {
            name: "m".into(),
            file: "m.rhai".into(),
            source: "fn other() {}".into(),
        }])
        .unwrap_err();
        assert!(missing[0].message.contains("decide"));
    }

    #[test]
    fn rotations_and_freezes() {
        let r = RotationDoc {
            members: vec!["ann".into(), "bo".into()],
            shift: Duration::parse("7d").unwrap(),
            start: "2026-11-02T00:00:00Z".into(),
        };
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(on_shift(&r, start + 1).as_deref(), Some("ann"));
        assert_eq!(on_shift(&r, start + 8 * 86_400_000).as_deref(), Some("bo"));
        assert_eq!(
            on_shift(&r, start + 15 * 86_400_000).as_deref(),
            Some("ann")
        );
        let w = FreezeWindow {
            start: "2026-12-20T00:00:00Z".into(),
            end: "2027-01-02T00:00:00Z".into(),
            reason: "holidays".into(),
        };
        let xmas = chrono::DateTime::parse_from_rfc3339("2026-12-25T12:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(freeze_contains(&w, xmas));
        assert!(!freeze_contains(&w, start));
    }
}
