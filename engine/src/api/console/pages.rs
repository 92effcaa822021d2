//! The console's pages, each rendered from what the API reads: the alert service
//! (incidents, alerts, silences), the store (executions, journals, the audit log,
//! detections and forecasts) and `ops` (status, audit queries). A button shows only
//! when the session's role may do what it does, and the server checks again.

use super::graph::{self, Node};
use super::html::{Nav, badge, button, csrf, esc, json_block, page, seg, span, time};
use super::plot;
use super::session::Session;
use super::{Form, html_type, problem};
use crate::api::principals::{allows, need};
use crate::api::{Api, ApiError};
use crate::ops::{self, AuditQuery};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use vigil_alert::{Incident, IncidentStatus, Role as MemberRole, Silence};
use vigil_core::audit::AuditAction;
use vigil_exec::record::{
    AuditEntry, Event, EventKind, ExecStatus, ExecutionRecord, ExecutionStore,
};
use vigil_runtime::store::DetectorStore;

fn html(title: &str, nav: Nav, s: &Session, main_attrs: &str, body: &str) -> Response {
    (
        StatusCode::OK,
        html_type(),
        page(title, nav, Some(s), main_attrs, body),
    )
        .into_response()
}

/// Whether the session's role may post to `path` (the API route of the same name).
fn can(s: &Session, path: &str) -> bool {
    allows(s.caller.role, need(&Method::POST, path))
}

/// An API error as a page with its status.
async fn failed(e: ApiError, s: &Session) -> Response {
    super::refused_page(e.into_response(), Some(s)).await
}

fn status_badge(status: &str) -> String {
    badge(&format!("st-{status}"), status)
}

fn severity_badge(sev: &str) -> String {
    let class = match vigil_alert::severity_rank(sev) {
        5 | 4 => "sev-critical",
        3 => "sev-warning",
        _ => "sev-info",
    };
    badge(class, sev)
}

fn exec_link(id: &str) -> String {
    format!(
        "<a href=\"/console/executions/{}\"><code>{}</code></a>",
        seg(id),
        esc(id)
    )
}

fn incident_link(id: &str) -> String {
    format!(
        "<a href=\"/console/incidents/{}\"><code>{}</code></a>",
        seg(id),
        esc(id)
    )
}

// ---------------------------------------------------------------- incidents

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IncidentsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Root cause and symptoms of an incident, as short text.
fn cause_and_symptoms(inc: &Incident) -> (String, String) {
    let root: Vec<String> = inc
        .alerts
        .iter()
        .filter(|m| m.role == MemberRole::RootCause)
        .map(|m| match &m.service {
            Some(s) => format!("{} on {s}", m.alertname),
            None => m.alertname.clone(),
        })
        .collect();
    let root = if root.is_empty() {
        inc.root_service.clone().unwrap_or_else(|| "—".into())
    } else {
        root.join(", ")
    };
    let symptoms: BTreeSet<String> = inc
        .alerts
        .iter()
        .filter(|m| m.role == MemberRole::Symptom)
        .map(|m| match &m.service {
            Some(s) => format!("{} on {s}", m.alertname),
            None => m.alertname.clone(),
        })
        .collect();
    let n = symptoms.len();
    let mut shown: Vec<String> = symptoms.into_iter().take(3).collect();
    if n > 3 {
        shown.push(format!("+{} more", n - 3));
    }
    (root, shown.join(", "))
}

/// The executions of the store by id (status) and by (incident, runbook): an
/// incident records its execution's id only once the run ends or waits, so a
/// running one is found by what it was started for.
#[derive(Default)]
struct Runs {
    status: std::collections::HashMap<String, ExecStatus>,
    by_incident: std::collections::HashMap<(String, String), String>,
}

impl Runs {
    fn load(api: &Api) -> Runs {
        let mut runs = Runs::default();
        for r in api.svc().store().executions().unwrap_or_default() {
            if let Some(inc) = r.incident["id"].as_str() {
                runs.by_incident
                    .entry((inc.to_string(), r.runbook.clone()))
                    .or_insert_with(|| r.id.clone());
            }
            runs.status.insert(r.id, r.status);
        }
        runs
    }

    /// The execution a triggered runbook became, and how it stands now.
    fn of(&self, inc: &Incident, t: &vigil_alert::Triggered) -> (Option<String>, String) {
        let id = t.execution.clone().or_else(|| {
            (t.mode == vigil_alert::RunMode::Live)
                .then(|| {
                    self.by_incident
                        .get(&(inc.id.clone(), t.runbook.clone()))
                        .cloned()
                })
                .flatten()
        });
        let status = id
            .as_ref()
            .and_then(|id| self.status.get(id))
            .map_or_else(|| t.status.as_str().to_string(), |s| s.as_str().to_string());
        (id, status)
    }
}

/// The runbooks an incident triggered, each with how it stands now.
fn runbooks_cell(runs: &Runs, inc: &Incident) -> String {
    let mut out = String::new();
    for t in &inc.executions {
        let (id, status) = runs.of(inc, t);
        let _ = write!(out, "<div>{} ", esc(&t.runbook));
        if t.mode == vigil_alert::RunMode::DryRun {
            out.push_str(&badge("st-dry_run", "dry run"));
            out.push(' ');
        }
        out.push_str(&status_badge(&status));
        if let Some(id) = &id {
            let _ = write!(out, " {}", exec_link(id));
        }
        out.push_str("</div>");
    }
    if out.is_empty() {
        out.push_str("<span class=\"dim\">none</span>");
    }
    out
}

