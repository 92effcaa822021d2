//! The kill switch, guardrails and the audit log.

use super::*;

pub(in crate::api::console) async fn automation(
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
        Err(e) => Err(super::super::error_of(e.into_response()).await.1),
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
