//! `vigil demo`: the closed loop on the embedded default bundle, narrated.
//!
//! It starts the demo's service supervisor on 127.0.0.1:9798 (the target the
//! bundled remediations call), runs the daemon — detectors over the simulated shop,
//! the alert pipeline, policies, the executor — on a compressed clock, approves what
//! waits for a human as the on-call engineer would, and prints the story with
//! timestamps until every incident is resolved (or the time is up). The store is
//! `.vigil/demo`, made anew each time so the story is the same.

mod supervisor;

use super::{Global, Paint};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::compose::Composition;
use vigil_alert::IncidentStatus;
use vigil_alert::store::AlertStore;
use vigil_bundle::model::TriggerMode;
use vigil_core::Clock;
use vigil_core::audit::AuditAction;
use vigil_core::journal::EventKind;
use vigil_core::story::Story;
use vigil_exec::record::ExecutionStore;
use vigil_runtime::store::DetectorStore;
use vigil_store::Store;
use vigil_telemetry::Metrics;

pub const SUPERVISOR: &str = "127.0.0.1:9798";

/// When the story happens on the sim's own clock: a Tuesday, 10:00 UTC. Its day's
/// cycles, noise and host failures are then the same whenever the demo runs.
const STORY_AT_MS: i64 = 1_767_693_600_000;

/// The simulated shop's story, by the root alert of each incident: checkout's leak,
/// the latency cascade from postgres, and inventory's coming failure. The demo ends
/// when each has had its incident and every incident is resolved.
const STORY: [(&str, &str); 3] = [
    ("MemoryLeak", "checkout"),
    ("LatencyHigh", "postgres"),
    ("HostFailurePredicted", "inventory"),
];

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Simulated seconds per wall second.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Stop after this long (wall clock) even if incidents are still open.
    #[arg(long, default_value = "110s")]
    pub timeout: String,
    /// Seconds the simulated on-call engineer takes to approve. The cascade reaches
    /// postgres' dependents 1, 2 and 3 simulated minutes after it (wall seconds at the
    /// default speed): an approval after 1, 2 or 3 s comes in the same instant as a
    /// dependent's alert, and either can be first. After 4 s every dependent's alert
    /// has joined the incident a second before the failover.
    #[arg(long, default_value_t = 4.0)]
    pub approve_after: f64,
}

/// Facts the summary needs, gathered from the story.
#[derive(Default)]
struct Tally {
    detections: usize,
    first_detection: BTreeMap<String, i64>,
    incidents_opened: BTreeMap<String, i64>,
    resolved: BTreeMap<String, i64>,
    approvals: usize,
}

