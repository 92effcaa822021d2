//! Operating the daemon over the API: its status, the kill switch, the audit log,
//! promoting, running and triggering runbooks, resuming and cancelling executions.
//! Each handler does what [`crate::ops`] does for the CLI, as the calling principal.

use super::body::body;
use super::principals::Caller;
use super::{Api, ApiError, json_response, ok_json};
use crate::ops::{self, AuditQuery, Live, OpsError};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vigil_bundle::Bundle;
use vigil_core::action::ActionCatalog;
use vigil_core::now_ms;
use vigil_exec::Request;
use vigil_exec::automation::{Automation, Origin};
use vigil_exec::executor::Observer;
use vigil_exec::record::ExecutionStore;
use vigil_runtime::runner::RunnerStats;

/// What the operations routes need beyond the alert service: the bundle the daemon
/// runs, automation over the daemon's executor, and the detectors' run counters.
pub struct Operations {
    pub bundle: Arc<Bundle>,
    /// Its executor must be the daemon's, so cancels reach runs in flight.
    pub automation: Automation,
    pub catalog: Arc<dyn ActionCatalog>,
    pub stats: Option<Arc<RunnerStats>>,
    /// The connectors detectors read, for evaluation and retraining.
    pub sources: vigil_runtime::runner::Sources,
    pub started_ms: i64,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("runbooks", &self.bundle.runbooks.len())
            .field("started_ms", &self.started_ms)
            .finish_non_exhaustive()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        match e {
            OpsError::NoRunbook { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            OpsError::Invalid { what, .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                e.to_string(),
            )
            .on(what),
            OpsError::Store(e) => e.into(),
        }
    }
}

pub(super) fn operations(api: &Api) -> Result<Arc<Operations>, ApiError> {
    api.serving().ops.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_operations",
            "this server was started without a bundle to operate",
        )
    })
}

/// A JSON body, or `T::default()` when it is empty.
pub(super) async fn json_body<T: DeserializeOwned + Default>(
    api: &Api,
    headers: &HeaderMap,
    b: Body,
) -> Result<T, ApiError> {
    let bytes = body(api, headers, b).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // serde reads a struct from an array too; a body is an object, named fields only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "the body must be a JSON object",
        )
        .on("(body)"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        )
        .on("(body)")
    })
}

/// The query string as `T`, refused with the JSON error shape.
pub(super) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

pub(super) async fn status(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let last = ops
        .stats
        .as_ref()
        .map(|s| s.last.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default();
    let detectors: BTreeMap<_, _> = ops
        .bundle
        .detectors
        .iter()
        .map(|d| (d.name.clone(), last.get(&d.name).cloned()))
        .collect();
    let live = Live {
        started_ms: ops.started_ms,
        in_flight: ops.automation.executor.in_flight(),
        incidents_open: api.svc().open_incidents().len(),
        detectors,
    };
    Ok(ok_json(&ops::status(api.svc().store(), live)?))
}

/// `{ "reason": "…" }`, optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn pause(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let p: PauseBody = json_body(&api, &headers, b).await?;
    let reason = p.reason.unwrap_or_else(|| "paused by an operator".into());
    let svc = api.svc();
    let store = svc.store();
    let state = ops::pause(store, &caller.name, &reason)?;
    store.sync().await?;
    Ok(ok_json(
        &json!({ "paused": true, "by": state.by, "reason": state.reason, "since_ms": state.since_ms }),
    ))
}

pub(super) async fn resume(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let svc = api.svc();
    let store = svc.store();
    ops::resume(store, &caller.name)?;
    store.sync().await?;
    Ok(ok_json(
        &json!({ "paused": false, "by": caller.name.as_ref() }),
    ))
}

pub(super) async fn audit(State(api): State<Arc<Api>>, uri: Uri) -> Result<Response, ApiError> {
    let q: AuditQuery = query(&uri)?;
    Ok(ok_json(&ops::audit(api.svc().store(), &q)?))
}

pub(super) async fn verify_audit(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    Ok(ok_json(&ops::verify_audit(api.svc().store())?))
}

pub(super) async fn promote(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let svc = api.svc();
    let store = svc.store();
    ops::promote(store, &ops.bundle, &caller.name, &name)?;
    store.sync().await?;
    Ok(ok_json(
        &json!({ "promoted": name, "by": caller.name.as_ref() }),
    ))
}

/// `{ "params": {…}, "incident": {…} }`, both optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    incident: Value,
}

