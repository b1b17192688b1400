//! The one error envelope of the API, and the stable machine codes it carries.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::repo::RepoError;
use crate::store::StoreError;

tokio::task_local! {
    /// The id of the request being served, set by [`super::request_context`].
    pub static REQUEST_ID: String;
}

/// The request id of the current task, or `"-"` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Every machine-readable error code the API returns, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    MalformedMultipart,
    RequestTimeout,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    FileNotFound,
    FileNotDiscardable,
    FileMissing,
    MultipleFiles,
    FileNameInvalid,
    FileExtensionNotAllowed,
    FileEmpty,
    FileTooLarge,
    FileContentMismatch,
    FileContentInvalid,
    InvalidJson,
    InvalidPayload,
    ClientIdMismatch,
    PayloadTooLarge,
    SlotFileNotFound,
    FileExpired,
    FileAlreadyConsumed,
    IdempotencyKeyReused,
    FileNotPromoted,
    RateLimited,
    TooManyUploads,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// The code as it appears in `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MalformedMultipart => "malformed_multipart",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::FileNotFound => "file_not_found",
            ErrorCode::FileNotDiscardable => "file_not_discardable",
            ErrorCode::FileMissing => "file_missing",
            ErrorCode::MultipleFiles => "multiple_files",
            ErrorCode::FileNameInvalid => "file_name_invalid",
            ErrorCode::FileExtensionNotAllowed => "file_extension_not_allowed",
            ErrorCode::FileEmpty => "file_empty",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::FileContentMismatch => "file_content_mismatch",
            ErrorCode::FileContentInvalid => "file_content_invalid",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::ClientIdMismatch => "client_id_mismatch",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            // A webhook naming an unknown file is refused as a whole (422), not a missing route.
            ErrorCode::SlotFileNotFound => "file_not_found",
            ErrorCode::FileExpired => "file_expired",
            ErrorCode::FileAlreadyConsumed => "file_already_consumed",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::FileNotPromoted => "file_not_promoted",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyUploads => "too_many_uploads",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::MalformedMultipart | ErrorCode::InvalidJson => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RateLimited | ErrorCode::TooManyUploads => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::IdempotencyKeyReused | ErrorCode::FileNotPromoted => StatusCode::CONFLICT,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::FileNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::FileNotDiscardable => StatusCode::CONFLICT,
            ErrorCode::FileMissing
            | ErrorCode::MultipleFiles
            | ErrorCode::FileNameInvalid
            | ErrorCode::FileExtensionNotAllowed
            | ErrorCode::FileEmpty
            | ErrorCode::FileTooLarge
            | ErrorCode::FileContentMismatch
            | ErrorCode::FileContentInvalid
            | ErrorCode::InvalidPayload
            | ErrorCode::ClientIdMismatch
            | ErrorCode::SlotFileNotFound
            | ErrorCode::FileExpired
            | ErrorCode::FileAlreadyConsumed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error envelope every failure answers with.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The inside of the error envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, e.g. `file_expired`.
    pub code: &'static str,
    pub message: String,
    /// Per-field or per-slot details, e.g. `{"files.resume": "…"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<BTreeMap<String, String>>,
    /// Also in the `X-Request-Id` header and the service's log.
    pub request_id: String,
}

/// The failures every client route can answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ClientFailures {
    /// Missing, unknown or revoked key
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// Key not mapped to this client id
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// Rate limited
    #[response(status = 429)]
    RateLimited(ErrorEnvelope),
    /// A dependency is down
    #[response(status = 503)]
    Unavailable(ErrorEnvelope),
}

/// An error as the client sees it. Server-side causes are kept for the log, never sent.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<BTreeMap<String, String>>,
    /// What really happened, logged once for 5xx answers.
    cause: Option<String>,
}

/// Result alias for handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// An error with a code and a message for the client.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
            cause: None,
        }
    }

    /// Adds a `details` entry.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// An opaque 500; `cause` goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(ErrorCode::InternalError, "Internal server error")
        }
    }

    /// A 503 naming the dependency that is down; `cause` goes to the log only.
    pub fn unavailable(dependency: &str, cause: impl std::fmt::Display) -> Self {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("The {dependency} is unavailable; retry later"),
            )
            .with_detail("dependency", dependency)
        }
    }

    /// The standard "no such file" answer (also used for other clients' files).
    pub fn file_not_found() -> Self {
        ApiError::new(ErrorCode::FileNotFound, "File not found")
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unavailable(_) => ApiError::unavailable("database", e),
            other => ApiError::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable("object storage", e),
            StoreError::Spill(crate::spill::SpillError::Full { .. }) => {
                ApiError::unavailable("temporary space", e)
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(
                request_id = %request_id,
                code = self.code.as_str(),
                cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.as_str(),
                message: self.message,
                details: self.details,
                request_id,
            },
        };
        (status, Json(envelope)).into_response()
    }
}
