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

/// Declares [`ErrorCode`] from one table: variant, wire name, HTTP status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $status:ident;)*) => {
        /// Every machine-readable error code the API returns, in one place.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears in `error.code`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The code named `name` (its first declaration, where two share a name).
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                ErrorCode::ALL.iter().copied().find(|code| code.as_str() == name)
            }

            /// The HTTP status that goes with the code.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    BadRequest => "bad_request", BAD_REQUEST;
    MalformedMultipart => "malformed_multipart", BAD_REQUEST;
    InvalidJson => "invalid_json", BAD_REQUEST;
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT;
    Unauthorized => "unauthorized", UNAUTHORIZED;
    Forbidden => "forbidden", FORBIDDEN;
    /// An upload token used for anything but opening and completing its own uploads.
    TokenScope => "token_scope", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    FileNotFound => "file_not_found", NOT_FOUND;
    FileNotDiscardable => "file_not_discardable", CONFLICT;
    FileMissing => "file_missing", UNPROCESSABLE_ENTITY;
    MultipleFiles => "multiple_files", UNPROCESSABLE_ENTITY;
    FileNameInvalid => "file_name_invalid", UNPROCESSABLE_ENTITY;
    FileExtensionNotAllowed => "file_extension_not_allowed", UNPROCESSABLE_ENTITY;
    FileEmpty => "file_empty", UNPROCESSABLE_ENTITY;
    FileTooLarge => "file_too_large", UNPROCESSABLE_ENTITY;
    FileContentMismatch => "file_content_mismatch", UNPROCESSABLE_ENTITY;
    FileContentInvalid => "file_content_invalid", UNPROCESSABLE_ENTITY;
    /// clamd found malware in the file (`message` names the signature).
    FileInfected => "file_infected", UNPROCESSABLE_ENTITY;
    /// `STOWAGE_MIN_TEXT_CHARS`: the upload holds less text than a complete CV.
    TextTooShort => "text_too_short", UNPROCESSABLE_ENTITY;
    /// `STOWAGE_MIN_TEXT_CHARS`: the upload's text cannot be read.
    TextUnreadable => "text_unreadable", UNPROCESSABLE_ENTITY;
    /// A direct upload's object is not the size declared.
    FileSizeMismatch => "file_size_mismatch", UNPROCESSABLE_ENTITY;
    /// A direct upload's object is not the bytes declared.
    FileChecksumMismatch => "file_checksum_mismatch", UNPROCESSABLE_ENTITY;
    /// A direct upload completed before its bytes arrived.
    UploadNotReceived => "upload_not_received", CONFLICT;
    /// A direct upload's URL used after the upload was completed or refused.
    UploadClosed => "upload_closed", CONFLICT;
    /// A second PUT to a direct upload's URL while one is still under way.
    UploadInProgress => "upload_in_progress", CONFLICT;
    /// The upload was aborted or its file erased while the bytes arrived; nothing was kept.
    UploadAborted => "upload_aborted", CONFLICT;
    InvalidPayload => "invalid_payload", UNPROCESSABLE_ENTITY;
    ClientIdMismatch => "client_id_mismatch", UNPROCESSABLE_ENTITY;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    /// A webhook naming an unknown file is refused as a whole (422), not a missing route.
    SlotFileNotFound => "file_not_found", UNPROCESSABLE_ENTITY;
    FileExpired => "file_expired", UNPROCESSABLE_ENTITY;
    FileAlreadyConsumed => "file_already_consumed", UNPROCESSABLE_ENTITY;
    IdempotencyKeyReused => "idempotency_key_reused", CONFLICT;
    FileNotPromoted => "file_not_promoted", CONFLICT;
    /// A promoted file a later scan found infected: its content is not handed out.
    FileQuarantined => "file_quarantined", GONE;
    /// The text is still being extracted (or the file is not promoted yet).
    TextNotReady => "text_not_ready", CONFLICT;
    /// Extraction failed: the document has no text Stowage can read.
    TextUnavailable => "text_unavailable", UNPROCESSABLE_ENTITY;
    EndpointNotFound => "endpoint_not_found", NOT_FOUND;
    /// A client already has as many event endpoints as it may.
    TooManyEndpoints => "too_many_endpoints", CONFLICT;
    EventNotFound => "event_not_found", NOT_FOUND;
    UploadTokenNotFound => "upload_token_not_found", NOT_FOUND;
    RateLimited => "rate_limited", TOO_MANY_REQUESTS;
    TooManyUploads => "too_many_uploads", TOO_MANY_REQUESTS;
    ServiceUnavailable => "service_unavailable", SERVICE_UNAVAILABLE;
    InternalError => "internal_error", INTERNAL_SERVER_ERROR;
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Stable machine code; the message may change, the code does not.",
            ))
            .enum_values(Some(names))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

