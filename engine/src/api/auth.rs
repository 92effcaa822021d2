//! Who a request is: its bearer token, checked in constant time, and the rate limit
//! charged to it (or to its network, without a valid token).

use super::limit::Principal;
use super::{Api, ApiError};
use axum::http::{HeaderMap, StatusCode, header};
use std::net::SocketAddr;

/// `Err` when the request may not go on. Authentication comes
/// first, so the request is charged to its token's bucket, or, without a valid token,
/// to its address's bucket among the unauthenticated ones.
pub(super) fn check(
    api: &Api,
    peer: SocketAddr,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
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
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                .retry_after_a_second(),
        );
    }
    refused.map_or(Ok(()), |r| Err(r.error(path)))
}

/// Why a request has no principal.
#[derive(Clone, Copy, Debug)]
enum Refused {
    NoHeader,
    NotBearer,
    UnknownToken,
}

impl Refused {
    fn error(self, path: &str) -> ApiError {
        match self {
            Refused::NoHeader => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{path} needs an `Authorization: Bearer <token>` header"),
            )
            .on("Authorization"),
            Refused::NotBearer => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer <token>`",
            )
            .on("Authorization"),
            Refused::UnknownToken => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the bearer token in the Authorization header is not one of the configured tokens",
            )
            .on("Authorization"),
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

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
