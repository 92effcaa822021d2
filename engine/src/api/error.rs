//! Every error the API answers, as one type: a status and the JSON body
//! `{error, detail, field?}` that says what went wrong, where and how to fix it.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vigil_alert::ServiceError;
use vigil_alert::payload::PayloadError;
use vigil_exec::ExecError;
use vigil_store::StoreError;

/// An error answer. Handlers return `Result<_, ApiError>` and use `?`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// A stable, machine-readable name (`unauthorized`, `too_large`, …).
    code: &'static str,
    detail: String,
    /// The field (or header, or `(body)`) the error is about.
    field: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// Names what the error is about.
    pub fn on(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    fn with_header(mut self, name: HeaderName, value: &'static str) -> ApiError {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// Asks the client to wait a second before trying again.
    pub fn retry_after_a_second(self) -> ApiError {
        self.with_header(header::RETRY_AFTER, "1")
    }

    /// Closes the connection after the answer (the request body was not read whole).
    pub fn closing(self) -> ApiError {
        self.with_header(header::CONNECTION, "close")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut v = json!({ "error": self.code, "detail": self.detail });
        if let (Some(f), Some(o)) = (self.field, v.as_object_mut()) {
            o.insert("field".into(), json!(f));
        }
        let mut r = super::json_response(self.status, &v);
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> ApiError {
        let status = match e {
            PayloadError::Utf8 { .. } | PayloadError::Json { .. } => StatusCode::BAD_REQUEST,
            PayloadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PayloadError::Field { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let err = ApiError::new(status, e.code(), e.to_string());
        match e.field() {
            Some(f) => err.on(f),
            None => err,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            ServiceError::Invalid(d) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", d)
            }
            ServiceError::Store(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}; nothing was acknowledged, retry"),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        match e {
            ExecError::NotAwaiting { .. }
            | ExecError::Finished(..)
            | ExecError::StalePlan { .. }
            | ExecError::ApprovalExpired { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            ExecError::NotAnApprover { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "not_an_approver", e.to_string())
            }
            ExecError::Store(e @ StoreError::NotFound { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            e => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "execution",
                e.to_string(),
            ),
        }
    }
}