/// The error envelope every failure answers with.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The inside of the error envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
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
    /// Bad request: no X-ATS-Client-ID header, a multipart body that cannot be parsed, a body that is not JSON
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// Missing, unknown or revoked key; or an unknown, expired, used-up or revoked upload token
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// Key not mapped to this client id (`forbidden`); an upload token used for anything but its own uploads (`token_scope`)
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// Rate limited
    #[response(status = 429)]
    RateLimited(ErrorEnvelope),
    /// Internal error (the cause is logged with the request id)
    #[response(status = 500)]
    Internal(ErrorEnvelope),
    /// A dependency is down (`details.dependency` names it)
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

/// A JSON request body read into `T`: a body that could not be read is `400 bad_request`, one
/// that is not JSON `400 invalid_json`, JSON of the wrong shape `422 invalid_payload` ("Invalid
/// {what}: …", `details.field = "body"`).
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    what: &str,
) -> Result<T> {
    let body = body.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("Request body is not valid JSON: {e}"),
            )
        } else {
            ApiError::new(ErrorCode::InvalidPayload, format!("Invalid {what}: {e}"))
                .with_detail("field", "body")
        }
    })
}

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
            StoreError::Busy(_) => ApiError::new(
                ErrorCode::UploadInProgress,
                "Another upload of these bytes is under way; wait for it to end",
            ),
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
                code: self.code,
                message: self.message,
                details: self.details,
                request_id,
            },
        };
        let mut response = (status, Json(envelope)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is passing (a dependency, a busy resource): say when to try again.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// The `Retry-After` of a `503`, in seconds.
const UNAVAILABLE_RETRY_AFTER_SECONDS: u32 = 5;

/// A count in a JSON body: JSON Schema's `integer` includes `2583.0`, so a whole number written
/// with a fraction of zero is that number; anything else is the wrong type.
pub mod whole {
    use serde::de::{Deserializer, Error, Visitor};

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a non-negative whole number")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
            // Exactly representable whole numbers only (below 2^53).
            if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("{v} is not a non-negative whole number")))
            }
        }
    }

    /// `#[serde(deserialize_with = "whole::required")]`
    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Whole)
    }

    /// `#[serde(default, deserialize_with = "whole::optional")]`: absent or `null` is `None`.
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        struct Maybe;
        impl<'de> Visitor<'de> for Maybe {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-negative whole number or null")
            }
            fn visit_none<E: Error>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<u64>, D2::Error> {
                required(d).map(Some)
            }
        }
        d.deserialize_option(Maybe)
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize)]
        struct Counts {
            #[serde(deserialize_with = "super::required")]
            n: u64,
            #[serde(default, deserialize_with = "super::optional")]
            m: Option<u64>,
        }

        fn parse(json: &str) -> Result<Counts, serde_json::Error> {
            serde_json::from_str(json)
        }

        #[test]
        fn whole_numbers_may_be_written_with_a_zero_fraction() {
            let c = parse(r#"{"n": 2583.0, "m": 7}"#).unwrap();
            assert_eq!((c.n, c.m), (2583, Some(7)));
            assert_eq!(parse(r#"{"n": 1, "m": null}"#).unwrap().m, None);
            assert_eq!(parse(r#"{"n": 1}"#).unwrap().m, None);
            assert!(parse(r#"{"n": 1.5}"#).is_err());
            assert!(parse(r#"{"n": -1}"#).is_err());
            assert!(parse(r#"{"n": "1"}"#).is_err());
            assert!(parse(r#"{"n": 1e300}"#).is_err());
        }
    }
}
