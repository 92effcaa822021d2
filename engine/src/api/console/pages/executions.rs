//! The executions pages: the list, one execution with its step graph, approval
//! panel and journal, the state the page polls while it runs, and what waits for
//! approval.

use super::*;

pub(in crate::api::console) async fn executions(
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

pub(in crate::api::console) async fn execution(
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
pub(in crate::api::console) struct StateQuery {
    #[serde(default)]
    after: Option<u64>,
}

/// What the execution page polls: the status, every step's state, and the journal
/// entries after `?after=SEQ`.
pub(in crate::api::console) async fn execution_state(
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

// What waits for approval.

pub(in crate::api::console) async fn approvals(
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
