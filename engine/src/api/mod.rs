//! The HTTP API (axum): ingestion, incidents, silences, metrics, health.
//! The only home of `axum`.
//!
//! Bearer-token auth on everything but `/healthz` and `/readyz`, each token a
//! principal with a role that decides what it may do (`principals`); a body-size limit
//! and rate limits charged after authentication (per principal, and per client network
//! for requests without a valid token); every error is one [`ApiError`], answered as
//! JSON `{error, detail, field?}`. An ingest request is answered 2xx only after its
//! alerts are durable; a store failure answers 503 so Alertmanager retries.
//!
//! `server` accepts connections (header, body and idle timeouts, a connection cap);
//! `auth` and `limit` decide who a request is and whether it may go on; `body` reads
//! bodies; `alerts`, `silences` and `executions` are the handlers.

mod alerts;
mod auth;
mod body;
mod console;
mod error;
mod executions;
mod limit;
mod models;
mod operate;
mod principals;
mod server;
mod silences;

pub use error::ApiError;
pub use operate::Operations;
pub use principals::{Caller, Need, PrincipalError, Principals};
pub use server::{bind, serve};
pub use silences::parse_silence;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use limit::Limiter;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use vigil_alert::AlertService;
use vigil_alert::payload::Limits;
use vigil_alert::store::AlertStore;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Who may call, with which role. Must not be empty.
    pub principals: Principals,
    pub max_body_bytes: usize,
    /// Requests per second per accepted token (burst: twice that).
    pub rate_limit: u32,
    /// Requests per second per client address (an IPv6 /64) that carry no valid
    /// token (burst: twice that). Kept apart from `rate_limit`, so that clients who
    /// cannot authenticate never use up an authenticated client's allowance.
    pub unauthenticated_rate_limit: u32,
    /// Connections open at once. A new one past the cap closes the connection that has
    /// waited longest without a request; with every connection handling a request, it
    /// waits for one to finish.
    pub max_connections: usize,
    /// How long a connection may take to send a whole request head, counted from when
    /// it is accepted or its previous response is done; an idle keep-alive connection
    /// is closed when it runs out.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive, whole (answered 408).
    pub body_read_timeout: Duration,
    /// How long a connection may go without a request being handled, e.g. a client
    /// that does not read its response.
    pub idle_timeout: Duration,
    /// How long a shutdown waits for requests in progress before dropping them.
    pub shutdown_timeout: Duration,
    pub limits: Limits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            principals: Principals::default(),
            max_body_bytes: 4 * 1024 * 1024,
            rate_limit: 1000,
            unauthenticated_rate_limit: 10,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Everything the handlers share.
/// What the API serves from: the alert service and the operations of one bundle.
/// A reload replaces it whole.
#[derive(Debug)]
pub struct Serving {
    pub svc: Arc<AlertService>,
    /// The operations routes (status, pause, run, …); absent, they answer 503.
    pub ops: Option<Arc<Operations>>,
}

/// A request to reload the bundle, answered once the new one serves (or was refused).
#[derive(Debug)]
pub struct ReloadRequest {
    /// Who asked, for the audit log (`user:alice`, `signal:SIGHUP`).
    pub by: String,
    pub reply: tokio::sync::oneshot::Sender<Result<Value, ReloadRefused>>,
}

/// Why a reload was refused; the bundle that was serving still serves.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadRefused {
    /// The new bundle has problems: one `file:line:col: message` per problem.
    #[error("the bundle was not reloaded; it has {} problem(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    /// Now is not the time (executions running); try again later.
    #[error("{0}")]
    Busy(String),
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Api {
    serving: std::sync::RwLock<Arc<Serving>>,
    /// Held (shared) by every request while it is handled, and exclusively by a
    /// reload while it swaps what is served: no request sees half of each.
    gate: tokio::sync::RwLock<()>,
    cfg: ApiConfig,
    limiter: Limiter,
    reloads: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// The web console's sessions.
    console: console::Sessions,
}

impl Api {
    pub fn new(svc: Arc<AlertService>, cfg: ApiConfig) -> Arc<Api> {
        Api::operating(Serving { svc, ops: None }, cfg, None)
    }

    /// An API that also operates the daemon, and asks `reloads` to reload its bundle.
    pub fn operating(
        serving: Serving,
        cfg: ApiConfig,
        reloads: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    ) -> Arc<Api> {
        let limiter = Limiter::new(
            cfg.principals.len(),
            cfg.rate_limit,
            cfg.unauthenticated_rate_limit,
            limit::MAX_NETWORKS,
        );
        Arc::new(Api {
            serving: std::sync::RwLock::new(Arc::new(serving)),
            gate: tokio::sync::RwLock::new(()),
            cfg,
            limiter,
            reloads,
            console: console::Sessions::default(),
        })
    }

