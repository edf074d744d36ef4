//! API errors: one exhaustive mapping to status codes and stable labels.

use std::time::Duration;

use hyper::StatusCode;

use crate::backend::BackendError;
use crate::hierarchy::KeyError;

/// Every error the API can answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// Malformed JSON, missing field, bad base64.
    BadRequest(String),
    /// A wrapped key that is not valid, of the wrong type, or tampered with.
    /// Carries no detail: every way client material can fail answers the
    /// same status, label and message (the detail goes to the server log), so
    /// no answer tells an attacker which check a forged blob failed.
    InvalidWrappedKey,
    /// The client's role may not do this.
    Forbidden(String),
    NotFound,
    /// The path exists, not with this method; `allow` lists the ones it takes
    /// (sent as the `Allow` header, as RFC 9110 asks of a 405).
    MethodNotAllowed {
        allow: &'static str,
    },
    UnsupportedMediaType,
    PayloadTooLarge {
        limit: usize,
    },
    /// The body did not arrive within the header timeout.
    RequestTimeout,
    TooManyRequests {
        retry_after: Duration,
    },
    /// The master-key backend cannot be reached now; retry later.
    BackendUnavailable {
        retry_after: Duration,
    },
    /// The backend refused for a reason only the operator can fix.
    BackendFailure,
    /// The audit trail cannot be written, so no key operation is served.
    AuditUnavailable,
    Internal,
}

/// The one answer to every refused wrapped key, whatever the cause.
pub const INVALID_WRAPPED_KEY_MESSAGE: &str = "a wrapped key was refused: send the wrapped keys \
    exactly as this key server returned them, each in its own field and under its own parent; \
    the operator finds the cause in the server log under this request id";

/// Every label, for the OpenAPI agreement test.
pub const LABELS: &[&str] = &[
    "bad-request",
    "invalid-wrapped-key",
    "forbidden",
    "not-found",
    "method-not-allowed",
    "unsupported-media-type",
    "payload-too-large",
    "request-timeout",
    "too-many-requests",
    "backend-unavailable",
    "backend-error",
    "audit-unavailable",
    "internal",
];

impl ApiError {
    pub fn status_and_label(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ApiError::InvalidWrappedKey => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid-wrapped-key")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
            }
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request-timeout"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-requests")
            }
            ApiError::BackendUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend-unavailable")
            }
            ApiError::BackendFailure => (StatusCode::BAD_GATEWAY, "backend-error"),
            ApiError::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit-unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The message for the client. 5xx messages say nothing internal.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::Forbidden(m) => m.clone(),
            ApiError::InvalidWrappedKey => INVALID_WRAPPED_KEY_MESSAGE.into(),
            ApiError::NotFound => "no such endpoint; see the API reference".into(),
            ApiError::MethodNotAllowed { allow } => {
                format!("method not allowed on this endpoint; it takes {allow}")
            }
            ApiError::UnsupportedMediaType => "send the body as application/json".into(),
            ApiError::PayloadTooLarge { limit } => format!("request body larger than {limit} bytes"),
            ApiError::RequestTimeout => "the request body did not arrive in time".into(),
            ApiError::TooManyRequests { .. } => "rate limit exceeded; retry after the given delay".into(),
            ApiError::BackendUnavailable { .. } => {
                "the key backend is unavailable; retry after the given delay".into()
            }
            ApiError::BackendFailure => {
                "the key backend refused the operation; the operator finds the cause in the server log under this request id".into()
            }
            ApiError::AuditUnavailable => {
                "the audit trail cannot be written, so key operations are refused; the operator finds the cause in the server log".into()
            }
            ApiError::Internal => "internal error; the operator finds the cause in the server log under this request id".into(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests { retry_after }
            | ApiError::BackendUnavailable { retry_after } => Some(*retry_after),
            ApiError::AuditUnavailable => Some(std::time::Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl From<&KeyError> for ApiError {
    fn from(e: &KeyError) -> Self {
        match e {
            KeyError::Envelope { .. } => ApiError::InvalidWrappedKey,
            KeyError::Backend(b) => match b {
                BackendError::Unavailable { retry_after, .. } => ApiError::BackendUnavailable {
                    retry_after: *retry_after,
                },
                BackendError::InvalidCiphertext(_) => ApiError::InvalidWrappedKey,
                BackendError::KeyNotFound(_)
                | BackendError::KeyNotUsable(_)
                | BackendError::PermissionDenied(_)
                | BackendError::Misconfigured(_)
                | BackendError::Protocol(_) => ApiError::BackendFailure,
            },
            KeyError::Crypto(_) => ApiError::Internal,
        }
    }
}
