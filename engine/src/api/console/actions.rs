//! The console's forms. Each does what its API route does by calling that route's
//! handler as the session's caller (the same checks, records and audit entries),
//! then sends the browser back to the page it came from, or shows the refusal.

use super::super::principals::Caller;
use super::super::{alerts, executions, operate, silences};
use super::html::seg;
use super::session::Session;
use super::{Form, act, problem, safe_next};
use crate::api::Api;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Where to go afterwards: the form's `back` if it is one of our pages, else `default`.
fn back(form: &Form, default: String) -> String {
    match form.get("back") {
        Some(b) if safe_next(b) == b => b.to_string(),
        _ => default,
    }
}

fn caller(s: &Session) -> Extension<Caller> {
    Extension(s.caller.clone())
}

fn json_body(v: &Value) -> Body {
    Body::from(v.to_string())
}

pub(super) async fn acknowledge(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let to = back(&form, format!("/console/incidents/{}", seg(&id)));
    let call = alerts::ack_incident(State(api), caller(&session), Path(id));
    act(&session, &to, Box::pin(call)).await
}

/// `{comment, plan_hash}` from the approval form (empty fields left out).
fn decision(form: &Form) -> Value {
    let mut m = Map::new();
    for key in ["comment", "plan_hash"] {
        let v = form.text(key);
        if !v.is_empty() {
            m.insert(key.into(), Value::String(v));
        }
    }
    Value::Object(m)
}

pub(super) async fn approve(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let to = back(&form, format!("/console/executions/{}", seg(&id)));
    let call = executions::approve_execution(
        State(api),
        caller(&session),
        Path(id),
        HeaderMap::new(),
        json_body(&decision(&form)),
    );
    act(&session, &to, Box::pin(call)).await
}

pub(super) async fn reject(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let to = back(&form, format!("/console/executions/{}", seg(&id)));
    let call = executions::reject_execution(
        State(api),
        caller(&session),
        Path(id),
        HeaderMap::new(),
        json_body(&decision(&form)),
    );
    act(&session, &to, Box::pin(call)).await
}

pub(super) async fn pause(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let reason = form.text("reason");
    let body = if reason.is_empty() {
        json!({})
    } else {
        json!({ "reason": reason })
    };
    let call = operate::pause(
        State(api),
        caller(&session),
        HeaderMap::new(),
        json_body(&body),
    );
    act(
        &session,
        &back(&form, "/console/automation".into()),
        Box::pin(call),
    )
    .await
}

pub(super) async fn resume(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let call = operate::resume(State(api), caller(&session));
    act(
        &session,
        &back(&form, "/console/automation".into()),
        Box::pin(call),
    )
    .await
}

/// The silence form as the API's body: `matchers` one per line (`label=value`,
/// `label!=value`, `label=~regex`, `label!~regex`), `duration`, `comment`.
pub(super) fn silence_body(form: &Form) -> Result<Value, String> {
    let mut matchers = Map::new();
    for (n, line) in form.text("matchers").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let (label, rest) = line.split_at(end);
        let value = if let Some(v) = rest.strip_prefix("=~") {
            format!("=~{v}")
        } else if let Some(v) = rest.strip_prefix("!~") {
            format!("!~{v}")
        } else if let Some(v) = rest.strip_prefix("!=") {
            format!("!={v}")
        } else if let Some(v) = rest.strip_prefix('=') {
            v.to_string()
        } else {
            return Err(format!(
                "matcher line {}: `{line}` is not `label=value`, `label!=value`, `label=~regex` or `label!~regex`",
                n + 1
            ));
        };
        if label.is_empty() {
            return Err(format!("matcher line {}: `{line}` names no label", n + 1));
        }
        matchers.insert(label.to_string(), Value::String(value.trim().to_string()));
    }
    let mut body = json!({ "matchers": matchers, "comment": form.text("comment") });
    let duration = form.text("duration");
    if !duration.is_empty() {
        body["duration"] = Value::String(duration);
    }
    Ok(body)
}

pub(super) async fn add_silence(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let body = match silence_body(&form) {
        Ok(b) => b,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused",
                &e,
                Some(&session),
            );
        }
    };
    let call = silences::add_silence(
        State(api),
        caller(&session),
        HeaderMap::new(),
        json_body(&body),
    );
    act(&session, "/console/silences", Box::pin(call)).await
}

/// Which alerts the silence in the form would mute now; nothing is changed.
pub(super) async fn preview_silence(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let parsed = silence_body(&form).and_then(|b| {
        silences::parse_silence(b.to_string().as_bytes(), vigil_core::now_ms())
            .map_err(|(field, detail)| format!("`{field}`: {detail}"))
    });
    super::pages::silences_page(&api, &session, Some((&form, parsed))).await
}

pub(super) async fn expire_silence(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let call = silences::expire_silence(State(api), caller(&session), Path(id));
    act(&session, "/console/silences", Box::pin(call)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_silence_form_becomes_the_apis_body() {
        let f = Form::parse(
            b"matchers=service%3Ddb%0D%0Aalertname%3D~Disk.*%0Ainstance%21%3Ddb-2%0Ateam%21~sre%7Cops%0A%0A&duration=2h&comment=swap",
        );
        let b = silence_body(&f).unwrap();
        assert_eq!(
            b,
            json!({ "matchers": { "service": "db", "alertname": "=~Disk.*", "instance": "!=db-2", "team": "!~sre|ops" },
                    "duration": "2h", "comment": "swap" })
        );
        let s = silences::parse_silence(b.to_string().as_bytes(), 0).unwrap();
        assert_eq!(s.matchers.len(), 4);
        assert!(silence_body(&Form::parse(b"matchers=service")).is_err());
        assert!(silence_body(&Form::parse(b"matchers=%3Ddb")).is_err());
    }
}
