//! Failure-prediction models and the detectors' evaluation over the API: list the
//! model versions, promote one, retrain from what happened, and score the stored
//! predictions against what the sources say happened.

use super::operate::{json_body, operations, query};
use super::principals::Caller;
use super::{Api, ApiError, ok_json};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use vigil_runtime::store::DetectorStore;

pub(super) async fn list(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    Ok(ok_json(&api.svc().store().models()?))
}

/// `{ "version": N }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    version: Option<u32>,
}

pub(super) async fn promote(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let p: PromoteBody = json_body(&api, &headers, b).await?;
    let version = p.version.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "promote a specific version: `{\"version\": N}`",
        )
        .on("version")
    })?;
    let svc = api.svc();
    let m = crate::ops::promote_model(svc.store(), &caller.name, &name, version)?;
    svc.store().sync().await?;
    Ok(ok_json(&serde_json::json!({ "promoted": m.id() })))
}

/// `{ "detector": "…", "promote": true }`, both optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrainBody {
    #[serde(default)]
    detector: Option<String>,
    #[serde(default = "yes")]
    promote: bool,
}

impl Default for RetrainBody {
    fn default() -> Self {
        RetrainBody {
            detector: None,
            promote: true,
        }
    }
}

fn yes() -> bool {
    true
}

pub(super) async fn retrain(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ops = operations(&api)?;
    let r: RetrainBody = json_body(&api, &headers, b).await?;
    let svc = api.svc();
    let done = crate::ops::retrain(
        &ops.bundle,
        svc.store(),
        &ops.sources,
        &caller.name,
        &name,
        r.detector.as_deref(),
        r.promote,
    )
    .await?;
    svc.store().sync().await?;
    Ok(ok_json(&done))
}

/// `?window=1h` (default 1h), or `{ "window": "1h", "retrain": true }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvaluateQuery {
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    retrain: bool,
}

fn window_ms(q: &EvaluateQuery) -> Result<i64, ApiError> {
    let text = q.window.as_deref().unwrap_or("1h");
    vigil_core::duration::Duration::parse(text)
        .map(|d| d.as_std().as_millis() as i64)
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("window `{text}`: {}", e.message),
            )
            .on("window")
        })
}

/// Scores the stored predictions (read-only).
pub(super) async fn evaluate(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let q: EvaluateQuery = query(&uri)?;
    if q.retrain {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "retraining changes the models: POST /api/v1/evaluate with {\"retrain\": true}",
        )
        .on("retrain"));
    }
    run_evaluation(&api, &caller, &q).await
}

/// Scores the stored predictions and, with `retrain`, retrains the models.
pub(super) async fn evaluate_and_retrain(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let q: EvaluateQuery = json_body(&api, &headers, b).await?;
    run_evaluation(&api, &caller, &q).await
}

async fn run_evaluation(
    api: &Api,
    caller: &Caller,
    q: &EvaluateQuery,
) -> Result<Response, ApiError> {
    let ops = operations(api)?;
    let svc = api.svc();
    let found = crate::ops::evaluate(
        &ops.bundle,
        svc.store(),
        &ops.sources,
        &caller.name,
        window_ms(q)?,
        q.retrain,
    )
    .await?;
    if q.retrain {
        svc.store().sync().await?;
    }
    Ok(ok_json(&found))
}
