//! `vigil dry-run`, `vigil run`, `vigil executions …`

use super::client::{Client, Target, target};
use super::{Global, Paint, clock, invalid};
use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vigil::compose::Composition;
use vigil_core::now_ms;
use vigil_exec::automation::{Origin, Outcome};
use vigil_exec::core::Catalog;
use vigil_exec::executor::Observer;
use vigil_exec::record::ExecutionStore;
use vigil_exec::record::{Event, EventKind, ExecStatus, ExecutionRecord};
use vigil_exec::render::{parse_set_value, resolve_params};
use vigil_exec::{ExecutionReport, Executor, Request, StepStatus};
use vigil_policy::expr::ExprEngine;
use vigil_store::Store;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Runbook name (in the bundle) or file.
    pub runbook: String,
    /// The incident the run is for (JSON or YAML), available as `incident` in expressions.
    #[arg(long)]
    pub incident: Option<PathBuf>,
    /// Set a parameter: `--set service=api` (values that parse as JSON are typed).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start a new execution even if an identical one was interrupted.
    #[arg(long)]
    pub new: bool,
    /// Steps running at once, unless the runbook sets `concurrency`.
    #[arg(long, default_value_t = 8)]
    pub max_concurrency: usize,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show an execution's journal as a timeline.
    Show { id: String },
    /// Approve the step an execution is waiting on, and continue it.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Refuse unless the plan waiting for approval has this hash (from `executions show`).
        #[arg(long)]
        plan_hash: Option<String>,
    },
    /// Reject the step an execution is waiting on; the execution fails.
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Resume an interrupted execution.
    Resume { id: String },
    /// Cancel an unfinished execution: a running one stops at once, a waiting one ends.
    Cancel { id: String },
    /// End waits for approval whose policy timeout passed (they fall back to paging).
    Expire,
}

pub fn read_incident(path: &PathBuf) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading incident {}", path.display()))?;
    if let Ok(v) = serde_json::from_str(&text) {
        return Ok(v);
    }
    let docs = super::parse_yaml(path, &text).context("the incident is neither JSON nor YAML")?;
    Ok(docs.first().map_or(Value::Null, |d| d.to_json()))
}

