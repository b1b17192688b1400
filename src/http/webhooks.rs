//! `POST /webhooks/candidates` and `POST /webhooks/applications`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result};
use crate::domain::{FileRecord, FileState, Slot, SlotFailure, WebhookKind};
use crate::file_view::api_time;
use crate::webhooks::{self, Processed, WebhookError};

/// Largest webhook body accepted.
const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// Header naming a retry-safe request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Header set on an answer that repeats an earlier one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/webhooks/candidates", post(candidates))
        .route("/webhooks/applications", post(applications))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
}

/// A file reference in a webhook.
#[derive(Serialize, ToSchema)]
pub(super) struct FileRef {
    /// The id `POST /uploads` answered (anything else is `file_not_found`).
    #[schema(format = Uuid)]
    pub(super) carv_file_id: String,
}

/// The file slots of a candidate webhook.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CandidateFiles {
    pub(super) resume: Option<FileRef>,
}

/// The file slots of an application webhook; both are bound, or neither.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplicationFiles {
    pub(super) resume: Option<FileRef>,
    /// Must not name the same file as `resume`.
    pub(super) cover_letter: Option<FileRef>,
}

/// A candidate webhook (the CarvOS payload).
#[derive(Serialize, ToSchema)]
pub(super) struct CandidateWebhook {
    /// Must equal the `X-ATS-Client-ID` header.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub(super) client_id: String,
    /// The ATS's id of the candidate (not only blanks).
    #[schema(min_length = 1, pattern = "\\S")]
    pub(super) user_id: String,
    /// Anything the ATS sends about the candidate; kept with the webhook.
    #[schema(value_type = Option<Object>)]
    pub(super) data: Option<serde_json::Value>,
    pub(super) files: Option<CandidateFiles>,
}

/// An application webhook (the CarvOS payload).
#[derive(Serialize, ToSchema)]
pub(super) struct ApplicationWebhook {
    /// Must equal the `X-ATS-Client-ID` header.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub(super) client_id: String,
    /// The ATS's id of the candidate (not only blanks).
    #[schema(min_length = 1, pattern = "\\S")]
    pub(super) user_id: String,
    /// Anything the ATS sends about the application; kept with the webhook.
    #[schema(value_type = Option<Object>)]
    pub(super) data: Option<serde_json::Value>,
    pub(super) files: Option<ApplicationFiles>,
}

/// Bind the referenced files to this webhook (all or none), then promote them.
#[utoipa::path(
    post, path = "/webhooks/candidates", tag = "webhooks", operation_id = "postCandidateWebhook",
    request_body(content = CandidateWebhook, content_type = "application/json"),
    params(
        ("X-ATS-Client-ID" = String, Header),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "Makes retries return the original answer: 1-255 printable ASCII characters"),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Processed (or a retry of a processed webhook)", body = WebhookResponse),
        WebhookFailures,
        super::error::ClientFailures,
    )
)]
async fn candidates(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    handle(state, caller, WebhookKind::Candidate, headers, body).await
}

/// Bind the referenced files to this webhook (all or none), then promote them.
#[utoipa::path(
    post, path = "/webhooks/applications", tag = "webhooks", operation_id = "postApplicationWebhook",
    request_body(content = ApplicationWebhook, content_type = "application/json"),
    params(
        ("X-ATS-Client-ID" = String, Header),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "Makes retries return the original answer: 1-255 printable ASCII characters"),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Processed (or a retry of a processed webhook)", body = WebhookResponse),
        WebhookFailures,
        super::error::ClientFailures,
    )
)]
async fn applications(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    handle(state, caller, WebhookKind::Application, headers, body).await
}

