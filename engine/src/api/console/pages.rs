//! The console's pages, each rendered from what the API reads: the alert service
//! (incidents, alerts, silences), the store (executions, journals, the audit log,
//! detections and forecasts) and `ops` (status, audit queries). A button shows only
//! when the session's role may do what it does, and the server checks again.

use super::html::{Nav, badge, button, csrf, esc, json_block, page, seg, span, time};
use super::session::Session;
use super::{Form, html_type};
use crate::api::principals::{allows, need};
use crate::api::{Api, ApiError};
use crate::ops::{self, AuditQuery};
use axum::Extension;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use vigil_alert::{Incident, IncidentStatus, Role as MemberRole};
use vigil_core::audit::AuditAction;
use vigil_exec::record::{ExecStatus, ExecutionStore};

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
    let status = match crate::api::operate::status(State(api.clone())).await {
        Ok(r) => axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<ops::Status>(&b).ok()),
        Err(_) => None,
    };
    let svc = api.svc();
    let store = svc.store();
    let paused = match &status {
        Some(st) => st.paused.clone(),
        None => store.paused().ok().flatten(),
    };
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
            st.executions
                .iter()
                .map(|(k, v)| format!("<dt>{}</dt><dd>{v}</dd>", esc(&k.replace('_', " "))))
                .collect::<String>(),
            st.in_flight.len(),
            st.incidents_open,
            esc(&st.version),
            span(st.uptime_s as i64 * 1000),
            st.store_bytes / 1024
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
