//! The incidents pages: the list, and one incident with its root cause, symptoms,
//! alerts and the runbooks it triggered.

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api::console) struct IncidentsQuery {
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

pub(in crate::api::console) async fn incidents(
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

pub(in crate::api::console) async fn incident(
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
