//! Direct uploads: `POST /uploads/direct`, `POST /uploads/{id}/complete`, and the local store's
//! signed URL, `PUT /direct/{client_id}/{file_id}`.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiState;
use super::auth::Uploader;
use super::error::{ApiError, ErrorCode, Result, json_body};
use super::parse_file_id;
use super::uploads::StagedUpload;
use crate::direct::{self, Declared};
use crate::domain::storage_key;
use crate::file_view::api_time;
use crate::staging::Meter;
use crate::store::{ObjectWriter, SignedPut};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/uploads/direct", post(open_direct))
        .route("/uploads/{id}/complete", post(complete_direct))
}

/// The local store's signed URL: no API key, the signature is the permission.
pub(super) fn signed_routes() -> Router<ApiState> {
    Router::new().route("/direct/{client_id}/{file_id}", put(receive_signed))
}

/// What a client declares to upload a file directly.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DirectRequest {
    /// The file's name; its extension says what it must be (`.pdf`, `.doc`, `.docx`).
    #[schema(min_length = 1)]
    file_name: String,
    /// Exactly the bytes that will be sent.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::error::whole::required")]
    file_size: u64,
    /// The file's SHA-256, 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: String,
}

/// Where and how to send the bytes.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UploadTarget {
    /// Always `PUT`.
    method: &'static str,
    url: String,
    /// Send exactly these headers with the body.
    headers: BTreeMap<String, String>,
    /// The URL stops working then.
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
}

/// A direct upload opened: send the bytes to `upload.url`, then complete it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DirectUpload {
    carv_file_id: Uuid,
    file_name: String,
    file_size: u64,
    /// Complete it before then; afterwards it is aborted.
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    upload: UploadTarget,
}

