//! Cloudflare's API v4 response envelope, and the errors a request can get:
//! `{"success", "errors": [{"code", "message"}], "messages", "result"}`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::apply::ApplyError;
use crate::state::ValidationError;

/// Error codes (numbers chosen in Cloudflare's style; the message says what
/// and, for validation, which field).
pub mod code {
    /// A field's value is refused; the message names the object and field.
    pub const VALIDATION: u32 = 1004;
    /// The body is not JSON, not the expected shape, or has unknown fields.
    pub const MALFORMED: u32 = 6007;
    /// The body exceeds the size limit.
    pub const TOO_LARGE: u32 = 6008;
    /// No such endpoint.
    pub const NO_ROUTE: u32 = 7000;
    /// The endpoint exists, not with this method.
    pub const METHOD: u32 = 7001;
    /// No such zone, record, hostname, account or ruleset.
    pub const NOT_FOUND: u32 = 7003;
    /// The store failed; nothing was changed.
    pub const INTERNAL: u32 = 9000;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code::VALIDATION, message)
    }

    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code::MALFORMED, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> ApiError {
        ApiError::invalid(error.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> ApiError {
        match error {
            ApplyError::Invalid(error) => ApiError::invalid(format!("{error:#}")),
            ApplyError::Commit(error) => {
                tracing::error!("control write not committed: {error:#}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code::INTERNAL,
                    format!("the write was not committed, nothing changed: {error:#}"),
                )
            }
        }
    }
}

pub fn success(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

pub fn failure(error: &ApiError) -> Value {
    json!({
        "success": false,
        "errors": [{"code": error.code, "message": error.message}],
        "messages": [],
        "result": null,
    })
}
