//! `vigil serve`, `vigil incidents`, `vigil silence`, `vigil alerts send`.

use super::client::Client;
use super::{Global, Paint, clock, invalid};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vigil::api::{Api, ApiConfig, Principals};
use vigil::compose::Composition;
use vigil_alert::store::AlertStore;
use vigil_alert::{Incident, IncidentEvent};
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
    let (catalog, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|_| {})?;
    let detectors = if args.no_detectors {
        Vec::new()
    } else {
        bundle.detectors.clone()
    };
    let problems = vigil_runtime::runner::check(&detectors, &sources);
    if !problems.is_empty() {
        return Err(invalid(format!(
            "the bundle's detectors cannot run:\n  {}\n(build the plugins with `make plugins`, or pass --no-detectors)",
            problems.join("\n  ")
        )));
    }
    let catalog = Arc::new(catalog);
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
        let narrator: vigil_core::story::Narrator = Arc::new(|s| log_story(&s));
        let mut bundle_for_daemon = bundle;
        if args.no_detectors {
            bundle_for_daemon.detectors.clear();
        }
        let comp = Composition::new(
            Arc::new(bundle_for_daemon),
            store.clone(),
            catalog,
            metrics.clone(),
        )
        .map_err(|e| invalid(e.to_string()))?
        .with_narrator(Some(narrator));
        let daemon = vigil::daemon::Daemon::start(
            &comp,
            sources,
            metrics,
            vigil::daemon::DaemonOptions {
                clock,
                trigger_mode: args.runbooks.map(RunbooksMode::mode),
                ..Default::default()
            },
        )
        .await?;
        let svc = daemon.service().clone();
        let listener = vigil::api::bind(&listen)
            .await
            .map_err(|e| invalid(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        // Signal handlers go in before "listening" is printed: a supervisor (or a test)
        // may send SIGTERM the moment it reads that line, and an unhandled one kills
        // the process instead of shutting it down.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let ctrl_c = tokio::signal::ctrl_c();
        let started = &daemon.started;
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
        let ops = vigil::api::Operations {
            bundle: comp.bundle_arc(),
            // The daemon's own executor: cancels reach the runs it drives.
            automation: comp.automation(svc.executor().unwrap_or_else(|| comp.executor())),
            catalog: comp.catalog().clone(),
            stats: Some(daemon.stats.clone()),
            started_ms: vigil_core::now_ms(),
        };
        let beacon = super::client::Beacon::write(&dir, addr);
        vigil::api::serve(listener, Api::operating(svc, api_cfg, Some(ops)), shutdown).await?;
        drop(beacon);
        tracing::info!("API stopped");
        let left = signalled
            .get()
            .map_or(grace.as_std(), |t| grace.as_std().saturating_sub(t.elapsed()));
        let stopped = daemon.shutdown(left).await?;
        tracing::info!(drained = stopped.drained, "pipeline stopped and the store flushed");
        if !stopped.drained {
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
            let list: Vec<Incident> = match super::client::target(g)?.local() {
                Some(store) => {
                    let mut v = store.incidents()?;
                    v.reverse();
                    v.into_iter()
                        .filter(|i| !*open || i.is_open())
                        .take(*limit)
                        .collect()
                }
                None => {
                    let c = Client::new(g)?;
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
                    let status = match i.status.as_str() {
                        "resolved" => p.green("resolved"),
                        s => p.red(s),
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
            let (inc, events): (Incident, Vec<IncidentEvent>) =
                match super::client::target(g)?.local() {
                    Some(store) => (
                        store
                            .incident(id)
                            .map_err(|_| invalid(format!("no incident `{id}`")))?,
                        store.incident_events(id)?,
                    ),
                    None => {
                        let c = Client::new(g)?;
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