pub(super) async fn incidents(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    uri: Uri,
) -> Response {
    let q: IncidentsQuery = match crate::api::operate::query(&uri) {
        Ok(q) => q,
        Err(e) => return failed(e, &s).await,
    };
    let open_only = q.status.as_deref() == Some("open");
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = api.svc().incidents(open_only, limit);
    let mut b = String::with_capacity(list.len() * 700 + 2048);
    let _ = write!(
        b,
        "<h1>Incidents</h1><p class=\"dim\">{} {} incident(s), newest first. \
         <a href=\"/console/incidents?status=open\">Open only</a> · <a href=\"/console/incidents\">All</a> · \
         <a href=\"/console/incidents?status={}&amp;limit={}\">More</a></p>",
        if open_only {
            "Open:"
        } else {
            "Open and recent:"
        },
        list.len(),
        if open_only { "open" } else { "all" },
        (limit * 5).min(1000)
    );
    if list.is_empty() {
        b.push_str("<div class=\"panel\"><p>No incidents. Alerts sent to <code>POST /api/v1/alerts</code> (Alertmanager's webhook) or found by detectors become incidents here.</p></div>");
        return html("Incidents", Nav::Incidents, &s, "", &b);
    }
    let may_ack = can(&s, "/console/incidents/x/acknowledge");
    let runs = Runs::load(&api);
    b.push_str(
        "<div class=\"scroll\"><table id=\"incidents\"><thead><tr><th>Severity</th><th>Incident</th><th>Status</th>\
         <th>Root cause → symptoms</th><th class=\"hide-narrow\">Alerts</th><th>Runbooks</th><th class=\"hide-narrow\">Opened</th><th><span class=\"skip\">Actions</span></th></tr></thead><tbody>",
    );
    for inc in &list {
        let (root, symptoms) = cause_and_symptoms(inc);
        let _ = write!(
            b,
            "<tr data-incident=\"{}\"><td>{}</td><td><a href=\"/console/incidents/{}\">{}</a><div class=\"dim small\"><code>{}</code></div></td>\
             <td>{}</td><td><strong>{}</strong>{}</td><td class=\"hide-narrow\">{}</td><td>{}</td><td class=\"hide-narrow small\">{}</td><td>",
            esc(&inc.id),
            severity_badge(&inc.severity),
            seg(&inc.id),
            esc(&inc.title),
            esc(&inc.id),
            status_badge(inc.status.as_str()),
            esc(&root),
            if symptoms.is_empty() {
                String::new()
            } else {
                format!("<div class=\"small dim\">→ {}</div>", esc(&symptoms))
            },
            inc.alerts.len(),
            runbooks_cell(&runs, inc),
            esc(&time(inc.opened_ms)),
        );
        if may_ack && inc.status == IncidentStatus::Open {
            let _ = write!(
                b,
                "<form class=\"inline\" method=\"post\" action=\"/console/incidents/{}/acknowledge\">{}\
                 <input type=\"hidden\" name=\"back\" value=\"/console/incidents\"><button type=\"submit\">Acknowledge</button></form>",
                seg(&inc.id),
                csrf(&s)
            );
        }
        b.push_str("</td></tr>");
    }
    b.push_str("</tbody></table></div>");
    html("Incidents", Nav::Incidents, &s, "", &b)
}

