//! `POST /webhooks/candidates` and `POST /webhooks/applications`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result};
use super::uploads::api_time;
use crate::domain::{FileRecord, SlotFailure, WebhookKind};
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

/// Bind the referenced files to this webhook (all or none), then promote them.
#[utoipa::path(
    post, path = "/webhooks/candidates", tag = "webhooks",
    request_body(content = super::openapi::WebhookRequest, content_type = "application/json"),
    params(
        ("X-ATS-Client-ID" = String, Header),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the original answer"),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Processed (or a retry of a processed webhook)", body = super::openapi::WebhookResponse),
        (status = 400, description = "Not JSON", body = super::openapi::ErrorEnvelope),
        (status = 409, description = "Idempotency-Key reused with another payload", body = super::openapi::ErrorEnvelope),
        (status = 413, description = "Body above 1 MiB", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "file_not_found, file_expired, file_already_consumed, client_id_mismatch, invalid_payload", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "Missing, unknown or revoked key", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "Key not mapped to this client id", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "Rate limited", body = super::openapi::ErrorEnvelope),
        (status = 503, description = "A dependency is down", body = super::openapi::ErrorEnvelope),
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
    post, path = "/webhooks/applications", tag = "webhooks",
    request_body(content = super::openapi::WebhookRequest, content_type = "application/json"),
    params(
        ("X-ATS-Client-ID" = String, Header),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the original answer"),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Processed (or a retry of a processed webhook)", body = super::openapi::WebhookResponse),
        (status = 400, description = "Not JSON", body = super::openapi::ErrorEnvelope),
        (status = 409, description = "Idempotency-Key reused with another payload", body = super::openapi::ErrorEnvelope),
        (status = 413, description = "Body above 1 MiB", body = super::openapi::ErrorEnvelope),
        (status = 422, description = "file_not_found, file_expired, file_already_consumed, client_id_mismatch, invalid_payload", body = super::openapi::ErrorEnvelope),
        (status = 401, description = "Missing, unknown or revoked key", body = super::openapi::ErrorEnvelope),
        (status = 403, description = "Key not mapped to this client id", body = super::openapi::ErrorEnvelope),
        (status = 429, description = "Rate limited", body = super::openapi::ErrorEnvelope),
        (status = 503, description = "A dependency is down", body = super::openapi::ErrorEnvelope),
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

fn file_body(file: &FileRecord) -> Value {
    json!({
        "carv_file_id": file.id,
        "state": file.state,
        "file_name": file.file_name,
        "content_type": file.content_type,
        "file_size": file.file_size,
        "sha256": file.sha256,
        "storage_key": file.promoted_key.as_deref().unwrap_or(&file.staging_key),
    })
}

/// The answer to a processed webhook.
fn webhook_body(processed: &Processed) -> Value {
    let webhook = &processed.webhook;
    let files: Map<String, Value> = processed
        .files
        .iter()
        .filter_map(|f| Some((f.slot?.as_str().to_owned(), file_body(f))))
        .collect();
    json!({
        "webhook_id": webhook.id,
        "kind": webhook.kind,
        "client_id": webhook.client_id,
        "user_id": webhook.user_id,
        "received_at": api_time(webhook.created_at),
        "files": files,
    })
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
    // Binding and promotion run in their own task: a client that hangs up does not cut a
    // promotion in half (it would be re-driven anyway, but there is no need).
    let processed = tokio::spawn({
        let state = state.clone();
        async move { webhooks::process(&state, kind, payload, idempotency_key.as_deref()).await }
            .instrument(tracing::Span::current())
    })
    .await
    .map_err(ApiError::internal)??;
    let body = webhook_body(&processed);
    if !processed.replayed {
        webhooks::record_result(state, &processed, &body).await;
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if processed.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}