/// Open a direct upload.
#[utoipa::path(
    post, path = "/uploads/direct", tag = "uploads", operation_id = "openDirectUpload",
    request_body = DirectRequest,
    params(("X-ATS-Client-ID" = Option<String>, Header, description = "The client id (workspace); not with an upload token")),
    security(("api_key" = [], "client_id" = []), ("upload_token" = [])),
    responses(
        (status = 201, description = "Send the bytes to `upload.url`, then complete", body = DirectUpload),
        (status = 422, description = "Refused: extension, size or SHA-256", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn open_direct(
    State(state): State<ApiState>,
    caller: Uploader,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DirectUpload>)> {
    let request: DirectRequest = json_body(body, "direct upload")?;
    let declared = Declared {
        file_name: request.file_name,
        file_size: request.file_size,
        sha256: request.sha256,
    };
    let base = super::base_url(&state, &headers);
    let admission = caller.admission(&state);
    let opened = direct::open(&state, &caller.client_id, &admission, &declared, &base).await?;
    tracing::info!(file_id = %opened.id, size = opened.file_size, "direct upload opened");
    Ok((
        StatusCode::CREATED,
        Json(DirectUpload {
            carv_file_id: opened.id,
            file_name: opened.file_name,
            file_size: opened.file_size,
            expires_at: api_time(opened.expires_at),
            upload: UploadTarget {
                method: "PUT",
                url: opened.put.url,
                headers: opened.put.headers.into_iter().collect(),
                expires_at: api_time(opened.put_expires_at),
            },
        }),
    ))
}

/// Complete a direct upload: check what arrived and stage it.
#[utoipa::path(
    post, path = "/uploads/{carv_file_id}/complete", tag = "uploads", operation_id = "completeDirectUpload",
    params(("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads/direct` answered"), ("X-ATS-Client-ID" = Option<String>, Header, description = "The client id (workspace); not with an upload token")),
    security(("api_key" = [], "client_id" = []), ("upload_token" = [])),
    responses(
        (status = 201, description = "Staged (again: completing twice answers the same)", body = StagedUpload),
        (status = 404, description = "No such direct upload for this client", body = super::error::ErrorEnvelope),
        (status = 409, description = "The bytes have not arrived yet", body = super::error::ErrorEnvelope),
        (status = 422, description = "Refused as `POST /uploads` refuses, or the size or SHA-256 differ from the declaration; the bytes are deleted", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn complete_direct(
    State(state): State<ApiState>,
    caller: Uploader,
    Path(id): Path<String>,
) -> Result<super::uploads::Staged> {
    let id = parse_file_id(&id)?;
    let started = std::time::Instant::now();
    let result = direct::complete(&state, &caller.client_id, caller.token_id(), id)
        .await
        .map_err(ApiError::from);
    let (label, bytes) = match &result {
        Ok(record) => ("staged", record.file_size.unwrap_or(0) as u64),
        Err(e) => (e.code.as_str(), 0),
    };
    state.telemetry().upload(label, bytes, started.elapsed());
    let record = result?;
    super::uploads::staged_answer(&record)
}

/// The signed URL's query.
#[derive(Deserialize)]
struct Signature {
    size: u64,
    sha256: String,
    expires: i64,
    signature: String,
}

/// Receive the bytes of a direct upload on the local store (its "presigned PUT"): exactly the
/// declared size and SHA-256, or nothing is kept.
async fn receive_signed(
    State(state): State<ApiState>,
    Path((client_id, file_id)): Path<(String, String)>,
    Query(query): Query<Signature>,
    body: Body,
) -> Result<StatusCode> {
    let file_id = Uuid::parse_str(&file_id).map_err(|_| forbidden())?;
    let key = storage_key(&client_id, file_id);
    let signed = SignedPut {
        key: &key,
        size: query.size,
        sha256: &query.sha256,
        expires: query.expires,
    };
    if chrono::Utc::now().timestamp() > query.expires
        || !state.store().verify_signed_put(&signed, &query.signature)
    {
        return Err(forbidden());
    }
    // Only while the upload waits for its bytes: never over a file already checked.
    if !waiting(&state, &client_id, file_id).await? {
        return Err(closed());
    }
    let mut writer = state.store().begin_staging(&key).await?;
    match receive_exactly(&mut writer, body, &query).await {
        // Asked again once the bytes are in: a PUT that began while the upload was waiting
        // must not land over a file completed, refused, erased or aborted meanwhile.
        Ok(()) if waiting(&state, &client_id, file_id).await? => {
            writer.finish().await?;
            Ok(StatusCode::OK)
        }
        Ok(()) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key = %key, error = %abort, "could not abort a late direct PUT");
            }
            Err(closed())
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key = %key, error = %abort, "could not abort a refused direct PUT");
            }
            Err(e)
        }
    }
}

/// Streams the body into `writer`: exactly the size and SHA-256 signed for, or an error.
async fn receive_exactly(
    writer: &mut Box<dyn ObjectWriter>,
    body: Body,
    signed: &Signature,
) -> Result<()> {
    let refused = |message: String| ApiError::new(ErrorCode::BadRequest, message);
    let mut meter = Meter::new(signed.size);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| refused(format!("body: {e}")))?;
        meter
            .take(&chunk)
            .map_err(|_| refused(format!("More than the {} bytes signed for", signed.size)))?;
        writer.write(chunk).await?;
    }
    if meter.size() != signed.size {
        return Err(refused(format!(
            "{} bytes received, {} signed for",
            meter.size(),
            signed.size
        )));
    }
    if !meter.sha256_hex().eq_ignore_ascii_case(&signed.sha256) {
        return Err(refused(
            "The body does not match the SHA-256 signed for".into(),
        ));
    }
    Ok(())
}

/// Whether a direct upload still waits for its bytes: receiving, not refused, within its window.
async fn waiting(state: &ApiState, client_id: &str, file_id: Uuid) -> Result<bool> {
    let upload = state.repo().direct_upload(client_id, file_id).await?;
    Ok(upload.is_some_and(|(file, direct)| {
        file.state == crate::domain::FileState::Receiving
            && direct.refusal.is_none()
            && chrono::Utc::now() <= direct.window_ends_at
    }))
}

fn closed() -> ApiError {
    ApiError::new(
        ErrorCode::UploadClosed,
        "This upload is no longer waiting for its bytes",
    )
}

fn forbidden() -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        "This upload URL is not valid (or no longer)",
    )
}
