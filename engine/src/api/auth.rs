//! Who a request is and whether it may do what it asks: its bearer token, checked in
//! constant time, the rate limit charged to its principal (or to its network, without
//! a valid token), then its principal's role against what the route needs.

use super::limit::Principal;
use super::principals::{Caller, Need, Refused, allows, need, well_formed};
use super::{Api, ApiError};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use std::net::SocketAddr;

/// The request's caller, or why the request may not go on. Authentication comes
/// first, so the request is charged to its principal's bucket, or, without a valid
/// token, to its address's bucket among the unauthenticated ones.
pub(super) fn check(
    api: &Api,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let path = uri.path();
    let found = authenticate(api, headers);
    let who = match &found {
        Ok(i) => Principal::Token(*i),
        Err(_) => Principal::Anonymous(peer.ip()),
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
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                .retry_after_a_second(),
        );
    }
    // A credential in the URL ends up in logs and browser history: refused even when
    // the header is right, so the habit is caught on the first try.
    if let Some(q) = uri.query()
        && let Some(key) = q
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .find(|k| CREDENTIAL_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "token_in_url",
            format!("`{}` in the query string: send the token in an `Authorization: Bearer <token>` header, never in the URL (URLs are logged)", vigil_core::text::visible(key)),
        )
        .on(key.to_string()));
    }
    let index = found.map_err(|r| r.error(path))?;
    let caller = api
        .cfg
        .principals
        .caller(index)
        .cloned()
        .ok_or_else(|| Refusal::Unknown.error(path))?;
    let needs = need(method, path);
    if !allows(caller.role, needs) {
        return Err(forbidden(&caller, needs, method, path));
    }
    Ok(caller)
}

/// Query parameters that look like a credential.
const CREDENTIAL_PARAMS: [&str; 6] = [
    "token",
    "access_token",
    "api_key",
    "apikey",
    "bearer",
    "authorization",
];

fn forbidden(caller: &Caller, needs: Need, method: &Method, path: &str) -> ApiError {
    let least = match needs {
        Need::Read => "viewer",
        Need::Deliver => "sender",
        Need::Operate => "operator",
        Need::Administer => "admin",
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "`{}` has role `{}`, which may not {} ({method} {}); this needs `{least}`{}",
            caller.name,
            caller.role.as_str(),
            needs.as_str(),
            vigil_core::text::visible(path),
            if needs == Need::Deliver {
                " or `operator`"
            } else {
                " or above"
            }
        ),
    )
}

/// Why a request has no principal.
#[derive(Clone, Debug)]
enum Refusal {
    NoHeader,
    NotBearer,
    Malformed,
    Unknown,
    Expired(Refused),
}

impl Refusal {
    fn error(self, path: &str) -> ApiError {
        match self {
            Refusal::NoHeader => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{path} needs an `Authorization: Bearer <token>` header"),
            ),
            Refusal::NotBearer => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer <token>`",
            ),
            Refusal::Malformed => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is malformed: it must be visible ASCII characters without spaces",
            ),
            Refusal::Unknown => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the bearer token in the Authorization header is not one of the configured tokens",
            ),
            Refusal::Expired(r) => {
                let detail = match r {
                    Refused::Expired { name, at_ms } => format!(
                        "the token of `{name}` expired at {}; ask an admin for a new one",
                        chrono::DateTime::from_timestamp_millis(at_ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                    Refused::Unknown => "the token is not accepted".into(),
                };
                ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", detail)
            }
        }
        .on("Authorization")
    }
}

/// The index of the request's principal, or why it has none.
fn authenticate(api: &Api, headers: &HeaderMap) -> Result<usize, Refusal> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::NoHeader)?;
    let token = auth
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(Refusal::NotBearer)?;
    if !well_formed(token) {
        return Err(Refusal::Malformed);
    }
    api.cfg
        .principals
        .authenticate(token, vigil_core::now_ms())
        .map_err(|r| match r {
            Refused::Unknown => Refusal::Unknown,
            expired @ Refused::Expired { .. } => Refusal::Expired(expired),
        })
}
