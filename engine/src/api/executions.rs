//! Executions: listing, one with its journal, and approving or rejecting the step
//! one waits on, bound to the plan hash the approver saw.

use super::principals::Caller;
use super::{Api, ApiError, json_response, ok_json};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use vigil_exec::record::ExecutionStore;

/// `?limit=N` (default 50).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// The newest executions first, as the store keeps them.
pub(super) async fn list_executions(
    State(api): State<Arc<Api>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q: ListQuery = super::operate::query(&uri)?;
    let rows = crate::ops::executions(api.svc().store(), q.limit.unwrap_or(50))?;
    Ok(ok_json(&rows))
}

pub(super) async fn show_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = api.svc();
    let store = svc.store();
    let rec = store.execution(&id)?;
    let events = store.events(&id)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "execution": rec, "events": events }),
    ))
}

/// `{ "comment": "…", "plan_hash": "…" }`, both optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    plan_hash: Option<String>,
}

pub(super) async fn approve_execution(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    decide_execution(api, &caller, id, true, headers, b).await
}

pub(super) async fn reject_execution(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    decide_execution(api, &caller, id, false, headers, b).await
}

/// Approves or rejects the step an execution waits on, bound to its plan hash.
async fn decide_execution(
    api: Arc<Api>,
    caller: &Caller,
    id: String,
    approve: bool,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let d: Decision = super::operate::json_body(&api, &headers, b).await?;
    if api.svc().executor().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_executor",
            "this server runs no executions",
        ));
    }
    let report = api
        .svc()
        .decide_approval(
            &id,
            approve,
            &caller.name,
            d.comment.as_deref(),
            d.plan_hash.as_deref(),
        )
        .await?;
    Ok(match report {
        Some(report) => ok_json(&report),
        None => json_response(StatusCode::OK, &json!({ "rejected": true })),
    })
}
