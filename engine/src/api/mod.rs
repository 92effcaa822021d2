//! The HTTP API (axum): ingestion, incidents, silences, metrics, health.
//! The only home of `axum`.
//!
//! Bearer-token auth on everything but `/healthz` and `/readyz`; a body-size limit
//! and rate limits charged after authentication (per token, and per client network
//! for requests without a valid token); every error is JSON `{error, detail, field?}`.
//! An ingest request is answered 2xx only after its alerts are durable; a store
//! failure answers 503 so Alertmanager retries. `server.rs` accepts connections with
//! header, body and idle timeouts and a cap on how many are open.

mod limit;
mod server;

pub use server::{bind, serve};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use limit::{Limiter, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_alert::payload::{Limits, PayloadError, parse_events, parse_webhook};
use vigil_alert::store::AlertStore;
use vigil_alert::{AlertService, IncidentStatus, ServiceError, Silence};
use vigil_bundle::model::Matcher;
use vigil_core::now_ms;
use vigil_exec::record::ExecutionStore;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Accepted bearer tokens. Must not be empty.
    pub tokens: Vec<String>,
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
            tokens: Vec::new(),
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
#[derive(Debug)]
pub struct Api {
    svc: Arc<AlertService>,
    cfg: ApiConfig,
    limiter: Limiter,
}

impl Api {
    pub fn new(svc: Arc<AlertService>, cfg: ApiConfig) -> Arc<Api> {
        let limiter = Limiter::new(
            cfg.tokens.len(),
            cfg.rate_limit,
            cfg.unauthenticated_rate_limit,
            limit::MAX_NETWORKS,
        );
        Arc::new(Api { svc, cfg, limiter })
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

fn error(
    code: StatusCode,
    error: &str,
    detail: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let mut v = json!({ "error": error, "detail": detail.into() });
    if let (Some(f), Some(o)) = (field, v.as_object_mut()) {
        o.insert("field".into(), json!(f));
    }
    json_response(code, &v)
}

fn payload_error(e: &PayloadError) -> Response {
    let code = match e {
        PayloadError::Utf8 { .. } | PayloadError::Json { .. } => StatusCode::BAD_REQUEST,
        PayloadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        PayloadError::Field { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(code, e.code(), e.to_string(), e.field())
}

fn service_error(e: &ServiceError) -> Response {
    match e {
        ServiceError::NotFound { .. } => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string(), None)
        }
        ServiceError::Invalid(d) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", d.clone(), None)
        }
        ServiceError::Store(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{e}; nothing was acknowledged, retry"),
            None,
        ),
    }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn guard(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let resp = match check(&api, peer, &path, req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    };
    api.svc
        .metrics()
        .http(route_name(&path), resp.status().as_u16());
    resp
}

/// `Some(error response)` when the request may not go on. Authentication comes
/// first, so the request is charged to its token's bucket, or, without a valid token,
/// to its address's bucket among the unauthenticated ones.
fn check(api: &Api, peer: SocketAddr, path: &str, headers: &HeaderMap) -> Option<Response> {
    let (who, refused) = match authenticate(api, headers) {
        Ok(i) => (Principal::Token(i), None),
        Err(r) => (Principal::Anonymous(peer.ip()), Some(r)),
    };
    if !api.limiter.allow(who) {
        let detail = match who {
            Principal::Token(_) => format!(
                "more than {} requests per second with this token",
                api.cfg.rate_limit
            ),
            Principal::Anonymous(ip) => format!(
                "more than {} requests per second without a valid token from {ip}",
                api.cfg.unauthenticated_rate_limit
            ),
        };
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail, None);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(r);
    }
    refused.map(|r| r.response(path))
}

/// Why a request has no principal.
#[derive(Clone, Copy, Debug)]
enum Refused {
    NoHeader,
    NotBearer,
    UnknownToken,
}

impl Refused {
    fn response(self, path: &str) -> Response {
        match self {
            Refused::NoHeader => error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{path} needs an `Authorization: Bearer <token>` header"),
                Some("Authorization"),
            ),
            Refused::NotBearer => error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer <token>`",
                Some("Authorization"),
            ),
            Refused::UnknownToken => error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the bearer token in the Authorization header is not one of the configured tokens",
                Some("Authorization"),
            ),
        }
    }
}

/// The index of the request's token among the configured ones, or why it has none.
fn authenticate(api: &Api, headers: &HeaderMap) -> Result<usize, Refused> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or(Refused::NoHeader)?;
    let token = auth
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(Refused::NotBearer)?;
    // Every token is compared, so the time taken does not tell which one matched.
    api.cfg
        .tokens
        .iter()
        .enumerate()
        .fold(None, |found, (i, t)| {
            if same(t.as_bytes(), token.as_bytes()) {
                Some(i)
            } else {
                found
            }
        })
        .ok_or(Refused::UnknownToken)
}

fn route_name(path: &str) -> &'static str {
    match path {
        "/api/v1/alerts" => "alerts",
        "/api/v1/events" => "events",
        "/metrics" => "metrics",
        p if p.starts_with("/api/v1/incidents") => "incidents",
        p if p.starts_with("/api/v1/silences") => "silences",
        p if p.starts_with("/api/v1/executions") => "executions",
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
        .route("/api/v1/alerts", post(post_alerts).get(list_alerts))
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(show_incident))
        .route("/api/v1/incidents/{id}/acknowledge", post(ack_incident))
        .route("/api/v1/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/executions", get(list_executions))
        .route("/api/v1/executions/{id}", get(show_execution))
        .route("/api/v1/executions/{id}/approve", post(approve_execution))
        .route("/api/v1/executions/{id}/reject", post(reject_execution))
        .fallback(|req: Request| async move {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {} {}", req.method(), req.uri().path()),
                None,
            )
        })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    match api.svc.store().incidents() {
        Ok(_) => json_response(StatusCode::OK, &json!({"status": "ready"})),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            e.to_string(),
            None,
        ),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let mut r = api.svc.metrics().render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Reads the body up to the limit, within the body-read timeout.
async fn body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let limit = api.cfg.body_read_timeout;
    match tokio::time::timeout(limit, read_body(api, headers, body)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {:?}", limit),
                Some("(body)"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

async fn read_body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let max = api.cfg.max_body_bytes;
    let too_large = |n: String| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is {n} bytes, at most {max} are accepted"),
            Some("(body)"),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && n > max
    {
        // Read (and drop) a moderately larger body first, so the client gets to
        // read the answer instead of a broken pipe.
        if n <= 16 * max {
            drain(body).await;
        }
        return Err(too_large(n.to_string()));
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large("more than that".into()))
}

async fn drain(mut body: Body) {
    use axum::body::HttpBody;
    while let Some(Ok(_)) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {}
}

async fn post_alerts(State(api): State<Arc<Api>>, headers: HeaderMap, b: Body) -> Response {
    let t0 = Instant::now();
    let bytes = match body(&api, &headers, b).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let hook = match parse_webhook(&bytes, &api.cfg.limits) {
        Ok(h) => h,
        Err(e) => return payload_error(&e),
    };
    let truncated = hook.truncated_alerts;
    match api.svc.ingest(hook.alerts).await {
        Ok(done) => {
            api.svc
                .metrics()
                .ingest_seconds
                .observe(t0.elapsed().as_secs_f64());
            json_response(
                StatusCode::OK,
                &json!({"status": "stored", "received": done.received, "new": done.new, "deduplicated": done.deduplicated, "truncated_alerts": truncated}),
            )
        }
        Err(e) => service_error(&e),
    }
}

async fn post_events(State(api): State<Arc<Api>>, headers: HeaderMap, b: Body) -> Response {
    let t0 = Instant::now();
    let bytes = match body(&api, &headers, b).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let events = match parse_events(&bytes, &api.cfg.limits) {
        Ok(e) => e,
        Err(e) => return payload_error(&e),
    };
    match api.svc.ingest(events).await {
        Ok(done) => {
            api.svc
                .metrics()
                .ingest_seconds
                .observe(t0.elapsed().as_secs_f64());
            json_response(
                StatusCode::OK,
                &json!({"status": "stored", "received": done.received, "new": done.new, "deduplicated": done.deduplicated}),
            )
        }
        Err(e) => service_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_alerts(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let alerts = api.svc.alerts(q.limit.unwrap_or(usize::MAX));
    json_response(
        StatusCode::OK,
        &serde_json::to_value(alerts).unwrap_or_default(),
    )
}

async fn list_incidents(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let open_only = match q.status.as_deref() {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("status must be `open` or `all`, got `{other}`"),
                Some("status"),
            );
        }
    };
    let list = api.svc.incidents(open_only, q.limit.unwrap_or(100));
    json_response(
        StatusCode::OK,
        &serde_json::to_value(list).unwrap_or_default(),
    )
}

async fn show_incident(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.svc.incident(&id) {
        Ok((inc, events)) => {
            json_response(StatusCode::OK, &json!({"incident": inc, "events": events}))
        }
        Err(e) => service_error(&e),
    }
}

async fn ack_incident(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api
        .svc
        .set_status(
            &id,
            IncidentStatus::Acknowledged,
            "acknowledged over the API",
        )
        .await
    {
        Ok(inc) => json_response(
            StatusCode::OK,
            &serde_json::to_value(inc).unwrap_or_default(),
        ),
        Err(e) => service_error(&e),
    }
}

async fn resolve_incident(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api
        .svc
        .set_status(&id, IncidentStatus::Resolved, "resolved over the API")
        .await
    {
        Ok(inc) => json_response(
            StatusCode::OK,
            &serde_json::to_value(inc).unwrap_or_default(),
        ),
        Err(e) => service_error(&e),
    }
}

async fn list_silences(State(api): State<Arc<Api>>) -> Response {
    let now = now_ms();
    let list: Vec<Value> = api
        .svc
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
        matchers.push(Matcher::parse(k, s).map_err(|e| f(&format!("matchers.{k}"), e))?);
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

async fn add_silence(State(api): State<Arc<Api>>, headers: HeaderMap, b: Body) -> Response {
    let bytes = match body(&api, &headers, b).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = match parse_silence(&bytes, now_ms()) {
        Ok(s) => s,
        Err((field, detail)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("`{field}`: {detail}"),
                Some(&field),
            );
        }
    };
    match api.svc.add_silence(s).await {
        Ok(s) => json_response(StatusCode::OK, &serde_json::to_value(s).unwrap_or_default()),
        Err(e) => service_error(&e),
    }
}

async fn expire_silence(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.svc.expire_silence(&id).await {
        Ok(s) => json_response(StatusCode::OK, &serde_json::to_value(s).unwrap_or_default()),
        Err(e) => service_error(&e),
    }
}

async fn list_executions(State(api): State<Arc<Api>>) -> Response {
    match api.svc.store().executions() {
        Ok(list) => {
            let rows: Vec<Value> = list
                .iter()
                .map(|r| json!({ "id": r.id, "runbook": r.runbook, "status": r.status, "origin": r.origin, "created_ms": r.created_ms, "updated_ms": r.updated_ms, "reason": r.reason }))
                .collect();
            json_response(StatusCode::OK, &Value::Array(rows))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            e.to_string(),
            None,
        ),
    }
}

async fn show_execution(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let store = api.svc.store();
    match (store.execution(&id), store.events(&id)) {
        (Ok(rec), Ok(events)) => json_response(
            StatusCode::OK,
            &json!({ "execution": rec, "events": events }),
        ),
        (Err(vigil_store::StoreError::NotFound(_)), _) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no execution `{id}`"),
            None,
        ),
        (Err(e), _) | (_, Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            e.to_string(),
            None,
        ),
    }
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

async fn approve_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Response {
    decide_execution(api, id, true, headers, b).await
}

async fn reject_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Body,
) -> Response {
    decide_execution(api, id, false, headers, b).await
}

/// Approves or rejects the step an execution waits on, bound to its plan hash.
async fn decide_execution(
    api: Arc<Api>,
    id: String,
    approve: bool,
    headers: HeaderMap,
    b: Body,
) -> Response {
    let bytes = match body(&api, &headers, b).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let d: Decision = if bytes.iter().all(u8::is_ascii_whitespace) {
        Decision::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    e.to_string(),
                    Some("(body)"),
                );
            }
        }
    };
    if api.svc.executor().is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_executor",
            "this server runs no executions",
            None,
        );
    }
    let result = api
        .svc
        .decide_approval(
            &id,
            approve,
            "api",
            d.comment.as_deref(),
            d.plan_hash.as_deref(),
        )
        .await;
    use vigil_exec::ExecError;
    match result {
        Ok(Some(report)) => json_response(
            StatusCode::OK,
            &serde_json::to_value(report).unwrap_or_default(),
        ),
        Ok(None) => json_response(StatusCode::OK, &json!({ "rejected": true })),
        Err(
            e @ (ExecError::NotAwaiting { .. }
            | ExecError::StalePlan { .. }
            | ExecError::ApprovalExpired { .. }),
        ) => error(StatusCode::CONFLICT, "conflict", e.to_string(), None),
        Err(ExecError::Store(vigil_store::StoreError::NotFound(what))) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no execution `{what}`"),
            None,
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "execution",
            e.to_string(),
            None,
        ),
    }
}
