//! Alerts and incidents: ingestion (Alertmanager webhooks and events), listing,
//! and an incident's acknowledgement or resolution.

use super::body::body;
use super::principals::Caller;
use super::{Api, ApiError, json_response, ok_json};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use vigil_alert::payload::{parse_events, parse_webhook};
use vigil_alert::{IncidentStatus, IncomingAlert};

/// Answered only once the alerts are durable: a store failure is a 503 to retry.
pub(super) async fn post_alerts(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let bytes = body(&api, &headers, b).await?;
    let hook = parse_webhook(&bytes, &api.cfg.limits)?;
    store_and_answer(&api, t0, hook.alerts, Some(hook.truncated_alerts)).await
}

pub(super) async fn post_events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let bytes = body(&api, &headers, b).await?;
    let events = parse_events(&bytes, &api.cfg.limits)?;
    store_and_answer(&api, t0, events, None).await
}

/// What an ingest answers: the counts, and for a webhook how many alerts it had
/// beyond what it sent (its `truncatedAlerts`).
#[derive(Serialize)]
struct Stored {
    status: &'static str,
    received: usize,
    new: usize,
    deduplicated: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_alerts: Option<u64>,
}

/// Ingests the alerts a request carried (received at `t0`) and answers with [`Stored`].
async fn store_and_answer(
    api: &Api,
    t0: Instant,
    alerts: Vec<IncomingAlert>,
    truncated_alerts: Option<u64>,
) -> Result<Response, ApiError> {
    let done = api.svc().ingest(alerts).await?;
    api.svc()
        .metrics()
        .ingest_seconds
        .observe(t0.elapsed().as_secs_f64());
    Ok(ok_json(&Stored {
        status: "stored",
        received: done.received,
        new: done.new,
        deduplicated: done.deduplicated,
        truncated_alerts,
    }))
}

/// `?status=open|all&limit=N` for incidents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `?limit=N` for alerts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitQuery {
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn list_alerts(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q: LimitQuery = super::operate::query(&uri)?;
    let alerts = api.svc().alerts(q.limit.unwrap_or(usize::MAX));
    Ok(ok_json(&alerts))
}

pub(super) async fn list_incidents(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q: ListQuery = super::operate::query(&uri)?;
    let open_only = match q.status.as_deref() {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!(
                    "status must be `open` or `all`, got `{}`",
                    vigil_core::text::visible(other)
                ),
            )
            .on("status"));
        }
    };
    let list = api.svc().incidents(open_only, q.limit.unwrap_or(100));
    Ok(ok_json(&list))
}

pub(super) async fn show_incident(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (inc, events) = api.svc().incident(&id)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"incident": inc, "events": events}),
    ))
}

pub(super) async fn ack_incident(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&api, &caller, &id, IncidentStatus::Acknowledged).await
}

pub(super) async fn resolve_incident(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&api, &caller, &id, IncidentStatus::Resolved).await
}

/// Changes an incident's status by hand: journaled on the incident and audited,
/// both naming the caller.
async fn set_status(
    api: &Api,
    caller: &Caller,
    id: &str,
    status: IncidentStatus,
) -> Result<Response, ApiError> {
    use vigil_exec::record::{AuditEntry, ExecutionStore};
    let svc = api.svc();
    let why = format!("{} by {}", status.as_str(), caller.actor());
    let inc = svc.set_status(id, status, &why).await?;
    svc.store().audit(AuditEntry::new(
        caller.actor(),
        vigil_core::audit::AuditAction::Incident,
        id,
        status.as_str(),
    ))?;
    svc.store().sync().await?;
    Ok(ok_json(&inc))
}
