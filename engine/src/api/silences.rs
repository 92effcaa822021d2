//! Silences: listing, adding (Alertmanager's matcher forms) and expiring.

use super::body::body;
use super::principals::Caller;
use super::{Api, ApiError, json_response, ok_json};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_alert::Silence;
use vigil_bundle::model::Matcher;
use vigil_core::now_ms;

pub(super) async fn list_silences(State(api): State<Arc<Api>>) -> Response {
    let now = now_ms();
    let list: Vec<Value> = api
        .svc()
        .silences()
        .into_iter()
        .map(|s| {
            let state = s.state(now);
            let mut v = serde_json::to_value(s).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("state".into(), json!(state));
            }
            v
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// `{matchers: {label: "value" | "=~re" | "!=v" | "!~re"}, startsAt?, endsAt? | duration?, createdBy, comment}`
pub fn parse_silence(bytes: &[u8], now: i64) -> Result<Silence, (String, String)> {
    let f = |field: &str, d: String| (field.to_string(), d);
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| f("(body)", format!("not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| f("(body)", "expected an object".into()))?;
    let m = o
        .get("matchers")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            f(
                "matchers",
                "expected an object of label matchers, e.g. {\"service\": \"=~db.*\"}".into(),
            )
        })?;
    let mut matchers = Vec::new();
    for (k, val) in m {
        let s = val
            .as_str()
            .ok_or_else(|| f(&format!("matchers.{k}"), "expected a string".into()))?;
        matchers
            .push(Matcher::parse(k, s).map_err(|e| f(&format!("matchers.{k}"), e.to_string()))?);
    }
    let time = |key: &str| -> Result<Option<i64>, (String, String)> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| f(key, format!("expected an RFC 3339 time: {e}"))),
            Some(_) => Err(f(key, "expected an RFC 3339 time string".into())),
        }
    };
    let starts = time("startsAt")?.unwrap_or(now);
    let ends = match (time("endsAt")?, o.get("duration")) {
        (Some(e), _) => e,
        (None, Some(Value::String(d))) => {
            let d =
                vigil_core::duration::Duration::parse(d).map_err(|e| f("duration", e.message))?;
            starts + d.as_std().as_millis() as i64
        }
        (None, Some(_)) => return Err(f("duration", "expected a duration like `2h`".into())),
        (None, None) => return Err(f("endsAt", "give `endsAt` or `duration`".into())),
    };
    let text = |key: &str| {
        o.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Silence {
        id: String::new(),
        matchers,
        starts_at_ms: starts,
        ends_at_ms: ends,
        created_by: text("createdBy"),
        comment: text("comment"),
        created_ms: now,
    })
}

pub(super) async fn add_silence(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let bytes = body(&api, &headers, b).await?;
    let mut s = parse_silence(&bytes, now_ms()).map_err(|(field, detail)| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("`{field}`: {detail}"),
        )
        .on(field)
    })?;
    // Who made it is the caller, whatever the body claims (Alertmanager takes
    // `createdBy` on trust; here it is what the audit log shows).
    if s.created_by != *caller.name {
        if !s.created_by.is_empty() {
            s.comment = format!("{} (for {})", s.comment, s.created_by)
                .trim_start()
                .to_string();
        }
        s.created_by = caller.name.to_string();
    }
    let svc = api.svc();
    let s = svc.add_silence(s).await?;
    audit(&svc, &caller, &s.id, "added").await?;
    Ok(ok_json(&s))
}

pub(super) async fn expire_silence(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = api.svc();
    let s = svc.expire_silence(&id).await?;
    audit(&svc, &caller, &s.id, "expired").await?;
    Ok(ok_json(&s))
}

async fn audit(
    svc: &vigil_alert::AlertService,
    caller: &Caller,
    id: &str,
    outcome: &str,
) -> Result<(), ApiError> {
    use vigil_exec::record::{AuditEntry, ExecutionStore};
    svc.store().audit(AuditEntry::new(
        caller.actor(),
        vigil_core::audit::AuditAction::Silence,
        id,
        outcome,
    ))?;
    svc.store().sync().await?;
    Ok(())
}
