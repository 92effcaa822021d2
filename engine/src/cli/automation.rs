//! `vigil trigger`, `vigil pause`/`resume`, `vigil audit`, `vigil policy test`.

use super::client::{Target, target};
use super::run::{compose, print_outcome, printing, read_incident, runtime, with_ctrl_c};
use super::{Global, Paint, clock, invalid};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vigil_bundle::Bundle;
use vigil_core::now_ms;
use vigil_exec::Request;
use vigil_exec::automation::{Origin, whoami};
use vigil_exec::record::AuditEntry;
use vigil_exec::render::resolve_params;
use vigil_policy::decide::{Facts, PolicyEngine};

/// Compiles the bundle's policies; errors point at file:line:col.
pub fn policies(bundle: &Bundle) -> Result<Option<Arc<PolicyEngine>>> {
    if bundle.policies.is_empty() {
        return Ok(None);
    }
    PolicyEngine::load(&bundle.policies)
        .map(|e| Some(Arc::new(e)))
        .map_err(|errors| {
            invalid(
                errors
                    .iter()
                    .map(|e| format!("{e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
}

#[derive(clap::Args, Debug, Clone)]
pub struct TriggerArgs {
    /// The incident (JSON or YAML) with `labels` to match runbook triggers.
    #[arg(long)]
    pub incident: PathBuf,
}

/// Runs every runbook whose trigger matches the incident, as automation would:
/// kill switch, guardrails, policy, then the execution.
pub fn trigger(g: &Global, args: &TriggerArgs) -> Result<ExitCode> {
    let dir = g
        .bundle_dir()
        .ok_or_else(|| invalid("no vigil.yaml found; pass --config"))?;
    let bundle = Bundle::load(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if bundle.has_errors() {
        super::validate::print_diagnostics(g, &bundle);
        return Err(invalid("the bundle has errors; run `vigil validate`"));
    }
    let incident = read_incident(&args.incident)?;
    let labels: BTreeMap<String, String> = incident["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let matching: Vec<_> = bundle
        .runbooks
        .iter()
        .filter(|r| !r.trigger.is_empty() && r.trigger.iter().all(|m| m.matches(&labels)))
        .cloned()
        .collect();
    let p = Paint::new(g.color());
    if matching.is_empty() {
        if !g.json() {
            println!("no runbook matches labels {labels:?}");
        } else {
            println!("[]");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = match target(g)? {
        Target::Local(store) => store,
        Target::Daemon(c) => {
            let v = c.post("/api/v1/trigger", &json!({ "incident": incident }))?;
            return Ok(print_triggered(g, &p, &v));
        }
    };
    let catalog = Arc::new(super::plugin::with_plugins(g, &bundle)?);
    let comp = compose(bundle, store, catalog.clone())?;
    let (bundle, exprs) = (comp.bundle(), comp.exprs());
    let mut code = ExitCode::SUCCESS;
    runtime()?.block_on(async {
        let automation = comp.automation(with_ctrl_c(printing(g, comp.executor())));
        for id in automation.executor.expire_approvals(now_ms()).await? {
            if !g.json() {
                println!(
                    "{} {id}: no approval in time; handed to a human",
                    p.red("☎")
                );
            }
        }
        for rb in matching {
            if !g.json() {
                println!("{} incident matches {}", p.bold("▶"), p.bold(&rb.name));
            }
            let params =
                resolve_params(&rb, &Default::default(), &incident, exprs, now_ms() / 1000)
                    .map_err(|e| invalid(format!("{}: {}", rb.name, e.message)))?;
            let source = bundle.sources.get(&rb.file).cloned().unwrap_or_default();
            let req = Request::manual(Arc::new(rb), source, params, incident.clone());
            let outcome = automation
                .handle(catalog.as_ref(), req, Origin::Automatic)
                .await?;
            let c = print_outcome(g, &p, &outcome);
            if c != ExitCode::SUCCESS {
                code = c;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(code)
}

/// Lets a runbook under `dry_run_first` act for real from now on.
pub fn promote(g: &Global, runbook: &str) -> Result<ExitCode> {
    let who = match target(g)? {
        Target::Local(store) => {
            let dir = g
                .bundle_dir()
                .ok_or_else(|| invalid("no vigil.yaml found; pass --config"))?;
            let bundle =
                Bundle::load(&dir).with_context(|| format!("reading {}", dir.display()))?;
            let who = whoami();
            vigil::ops::promote(&store, &bundle, &who, runbook).map_err(|e| match e {
                vigil::ops::OpsError::Store(e) => anyhow::Error::from(e),
                e => invalid(e.to_string()),
            })?;
            store.sync_blocking()?;
            who
        }
        Target::Daemon(c) => {
            let v = c.post(
                &format!("/api/v1/runbooks/{}/promote", path_segment(runbook)),
                &json!({}),
            )?;
            v["by"].as_str().unwrap_or_default().to_string()
        }
    };
    if g.json() {
        println!("{}", json!({ "promoted": runbook, "by": who }));
    } else {
        println!(
            "{} {runbook} promoted: automatic matches now run for real",
            Paint::new(g.color()).green("✓")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pause(g: &Global, reason: &str, pause: bool) -> Result<ExitCode> {
    let who = match target(g)? {
        Target::Local(store) => {
            let who = whoami();
            if pause {
                vigil::ops::pause(&store, &who, reason)?;
            } else {
                vigil::ops::resume(&store, &who)?;
            }
            store.sync_blocking()?;
            who
        }
        Target::Daemon(c) => {
            let v = if pause {
                c.post("/api/v1/pause", &json!({ "reason": reason }))?
            } else {
                c.post("/api/v1/resume", &json!({}))?
            };
            v["by"].as_str().unwrap_or_default().to_string()
        }
    };
    let p = Paint::new(g.color());
    if g.json() {
        println!(
            "{}",
            json!({ "paused": pause, "by": who, "reason": reason })
        );
    } else if pause {
        println!(
            "{} automation paused by {who}: {reason} — no automatic run will start until `vigil resume`",
            p.yellow("⏸")
        );
    } else {
        println!("{} automation resumed", p.green("▶"));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// Only entries whose actor contains this (e.g. `policy:`, `user:alice`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (decide, approve, reject, run, pause, resume, block, page, …).
    #[arg(long)]
    pub action: Option<vigil_core::audit::AuditAction>,
    /// Only entries about this execution or runbook.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only entries newer than this (e.g. `1h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Check every link of the log's hash chain instead of listing entries; exit 1
    /// when an entry was changed, removed or slipped in.
    #[arg(long, conflicts_with_all = ["actor", "action", "subject", "since"])]
    pub verify: bool,
}

pub fn audit(g: &Global, args: &AuditArgs) -> Result<ExitCode> {
    if args.verify {
        return verify_audit(g);
    }
    let q = vigil::ops::AuditQuery {
        actor: args.actor.clone(),
        action: args.action,
        subject: args.subject.clone(),
        since: args.since.clone(),
        limit: Some(args.limit),
    };
    let entries: Vec<AuditEntry> = match target(g)? {
        Target::Local(store) => vigil::ops::audit(&store, &q).map_err(|e| match e {
            vigil::ops::OpsError::Store(e) => anyhow::Error::from(e),
            e => invalid(format!("--{e}")),
        })?,
        Target::Daemon(c) => c.get(&format!("/api/v1/audit?{}", query_string(&q)?))?,
    };
    if g.json() {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = Paint::new(g.color());
    if entries.is_empty() {
        println!("no audit entries match");
    }
    for e in entries {
        let hash = e
            .plan_hash
            .map(|h| format!(" plan {h}"))
            .unwrap_or_default();
        println!(
            "{}  {:<28} {:<9} {:<26} {}{}",
            p.dim(&clock(e.ts_ms)),
            e.actor,
            p.bold(e.action.as_str()),
            e.subject,
            e.outcome,
            p.dim(&hash)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug, Clone)]
pub struct PolicyTestArgs {
    /// The policy name (under policies/) — or use --suite.
    pub policy: Option<String>,
    /// The incident (JSON or YAML).
    #[arg(long)]
    pub incident: Option<PathBuf>,
    /// The plan the policy sees (JSON or YAML); default: a low-risk plan.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Decide as if it were this time (RFC 3339), e.g. to test business hours.
    #[arg(long)]
    pub at: Option<String>,
    /// Run every test case (*.yaml) in this directory.
    #[arg(long, conflicts_with_all = ["policy", "incident", "plan", "at"])]
    pub suite: Option<PathBuf>,
}

fn parse_at(at: Option<&str>) -> Result<i64> {
    match at {
        None => Ok(now_ms()),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .map_err(|e| {
                invalid(format!(
                    "--at `{t}`: {e}; write RFC 3339, e.g. 2026-11-24T03:00:00Z"
                ))
            }),
    }
}

fn default_plan() -> Value {
    json!({ "runbook": "test", "origin": "automatic", "risk": "low", "reversible": true, "targets": 1, "steps": [] })
}

pub fn policy_test(g: &Global, args: &PolicyTestArgs) -> Result<ExitCode> {
    let dir = g
        .bundle_dir()
        .ok_or_else(|| invalid("no vigil.yaml found; pass --config"))?;
    let bundle = Bundle::load(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let engine = policies(&bundle)?
        .ok_or_else(|| invalid(format!("no policies in {}/policies", dir.display())))?;
    let config = bundle.config.clone();
    let facts = |now_ms: i64| Facts {
        now_ms,
        oncall: config.oncall.clone(),
        freeze: config.guardrails.freeze.clone(),
        history: None,
    };
    let p = Paint::new(g.color());
    if let Some(suite) = &args.suite {
        return run_suite(g, &p, &engine, &facts, suite);
    }
    let policy = args
        .policy
        .as_deref()
        .ok_or_else(|| invalid("name a policy, or pass --suite DIR"))?;
    if !engine.names().contains(&policy) {
        return Err(invalid(format!(
            "no policy `{policy}`; {}",
            vigil_core::suggest::hint(policy, engine.names())
        )));
    }
    let incident = args
        .incident
        .as_ref()
        .map(read_incident)
        .transpose()?
        .unwrap_or(json!({}));
    let plan = args
        .plan
        .as_ref()
        .map(read_incident)
        .transpose()?
        .unwrap_or_else(default_plan);
    let (decision, trace) = engine.decide(
        policy,
        &incident,
        &plan,
        &facts(parse_at(args.at.as_deref())?),
    );
    if g.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "decision": decision, "host_calls": trace }))?
        );
    } else {
        println!("{} {}", p.bold(decision.action.as_str()), decision.reason);
        if !decision.notify.is_empty() {
            println!("  notify: {}", decision.notify.join(", "));
        }
        if !trace.is_empty() {
            println!("  host calls:");
            for c in &trace {
                println!("    {} → {}", c.call, c.result);
            }
        }
    }
    Ok(if decision.fallback {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A policy test case, in YAML.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    policy: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    incident: Option<vigil_bundle::yaml::Node>,
    #[serde(default)]
    plan: Option<vigil_bundle::yaml::Node>,
    expect: Expect,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    action: vigil_policy::decide::Verdict,
    #[serde(default)]
    reason_contains: Option<String>,
    #[serde(default)]
    notify: Option<Vec<String>>,
}

fn run_suite(
    g: &Global,
    p: &Paint,
    engine: &PolicyEngine,
    facts: &dyn Fn(i64) -> Facts,
    dir: &Path,
) -> Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    let mut results = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let docs = super::parse_yaml(&file, &text)?;
        for doc in docs {
            let case: Case = vigil_bundle::de::from_node(&doc).map_err(|e| {
                let at = e
                    .span
                    .map(|s| format!("{}:{}", s.start.line, s.start.col))
                    .unwrap_or_default();
                invalid(format!(
                    "{}:{at}: {}{}",
                    file.display(),
                    e.message,
                    e.hint.map(|h| format!(" ({h})")).unwrap_or_default()
                ))
            })?;
            let incident = case.incident.as_ref().map_or(json!({}), |n| n.to_json());
            let plan = case
                .plan
                .as_ref()
                .map_or_else(default_plan, |n| n.to_json());
            let (d, _) = engine.decide(
                &case.policy,
                &incident,
                &plan,
                &facts(parse_at(case.at.as_deref())?),
            );
            let mut problems = Vec::new();
            if d.action != case.expect.action {
                problems.push(format!(
                    "action {} (expected {}): {}",
                    d.action.as_str(),
                    case.expect.action.as_str(),
                    d.reason
                ));
            }
            if let Some(r) = &case.expect.reason_contains
                && !d.reason.contains(r.as_str())
            {
                problems.push(format!("reason `{}` lacks `{r}`", d.reason));
            }
            if let Some(n) = &case.expect.notify
                && &d.notify != n
            {
                problems.push(format!("notify {:?} (expected {n:?})", d.notify));
            }
            if problems.is_empty() {
                passed += 1;
            } else {
                failed += 1;
            }
            if !g.json() {
                let mark = if problems.is_empty() {
                    p.green("✓")
                } else {
                    p.red("✗")
                };
                println!(
                    "{mark} {} {}",
                    case.name,
                    p.dim(&format!("({})", file.display()))
                );
                for pr in &problems {
                    println!("    {pr}");
                }
            }
            results.push(json!({ "name": case.name, "file": file, "passed": problems.is_empty(), "problems": problems }));
        }
    }
    if g.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "passed": passed, "failed": failed, "cases": results })
            )?
        );
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the daemon did with each runbook an incident matched (`POST /api/v1/trigger`).
fn print_triggered(g: &Global, p: &Paint, v: &Value) -> ExitCode {
    if g.json() {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let mut code = ExitCode::SUCCESS;
    for t in v.as_array().into_iter().flatten() {
        let runbook = t["runbook"].as_str().unwrap_or_default();
        println!("{} incident matches {}", p.bold("▶"), p.bold(runbook));
        let status = t["report"]["status"].as_str();
        let line = match t["outcome"].as_str().unwrap_or_default() {
            "executed" => format!(
                "{} {} {}",
                t["report"]["id"].as_str().unwrap_or_default(),
                runbook,
                status.unwrap_or_default()
            ),
            other => format!("{other}: {}", t["reason"].as_str().unwrap_or_default()),
        };
        println!("  {line}");
        if matches!(
            status,
            Some("failed" | "in_doubt" | "cancelled" | "timed_out")
        ) {
            code = ExitCode::from(1);
        }
    }
    code
}

/// One path segment, percent-encoded.
pub fn path_segment(s: &str) -> String {
    percent(s)
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `q` as a query string.
fn query_string<T: serde::Serialize>(q: &T) -> Result<String> {
    let v = serde_json::to_value(q)?;
    Ok(v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}={}", percent(k), percent(&v))
        })
        .collect::<Vec<_>>()
        .join("&"))
}

/// `vigil status`: the running daemon at a glance, or what the store says without one.
pub fn status(g: &Global) -> Result<ExitCode> {
    let (daemon, s) = match target(g)? {
        Target::Daemon(c) => (true, c.get::<vigil::ops::Status>("/api/v1/status")?),
        Target::Local(store) => (
            false,
            vigil::ops::status(
                &store,
                vigil::ops::Live {
                    started_ms: now_ms(),
                    ..Default::default()
                },
            )?,
        ),
    };
    if g.json() {
        let mut v = serde_json::to_value(&s)?;
        v["daemon"] = json!(daemon);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = Paint::new(g.color());
    if daemon {
        println!(
            "vigil {} running for {}",
            s.version,
            vigil_core::duration::Duration::from_millis(s.uptime_s * 1000)
        );
    } else {
        println!("vigil {}: no daemon holds the store", s.version);
    }
    match &s.paused {
        Some(ps) => println!(
            "  automation  {} by {} since {}: {}",
            p.yellow("paused"),
            ps.by,
            clock(ps.since_ms),
            ps.reason
        ),
        None => println!("  automation  {}", p.green("on")),
    }
    let unfinished: Vec<String> = s
        .executions
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!("  executions  {}", unfinished.join(", "));
    if daemon {
        println!("  in flight   {}", s.in_flight.len());
        println!("  incidents   {} open", s.incidents_open);
        for (name, last) in &s.detectors {
            match last {
                Some(l) => println!(
                    "  detector    {name}: last run {} ({} points, {} detections{})",
                    clock(l.at_ms),
                    l.points,
                    l.detections,
                    l.error
                        .as_ref()
                        .map(|e| format!(", failed: {e}"))
                        .unwrap_or_default()
                ),
                None => println!("  detector    {name}: not run yet"),
            }
        }
    }
    println!("  store       {:.1} MiB", s.store_bytes as f64 / 1048576.0);
    let held: Vec<String> = s
        .records
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !held.is_empty() {
        println!("  records     {}", held.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil reload`: the running daemon re-reads its bundle; an invalid one is refused
/// with its problems and the one serving goes on.
pub fn reload(g: &Global) -> Result<ExitCode> {
    let Target::Daemon(c) = target(g)? else {
        return Err(invalid(
            "no vigil is running on this store, so there is nothing to reload; `vigil validate` checks a bundle",
        ));
    };
    let v = c.post("/api/v1/reload", &json!({}))?;
    if g.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} reloaded: {} runbook(s), {} detector(s), {} polic(ies){}",
            Paint::new(g.color()).green("✓"),
            v["runbooks"],
            v["detectors"],
            v["policies"],
            match v["restart_needed_for"].as_array() {
                Some(a) if !a.is_empty() =>
                    " — the `api:` section changed and takes effect at the next restart".to_string(),
                _ => String::new(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil audit --verify`: the hash chain checked, link by link.
fn verify_audit(g: &Global) -> Result<ExitCode> {
    let v: vigil_exec::record::AuditVerdict = match target(g)? {
        Target::Local(store) => vigil::ops::verify_audit(&store)?,
        Target::Daemon(c) => c.get("/api/v1/audit/verify")?,
    };
    if g.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let p = Paint::new(g.color());
        match &v.broken {
            None => println!(
                "{} {} audit entries, every link holds{}",
                p.green("✓"),
                v.entries,
                if v.unchained > 0 {
                    format!(" ({} from before the chain, not linked)", v.unchained)
                } else {
                    String::new()
                }
            ),
            Some((seq, what)) => println!("{} audit entry {seq} {what}", p.red("✘")),
        }
    }
    Ok(if v.broken.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