/// Runs a runbook of the daemon's bundle as the caller would with `vigil run`
/// (policy and guardrails apply as for a manual run). Answers `202 {id}` as soon as
/// the execution is journaled, so the caller can follow it; when nothing was
/// executed (a policy paged, a guardrail blocked), answers `200` with the outcome.
pub(super) async fn run(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let r: RunBody = json_body(&api, &headers, b).await?;
    let runbook = ops.bundle.runbook(&name).ok_or_else(|| {
        ApiError::from(OpsError::NoRunbook {
            name: name.clone(),
            hint: vigil_core::suggest::hint(
                &name,
                ops.bundle.runbooks.iter().map(|r| r.name.as_str()),
            ),
        })
    })?;
    let params = vigil_exec::render::resolve_params(
        runbook,
        &r.params,
        &r.incident,
        &ops.automation.exprs,
        now_ms() / 1000,
    )
    .map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", e.message).on("params")
    })?;
    let source = ops
        .bundle
        .sources
        .get(&runbook.file)
        .cloned()
        .unwrap_or_default();
    let req = Request::manual(Arc::new(runbook.clone()), source, params, r.incident);
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let tx = Mutex::new(Some(tx));
    let first_event: Observer = Arc::new(move |rec, _| {
        if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(rec.id.clone());
        }
    });
    let mut automation = ops.automation.clone();
    automation.executor = automation.executor.clone().also_observed_by(first_event);
    automation.requested_by = Some(caller.name.to_string());
    let catalog = ops.catalog.clone();
    let task = tokio::spawn(async move {
        automation
            .handle(catalog.as_ref(), req, Origin::Manual)
            .await
    });
    match rx.await {
        Ok(id) => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "runbook": name, "status": "running" }),
        )),
        // Nothing was journaled: the outcome says why.
        Err(_) => {
            let outcome = task.await.map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "execution",
                    e.to_string(),
                )
            })??;
            Ok(ok_json(&outcome))
        }
    }
}

/// `{ "incident": {"labels": {…}, …} }`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default)]
    incident: Value,
}

/// Runs every runbook whose trigger matches the incident's labels, as automation
/// would (kill switch, guardrails, policy); answers each outcome.
pub(super) async fn trigger(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let t: TriggerBody = json_body(&api, &headers, b).await?;
    let mut automation = ops.automation.clone();
    automation.requested_by = Some(caller.name.to_string());
    let outcomes =
        ops::trigger(&ops.bundle, &automation, ops.catalog.as_ref(), &t.incident).await?;
    Ok(ok_json(&outcomes))
}

pub(super) async fn resume_execution(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let rec = api.svc().store().execution(&id)?;
    if rec.status.is_final() {
        return Err(vigil_exec::ExecError::Finished(id, rec.status.as_str()).into());
    }
    if ops.automation.executor.in_flight().contains(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("execution `{id}` is running now; there is nothing to resume"),
        ));
    }
    let svc = api.svc();
    ops::resumed(svc.store(), &caller.name, &id)?;
    svc.store().sync().await?;
    let executor = ops.automation.executor.clone();
    let resumed = id.clone();
    tokio::spawn(async move {
        if let Err(e) = executor.resume(&resumed).await {
            tracing::warn!(execution = %resumed, "resume: {e}");
        }
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "id": id, "status": "running" }),
    ))
}

pub(super) async fn cancel_execution(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let done = ops.automation.executor.cancel(&id, &caller.name).await?;
    Ok(ok_json(&json!({ "id": id, "cancelled": done })))
}

/// Reloads the bundle: the new one serves only if it is valid whole; otherwise the
/// answer lists its problems (`file:line:col: message`) and the old one goes on.
pub(super) async fn reload(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let Some(reloads) = &api.reloads else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_reload",
            "this server cannot reload its bundle",
        ));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    reloads
        .send(super::ReloadRequest {
            by: caller.actor(),
            reply,
        })
        .await
        .map_err(|_| stopping())?;
    match answer.await.map_err(|_| stopping())? {
        Ok(summary) => Ok(ok_json(&summary)),
        Err(e @ super::ReloadRefused::Invalid(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_bundle",
            e.to_string(),
        )),
        Err(e @ super::ReloadRefused::Busy(_)) => {
            Err(
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
                    .retry_after_a_second(),
            )
        }
    }
}

fn stopping() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the server is shutting down",
    )
}