pub fn run(g: &Global, args: &DemoArgs) -> Result<ExitCode> {
    let p = Paint::new(g.color());
    let timeout = vigil_core::duration::Duration::parse(&args.timeout)
        .map_err(|e| {
            super::invalid(format!(
                "--timeout {}: {}; {}",
                args.timeout,
                e.message,
                vigil_core::duration::DURATION_HINT
            ))
        })?
        .as_std();
    let dir = g.bundle_dir().ok_or_else(|| {
        super::invalid("no vigil.yaml here or in runbooks/; run the demo from the repository")
    })?;
    let bundle = vigil_bundle::Bundle::load(&dir)
        .with_context(|| format!("reading bundle {}", dir.display()))?;
    if bundle.has_errors() {
        super::validate::print_diagnostics(g, &bundle);
        return Err(super::invalid(
            "the bundle has problems; `vigil validate` lists them",
        ));
    }
    println!(
        "{} {} runbooks, {} detectors, {} policies in {} — valid",
        p.bold("vigil demo:"),
        bundle.runbooks.len(),
        bundle.detectors.len(),
        bundle.policies.len(),
        dir.display()
    );

    // The simulated shop's story is anchored here (a whole minute, so the sim's
    // sample grid is the detectors'); the compressed clock starts from it once the
    // failure model is trained. The sim replays its story at the same simulated hour
    // every run, so every run sees the same data.
    let origin = vigil_core::now_ms().div_euclid(60_000) * 60_000;
    let clock_offset = origin - STORY_AT_MS;
    let supervisor_url = format!("http://{SUPERVISOR}");
    let (catalog, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|cfgs| {
        for c in cfgs.iter_mut().filter(|c| c.plugin_name() == "sim") {
            if !c.config.is_object() {
                c.config = serde_json::json!({});
            }
            if let Some(obj) = c.config.as_object_mut() {
                obj.insert("anchor_ms".into(), origin.into());
                obj.insert("clock_offset_ms".into(), clock_offset.into());
                obj.insert("supervisor".into(), supervisor_url.clone().into());
            }
            c.grants.http.push(
                serde_json::from_value(serde_json::json!({
                    "url": format!("{supervisor_url}/services/*"), "methods": ["GET"]
                }))
                .expect("a valid grant"),
            );
        }
    })?;
    let truth_sources = sources.clone();
    let problems = vigil_runtime::runner::check(&bundle.detectors, &sources);
    if !problems.is_empty() {
        return Err(super::invalid(format!(
            "the detectors cannot run:\n  {}\n(`make plugins` builds the plugins)",
            problems.join("\n  ")
        )));
    }

    let store_dir = super::store_dir(g, None).join("demo");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)
            .with_context(|| format!("clearing {}", store_dir.display()))?;
    }
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store at {}", store_dir.display()))?;
    // The failure model learns from the fleet's past first: it must serve before the
    // story starts (a classifier with no promoted model predicts nothing). The
    // story's clock starts after, at the anchor of the simulated shop.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut learnt = Vec::new();
    for d in bundle.detectors.iter().filter(|d| !d.features.is_empty()) {
        let Some(source) = truth_sources.get(&d.source) else {
            continue;
        };
        let r = rt
            .block_on(vigil::learn::retrain(
                &store,
                d,
                source.as_ref(),
                origin,
                true,
            ))
            .map_err(|e| anyhow::anyhow!("training the model of detector `{}`: {e}", d.name))?;
        learnt.push(format!(
            "{} trained on the fleet's past ({} examples from {} hosts, {} failures): hold-out precision {:.2}, recall {:.2} — a threshold on one metric manages F1 {:.2}, the model {:.2}; {}",
            r.model,
            r.examples,
            r.hosts,
            r.failures,
            r.candidate.precision,
            r.candidate.recall,
            r.baseline.f1,
            r.candidate.f1,
            if r.promoted { "serving" } else { "not serving" }
        ));
    }
    let start_wall = Instant::now();
    let clock = Clock::scaled(origin, args.speed);
    let print = {
        let p = Paint::new(g.color());
        move |kind: &str, text: &str| {
            let wall = start_wall.elapsed().as_secs_f64();
            let sim = chrono::DateTime::from_timestamp_millis(clock.now_ms())
                .map(|t| t.format("%H:%M").to_string())
                .unwrap_or_default();
            let tag = match kind {
                "detect" | "learn" => p.yellow(&format!("{kind:<9}")),
                "incident" => p.red(&format!("{kind:<9}")),
                "policy" | "approve" => p.cyan(&format!("{kind:<9}")),
                "step" => p.green(&format!("{kind:<9}")),
                _ => p.dim(&format!("{kind:<9}")),
            };
            println!(
                "{} {tag} {text}",
                p.dim(&format!("[{wall:5.1}s sim {sim}]"))
            );
        }
    };
    let print = Arc::new(print);
    let target_print = print.clone();
    let supervisor = supervisor::start(
        SUPERVISOR,
        Arc::new(move || clock.now_ms()),
        Arc::new(move |line| target_print("target", &line)),
    )
    .map_err(|e| {
        super::invalid(format!(
            "cannot start the demo's supervisor on {SUPERVISOR}: {e} (is another demo running?)"
        ))
    })?;

    println!(
        "  the shop: frontend → checkout → payments, inventory → postgres, simulated at {}× \
         (one wall second is {} simulated); supervisor on http://{SUPERVISOR}; store {}",
        args.speed,
        human_secs(args.speed),
        store_dir.display()
    );

    for line in &learnt {
        print("learn", line);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let bundle = Arc::new(bundle);
    let summary = rt.block_on(async {
        let (narrator, mut rx) = vigil_telemetry::story_channel(4096);
        let metrics = Arc::new(Metrics::new());
        let comp = Composition::new(
            bundle.clone(),
            store.clone(),
            Arc::new(catalog),
            metrics.clone(),
        )
        .map_err(|e| super::invalid(e.to_string()))?
        .with_narrator(Some(narrator));
        let daemon = vigil::daemon::Daemon::start(
            &comp,
            sources,
            metrics.clone(),
            vigil::daemon::DaemonOptions {
                clock,
                trigger_mode: Some(TriggerMode::Live),
                ..Default::default()
            },
        )
        .await?;
        print(
            "start",
            &format!(
                "{} detectors scheduled; learning from 6 h of history first",
                daemon.started.detectors
            ),
        );
        let svc = daemon.service().clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut settled_at: Option<tokio::time::Instant> = None;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), rx.recv());
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    print("timeout", "time is up; stopping with incidents still open");
                    break;
                }
                s = next => {
                    if let Ok(Some(s)) = s {
                        narrate(&s, print.as_ref(), &tally, &svc, args.approve_after);
                    }
                }
            }
            // Done when every incident is resolved (and at least one was), after a
            // moment for the last lines of the story to arrive.
            let incidents = svc.incidents(false, 100);
            let all_resolved = !incidents.is_empty()
                && incidents
                    .iter()
                    .all(|i| i.status == IncidentStatus::Resolved);
            let told = STORY.iter().all(|(alert, service)| {
                incidents.iter().any(|i| {
                    i.labels.get("alertname").map(String::as_str) == Some(*alert)
                        && i.root_service.as_deref() == Some(*service)
                })
            });
            match (all_resolved && told, settled_at) {
                (true, None) => settled_at = Some(tokio::time::Instant::now()),
                (true, Some(t)) if t.elapsed() > Duration::from_millis(800) => break,
                (false, _) => settled_at = None,
                _ => {}
            }
        }
        while let Ok(s) = rx.try_recv() {
            narrate(&s, print.as_ref(), &tally, &svc, args.approve_after);
        }
        let incidents = svc.incidents(false, 100);
        let alerts = metrics_value(&metrics.render(), "vigil_alerts_received_total");
        daemon.shutdown(Duration::from_secs(10)).await?;
        // The detectors' predictions against what the simulation says happened.
        let predictions = store.predictions()?;
        let quality = vigil::daemon::evaluate(
            &bundle.detectors,
            &truth_sources,
            vigil::daemon::Record {
                predictions: &predictions,
                forecasts: &store.forecasts()?,
                incidents: &store.incidents()?,
            },
            15 * 60_000,
            origin,
            clock.now_ms(),
        )
        .await;
        Ok::<_, anyhow::Error>((incidents, alerts, quality))
    })?;
    let (incidents, alerts, quality) = summary;
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let log = supervisor.lock().unwrap_or_else(|p| p.into_inner());

    println!("\n{}", p.bold("== summary"));
    let minutes = |ms: i64| {
        let s = (ms.max(0) + 500) / 1000;
        format!("{}m{:02}s simulated", s / 60, s % 60)
    };
    let mut firsts: Vec<(&String, &i64)> = t.first_detection.iter().collect();
    firsts.sort_by_key(|(_, at)| **at);
    for (key, at) in firsts {
        println!(
            "  first detection of {key}: {} after the start",
            minutes(at - origin)
        );
    }
    for q in quality
        .iter()
        .flatten()
        .filter(|q| q.anomalies > 0 || q.episodes > 0)
    {
        let predicts_failures = bundle
            .detectors
            .iter()
            .any(|d| d.name == q.detector && !d.features.is_empty());
        if predicts_failures {
            println!(
                "  detector {}: predicted {} of {} failures ({} averted by remediation), {} of {} alarms true{}",
                q.detector,
                q.detected,
                q.anomalies,
                q.averted,
                q.true_episodes,
                q.episodes,
                q.median_lead_ms
                    .map(|l| format!(", median lead {} before the failure", minutes(l)))
                    .unwrap_or_default()
            );
            continue;
        }
        println!(
            "  detector {}: caught {} of {} injected anomalies{}, {} of {} alarms true{}",
            q.detector,
            q.detected,
            q.anomalies,
            if q.pending > 0 {
                format!(" ({} still in its window)", q.pending)
            } else {
                String::new()
            },
            q.true_episodes,
            q.episodes,
            q.median_delay_ms
                .map(|d| format!(", median delay {} after onset", minutes(d)))
                .unwrap_or_default()
        );
        for (at, kind, series) in &q.missed {
            println!(
                "      missed: {kind} on {series} at {} after the start",
                minutes(at - origin)
            );
        }
    }
    println!(
        "  {} detections → {} alerts received → {} incidents ({:.0}% less to look at)",
        t.detections,
        alerts,
        incidents.len(),
        if alerts > 0.0 {
            100.0 * (1.0 - incidents.len() as f64 / alerts)
        } else {
            0.0
        }
    );
    for inc in incidents.iter().rev() {
        let ttr = t
            .resolved
            .get(&inc.id)
            .zip(t.incidents_opened.get(&inc.id))
            .map(|(r, o)| format!("resolved {} after it opened", minutes(r - o)))
            .unwrap_or_else(|| inc.status.as_str().to_string());
        println!(
            "  {} {} — root cause {}, {} symptom alert(s); {ttr}",
            inc.id,
            inc.title,
            inc.root_service.as_deref().unwrap_or("?"),
            inc.alerts.len().saturating_sub(1)
        );
    }
    println!(
        "  effects on the target: {}; {} approval(s); {} chat message(s)",
        if log.effects.is_empty() {
            "none".to_string()
        } else {
            log.effects.join(", ")
        },
        t.approvals,
        log.chat.len()
    );
    let all_resolved = !incidents.is_empty()
        && incidents
            .iter()
            .all(|i| i.status == IncidentStatus::Resolved);
    println!("\n{}", p.bold("== where to look next"));
    let steps = next_steps(&store_dir, args.speed);
    let width = steps
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    for (command, what) in &steps {
        println!("  {command:<width$}  {}", p.dim(&format!("# {what}")));
    }
    Ok(if all_resolved {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The commands the demo ends with, each to be run as printed, from here, once the
/// demo is over (no server running): (command, what it shows).
fn next_steps(store_dir: &std::path::Path, speed: f64) -> Vec<(String, &'static str)> {
    let vigil = invoked_as();
    let store = format!("--store {}", shell_word(&store_dir.display().to_string()));
    vec![
        (
            format!("{vigil} incidents list {store}"),
            "the incidents, newest first; `incidents show ID` for one",
        ),
        (
            format!("{vigil} executions list {store}"),
            "every execution; `executions show ID` for its journal",
        ),
        (format!("{vigil} audit {store}"), "who or what decided what"),
        (
            format!("{vigil} model list {store}"),
            "the failure model's versions",
        ),
        (
            format!("{vigil} model retrain host-failure {store}"),
            "trains the next version from what happened; promoted if better",
        ),
        (
            format!("VIGIL_TOKEN=demo {vigil} serve {store} --speed {speed}"),
            "the same loop as a server (runbooks dry-run): the console at http://127.0.0.1:9797/ (log in with the token demo), /metrics, /api/v1/incidents",
        ),
    ]
}

/// How to call this vigil again from here: as it was called when that was a path
/// (`target/debug/vigil` from `make demo`), else by name.
fn invoked_as() -> String {
    match std::env::args_os().next().map(std::path::PathBuf::from) {
        Some(p) if p.components().count() > 1 => shell_word(&p.display().to_string()),
        _ => "vigil".into(),
    }
}

/// `s` as one shell word: as is when it needs no quoting, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn human_secs(speed: f64) -> String {
    let s = speed;
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

fn metrics_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Prints one event of the story (leaving out the routine ones) and acts as the
/// on-call engineer when an execution waits for approval.
fn narrate(
    s: &Story,
    print: &(dyn Fn(&str, &str) + Send + Sync),
    tally: &Arc<Mutex<Tally>>,
    svc: &Arc<vigil_alert::AlertService>,
    approve_after: f64,
) {
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    match s {
        Story::Detection {
            detector,
            alertname,
            labels,
            score,
            summary,
            resolved,
            at_ms,
            ..
        } => {
            t.detections += 1;
            let service = labels.get("service").map_or("?", String::as_str);
            let key = format!("{alertname} on {service}");
            if *resolved {
                print("detect", &format!("{key}: back to normal ({detector})"));
            } else if !t.first_detection.contains_key(&key) {
                t.first_detection.insert(key.clone(), *at_ms);
                print(
                    "detect",
                    &format!("{key} — score {score:.2}: {summary} ({detector})"),
                );
            }
        }
        Story::Incident {
            id,
            change,
            detail,
            at_ms,
        } => {
            match change.as_str() {
                "opened" => {
                    t.incidents_opened.entry(id.clone()).or_insert(*at_ms);
                }
                "resolved" => {
                    t.resolved.entry(id.clone()).or_insert(*at_ms);
                }
                _ => {}
            }
            print("incident", &format!("{id} {change}: {detail}"));
        }
        Story::Decision {
            actor,
            action,
            subject,
            outcome,
            reason,
            ..
        } => match action {
            AuditAction::Decide => print(
                "policy",
                &format!(
                    "{actor} on {subject}: {outcome} — {}",
                    reason.as_deref().unwrap_or("")
                ),
            ),
            AuditAction::Approve | AuditAction::Reject => print(
                "approve",
                &format!("{actor} {action}s {subject}: {outcome}"),
            ),
            AuditAction::Run => {}
            _ => print("policy", &format!("{actor} {action} {subject}: {outcome}")),
        },
        Story::Step {
            execution,
            runbook,
            step,
            transition,
            detail,
            output,
            ..
        } => {
            let what = match (step, transition) {
                (None, EventKind::ExecutionStarted) => {
                    Some(format!("{execution} {runbook} started"))
                }
                (None, EventKind::ExecutionFinished) => Some(format!(
                    "{execution} {runbook} finished: {}",
                    detail.as_deref().unwrap_or("")
                )),
                (
                    Some(step),
                    EventKind::Started
                    | EventKind::Skipped
                    | EventKind::Failed
                    | EventKind::Retrying
                    | EventKind::Approved
                    | EventKind::Rejected
                    | EventKind::Compensated
                    | EventKind::InDoubt,
                ) => Some(format!(
                    "{execution} {step}: {transition}{}",
                    detail
                        .as_deref()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                )),
                (Some(step), EventKind::Succeeded) => Some(format!(
                    "{execution} {step}: succeeded{}",
                    output
                        .as_ref()
                        .map(|o| format!(" → {}", short(o)))
                        .unwrap_or_default()
                )),
                (Some(step), EventKind::AwaitingApproval) => {
                    t.approvals += 1;
                    let (svc, id) = (svc.clone(), execution.clone());
                    let wait = Duration::from_secs_f64(approve_after.max(0.0));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        // The on-call person the policy named approves, as they would.
                        let who = svc
                            .store()
                            .execution(&id)
                            .ok()
                            .and_then(|r| r.approvers.first().cloned())
                            .unwrap_or_else(|| "alice".into());
                        if let Err(e) = svc
                            .decide_approval(
                                &id,
                                true,
                                &who,
                                Some("looked at the plan; go (demo)"),
                                None,
                            )
                            .await
                        {
                            tracing::error!(execution = %id, "demo approval: {e}");
                        }
                    });
                    Some(format!(
                        "{execution} {step}: awaiting approval — the on-call engineer approves in {approve_after:.0} s, as `vigil executions approve` does"
                    ))
                }
                _ => None,
            };
            if let Some(w) = what {
                print("step", &w);
            }
        }
        Story::Notification {
            notifier,
            ok,
            detail,
            ..
        } => print(
            "notify",
            &format!(
                "{notifier} {}: {detail}",
                if *ok { "sent" } else { "FAILED" }
            ),
        ),
    }
}

fn short(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}
