//! `vigil serve`, `vigil incidents`, `vigil silence`, `vigil alerts send`.

use super::client::{Client, Target, target};
use super::{Global, Paint, clock, invalid};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vigil::api::{Api, ApiConfig, Principals};
use vigil::compose::Composition;
use vigil_alert::store::AlertStore;
use vigil_alert::{Incident, IncidentEvent, IncidentStatus};
use vigil_bundle::Bundle;
use vigil_core::text::visible;
use vigil_store::Store;
use vigil_telemetry::Metrics;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (default: the config's `api.listen`, else 127.0.0.1:9797).
    #[arg(long)]
    pub listen: Option<String>,
    /// Compress observed time: detectors' schedules, the ranges they query and alert
    /// grouping run this many times faster than the wall clock (remediation does not).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// What incidents start: `dry-run` (plan only), `live` (guardrails, policy, run) or
    /// `off` (default: the config's `alerting.runbooks`).
    #[arg(long, value_enum)]
    pub runbooks: Option<RunbooksMode>,
    /// Do not run the bundle's detectors.
    #[arg(long)]
    pub no_detectors: bool,
    /// How long a shutdown (SIGTERM, Ctrl-C) waits for running executions.
    #[arg(long, default_value = "30s")]
    pub grace: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunbooksMode {
    DryRun,
    Live,
    Off,
}

impl RunbooksMode {
    pub fn mode(self) -> vigil_bundle::model::TriggerMode {
        use vigil_bundle::model::TriggerMode;
        match self {
            RunbooksMode::DryRun => TriggerMode::DryRun,
            RunbooksMode::Live => TriggerMode::Live,
            RunbooksMode::Off => TriggerMode::Off,
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        /// Only incidents not resolved.
        #[arg(long)]
        open: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show an incident: root cause, alerts, runbooks, its journal.
    Show { id: String },
    /// Acknowledge an incident.
    Ack { id: String },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SilenceCommand {
    /// Silence alerts matching every matcher: `service=db`, `alertname=~Disk.*`, `env!=dev`.
    Add {
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long (e.g. 2h).
        #[arg(long, default_value = "1h")]
        duration: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long, env = "USER", default_value = "vigil")]
        author: String,
    },
    /// List silences.
    List,
    /// End a silence now.
    Expire { id: String },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum AlertsCommand {
    /// Post a payload (Alertmanager webhook JSON, or events with --events) to a running server.
    Send {
        file: PathBuf,
        /// The file holds generic events (POST /api/v1/events).
        #[arg(long)]
        events: bool,
    },
    /// List the alerts the server tracks.
    List,
}

/// The bundle of `--config` (empty when there is none), refused with its diagnostics
/// when it has errors.
pub fn load_bundle(g: &Global) -> Result<Bundle> {
    let Some(dir) = g.bundle_dir() else {
        return Ok(Bundle::default());
    };
    let bundle = Bundle::load(&dir).with_context(|| format!("reading bundle {}", dir.display()))?;
    if bundle.has_errors() {
        super::validate::print_diagnostics(g, &bundle);
        return Err(invalid(format!(
            "{} problem(s) in the bundle; fix them first (`vigil validate`)",
            bundle.diagnostics.iter().filter(|d| d.is_error()).count()
        )));
    }
    Ok(bundle)
}

/// Who may call the API: `api.principals`, the shared tokens of `api.token_env` and
/// `api.token_file`, else `VIGIL_TOKEN`.
fn principals(bundle: &Bundle) -> Result<Principals> {
    let dir = bundle
        .config
        .file
        .as_ref()
        .and_then(|c| c.parent())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Principals::from_config(&bundle.config.api, &dir, &|v| std::env::var(v).ok())
        .map_err(|e| invalid(e.to_string()))
}

pub fn serve(g: &Global, args: &ServeArgs) -> Result<ExitCode> {
    let bundle = load_bundle(g)?;
    let principals = principals(&bundle)?;
    if principals.is_empty() {
        return Err(invalid(
            "no API token: declare `api.principals` in vigil.yaml (each with a role and token_env or token_file), or set VIGIL_TOKEN for one shared admin token",
        ));
    }
    let grace = vigil_core::duration::Duration::parse(&args.grace).map_err(|e| {
        invalid(format!(
            "--grace {}: {}; {}",
            args.grace,
            e.message,
            vigil_core::duration::DURATION_HINT
        ))
    })?;
    let api_cfg = api_config(&bundle.config.api, principals, grace.as_std())?;
    let listen = args
        .listen
        .clone()
        .or_else(|| bundle.config.api.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:9797".into());
    let dir = super::store_dir(g, Some(&bundle));
    let store =
        Store::open(&dir).with_context(|| format!("opening the store at {}", dir.display()))?;
    // Core actions plus the WASM plugins of the bundle (loaded outside the runtime).
    let prepared = prepare(g, args, bundle).map_err(|e| invalid(e.join("\n")))?;
    let clock = if args.speed == 1.0 {
        vigil_core::Clock::wall()
    } else {
        // Time on a compressed clock must not go back when the server restarts.
        // A restart continues the compressed clock instead of jumping back.
        let clock = vigil_core::Clock::continuing(store.setting(COMPRESSED_CLOCK)?, args.speed);
        store.set_setting(COMPRESSED_CLOCK, Some(&clock))?;
        store.sync_blocking()?;
        clock
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let metrics = Arc::new(Metrics::new());
        let start = Starter { store: store.clone(), in_flight: vigil_exec::InFlight::default(), metrics: metrics.clone(), clock, trigger_mode: args.runbooks.map(RunbooksMode::mode) };
        let mut current = prepared.clone();
        let (daemon, serving) = start.start(prepared).await.map_err(|e| invalid(e.join("\n")))?;
        let mut daemon = Some(daemon);
        let listener = vigil::api::bind(&listen)
            .await
            .map_err(|e| invalid(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        // Signal handlers go in before "listening" is printed: a supervisor (or a test)
        // may send SIGTERM the moment it reads that line, and an unhandled one kills
        // the process instead of shutting it down.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        let ctrl_c = tokio::signal::ctrl_c();
        let started = daemon.as_ref().map(|d| d.started.clone()).unwrap_or_default();
        if g.json() {
            println!("{}", json!({
                "listening": format!("http://{addr}"), "store": dir.display().to_string(),
                "detectors": started.detectors, "resumed": started.resumed, "speed": clock.speed(),
            }));
        } else {
            println!(
                "vigil listening on http://{addr} (store {}; {} detector(s){}{})",
                dir.display(),
                started.detectors,
                if started.resumed.is_empty() { String::new() } else { format!("; resuming {}", started.resumed.join(", ")) },
                if clock.speed() == 1.0 { String::new() } else { format!("; clock ×{}", clock.speed()) },
            );
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        let signalled = Arc::new(std::sync::OnceLock::new());
        let at = signalled.clone();
        let shutdown = async move {
            tokio::select! {
                _ = ctrl_c => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            let _ = at.set(std::time::Instant::now());
            tracing::info!("shutting down: detectors, then the pipeline, then running executions");
        };
        let beacon = super::client::Beacon::write(&dir, addr);
        let (reloads, mut reload_rx) = tokio::sync::mpsc::channel(4);
        let api = Api::operating(serving, api_cfg, Some(reloads.clone()));
        let mut server = tokio::spawn(vigil::api::serve(listener, api.clone(), shutdown));
        // SIGHUP asks for a reload as the API does.
        tokio::spawn(async move {
            while let Some(h) = hup.as_mut() {
                if h.recv().await.is_none() { break; }
                let (reply, answer) = tokio::sync::oneshot::channel();
                if reloads.send(vigil::api::ReloadRequest { by: "signal:SIGHUP".into(), reply }).await.is_err() { break; }
                match answer.await {
                    Ok(Ok(summary)) => tracing::info!(%summary, "reloaded on SIGHUP"),
                    Ok(Err(e)) => tracing::error!("{e}"),
                    Err(_) => break,
                }
            }
        });
        let served = loop {
            tokio::select! {
                served = &mut server => break served,
                Some(req) = reload_rx.recv() => {
                    let result = reload(g, args, &dir, &start, &api, &mut daemon, &mut current, grace.as_std(), &req.by).await;
                    let _ = req.reply.send(result);
                }
            }
        };
        served.map_err(|e| anyhow::anyhow!("the API task: {e}"))??;
        drop(beacon);
        tracing::info!("API stopped");
        let left = signalled
            .get()
            .map_or(grace.as_std(), |t| grace.as_std().saturating_sub(t.elapsed()));
        let drained = match daemon.take() {
            Some(d) => d.shutdown(left).await?.drained,
            None => true,
        };
        tracing::info!(drained, "pipeline stopped and the store flushed");
        if !drained {
            tracing::warn!("executions still running after the grace period stay journaled and resume at the next start");
        }
        // Everything is durable now. Tearing down a large in-memory state and the
        // store's caches only costs time past the grace: leave without it.
        std::io::stdout().flush().ok();
        std::process::exit(0);
        #[allow(unreachable_code)]
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A bundle with its plugins loaded and its detectors checked: ready to start.
#[derive(Clone)]
struct Prepared {
    bundle: Arc<Bundle>,
    catalog: Arc<vigil_exec::core::Catalog>,
    sources: vigil_runtime::runner::Sources,
}

/// Loads `bundle`'s plugins and checks its detectors can run; each problem one line.
fn prepare(
    g: &Global,
    args: &ServeArgs,
    mut bundle: Bundle,
) -> std::result::Result<Prepared, Vec<String>> {
    let (catalog, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|_| {})
        .map_err(|e| vec![format!("{e:#}")])?;
    if args.no_detectors {
        bundle.detectors.clear();
    }
    let problems = vigil_runtime::runner::check(&bundle.detectors, &sources);
    if !problems.is_empty() {
        let mut p = vec!["the bundle's detectors cannot run:".to_string()];
        p.extend(problems.into_iter().map(|l| format!("  {l}")));
        p.push("(build the plugins with `make plugins`, or pass --no-detectors)".into());
        return Err(p);
    }
    Ok(Prepared {
        bundle: Arc::new(bundle),
        catalog: Arc::new(catalog),
        sources,
    })
}

/// What every start of the daemon shares: at the first start and at each reload.
struct Starter {
    store: Store,
    /// One record of executions in flight for every daemon this process starts.
    in_flight: vigil_exec::InFlight,
    metrics: Arc<Metrics>,
    clock: vigil_core::Clock,
    trigger_mode: Option<vigil_bundle::model::TriggerMode>,
}

impl Starter {
    /// Starts the daemon for `p` and what the API serves from it.
    async fn start(
        &self,
        p: Prepared,
    ) -> std::result::Result<(vigil::daemon::Daemon, vigil::api::Serving), Vec<String>> {
        let narrator: vigil_core::story::Narrator = Arc::new(|s| log_story(&s));
        let comp = Composition::new(
            p.bundle,
            self.store.clone(),
            p.catalog,
            self.metrics.clone(),
        )
        .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?
        .with_narrator(Some(narrator))
        .with_in_flight(self.in_flight.clone());
        let daemon = vigil::daemon::Daemon::start(
            &comp,
            p.sources.clone(),
            self.metrics.clone(),
            vigil::daemon::DaemonOptions {
                clock: self.clock,
                trigger_mode: self.trigger_mode,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| vec![e.to_string()])?;
        let svc = daemon.service().clone();
        let ops = vigil::api::Operations {
            bundle: comp.bundle_arc(),
            // The daemon's own executor: cancels reach the runs it drives.
            automation: comp.automation(svc.executor().unwrap_or_else(|| comp.executor())),
            catalog: comp.catalog().clone(),
            stats: Some(daemon.stats.clone()),
            sources: p.sources,
            started_ms: vigil_core::now_ms(),
        };
        Ok((
            daemon,
            vigil::api::Serving {
                svc,
                ops: Some(Arc::new(ops)),
            },
        ))
    }
}

/// Re-reads the bundle and, when it is valid whole and no execution is running,
/// stops the daemon of the old one and starts the new one in its place, holding
/// requests back meanwhile. Refused, the old one goes on untouched. Audited either way.
#[allow(clippy::too_many_arguments)]
async fn reload(
    g: &Global,
    args: &ServeArgs,
    store_dir: &Path,
    start: &Starter,
    api: &Api,
    daemon: &mut Option<vigil::daemon::Daemon>,
    current: &mut Prepared,
    grace: std::time::Duration,
    by: &str,
) -> std::result::Result<serde_json::Value, vigil::api::ReloadRefused> {
    use vigil::api::ReloadRefused;
    use vigil_exec::record::{AuditEntry, ExecutionStore};
    let audit = |outcome: String| {
        let _ = start.store.audit(AuditEntry::new(
            by,
            vigil_core::audit::AuditAction::Reload,
            "bundle",
            outcome,
        ));
    };
    let result = async {
        let dir = g.bundle_dir().ok_or_else(|| ReloadRefused::Invalid(vec!["no vigil.yaml to reload".into()]))?;
        let bundle = Bundle::load(&dir).map_err(|e| ReloadRefused::Invalid(vec![format!("{}: {e}", dir.display())]))?;
        if bundle.has_errors() {
            return Err(ReloadRefused::Invalid(
                bundle.diagnostics.iter().filter(|d| d.is_error()).map(|d| format!("{}:{}:{}: {}{}", d.file.display(), d.line, d.col, d.message, d.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())).collect(),
            ));
        }
        if super::store_dir(g, Some(&bundle)) != store_dir {
            return Err(ReloadRefused::Invalid(vec![format!(
                "vigil.yaml store: names another store than the one this daemon holds ({}); restart to move it",
                store_dir.display()
            )]));
        }
        let (g2, args2) = (g.clone(), args.clone());
        let prepared = tokio::task::spawn_blocking(move || prepare(&g2, &args2, bundle))
            .await
            .map_err(|e| ReloadRefused::Invalid(vec![e.to_string()]))?
            .map_err(ReloadRefused::Invalid)?;
        // Policies compile before anything stops.
        vigil_policy::decide::PolicyEngine::load(&prepared.bundle.policies)
            .map_err(|e| ReloadRefused::Invalid(e.iter().map(ToString::to_string).collect()))?;
        let busy = api.serving().ops.as_ref().map(|o| o.automation.executor.in_flight()).unwrap_or_default();
        if !busy.is_empty() {
            return Err(ReloadRefused::Busy(format!(
                "executions {} are running; reload once they finish (or cancel them)",
                busy.join(", ")
            )));
        }
        let _held = api.hold_requests().await;
        if let Some(old) = daemon.take() {
            let _ = old.shutdown(grace).await;
        }
        let (new, serving) = match start.start(prepared.clone()).await {
            Ok(started) => started,
            Err(problems) => {
                // The new one would not start: the old one goes on as it was.
                let (old, serving) = start.start(current.clone()).await.map_err(ReloadRefused::Invalid)?;
                *daemon = Some(old);
                api.replace(serving);
                return Err(ReloadRefused::Invalid(problems));
            }
        };
        // The listener, tokens and limits were read at start; a change to them waits
        // for a restart, and the answer says so.
        let api_changed = serde_json::to_value(&current.bundle.config.api).ok()
            != serde_json::to_value(&prepared.bundle.config.api).ok();
        *current = prepared;
        let summary = json!({
            "reloaded": true,
            "restart_needed_for": if api_changed { vec!["api"] } else { Vec::new() },
            "runbooks": serving.ops.as_ref().map_or(0, |o| o.bundle.runbooks.len()),
            "detectors": new.started.detectors,
            "policies": serving.ops.as_ref().map_or(0, |o| o.bundle.policies.len()),
        });
        *daemon = Some(new);
        api.replace(serving);
        Ok(summary)
    }
    .await;
    match &result {
        Ok(summary) => audit(format!("reloaded: {summary}")),
        Err(e) => audit(format!("refused: {e}")),
    }
    let _ = start.store.sync().await;
    result
}

/// The API's settings from `vigil.yaml`'s `api:`, checked before anything starts.
fn api_config(
    doc: &vigil_bundle::model::ApiDoc,
    principals: Principals,
    grace: std::time::Duration,
) -> anyhow::Result<ApiConfig> {
    let d = ApiConfig::default();
    if doc.max_connections == Some(0) {
        return Err(invalid(
            "vigil.yaml api.max_connections: must be at least 1 (default 4096)",
        ));
    }
    for (name, t) in [
        ("header_read_timeout", doc.header_read_timeout),
        ("body_read_timeout", doc.body_read_timeout),
        ("idle_timeout", doc.idle_timeout),
    ] {
        if t.is_some_and(|t| t.as_std().is_zero()) {
            return Err(invalid(format!(
                "vigil.yaml api.{name}: must be longer than 0s (e.g. `10s`)"
            )));
        }
    }
    Ok(ApiConfig {
        principals,
        max_body_bytes: doc.max_body_bytes.unwrap_or(d.max_body_bytes),
        rate_limit: doc.rate_limit.unwrap_or(d.rate_limit),
        unauthenticated_rate_limit: doc
            .unauthenticated_rate_limit
            .unwrap_or(d.unauthenticated_rate_limit),
        max_connections: doc.max_connections.unwrap_or(d.max_connections),
        header_read_timeout: doc
            .header_read_timeout
            .map_or(d.header_read_timeout, |t| t.as_std()),
        body_read_timeout: doc
            .body_read_timeout
            .map_or(d.body_read_timeout, |t| t.as_std()),
        idle_timeout: doc.idle_timeout.map_or(d.idle_timeout, |t| t.as_std()),
        // Requests in progress at a shutdown share the grace with executions.
        shutdown_timeout: grace,
        ..d
    })
}

/// `vigil serve` logs the story through tracing (structured with `--log-format json`).
/// The store setting that holds the compressed clock a server ran on (`--speed`).
const COMPRESSED_CLOCK: &str = "compressed_clock";

fn log_story(s: &vigil_core::story::Story) {
    use vigil_core::story::Story;
    match s {
        Story::Detection {
            detector,
            alertname,
            labels,
            score,
            summary,
            resolved,
            ..
        } => {
            let service = labels.get("service").map_or("", String::as_str);
            tracing::info!(target: "vigil::story", detector = %detector, alertname = %alertname, service, score, resolved, "{summary}");
        }
        Story::Incident {
            id, change, detail, ..
        } => {
            tracing::info!(target: "vigil::story", incident = %id, change = %change, "{detail}");
        }
        Story::Decision {
            actor,
            action,
            subject,
            outcome,
            reason,
            ..
        } => {
            tracing::info!(target: "vigil::story", actor = %actor, action = %action, subject = %subject, outcome = %outcome, "{}", reason.as_deref().unwrap_or(""));
        }
        Story::Step {
            execution,
            runbook,
            step,
            transition,
            detail,
            ..
        } => {
            tracing::info!(target: "vigil::story", execution = %execution, runbook = %runbook, step = step.as_deref().unwrap_or(""), transition = %transition, "{}", detail.as_deref().unwrap_or(""));
        }
        Story::Notification {
            notifier,
            incident,
            ok,
            detail,
            ..
        } => {
            tracing::info!(target: "vigil::story", notifier = %notifier, incident = %incident, ok, "{detail}");
        }
    }
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn incidents(g: &Global, cmd: &IncidentsCommand) -> Result<ExitCode> {
    let p = Paint::new(g.color());
    match cmd {
        IncidentsCommand::List { open, limit } => {
            let list: Vec<Incident> = match target(g)? {
                Target::Local(store) => {
                    let mut v = store.incidents()?;
                    v.reverse();
                    v.into_iter()
                        .filter(|i| !*open || i.is_open())
                        .take(*limit)
                        .collect()
                }
                Target::Daemon(c) => {
                    let q = format!(
                        "/api/v1/incidents?limit={limit}{}",
                        if *open { "&status=open" } else { "" }
                    );
                    serde_json::from_value(c.call("GET", &q, None)?)?
                }
            };
            if g.json() {
                print_json(&list);
            } else if list.is_empty() {
                println!("no incidents");
            } else {
                for i in &list {
                    let status = match i.status {
                        IncidentStatus::Resolved => p.green(i.status.as_str()),
                        s => p.red(s.as_str()),
                    };
                    println!(
                        "{}  {:<12} {:<9} {}  {}",
                        p.bold(&i.id),
                        status,
                        i.severity,
                        clock(i.opened_ms),
                        visible(&i.title)
                    );
                }
            }
        }
        IncidentsCommand::Show { id } => {
            let (inc, events): (Incident, Vec<IncidentEvent>) = match target(g)? {
                Target::Local(store) => (
                    store
                        .incident(id)
                        .map_err(|_| invalid(format!("no incident `{id}`")))?,
                    store.incident_events(id)?,
                ),
                Target::Daemon(c) => {
                    let v = c.call("GET", &format!("/api/v1/incidents/{id}"), None)?;
                    (
                        serde_json::from_value(v["incident"].clone())?,
                        serde_json::from_value(v["events"].clone())?,
                    )
                }
            };
            if g.json() {
                print_json(&json!({"incident": inc, "events": events}));
            } else {
                print_incident(&p, &inc, &events);
            }
        }
        IncidentsCommand::Ack { id } => {
            let c = Client::new(g)?;
            let v = c.call(
                "POST",
                &format!("/api/v1/incidents/{id}/acknowledge"),
                Some(b"{}".to_vec()),
            )?;
            if g.json() {
                print_json(&v);
            } else {
                println!("{id} acknowledged");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_incident(p: &Paint, i: &Incident, events: &[IncidentEvent]) {
    println!("{}  {}", p.bold(&i.id), visible(&i.title));
    println!("  status    {}", i.status.as_str());
    println!("  severity  {}", i.severity);
    println!("  opened    {}", clock(i.opened_ms));
    if let Some(r) = &i.root_service {
        println!("  root      {}", p.yellow(&visible(r)));
    }
    if !i.services.is_empty() {
        println!("  services  {}", visible(&i.services.join(", ")));
    }
    println!("  alerts ({}):", i.alerts.len());
    for m in &i.alerts {
        let role = match m.role {
            vigil_alert::Role::RootCause => p.yellow("root cause"),
            vigil_alert::Role::Symptom => p.dim("symptom"),
        };
        println!(
            "    {} {:<28} {:<12} {:<8} {}",
            m.fingerprint,
            visible(&m.alertname),
            visible(m.service.as_deref().unwrap_or_default()),
            format!("{:?}", m.status).to_lowercase(),
            role
        );
    }
    for e in &i.executions {
        println!(
            "  runbook   {} ({}) → {}{}",
            e.runbook,
            e.mode,
            e.status,
            e.reason
                .as_ref()
                .map(|r| format!(": {}", visible(r)))
                .unwrap_or_default()
        );
    }
    for s in &i.similar {
        println!(
            "  similar   {} ({:.2}) {} {}",
            s.id,
            s.score,
            visible(&s.title),
            s.runbooks.join(", ")
        );
    }
    if !i.recommended_runbooks.is_empty() {
        println!(
            "  recommended runbooks: {}",
            i.recommended_runbooks.join(", ")
        );
    }
    println!("  journal:");
    for e in events {
        println!(
            "    {}  {:<12} {}",
            p.dim(&clock(e.ts_ms)),
            e.kind,
            visible(&e.detail)
        );
    }
}

pub fn silence(g: &Global, cmd: &SilenceCommand) -> Result<ExitCode> {
    match cmd {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
            author,
        } => {
            let mut m = serde_json::Map::new();
            for s in matchers {
                let (label, value) = split_matcher(s).ok_or_else(|| {
                    invalid(format!(
                        "`{s}`: write label=value, label!=value, label=~regex or label!~regex"
                    ))
                })?;
                m.insert(label, json!(value));
            }
            let body = json!({"matchers": m, "duration": duration, "comment": comment, "createdBy": author});
            let c = Client::new(g)?;
            let v = c.call("POST", "/api/v1/silences", Some(serde_json::to_vec(&body)?))?;
            if g.json() {
                print_json(&v);
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
            }
        }
        SilenceCommand::List => {
            let c = Client::new(g)?;
            let v = c.call("GET", "/api/v1/silences", None)?;
            if g.json() {
                print_json(&v);
            } else {
                for s in v.as_array().into_iter().flatten() {
                    let matchers: Vec<String> = s["matchers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            format!(
                                "{}{}{}",
                                m["label"].as_str().unwrap_or(""),
                                m["op"].as_str().unwrap_or(""),
                                m["value"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    println!(
                        "{}  {:<8} until {}  {}  {}",
                        s["id"].as_str().unwrap_or(""),
                        s["state"].as_str().unwrap_or(""),
                        clock(s["ends_at_ms"].as_i64().unwrap_or(0)),
                        matchers.join(","),
                        s["comment"].as_str().unwrap_or("")
                    );
                }
            }
        }
        SilenceCommand::Expire { id } => {
            let c = Client::new(g)?;
            let v = c.call("DELETE", &format!("/api/v1/silences/{id}"), None)?;
            if g.json() {
                print_json(&v);
            } else {
                println!("{id} expired");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `a=b`, `a!=b`, `a=~re`, `a!~re` → (label, value with its operator as `Matcher::parse` reads it).
fn split_matcher(s: &str) -> Option<(String, String)> {
    for op in ["!=", "=~", "!~", "="] {
        if let Some(i) = s.find(op) {
            let label = s[..i].trim();
            if label.is_empty() {
                return None;
            }
            let value = &s[i + op.len()..];
            let written = if op == "=" {
                format!("={value}")
            } else {
                format!("{op}{value}")
            };
            return Some((label.to_string(), written));
        }
    }
    None
}

pub fn alerts(g: &Global, cmd: &AlertsCommand) -> Result<ExitCode> {
    match cmd {
        AlertsCommand::Send { file, events } => {
            let body = read(file)?;
            let c = Client::new(g)?;
            let path = if *events {
                "/api/v1/events"
            } else {
                "/api/v1/alerts"
            };
            let v = c.call("POST", path, Some(body))?;
            if g.json() {
                print_json(&v);
            } else {
                println!(
                    "stored {} alert(s): {} new, {} deduplicated",
                    v["received"], v["new"], v["deduplicated"]
                );
            }
        }
        AlertsCommand::List => {
            let c = Client::new(g)?;
            let v = c.call("GET", "/api/v1/alerts", None)?;
            if g.json() {
                print_json(&v);
            } else {
                for a in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<8} x{:<4} {}",
                        a["fingerprint"].as_str().unwrap_or(""),
                        a["status"].as_str().unwrap_or(""),
                        a["count"],
                        a["labels"]
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}