    /// What is served now.
    pub fn serving(&self) -> Arc<Serving> {
        self.serving
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn svc(&self) -> Arc<AlertService> {
        self.serving().svc.clone()
    }

    /// Waits for the requests being handled to finish and holds new ones back, so
    /// that what is served can be replaced (a reload); dropping the guard lets them on.
    pub async fn hold_requests(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Replaces what is served (under [`Api::hold_requests`]).
    pub fn replace(&self, serving: Serving) {
        *self.serving.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(serving);
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `200 OK` with `v` as JSON.
fn ok_json<T: serde::Serialize>(v: &T) -> Response {
    json_response(StatusCode::OK, &serde_json::to_value(v).unwrap_or_default())
}

async fn guard(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    // The console authenticates by its session cookie, not a bearer token.
    if console::owns(&path) {
        return console::guard(api, peer, req, next).await;
    }
    let resp = match auth::check(&api, peer, req.method(), req.uri(), req.headers()) {
        Err(refused) => refused.into_response(),
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            // A reload waits for this request; the reload route itself must not.
            let _held = (path != "/api/v1/reload").then(|| api.gate.read());
            let _held = match _held {
                Some(wait) => Some(wait.await),
                None => None,
            };
            next.run(req).await
        }
    };
    api.svc()
        .metrics()
        .http(route_name(&path), resp.status().as_u16());
    resp
}

fn route_name(path: &str) -> &'static str {
    match path {
        "/api/v1/alerts" => "alerts",
        "/api/v1/events" => "events",
        "/metrics" => "metrics",
        p if p.starts_with("/api/v1/incidents") => "incidents",
        p if p.starts_with("/api/v1/silences") => "silences",
        p if p.starts_with("/api/v1/executions") => "executions",
        p if p.starts_with("/api/v1/runbooks") => "runbooks",
        "/api/v1/status"
        | "/api/v1/pause"
        | "/api/v1/resume"
        | "/api/v1/audit"
        | "/api/v1/audit/verify"
        | "/api/v1/trigger"
        | "/api/v1/reload" => "operate",
        p if p.starts_with("/api/v1/models") || p == "/api/v1/evaluate" => "models",
        _ => "other",
    }
}

/// The router, with auth, limits and JSON errors.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { json_response(StatusCode::OK, &json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/alerts",
            post(alerts::post_alerts).get(alerts::list_alerts),
        )
        .route("/api/v1/events", post(alerts::post_events))
        .route("/api/v1/incidents", get(alerts::list_incidents))
        .route("/api/v1/incidents/{id}", get(alerts::show_incident))
        .route(
            "/api/v1/incidents/{id}/acknowledge",
            post(alerts::ack_incident),
        )
        .route(
            "/api/v1/incidents/{id}/resolve",
            post(alerts::resolve_incident),
        )
        .route(
            "/api/v1/silences",
            get(silences::list_silences).post(silences::add_silence),
        )
        .route("/api/v1/silences/{id}", delete(silences::expire_silence))
        .route("/api/v1/executions", get(executions::list_executions))
        .route("/api/v1/executions/{id}", get(executions::show_execution))
        .route(
            "/api/v1/executions/{id}/approve",
            post(executions::approve_execution),
        )
        .route(
            "/api/v1/executions/{id}/reject",
            post(executions::reject_execution),
        )
        .route(
            "/api/v1/executions/{id}/resume",
            post(operate::resume_execution),
        )
        .route(
            "/api/v1/executions/{id}/cancel",
            post(operate::cancel_execution),
        )
        .route("/api/v1/status", get(operate::status))
        .route("/api/v1/reload", post(operate::reload))
        .route("/api/v1/models", get(models::list))
        .route("/api/v1/models/{name}/promote", post(models::promote))
        .route("/api/v1/models/{name}/retrain", post(models::retrain))
        .route(
            "/api/v1/evaluate",
            get(models::evaluate).post(models::evaluate_and_retrain),
        )
        .route("/api/v1/pause", post(operate::pause))
        .route("/api/v1/resume", post(operate::resume))
        .route("/api/v1/audit", get(operate::audit))
        .route("/api/v1/audit/verify", get(operate::verify_audit))
        .route("/api/v1/trigger", post(operate::trigger))
        .route("/api/v1/runbooks/{name}/run", post(operate::run))
        .route("/api/v1/runbooks/{name}/promote", post(operate::promote))
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} does not answer {}",
                    vigil_core::text::visible(req.uri().path()),
                    req.method()
                ),
            )
        })
        .fallback(|State(api): State<Arc<Api>>, req: Request| async move {
            // The console's pages are not API routes: its own router serves them.
            if console::owns(req.uri().path()) {
                return console::serve(api, req).await;
            }
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no route {} {}",
                    req.method(),
                    vigil_core::text::visible(req.uri().path())
                ),
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

async fn ready(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    api.svc()
        .store()
        .incidents()
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()))?;
    Ok(json_response(StatusCode::OK, &json!({"status": "ready"})))
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let mut r = api.svc().metrics().render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