/// The failures both webhook routes can answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum WebhookFailures {
    /// Idempotency-Key reused with another payload
    #[response(status = 409)]
    KeyReused(super::error::ErrorEnvelope),
    /// Body above 1 MiB
    #[response(status = 413)]
    TooLarge(super::error::ErrorEnvelope),
    /// file_not_found, file_expired, file_already_consumed, client_id_mismatch, invalid_payload
    #[response(status = 422)]
    Refused(super::error::ErrorEnvelope),
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let message = e.to_string();
        match e {
            WebhookError::InvalidJson(_) => ApiError::new(ErrorCode::InvalidJson, message),
            WebhookError::InvalidPayload(_) | WebhookError::BadIdempotencyKey => {
                ApiError::new(ErrorCode::InvalidPayload, message)
            }
            WebhookError::ClientIdMismatch { .. } => {
                ApiError::new(ErrorCode::ClientIdMismatch, message)
            }
            WebhookError::IdempotencyKeyReused => {
                ApiError::new(ErrorCode::IdempotencyKeyReused, message)
            }
            WebhookError::Files(failures) => {
                let (_, first) = failures.first().expect("a rejection names a slot");
                let code = match first {
                    SlotFailure::NotFound => ErrorCode::SlotFileNotFound,
                    SlotFailure::Expired { .. } => ErrorCode::FileExpired,
                    SlotFailure::Consumed => ErrorCode::FileAlreadyConsumed,
                };
                let mut error = ApiError::new(code, first.message());
                for (slot, failure) in &failures {
                    error =
                        error.with_detail(format!("files.{}", slot.as_str()), failure.message());
                }
                error
            }
            WebhookError::Repo(e) => e.into(),
        }
    }
}

/// A file as a processed webhook reports it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WebhookFile {
    carv_file_id: Uuid,
    state: FileState,
    file_name: String,
    #[schema(required = true)]
    content_type: Option<String>,
    #[schema(required = true)]
    file_size: Option<i64>,
    #[schema(required = true)]
    sha256: Option<String>,
    storage_key: String,
}

impl From<&FileRecord> for WebhookFile {
    fn from(file: &FileRecord) -> Self {
        WebhookFile {
            carv_file_id: file.id,
            state: file.state,
            file_name: file.file_name.clone(),
            content_type: file.content_type.clone(),
            file_size: file.file_size,
            sha256: file.sha256.clone(),
            storage_key: file
                .promoted_key
                .clone()
                .unwrap_or_else(|| file.staging_key.clone()),
        }
    }
}

/// The files of a processed webhook, by slot, in slot order.
#[derive(Default, Serialize, utoipa::ToSchema)]
pub(super) struct SlotFiles {
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<WebhookFile>,
    /// Applications only.
    #[serde(skip_serializing_if = "Option::is_none")]
    cover_letter: Option<WebhookFile>,
}

/// The answer to a processed webhook (also to its retries).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WebhookResponse {
    webhook_id: Uuid,
    kind: WebhookKind,
    client_id: String,
    user_id: String,
    #[schema(format = DateTime)]
    received_at: String,
    files: SlotFiles,
}

impl From<&Processed> for WebhookResponse {
    fn from(processed: &Processed) -> Self {
        let webhook = &processed.webhook;
        let mut files = SlotFiles::default();
        for file in &processed.files {
            match file.slot {
                Some(Slot::Resume) => files.resume = Some(file.into()),
                Some(Slot::CoverLetter) => files.cover_letter = Some(file.into()),
                None => {}
            }
        }
        WebhookResponse {
            webhook_id: webhook.id,
            kind: webhook.kind,
            client_id: webhook.client_id.clone(),
            user_id: webhook.user_id.clone(),
            received_at: api_time(webhook.created_at),
            files,
        }
    }
}

async fn handle(
    state: ApiState,
    caller: Caller,
    kind: WebhookKind,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let started = std::time::Instant::now();
    let result = answer(&state, caller, kind, headers, body).await;
    let outcome = match &result {
        Ok(response) if response.headers().contains_key(REPLAYED_HEADER) => "replayed",
        Ok(_) => "processed",
        Err(e) => e.code.as_str(),
    };
    state
        .telemetry()
        .webhook(kind.as_str(), outcome, started.elapsed());
    result
}

async fn answer(
    state: &ApiState,
    caller: Caller,
    kind: WebhookKind,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("Webhook body exceeds {MAX_WEBHOOK_BYTES} bytes"),
            )
        } else {
            ApiError::new(ErrorCode::BadRequest, e.body_text())
        }
    })?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::from(WebhookError::BadIdempotencyKey))?
                .to_owned(),
        ),
    };
    let payload = webhooks::parse_payload(kind, &caller.client_id, &body)?;
    // Binding, promotion and the stored answer run in their own task: a client that hangs up
    // cuts none of them short, and a retry finds the webhook processed.
    let (body, replayed) = tokio::spawn({
        let app = state.app().clone();
        async move {
            let processed =
                webhooks::process(&app, kind, payload, idempotency_key.as_deref()).await?;
            let body = WebhookResponse::from(&processed);
            Ok::<_, ApiError>((body, processed.replayed))
        }
        .instrument(tracing::Span::current())
    })
    .await
    .map_err(ApiError::internal)??;
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}