pub(super) async fn incident(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let (inc, events) = match api.svc().incident(&id) {
        Ok(x) => x,
        Err(e) => return failed(e.into(), &s).await,
    };
    let mut b = String::with_capacity(8192);
    let _ = write!(
        b,
        "<h1>{} {} {}</h1>",
        severity_badge(&inc.severity),
        esc(&inc.title),
        status_badge(inc.status.as_str())
    );
    if can(&s, "/console/incidents/x/acknowledge") && inc.status == IncidentStatus::Open {
        let _ = write!(
            b,
            "<p>{}</p>",
            button(
                &s,
                &format!("/console/incidents/{}/acknowledge", seg(&inc.id)),
                "Acknowledge",
                "primary"
            )
        );
    }
    let (root, symptoms) = cause_and_symptoms(&inc);
    let labels: Vec<String> = inc.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = write!(
        b,
        "<div class=\"panel\"><dl><dt>Id</dt><dd><code>{}</code></dd><dt>Opened</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd>\
         <dt>Resolved</dt><dd>{}</dd><dt>Root cause</dt><dd>{}</dd><dt>Symptoms</dt><dd>{}</dd><dt>Services</dt><dd>{}</dd><dt>Labels</dt><dd><code>{}</code></dd></dl></div>",
        esc(&inc.id),
        esc(&time(inc.opened_ms)),
        esc(&time(inc.updated_ms)),
        inc.resolved_ms
            .map_or_else(|| "—".into(), |t| esc(&time(t))),
        esc(&root),
        if symptoms.is_empty() {
            "—".into()
        } else {
            esc(&symptoms)
        },
        esc(&inc.services.join(", ")),
        esc(&labels.join(", ")),
    );
    // The services involved and what depends on what (the bundle's `services:`).
    if inc.services.len() > 1
        && let Some(ops) = api.serving().ops.clone()
    {
        let deps = &ops.bundle.config.services;
        let needs: Vec<Vec<usize>> = inc
            .services
            .iter()
            .map(|svc| {
                deps.get(svc)
                    .map(|d| {
                        d.iter()
                            .filter_map(|x| inc.services.iter().position(|y| y == x))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let nodes: Vec<Node<'_>> = inc
            .services
            .iter()
            .map(|svc| {
                let root = inc.root_service.as_deref() == Some(svc.as_str());
                Node {
                    id: svc,
                    sub: "",
                    state: if root { "failed" } else { "pending" },
                    label: if root { "root cause" } else { "symptom" },
                    class: if root { "root" } else { "" },
                    href: None,
                }
            })
            .collect();
        let _ = write!(
            b,
            "<h2>Services</h2><div class=\"panel scroll\">{}<p class=\"dim small\">Arrows go from a service to those that depend on it.</p></div>",
            graph::dag_svg("services of the incident", &nodes, &needs)
        );
    }
    b.push_str("<h2>Alerts folded in</h2><div class=\"scroll\"><table><thead><tr><th>Role</th><th>Alert</th><th>Service</th><th>Severity</th><th>Status</th><th>Since</th></tr></thead><tbody>");
    for m in &inc.alerts {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"small\">{}</td></tr>",
            if m.role == MemberRole::RootCause {
                "<strong>root cause</strong>"
            } else {
                "symptom"
            },
            esc(&m.alertname),
            esc(m.service.as_deref().unwrap_or("—")),
            severity_badge(&m.severity),
            status_badge(match m.status {
                vigil_alert::AlertStatus::Firing => "open",
                vigil_alert::AlertStatus::Resolved => "resolved",
            }),
            esc(&time(m.starts_at_ms))
        );
    }
    b.push_str("</tbody></table></div><h2>Runbooks triggered</h2>");
    if inc.executions.is_empty() {
        b.push_str("<p class=\"dim\">None.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table><thead><tr><th>Runbook</th><th>Outcome</th><th>Execution</th><th>Why</th><th>When</th></tr></thead><tbody>");
        let runs = Runs::load(&api);
        for t in &inc.executions {
            let (exec, now) = runs.of(&inc, t);
            let _ = write!(
                b,
                "<tr><td>{}{}</td><td>{}{}</td><td>{}</td><td class=\"small\">{}{}</td><td class=\"small\">{}</td></tr>",
                esc(&t.runbook),
                if t.mode == vigil_alert::RunMode::DryRun {
                    " <span class=\"badge st-dry_run\">dry run</span>"
                } else {
                    ""
                },
                status_badge(&now),
                if t.verified {
                    " <span class=\"badge st-succeeded\">verified</span>"
                } else {
                    ""
                },
                exec.as_deref().map(exec_link).unwrap_or_else(|| "—".into()),
                esc(t.reason.as_deref().unwrap_or("")),
                if t.approvers.is_empty() {
                    String::new()
                } else {
                    format!("<div>approvers: {}</div>", esc(&t.approvers.join(", ")))
                },
                esc(&time(t.at_ms))
            );
        }
        b.push_str("</tbody></table></div>");
    }
    if !inc.similar.is_empty() {
        b.push_str("<h2>Similar past incidents</h2><ul>");
        for sim in &inc.similar {
            let _ = write!(
                b,
                "<li>{} {} <span class=\"dim\">(similarity {:.2}; runbooks: {})</span></li>",
                incident_link(&sim.id),
                esc(&sim.title),
                sim.score,
                esc(&if sim.runbooks.is_empty() {
                    "none".to_string()
                } else {
                    sim.runbooks.join(", ")
                })
            );
        }
        b.push_str("</ul>");
    }
    b.push_str("<h2>Journal</h2><ol class=\"timeline\">");
    for ev in &events {
        let _ = write!(
            b,
            "<li><span class=\"dim small\">{}</span> <strong>{}</strong><div class=\"small dim\">{}</div></li>",
            esc(&time(ev.ts_ms)),
            esc(&ev.kind),
            esc(&ev.detail)
        );
    }
    b.push_str("</ol>");
    html(&inc.title, Nav::Incidents, &s, "", &b)
}

// ---------------------------------------------------------------- executions

pub(super) async fn executions(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    let rows = match ops::executions(api.svc().store(), 200) {
        Ok(r) => r,
        Err(e) => return failed(e.into(), &s).await,
    };
    let mut b = String::from("<h1>Executions</h1>");
    if rows.is_empty() {
        b.push_str("<div class=\"panel\"><p>No executions yet.</p></div>");
    } else {
        b.push_str("<div class=\"scroll\"><table id=\"executions\"><thead><tr><th>Execution</th><th>Runbook</th><th>Status</th><th class=\"hide-narrow\">Origin</th><th>Started</th><th class=\"hide-narrow\">Why</th></tr></thead><tbody>");
        for r in &rows {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"hide-narrow\">{}</td><td class=\"small\">{}</td><td class=\"hide-narrow small\">{}</td></tr>",
                exec_link(&r.id),
                esc(&r.runbook),
                status_badge(r.status.as_str()),
                esc(r.origin.as_str()),
                esc(&time(r.created_ms)),
                esc(r.reason.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</tbody></table></div>");
    }
    html("Executions", Nav::Executions, &s, "", &b)
}

/// A runbook's steps as journaled with its execution: `(id, uses, needs)`. When the
/// text no longer parses, the steps the journal names, unconnected.
fn steps_of(rec: &ExecutionRecord, events: &[Event]) -> Vec<(String, String, Vec<usize>)> {
    let bundle =
        vigil_bundle::Bundle::from_source(std::path::Path::new(&rec.runbook_file), &rec.source);
    if let Some(rb) = bundle.runbook(&rec.runbook) {
        return rb
            .steps
            .iter()
            .map(|st| (st.id.clone(), st.uses.clone(), st.needs.clone()))
            .collect();
    }
    let mut seen: Vec<(String, String, Vec<usize>)> = Vec::new();
    for ev in events {
        if let Some(step) = &ev.step
            && !seen.iter().any(|(id, _, _)| id == step)
        {
            seen.push((step.clone(), String::new(), Vec::new()));
        }
    }
    seen
}

/// The policy's decision that led to an execution: the `run` audit entry of the
/// execution names the plan hash the `decide` entry carries. That entry is written
/// when the run ends or waits; until then, the runbook's last decision before the
/// execution started stands in.
fn decision_of(entries: &[AuditEntry], rec: &ExecutionRecord) -> Option<AuditEntry> {
    let hash = entries
        .iter()
        .find(|e| e.action == AuditAction::Run && e.subject == rec.id)
        .and_then(|e| e.plan_hash.clone());
    entries
        .iter()
        .rev()
        .filter(|e| e.action == AuditAction::Decide)
        .find(|e| match &hash {
            Some(h) => e.plan_hash.as_deref() == Some(h.as_str()),
            None => e.subject == rec.runbook && e.ts_ms <= rec.created_ms,
        })
        .cloned()
}

/// Whether this session may decide what `rec` waits for: an operator, and one of
/// the approvers the policy named, if it named any.
fn may_decide(s: &Session, rec: &ExecutionRecord) -> bool {
    can(s, "/console/executions/x/approve")
        && (rec.approvers.is_empty() || rec.approvers.iter().any(|a| **a == *s.caller.name))
}

/// What waits: the step, why, the plan hash the approval binds to, the deadline.
fn waiting(events: &[Event]) -> Option<&Event> {
    events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::AwaitingApproval)
}

/// The plan a policy saw, as a table of steps (targets, risk, reversibility, summary).
fn plan_table(plan: &Value) -> String {
    let mut b = format!(
        "<p>Highest risk {} · {} · {} target(s)</p>",
        badge(
            &format!(
                "st-{}",
                match plan["risk"].as_str().unwrap_or("none") {
                    "high" | "critical" => "failed",
                    "medium" => "acknowledged",
                    _ => "succeeded",
                }
            ),
            plan["risk"].as_str().unwrap_or("none")
        ),
        if plan["reversible"] == true {
            "reversible"
        } else {
            "<strong>not reversible</strong>"
        },
        plan["targets"].as_u64().unwrap_or(0)
    );
    b.push_str("<div class=\"scroll\"><table><thead><tr><th>Step</th><th>Uses</th><th>Risk</th><th>Reversible</th><th>Targets</th><th>Effect</th></tr></thead><tbody>");
    for st in plan["steps"].as_array().into_iter().flatten() {
        let targets: Vec<&str> = st["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"small\">{}</td></tr>",
            esc(st["id"].as_str().unwrap_or("")),
            esc(st["uses"].as_str().unwrap_or("")),
            esc(st["risk"].as_str().unwrap_or("")),
            if st["reversible"] == true {
                "yes"
            } else {
                "no"
            },
            esc(&targets.join(", ")),
            esc(st["summary"].as_str().unwrap_or(""))
        );
    }
    b.push_str("</tbody></table></div>");
    b
}

/// The approval panel of an execution that waits: what, why, the plan, and the
/// form for those who may decide (the server checks again).
fn approval_panel(
    s: &Session,
    rec: &ExecutionRecord,
    events: &[Event],
    decision: Option<&AuditEntry>,
) -> String {
    let mut b = String::from("<div class=\"panel\" data-approval=\"waiting\">");
    let ev = waiting(events);
    let hash = ev
        .and_then(|e| e.output.as_ref())
        .and_then(|o| o["plan_hash"].as_str())
        .unwrap_or_default()
        .to_string();
    let _ = write!(
        b,
        "<h3>{} waits for approval</h3><p>{}</p><dl><dt>Execution</dt><dd>{} ({})</dd><dt>Plan hash</dt><dd><code class=\"plan-hash\">{}</code></dd>\
         <dt>Approvers</dt><dd>{}</dd><dt>Deadline</dt><dd>{}</dd></dl>",
        ev.and_then(|e| e.step.as_deref()).map_or_else(
            || "A step".into(),
            |st| format!("Step <code>{}</code>", esc(st))
        ),
        esc(ev.and_then(|e| e.detail.as_deref()).unwrap_or("")),
        exec_link(&rec.id),
        esc(&rec.runbook),
        esc(&hash),
        if rec.approvers.is_empty() {
            "any operator".to_string()
        } else {
            esc(&rec.approvers.join(", "))
        },
        ev.and_then(|e| e.output.as_ref())
            .and_then(|o| o["deadline_ms"].as_i64())
            .map_or_else(|| "none".into(), |t| esc(&time(t)))
    );
    if let Some(d) = decision {
        let _ = write!(
            b,
            "<p>Policy <code>{}</code> decided <strong>{}</strong>: {}</p>{}",
            esc(d.actor.strip_prefix("policy:").unwrap_or(&d.actor)),
            esc(&d.outcome),
            esc(d.inputs["reason"].as_str().unwrap_or("")),
            plan_table(&d.inputs["plan"])
        );
    }
    if may_decide(s, rec) {
        let _ = write!(
            b,
            "<form class=\"approve\" method=\"post\" action=\"/console/executions/{id}/approve\">{}\
             <input type=\"hidden\" name=\"plan_hash\" value=\"{}\">\
             <label for=\"comment-{id}\">Comment</label><textarea id=\"comment-{id}\" name=\"comment\" rows=\"2\"></textarea>\
             <p><button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
             <button class=\"danger\" type=\"submit\" formaction=\"/console/executions/{id}/reject\" name=\"decision\" value=\"reject\">Reject</button></p></form>",
            csrf(s),
            esc(&hash),
            id = seg(&rec.id)
        );
    } else {
        let _ = write!(
            b,
            "<p class=\"dim not-approver\">{}</p>",
            if rec.approvers.is_empty() {
                "Only an operator may approve or reject.".to_string()
            } else {
                format!(
                    "Only {} may approve or reject (the policy named them).",
                    esc(&rec.approvers.join(", "))
                )
            }
        );
    }
    b.push_str("</div>");
    b
}

fn event_json(ev: &Event) -> Value {
    json!({
        "seq": ev.seq,
        "time": time(ev.ts_ms),
        "step": ev.step,
        "kind": ev.kind.as_str(),
        "attempt": ev.attempt,
        "detail": ev.detail,
    })
}

fn timeline(events: &[Event]) -> String {
    let mut b = String::from("<ol class=\"timeline\" id=\"timeline\">");
    for ev in events {
        let _ = write!(
            b,
            "<li class=\"k-{}\"><span class=\"dim small\">{} </span><strong>{}</strong>{}{}{}</li>",
            ev.kind.as_str(),
            esc(&time(ev.ts_ms)),
            esc(&ev.kind.as_str().replace('_', " ")),
            ev.step
                .as_deref()
                .map(|st| format!(" {}", esc(st)))
                .unwrap_or_default(),
            if ev.attempt > 1 {
                format!(" (attempt {})", ev.attempt)
            } else {
                String::new()
            },
            ev.detail
                .as_deref()
                .map(|d| format!("<div class=\"small dim\">{}</div>", esc(d)))
                .unwrap_or_default()
        );
    }
    b.push_str("</ol>");
    b
}

pub(super) async fn execution(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let (rec, events) = match store
        .execution(&id)
        .and_then(|r| Ok((r, store.events(&id)?)))
    {
        Ok(x) => x,
        Err(e) => return failed(e.into(), &s).await,
    };
    let steps = steps_of(&rec, &events);
    let views = graph::step_states(&steps, rec.status, &events);
    let needs: Vec<Vec<usize>> = steps.iter().map(|(_, _, n)| n.clone()).collect();
    let nodes: Vec<Node<'_>> = views
        .iter()
        .map(|v| Node {
            id: &v.id,
            sub: &v.uses,
            state: v.state,
            label: &v.label,
            class: "",
            href: None,
        })
        .collect();
    let audit = store.audit_entries().unwrap_or_default();
    let decision = decision_of(&audit, &rec);
    let mut b = String::with_capacity(16384);
    let _ = write!(
        b,
        "<h1>{} <code>{}</code> <span id=\"exec-status\" class=\"badge st-{}\">{}</span></h1>",
        esc(&rec.runbook),
        esc(&rec.id),
        rec.status.as_str(),
        esc(&rec.status.as_str().replace('_', " "))
    );
    let incident = rec.incident["id"].as_str();
    let _ = write!(
        b,
        "<div class=\"panel\"><dl><dt>Started</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd><dt>Origin</dt><dd>{}</dd><dt>Incident</dt><dd>{}</dd>\
         <dt>Why</dt><dd>{}</dd><dt>Approvers</dt><dd>{}</dd><dt>Decision</dt><dd>{}</dd><dt>Params</dt><dd><code>{}</code></dd></dl></div>",
        esc(&time(rec.created_ms)),
        esc(&time(rec.updated_ms)),
        esc(rec.origin.as_str()),
        incident.map(incident_link).unwrap_or_else(|| "—".into()),
        esc(rec.reason.as_deref().unwrap_or("—")),
        if rec.approvers.is_empty() {
            "—".into()
        } else {
            esc(&rec.approvers.join(", "))
        },
        decision
            .as_ref()
            .map(|d| format!(
                "policy <code>{}</code>: <strong>{}</strong> — {}",
                esc(d.actor.strip_prefix("policy:").unwrap_or(&d.actor)),
                esc(&d.outcome),
                esc(d.inputs["reason"].as_str().unwrap_or(""))
            ))
            .unwrap_or_else(|| "no policy decided (a manual run, or no policy)".into()),
        esc(&rec.params.to_string()),
    );
    if rec.status == ExecStatus::AwaitingApproval {
        b.push_str(&approval_panel(&s, &rec, &events, decision.as_ref()));
    }
    let _ = write!(
        b,
        "<h2>Steps</h2><div class=\"panel scroll\">{}<p class=\"legend small\"><span class=\"badge st-pending\">pending</span><span class=\"badge st-running\">running</span>\
         <span class=\"badge st-succeeded\">succeeded</span><span class=\"badge st-failed\">failed</span><span class=\"badge st-skipped\">skipped</span>\
         <span class=\"badge st-awaiting_approval\">awaiting approval</span><span class=\"badge st-in_doubt\">in doubt</span></p></div>",
        graph::dag_svg(&format!("steps of {}", rec.runbook), &nodes, &needs)
    );
    b.push_str("<div class=\"scroll\"><table id=\"steps\"><thead><tr><th>Step</th><th>State</th><th class=\"hide-narrow\">Attempts</th><th>Started</th><th>Took</th><th>Input / output</th></tr></thead><tbody>");
    for v in &views {
        let took = match (v.first_ms, v.last_ms) {
            (Some(a), Some(z)) if z >= a => span(z - a),
            _ => "—".into(),
        };
        let mut io = String::new();
        if let Some(i) = &v.input {
            let _ = write!(
                io,
                "<details><summary>input</summary>{}</details>",
                json_block(i)
            );
        }
        if let Some(o) = &v.output {
            let _ = write!(
                io,
                "<details><summary>output</summary>{}</details>",
                json_block(o)
            );
        }
        if let Some(d) = &v.detail {
            let _ = write!(io, "<div class=\"small dim\">{}</div>", esc(d));
        }
        let _ = write!(
            b,
            "<tr data-step=\"{}\"><td><strong>{}</strong><div class=\"dim small\"><code>{}</code></div></td><td><span class=\"state-cell badge st-{}\">{}</span></td>\
             <td class=\"hide-narrow\">{}</td><td class=\"small\">{}</td><td class=\"small\">{}</td><td>{}</td></tr>",
            esc(&v.id),
            esc(&v.id),
            esc(&v.uses),
            v.state,
            esc(&v.label),
            v.attempts,
            v.first_ms.map_or_else(|| "—".into(), |t| esc(&time(t))),
            took,
            io
        );
    }
    b.push_str("</tbody></table></div><h2>Journal</h2>");
    b.push_str(&timeline(&events));
    let last = events.iter().map(|e| e.seq).max().unwrap_or(0);
    let attrs = format!(
        " data-poll=\"/console/executions/{}/state\" data-seq=\"{last}\" data-status=\"{}\"",
        seg(&rec.id),
        rec.status.as_str()
    );
    html(
        &format!("{} {}", rec.runbook, rec.id),
        Nav::Executions,
        &s,
        &attrs,
        &b,
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct StateQuery {
    #[serde(default)]
    after: Option<u64>,
}

/// What the execution page polls: the status, every step's state, and the journal
/// entries after `?after=SEQ`.
pub(super) async fn execution_state(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let q: StateQuery = crate::api::operate::query(&uri).unwrap_or_default();
    let svc = api.svc();
    let store = svc.store();
    let (rec, events) = match store
        .execution(&id)
        .and_then(|r| Ok((r, store.events(&id)?)))
    {
        Ok(x) => x,
        Err(e) => return failed(e.into(), &s).await,
    };
    let steps = steps_of(&rec, &events);
    let views = graph::step_states(&steps, rec.status, &events);
    let after = q.after.unwrap_or(0);
    let v = json!({
        "id": rec.id,
        "status": rec.status.as_str(),
        "steps": views,
        "events": events.iter().filter(|e| e.seq > after).map(event_json).collect::<Vec<_>>(),
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------- approvals

pub(super) async fn approvals(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let waiting: Vec<ExecutionRecord> = match store.executions() {
        Ok(all) => all
            .into_iter()
            .filter(|r| r.status == ExecStatus::AwaitingApproval)
            .collect(),
        Err(e) => return failed(e.into(), &s).await,
    };
    let mut b = String::from("<h1>Approvals</h1>");
    if waiting.is_empty() {
        b.push_str("<div class=\"panel\"><p>Nothing waits for approval.</p></div>");
        return html("Approvals", Nav::Approvals, &s, "", &b);
    }
    let mine = waiting.iter().filter(|r| may_decide(&s, r)).count();
    let _ = write!(
        b,
        "<p class=\"dim\">{} execution(s) wait; {} of them for you.</p>",
        waiting.len(),
        mine
    );
    let audit = store.audit_entries().unwrap_or_default();
    for rec in &waiting {
        let events = store.events(&rec.id).unwrap_or_default();
        b.push_str(&approval_panel(
            &s,
            rec,
            &events,
            decision_of(&audit, rec).as_ref(),
        ));
    }
    html("Approvals", Nav::Approvals, &s, "", &b)
}

// ---------------------------------------------------------------- automation

pub(super) async fn automation(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    uri: Uri,
) -> Response {
    // The audit filters as `GET /api/v1/audit` takes them; empty fields mean "any".
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| kv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect();
    let filtered: Uri = format!("/?{}", kept.join("&")).parse().unwrap_or_default();
    let filters = Form::parse(kept.join("&").as_bytes());
    let q: Result<AuditQuery, String> = match crate::api::operate::query(&filtered) {
        Ok(q) => Ok(q),
        Err(e) => Err(super::error_of(e.into_response()).await.1),
    };
    // `GET /api/v1/status`'s answer, read as JSON.
    let status: Option<Value> = match crate::api::operate::status(State(api.clone())).await {
        Ok(r) => axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        Err(_) => None,
    };
    let svc = api.svc();
    let store = svc.store();
    let paused = store.paused().ok().flatten();
    let mut b = String::from("<h1>Automation</h1><div class=\"panel\" id=\"kill-switch\">");
    match &paused {
        Some(p) => {
            let _ = write!(
                b,
                "<p><span class=\"badge st-paused\" id=\"automation-state\">paused</span> by <strong>{}</strong> since {}: {}</p>",
                esc(&p.by),
                esc(&time(p.since_ms)),
                esc(&p.reason)
            );
            if can(&s, "/console/resume") {
                b.push_str(&button(
                    &s,
                    "/console/resume",
                    "Resume automation",
                    "primary",
                ));
            }
        }
        None => {
            b.push_str("<p><span class=\"badge st-active\" id=\"automation-state\">running</span> Automation acts on incidents as its policies decide.</p>");
            if can(&s, "/console/pause") {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"/console/pause\">{}<label for=\"reason\">Reason (for the audit log)</label>\
                     <input id=\"reason\" name=\"reason\" required maxlength=\"500\" placeholder=\"e.g. investigating a bad deploy\">\
                     <p><button class=\"danger\" type=\"submit\">Pause automation</button></p></form>",
                    csrf(&s)
                );
            }
        }
    }
    b.push_str("</div>");
    if let Some(st) = &status {
        let _ = write!(
            b,
            "<div class=\"grid\"><div class=\"panel\"><h2>Executions</h2><dl>{}<dt>in flight</dt><dd>{}</dd></dl></div>\
             <div class=\"panel\"><h2>Incidents</h2><dl><dt>open</dt><dd>{}</dd></dl></div>\
             <div class=\"panel\"><h2>Daemon</h2><dl><dt>version</dt><dd>{}</dd><dt>up</dt><dd>{}</dd><dt>store</dt><dd>{} KiB</dd></dl></div></div>",
            st["executions"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("<dt>{}</dt><dd>{v}</dd>", esc(&k.replace('_', " "))))
                .collect::<String>(),
            st["in_flight"].as_array().map_or(0, Vec::len),
            st["incidents_open"],
            esc(st["version"].as_str().unwrap_or_default()),
            span(st["uptime_s"].as_i64().unwrap_or(0) * 1000),
            st["store_bytes"].as_u64().unwrap_or(0) / 1024
        );
    }
    // Guardrails as configured (`guardrails:` in vigil.yaml).
    if let Some(ops) = api.serving().ops.clone() {
        let g = serde_json::to_value(&ops.bundle.config.guardrails).unwrap_or_default();
        b.push_str("<h2>Guardrails</h2><div class=\"panel scroll\"><table><thead><tr><th>Applies to</th><th>Settings</th></tr></thead><tbody>");
        let mut rows: Vec<(String, &Value)> = vec![("every runbook".into(), &g["defaults"])];
        if let Some(m) = g["runbooks"].as_object() {
            rows.extend(m.iter().map(|(k, v)| (format!("runbook {k}"), v)));
        }
        for (scope, v) in rows {
            let set: Vec<String> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| format!("{}: {}", k.replace('_', " "), x))
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&scope),
                if set.is_empty() {
                    "<span class=\"dim\">none</span>".into()
                } else {
                    esc(&set.join(" · "))
                }
            );
        }
        b.push_str("</tbody></table>");
        if let Some(f) = g["freeze"].as_array().filter(|f| !f.is_empty()) {
            let _ = write!(
                b,
                "<p>Change freezes:</p>{}",
                json_block(&Value::Array(f.clone()))
            );
        }
        b.push_str("</div>");
    }
    // The audit log, filtered.
    let f = |k: &str| esc(&filters.text(k));
    let _ = write!(
        b,
        "<h2>Audit log</h2><form class=\"panel filters\" method=\"get\" action=\"/console/automation\" role=\"search\">\
         <div><label for=\"f-actor\">Actor contains</label><input id=\"f-actor\" name=\"actor\" value=\"{}\" placeholder=\"user:alice\"></div>\
         <div><label for=\"f-action\">Action</label><select id=\"f-action\" name=\"action\"><option value=\"\">any</option>{}</select></div>\
         <div><label for=\"f-subject\">Subject</label><input id=\"f-subject\" name=\"subject\" value=\"{}\"></div>\
         <div><label for=\"f-since\">Since</label><input id=\"f-since\" name=\"since\" value=\"{}\" placeholder=\"1h\"></div>\
         <div><label for=\"f-limit\">Newest</label><input id=\"f-limit\" name=\"limit\" value=\"{}\" placeholder=\"50\" inputmode=\"numeric\"></div>\
         <div><button type=\"submit\">Filter</button></div></form>",
        f("actor"),
        AuditAction::ALL
            .iter()
            .map(|a| format!(
                "<option value=\"{0}\"{1}>{0}</option>",
                a.as_str(),
                if filters.text("action") == a.as_str() {
                    " selected"
                } else {
                    ""
                }
            ))
            .collect::<String>(),
        f("subject"),
        f("since"),
        f("limit"),
    );
    match q.and_then(|q| ops::audit(store, &q).map_err(|e| e.to_string())) {
        Err(e) => {
            let _ = write!(
                b,
                "<div class=\"panel error\" role=\"alert\"><p>{}</p></div>",
                esc(&e)
            );
        }
        Ok(entries) if entries.is_empty() => b.push_str("<p class=\"dim\">No entries match.</p>"),
        Ok(entries) => {
            b.push_str("<div class=\"scroll\"><table id=\"audit\"><thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Subject</th><th>Outcome</th></tr></thead><tbody>");
            for e in entries.iter().rev() {
                let _ = write!(
                    b,
                    "<tr><td class=\"small\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"small\">{}</td></tr>",
                    esc(&time(e.ts_ms)),
                    esc(&e.actor),
                    esc(e.action.as_str()),
                    esc(&e.subject),
                    esc(&e.outcome)
                );
            }
            b.push_str("</tbody></table></div>");
        }
    }
    html("Automation", Nav::Automation, &s, "", &b)
}

// ---------------------------------------------------------------- silences

fn matcher_text(m: &vigil_bundle::model::Matcher) -> String {
    use vigil_bundle::model::MatchOp;
    let op = match m.op {
        MatchOp::Eq => "=",
        MatchOp::Ne => "!=",
        MatchOp::Re => "=~",
        MatchOp::NotRe => "!~",
    };
    format!("{}{op}{}", m.label, m.value)
}

pub(super) async fn silences(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    silences_page(&api, &s, None).await
}

/// The silences, the form to add one, and (after "Preview") which alerts the silence
/// in the form would mute.
pub(super) async fn silences_page(
    api: &Api,
    s: &Session,
    preview: Option<(&Form, Result<Silence, String>)>,
) -> Response {
    let now = vigil_core::now_ms();
    let svc = api.svc();
    let mut list = svc.silences();
    list.sort_unstable_by_key(|x| std::cmp::Reverse((x.created_ms, x.id.clone())));
    let may = can(s, "/console/silences");
    let mut b = String::from("<h1>Silences</h1>");
    if may {
        let (m, d, c) = preview
            .as_ref()
            .map(|(f, _)| (f.text("matchers"), f.text("duration"), f.text("comment")))
            .unwrap_or_else(|| (String::new(), "2h".into(), String::new()));
        let _ = write!(
            b,
            "<form class=\"panel\" id=\"add-silence\" method=\"post\" action=\"/console/silences\">{}\
             <label for=\"matchers\">Matchers, one per line: <code>label=value</code>, <code>label!=value</code>, <code>label=~regex</code>, <code>label!~regex</code></label>\
             <textarea id=\"matchers\" name=\"matchers\" rows=\"3\" required placeholder=\"service=db&#10;alertname=~Disk.*\">{}</textarea>\
             <label for=\"duration\">Duration</label><input id=\"duration\" name=\"duration\" value=\"{}\" required placeholder=\"2h\">\
             <label for=\"comment\">Comment</label><input id=\"comment\" name=\"comment\" value=\"{}\" placeholder=\"why\">\
             <p><button class=\"primary\" type=\"submit\">Add silence</button> <button type=\"submit\" formaction=\"/console/silences/preview\">Preview</button></p></form>",
            csrf(s),
            esc(&m),
            esc(&d),
            esc(&c)
        );
    }
    if let Some((_, parsed)) = &preview {
        match parsed {
            Err(e) => {
                let _ = write!(
                    b,
                    "<div class=\"panel error\" role=\"alert\" id=\"preview\"><p>{}</p></div>",
                    esc(e)
                );
            }
            Ok(sil) => {
                let hit: Vec<_> = svc
                    .alerts(usize::MAX)
                    .into_iter()
                    .filter(|a| sil.matches(&a.labels))
                    .collect();
                let _ = write!(
                    b,
                    "<div class=\"panel notice\" id=\"preview\"><p>This silence would mute {} alert(s) now.</p><ul>",
                    hit.len()
                );
                for a in hit.iter().take(50) {
                    let labels: Vec<String> =
                        a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = write!(b, "<li><code>{}</code></li>", esc(&labels.join(", ")));
                }
                b.push_str("</ul></div>");
            }
        }
    }
    if list.is_empty() {
        b.push_str("<p class=\"dim\">No silences.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table id=\"silences\"><thead><tr><th>Matchers</th><th>State</th><th>Until</th><th>By</th><th>Comment</th><th><span class=\"skip\">Actions</span></th></tr></thead><tbody>");
        let may_expire = can(s, "/console/silences/x/expire");
        for sil in &list {
            let state = sil.state(now);
            let ms: Vec<String> = sil.matchers.iter().map(matcher_text).collect();
            let _ = write!(
                b,
                "<tr data-silence=\"{}\"><td><code>{}</code></td><td>{}</td><td class=\"small\">{}</td><td>{}</td><td>{}</td><td>",
                esc(&sil.id),
                esc(&ms.join(", ")),
                status_badge(state),
                esc(&time(sil.ends_at_ms)),
                esc(&sil.created_by),
                esc(&sil.comment)
            );
            if may_expire && state != "expired" {
                b.push_str(&button(
                    s,
                    &format!("/console/silences/{}/expire", seg(&sil.id)),
                    "Expire",
                    "",
                ));
            }
            b.push_str("</td></tr>");
        }
        b.push_str("</tbody></table></div>");
    }
    html("Silences", Nav::Silences, s, "", &b)
}

// ---------------------------------------------------------------- detectors

fn kind_of(d: &vigil_bundle::model::Detector) -> &'static str {
    if d.model.classifier().is_some() {
        "failure classifier"
    } else if d.model.forecast().is_some() {
        "forecast"
    } else {
        "anomaly"
    }
}

pub(super) async fn detectors(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let predictions = store.predictions().unwrap_or_default();
    let forecasts = store.forecasts().unwrap_or_default();
    // The bundle's detectors, and any that left records behind.
    let mut names: BTreeMap<String, Option<vigil_bundle::model::Detector>> = BTreeMap::new();
    if let Some(ops) = api.serving().ops.clone() {
        for d in &ops.bundle.detectors {
            names.insert(d.name.clone(), Some(d.clone()));
        }
    }
    for n in predictions
        .iter()
        .map(|p| &p.detector)
        .chain(forecasts.iter().map(|f| &f.detector))
    {
        names.entry(n.clone()).or_insert(None);
    }
    let mut b = String::from("<h1>Detectors</h1>");
    if names.is_empty() {
        b.push_str(
            "<div class=\"panel\"><p>No detectors in the bundle, and none left records.</p></div>",
        );
        return html("Detectors", Nav::Detectors, &s, "", &b);
    }
    b.push_str("<div class=\"scroll\"><table id=\"detectors\"><thead><tr><th>Detector</th><th>Kind</th><th>Source</th><th>Detections</th><th>Forecasts</th><th>Last finding</th></tr></thead><tbody>");
    for (name, d) in &names {
        let mine: Vec<_> = predictions.iter().filter(|p| &p.detector == name).collect();
        let last = mine.iter().map(|p| p.at).max();
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/detectors/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"small\">{}</td></tr>",
            seg(name),
            esc(name),
            d.as_ref().map_or("(not in the bundle)", kind_of),
            esc(d.as_ref().map_or("", |d| d.source.as_str())),
            mine.len(),
            forecasts.iter().filter(|f| &f.detector == name).count(),
            last.map_or_else(|| "—".into(), |t| esc(&time(t * 1000)))
        );
    }
    b.push_str("</tbody></table></div>");
    html("Detectors", Nav::Detectors, &s, "", &b)
}

/// Series drawn per detector page at most.
const MAX_SERIES: usize = 12;

pub(super) async fn detector(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let predictions = store.predictions().unwrap_or_default();
    let forecasts = store.forecasts().unwrap_or_default();
    let def = api
        .serving()
        .ops
        .clone()
        .and_then(|o| o.bundle.detectors.iter().find(|d| d.name == name).cloned());
    let series = plot::group(&name, &predictions, &forecasts);
    if def.is_none() && series.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("no detector `{name}` in the bundle, and no records of one"),
            Some(&s),
        );
    }
    let mut b = format!("<h1>Detector <code>{}</code></h1>", esc(&name));
    if let Some(d) = &def {
        let _ = write!(
            b,
            "<div class=\"panel\"><p>{}</p><dl><dt>Kind</dt><dd>{}</dd><dt>Source</dt><dd>{}</dd><dt>Schedule</dt><dd><code>{}</code></dd>\
             <dt>Threshold</dt><dd>{:.2}</dd><dt>Alert</dt><dd>{}</dd><dt>Reads</dt><dd><code>{}</code></dd></dl></div>",
            esc(d.description.as_deref().unwrap_or("")),
            kind_of(d),
            esc(&d.source),
            esc(&d.schedule),
            d.model.threshold,
            esc(&d.alert.name),
            esc(&d.queries().join(", "))
        );
    }
    let _ = write!(
        b,
        "<p class=\"legend small\"><span class=\"badge st-running\">values at detections</span><span class=\"badge st-failed\">anomaly</span>\
         <span class=\"badge st-succeeded\">resolved</span><span class=\"badge st-awaiting_approval\">forecast and its interval</span> \
         {} series; the newest {} points of each.</p>",
        series.len(),
        plot::MAX_POINTS
    );
    if series.is_empty() {
        let _ = write!(
            b,
            "<div class=\"panel\">{}</div>",
            plot::svg(&format!("{name}: nothing yet"), &plot::Series::default())
        );
    }
    for (key, sr) in series.iter().take(MAX_SERIES) {
        let _ = write!(
            b,
            "<div class=\"panel plot-panel\"><h2>{}</h2>{}<p class=\"small dim\">{} detection(s), {} forecast point(s)</p></div>",
            esc(key),
            plot::svg(&format!("{name} {key}"), sr),
            sr.detections.len(),
            sr.forecasts.len()
        );
    }
    let mut recent: Vec<_> = predictions.iter().filter(|p| p.detector == name).collect();
    recent.sort_unstable_by_key(|p| std::cmp::Reverse(p.at));
    if !recent.is_empty() {
        b.push_str("<h2>Latest findings</h2><div class=\"scroll\"><table><thead><tr><th>When</th><th>Alert</th><th>Series</th><th>Value</th><th>Score</th><th>State</th></tr></thead><tbody>");
        for p in recent.iter().take(20) {
            let _ = write!(
                b,
                "<tr><td class=\"small\">{}</td><td>{}</td><td class=\"small\"><code>{}</code></td><td>{:.3}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(&time(p.at * 1000)),
                esc(&p.alertname),
                esc(&plot::series_key(&p.labels)),
                p.value,
                p.score,
                status_badge(if p.resolved { "resolved" } else { "open" })
            );
        }
        b.push_str("</tbody></table></div>");
    }
    html(&format!("Detector {name}"), Nav::Detectors, &s, "", &b)
}