fn parse_sets(sets: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            invalid(format!(
                "`--set {s}`: write KEY=VALUE, e.g. `--set service=api`"
            ))
        })?;
        out.insert(k.trim().to_string(), parse_set_value(v));
    }
    Ok(out)
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(g: &Global, args: &RunArgs, dry: bool) -> Result<ExitCode> {
    // A running daemon runs the runbooks of the bundle it loaded: ask it by name,
    // whatever the bundle on disk says now.
    let local = if dry {
        None
    } else {
        match target(g)? {
            Target::Local(store) => Some(store),
            Target::Daemon(c) => return run_on_daemon(g, &Paint::new(g.color()), &c, args),
        }
    };
    let (bundle, runbook, source) = super::load_runbook(g, &args.runbook)?;
    let incident = args
        .incident
        .as_ref()
        .map(read_incident)
        .transpose()?
        .unwrap_or(Value::Null);
    let exprs = ExprEngine::new();
    let params = resolve_params(
        &runbook,
        &parse_sets(&args.set)?,
        &incident,
        &exprs,
        now_ms() / 1000,
    )
    .map_err(|e| invalid(e.message))?;
    let req = Request::manual(Arc::new(runbook), source, params, incident);
    let catalog = Arc::new(super::plugin::with_plugins(g, &bundle)?);
    let rt = runtime()?;
    let p = Paint::new(g.color());

    if dry {
        let report = rt.block_on(vigil_exec::dry_run::dry_run(catalog.as_ref(), &exprs, &req));
        print_dry_run(g, &p, &req, &report);
        return Ok(if report.status == ExecStatus::Succeeded {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let Some(store) = local else {
        return Err(invalid("no store to run in"));
    };
    let comp = compose(bundle, store, catalog.clone())?;
    let executor = printing(
        g,
        comp.executor().with_max_concurrency(args.max_concurrency),
    );
    rt.block_on(async {
        let executor = with_ctrl_c(executor);
        if !args.new
            && let Some(prev) = executor.find_resumable(&req)?
        {
            if !g.json() {
                println!(
                    "{} interrupted execution {} of {} — resuming it (use --new to start over)",
                    p.yellow("↻"),
                    p.bold(&prev.id),
                    req.runbook.name
                );
            }
            let report = executor.resume(&prev.id).await?;
            print_report(g, &p, &report);
            return Ok(exit_for(report.status));
        }
        if !g.json() {
            println!(
                "{} {} {}",
                p.bold("▶ run"),
                p.bold(&req.runbook.name),
                p.dim(&format!("({})", req.runbook.file.display()))
            );
        }
        let automation = comp.automation(executor);
        let outcome = automation
            .handle(catalog.as_ref(), req, Origin::Manual)
            .await?;
        Ok(print_outcome(g, &p, &outcome))
    })
}

/// Asks the daemon to run a runbook of its bundle by name, then follows it live.
fn run_on_daemon(g: &Global, p: &Paint, c: &Client, args: &RunArgs) -> Result<ExitCode> {
    if std::path::Path::new(&args.runbook).is_file() {
        return Err(invalid(format!(
            "a running vigil holds the store; it runs the runbooks of its bundle by name (`vigil run <name>`), not the file `{}`",
            args.runbook
        )));
    }
    let incident = args
        .incident
        .as_ref()
        .map(read_incident)
        .transpose()?
        .unwrap_or(Value::Null);
    if !g.json() {
        println!(
            "{} {} {}",
            p.bold("▶ run"),
            p.bold(&args.runbook),
            p.dim("(on the running vigil)")
        );
    }
    let v = c.post(
        &format!(
            "/api/v1/runbooks/{}/run",
            super::automation::path_segment(&args.runbook)
        ),
        &serde_json::json!({ "params": parse_sets(&args.set)?, "incident": incident }),
    )?;
    match v["id"].as_str() {
        Some(id) => follow(g, p, c, id, 0),
        // Nothing ran: the policy or a guardrail said why.
        None => {
            if g.json() {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: {}",
                    v["outcome"].as_str().unwrap_or("not run"),
                    v["reason"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

pub fn exit_for(status: ExecStatus) -> ExitCode {
    match status {
        ExecStatus::Succeeded | ExecStatus::AwaitingApproval => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// Everything a command that runs runbooks builds from its bundle, built once.
pub fn compose(
    bundle: vigil_bundle::Bundle,
    store: Store,
    catalog: Arc<Catalog>,
) -> Result<Composition> {
    Composition::new(
        Arc::new(bundle),
        store,
        catalog,
        Arc::new(vigil_telemetry::Metrics::new()),
    )
    .map_err(|e| invalid(e.to_string()))
}

/// An executor for the executions commands, which may run without a bundle.
pub fn executor(g: &Global, catalog: Arc<Catalog>, store: Store) -> Executor {
    printing(g, Executor::new(catalog, store))
}

/// `ex`, printing each transition as it happens (unless the output is JSON).
pub fn printing(g: &Global, ex: Executor) -> Executor {
    let mut ex = ex;
    if !g.json() {
        let p = Paint::new(g.color());
        let observer: Observer = Arc::new(move |rec: &ExecutionRecord, ev: &Event| {
            if let Some(line) = event_line(&p, ev, Some(rec)) {
                println!("{line}");
            }
        });
        ex = ex.with_observer(observer);
    }
    ex
}

/// Cancels the executor's runs on Ctrl-C.
pub fn with_ctrl_c(executor: Executor) -> Executor {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    executor.with_cancel(rx)
}

fn short(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// One human line for a journal event.
fn event_line(p: &Paint, ev: &Event, _rec: Option<&ExecutionRecord>) -> Option<String> {
    let t = p.dim(&clock(ev.ts_ms));
    let step = ev.step.as_deref().unwrap_or("");
    let detail = ev.detail.as_deref().unwrap_or("");
    let line = match ev.kind {
        EventKind::ExecutionStarted => {
            format!("{t}  {} execution started {}", p.cyan("●"), p.dim(detail))
        }
        EventKind::ExecutionResumed => {
            format!("{t}  {} execution resumed ({detail})", p.yellow("↻"))
        }
        EventKind::Queued => format!("{t}  {} {step:<16} queued {}", p.dim("·"), p.dim(detail)),
        EventKind::Started => format!(
            "{t}  {} {step:<16} started (attempt {}) {}",
            p.cyan("▶"),
            ev.attempt,
            p.dim(detail)
        ),
        EventKind::Succeeded => format!(
            "{t}  {} {step:<16} succeeded {}",
            p.green("✓"),
            p.dim(&ev.output.as_ref().map(|o| short(o, 80)).unwrap_or_default())
        ),
        EventKind::Compensated => format!("{t}  {} {step:<16} compensated", p.green("↺")),
        EventKind::Retrying => format!(
            "{t}  {} {step:<16} attempt {} failed: {detail}",
            p.yellow("↻"),
            ev.attempt
        ),
        EventKind::Failed => format!("{t}  {} {step:<16} failed: {detail}", p.red("✗")),
        EventKind::Skipped => format!("{t}  {} {step:<16} skipped: {}", p.dim("↷"), p.dim(detail)),
        EventKind::Cancelled => {
            format!("{t}  {} {step:<16} cancelled {}", p.red("■"), p.dim(detail))
        }
        EventKind::AwaitingApproval => format!(
            "{t}  {} {step:<16} awaiting approval — {detail}",
            p.yellow("⏸")
        ),
        EventKind::Approved => format!(
            "{t}  {} {step:<16} approved {}",
            p.green("✔"),
            p.dim(detail)
        ),
        EventKind::Rejected => format!("{t}  {} {step:<16} rejected {}", p.red("✘"), p.dim(detail)),
        EventKind::InDoubt => format!("{t}  {} {step:<16} IN DOUBT: {detail}", p.red("?")),
        EventKind::ExecutionFinished => {
            format!("{t}  {} execution finished: {detail}", p.cyan("●"))
        }
    };
    Some(line)
}

pub fn status_word(p: &Paint, s: ExecStatus) -> String {
    match s {
        ExecStatus::Succeeded => p.green("succeeded"),
        ExecStatus::AwaitingApproval | ExecStatus::Running => p.yellow(s.as_str()),
        _ => p.red(s.as_str()),
    }
}

pub fn print_report(g: &Global, p: &Paint, r: &ExecutionReport) {
    if g.json() {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    let count = |s: StepStatus| r.steps.iter().filter(|x| x.status == s).count();
    println!();
    println!(
        "{} {} {} in {:.1}s — {} step(s): {} succeeded, {} failed, {} skipped",
        p.bold(&r.id),
        r.runbook,
        status_word(p, r.status),
        r.duration_ms as f64 / 1000.0,
        r.steps.len(),
        count(StepStatus::Succeeded) + count(StepStatus::Compensated),
        count(StepStatus::Failed),
        count(StepStatus::Skipped),
    );
    if let Some(reason) = &r.reason {
        println!("  {}", reason);
    }
    println!("  see the journal: vigil executions show {}", r.id);
}

fn print_dry_run(g: &Global, p: &Paint, req: &Request, r: &ExecutionReport) {
    if g.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "params": req.params, "report": r }))
                .unwrap_or_default()
        );
        return;
    }
    println!(
        "{} {} {}",
        p.bold("dry-run"),
        p.bold(&r.runbook),
        p.dim("— plans only; nothing is executed")
    );
    if !req.params.is_empty() {
        println!(
            "  params: {}",
            short(&Value::Object(req.params.clone()), 200)
        );
    }
    println!();
    for (i, s) in r.steps.iter().enumerate() {
        let (mark, word) = match s.status {
            StepStatus::WouldRun => (p.green("▶"), p.green("would run")),
            StepStatus::Skipped => (p.dim("↷"), p.dim("would skip")),
            StepStatus::Failed => (p.red("✗"), p.red("would fail")),
            _ => (p.dim("·"), p.dim("on failure only")),
        };
        println!(
            "{:>2}. {mark} {} {} {word}",
            i + 1,
            p.bold(&s.id),
            p.dim(&format!("[{}]", s.uses))
        );
        if let Some(reason) = &s.reason {
            println!("      {}", p.dim(reason));
        }
        if let Some(input) = &s.input
            && input.as_object().is_some_and(|m| !m.is_empty())
        {
            println!("      with: {}", short(input, 160));
        }
        if let Some(plan) = &s.plan {
            println!("      plan: {}", plan.summary);
            for e in &plan.steps {
                println!(
                    "        → {} (risk {}, {}) {}",
                    e.target,
                    e.risk,
                    if e.reversible {
                        "reversible"
                    } else {
                        "irreversible"
                    },
                    p.dim(&e.effects.join(", "))
                );
            }
        }
    }
    println!();
    match &r.reason {
        None => println!(
            "{} the run would proceed as above; nothing was executed (plans may only read: GET/HEAD without a body, kv get, secrets)",
            p.green("✓")
        ),
        Some(reason) => println!("{} {reason}", p.red("✗")),
    }
}

pub fn executions(g: &Global, cmd: &ExecutionsCommand) -> Result<ExitCode> {
    let p = Paint::new(g.color());
    let store = match target(g)? {
        Target::Local(store) => store,
        Target::Daemon(c) => return executions_on_daemon(g, &p, &c, cmd),
    };
    let bundle = g
        .bundle_dir()
        .and_then(|d| vigil_bundle::Bundle::load(&d).ok());
    match cmd {
        ExecutionsCommand::List { limit } => {
            print_executions(g, &p, vigil::ops::executions(&store, *limit)?)
        }
        ExecutionsCommand::Show { id } => {
            let rec = store.execution(id).map_err(|e| invalid(e.to_string()))?;
            let events = store.events(id)?;
            print_execution(g, &p, &rec, &events)
        }
        ExecutionsCommand::Approve {
            id,
            comment,
            plan_hash,
        } => decide(
            g,
            &p,
            executor(g, catalog(g, bundle.as_ref())?, store),
            id,
            true,
            comment.clone(),
            plan_hash.clone(),
        ),
        ExecutionsCommand::Reject { id, comment } => decide(
            g,
            &p,
            executor(g, catalog(g, bundle.as_ref())?, store),
            id,
            false,
            comment.clone(),
            None,
        ),
        ExecutionsCommand::Expire => {
            let executor = executor(g, Arc::new(Catalog::with_core()), store);
            let expired = runtime()?.block_on(executor.expire_approvals(now_ms()))?;
            if g.json() {
                println!("{}", serde_json::json!({ "expired": expired }));
            } else if expired.is_empty() {
                println!("no approval is overdue");
            } else {
                for id in &expired {
                    println!(
                        "{} {id}: no approval in time; handed to a human",
                        p.red("☎")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Resume { id } => {
            vigil::ops::resumed(&store, &vigil_exec::automation::whoami(), id)?;
            let executor = executor(g, catalog(g, bundle.as_ref())?, store);
            let report = runtime()?.block_on(async { with_ctrl_c(executor).resume(id).await })?;
            print_report(g, &p, &report);
            Ok(exit_for(report.status))
        }
        ExecutionsCommand::Cancel { id } => {
            let executor = Executor::new(Arc::new(Catalog::with_core()), store);
            let who = vigil_exec::automation::whoami();
            let done = runtime()?
                .block_on(executor.cancel(id, &who))
                .map_err(|e| match e {
                    e @ vigil_exec::ExecError::Finished(..) => invalid(e.to_string()),
                    vigil_exec::ExecError::Store(e @ vigil_store::StoreError::NotFound { .. }) => {
                        invalid(e.to_string())
                    }
                    e => e.into(),
                })?;
            print_cancelled(g, &p, id, done);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_cancelled(g: &Global, p: &Paint, id: &str, done: vigil_exec::Cancelled) {
    if g.json() {
        println!("{}", serde_json::json!({ "id": id, "cancelled": done }));
    } else {
        println!("{} {id} cancelled", p.red("✘"));
    }
}

/// The executions commands, asked of a running daemon.
fn executions_on_daemon(
    g: &Global,
    p: &Paint,
    c: &Client,
    cmd: &ExecutionsCommand,
) -> Result<ExitCode> {
    let id_path = |id: &str, verb: &str| {
        format!(
            "/api/v1/executions/{}{verb}",
            super::automation::path_segment(id)
        )
    };
    match cmd {
        ExecutionsCommand::List { limit } => {
            print_executions(g, p, c.get(&format!("/api/v1/executions?limit={limit}"))?)
        }
        ExecutionsCommand::Show { id } => {
            let v = c.call("GET", &id_path(id, ""), None)?;
            let rec: ExecutionRecord = serde_json::from_value(v["execution"].clone())?;
            let events: Vec<Event> = serde_json::from_value(v["events"].clone())?;
            print_execution(g, p, &rec, &events)
        }
        ExecutionsCommand::Approve {
            id,
            comment,
            plan_hash,
        } => {
            let v = c.post(
                &id_path(id, "/approve"),
                &serde_json::json!({ "comment": comment, "plan_hash": plan_hash }),
            )?;
            if g.json() {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(exit_for(status_of(&v["status"])));
            }
            follow(g, p, c, id, 0)
        }
        ExecutionsCommand::Reject { id, comment } => {
            c.post(
                &id_path(id, "/reject"),
                &serde_json::json!({ "comment": comment }),
            )?;
            if g.json() {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "status": "failed", "rejected": true })
                );
            } else {
                println!("{} {id} rejected; the execution is failed", p.red("✘"));
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Expire => Err(invalid(
            "a running daemon ends overdue approvals itself; `executions expire` is for a store no daemon holds",
        )),
        ExecutionsCommand::Resume { id } => {
            let seen = c.call("GET", &id_path(id, ""), None)?["events"]
                .as_array()
                .map_or(0, Vec::len);
            c.post(&id_path(id, "/resume"), &serde_json::json!({}))?;
            follow(g, p, c, id, seen)
        }
        ExecutionsCommand::Cancel { id } => {
            let v = c.post(&id_path(id, "/cancel"), &serde_json::json!({}))?;
            let done = serde_json::from_value(v["cancelled"].clone())?;
            print_cancelled(g, p, id, done);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status_of(v: &Value) -> ExecStatus {
    serde_json::from_value(v.clone()).unwrap_or(ExecStatus::Failed)
}

/// Follows an execution the daemon drives: prints each journal event after the first
/// `seen` as it lands, until the execution stops running; exits as `vigil run` would.
pub fn follow(g: &Global, p: &Paint, c: &Client, id: &str, mut seen: usize) -> Result<ExitCode> {
    let path = format!("/api/v1/executions/{}", super::automation::path_segment(id));
    loop {
        let v = c.call("GET", &path, None)?;
        let rec: ExecutionRecord = serde_json::from_value(v["execution"].clone())?;
        let events: Vec<Event> = serde_json::from_value(v["events"].clone())?;
        if !g.json() {
            for ev in events.iter().skip(seen) {
                if let Some(line) = event_line(p, ev, Some(&rec)) {
                    println!("{line}");
                }
            }
        }
        seen = seen.max(events.len());
        if rec.status != ExecStatus::Running {
            if g.json() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "execution": rec, "events": events })
                    )?
                );
            } else {
                println!(
                    "{} {} {}{}",
                    p.bold(&rec.id),
                    rec.runbook,
                    status_word(p, rec.status),
                    rec.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
            return Ok(exit_for(rec.status));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn print_executions(g: &Global, p: &Paint, list: Vec<ExecutionRecord>) -> Result<ExitCode> {
    if g.json() {
        let rows: Vec<Value> = list
            .iter()
            .map(|r| serde_json::json!({ "id": r.id, "runbook": r.runbook, "status": r.status, "created_ms": r.created_ms, "updated_ms": r.updated_ms, "reason": r.reason }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if list.is_empty() {
        println!("no executions yet — try `vigil run <runbook>`");
    } else {
        println!("{:<11} {:<28} {:<18} STARTED", "ID", "RUNBOOK", "STATUS");
        for r in list {
            let started = chrono::DateTime::from_timestamp_millis(r.created_ms)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default();
            println!(
                "{:<11} {:<28} {:<18} {}",
                r.id,
                r.runbook,
                status_word(p, r.status),
                started
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_execution(
    g: &Global,
    p: &Paint,
    rec: &ExecutionRecord,
    events: &[Event],
) -> Result<ExitCode> {
    if g.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "execution": rec, "events": events })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} {}",
        p.bold(&rec.id),
        rec.runbook,
        status_word(p, rec.status)
    );
    println!("  file:   {}", rec.runbook_file);
    println!("  params: {}", short(&rec.params, 200));
    if let Some(reason) = &rec.reason {
        println!("  reason: {reason}");
    }
    if !rec.approvers.is_empty() {
        println!("  approvers: {}", rec.approvers.join(", "));
    }
    println!();
    for ev in events {
        if let Some(line) = event_line(p, ev, None) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The actions a resumed execution may need: `core/*` and, with a bundle, its plugins.
pub fn catalog(g: &Global, bundle: Option<&vigil_bundle::Bundle>) -> Result<Arc<Catalog>> {
    Ok(Arc::new(match bundle {
        Some(b) => super::plugin::with_plugins(g, b)?,
        None => Catalog::with_core(),
    }))
}

/// Records an approval or rejection of the step an execution waits on, then continues it.
fn decide(
    g: &Global,
    p: &Paint,
    executor: Executor,
    id: &str,
    approve: bool,
    comment: Option<String>,
    plan_hash: Option<String>,
) -> Result<ExitCode> {
    let who = vigil_exec::automation::whoami();
    let result = runtime()?.block_on(async {
        with_ctrl_c(executor)
            .decide_approval(id, approve, &who, comment.as_deref(), plan_hash.as_deref())
            .await
    });
    let report = match result {
        Ok(r) => r,
        Err(
            e @ (vigil_exec::ExecError::NotAwaiting { .. }
            | vigil_exec::ExecError::StalePlan { .. }
            | vigil_exec::ExecError::ApprovalExpired { .. }
            | vigil_exec::ExecError::NotAnApprover { .. }),
        ) => return Err(invalid(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    match report {
        Some(report) => {
            print_report(g, p, &report);
            Ok(exit_for(report.status))
        }
        None => {
            if g.json() {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "status": "failed", "rejected": true })
                );
            } else {
                println!("{} {id} rejected; the execution is failed", p.red("✘"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints what automation did; returns the exit code.
pub fn print_outcome(g: &Global, p: &Paint, outcome: &Outcome) -> ExitCode {
    if g.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(outcome).unwrap_or_default()
        );
    }
    match outcome {
        Outcome::Executed { report, decision } => {
            if !g.json() {
                if let Some(d) = decision {
                    println!(
                        "  policy {}: {} — {}",
                        d.policy,
                        p.bold(d.action.as_str()),
                        d.reason
                    );
                }
                print_report(g, p, report);
            }
            exit_for(report.status)
        }
        Outcome::DryRunOnly { reason, .. } => {
            if !g.json() {
                println!("{} {reason}", p.yellow("◌ dry-run only:"));
            }
            ExitCode::SUCCESS
        }
        Outcome::Paged { reason, notify } => {
            if !g.json() {
                let who = if notify.is_empty() {
                    String::new()
                } else {
                    format!(" (notify: {})", notify.join(", "))
                };
                println!("{} {reason}{who}", p.red("☎ page:"));
            }
            ExitCode::from(1)
        }
        Outcome::Ignored { reason } => {
            if !g.json() {
                println!("{} {reason}", p.dim("∅ ignored:"));
            }
            ExitCode::SUCCESS
        }
        Outcome::Blocked { reason } => {
            if !g.json() {
                println!("{} {reason}", p.red("⛔ blocked:"));
            }
            ExitCode::from(1)
        }
    }
}
