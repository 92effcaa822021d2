//! Request bodies: read whole, up to the size limit, within the body-read timeout.

use super::{Api, ApiError};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};

/// Reads the body up to the limit, within the body-read timeout.
pub(super) async fn body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = api.cfg.body_read_timeout;
    match tokio::time::timeout(limit, read_body(api, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {limit:?}"),
        )
        .on("(body)")
        .closing()),
    }
}

async fn read_body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let max = api.cfg.max_body_bytes;
    let too_large = |n: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is {n} bytes, at most {max} are accepted"),
        )
        .on("(body)")
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
