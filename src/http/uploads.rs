//! `POST /uploads`, `GET /uploads/{id}`, `DELETE /uploads/{id}`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use super::auth::{Caller, Uploader};
use super::error::{ApiError, ErrorCode, Result};
use super::multipart::{self, BodyError, MultipartError, MultipartLimits, MultipartReader};
use super::{ApiState, parse_file_id};
use crate::domain::{FileRecord, FileState};
use crate::repo::Discard;
use crate::staging::{self, ByteSource, UploadError};

/// Name of the multipart part that carries the file.
pub const FILE_PART: &str = "file";

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/uploads", post(create_upload))
        .route("/uploads/{id}", get(get_upload).delete(delete_upload))
}

use crate::file_view::api_time;

/// The multipart form of `POST /uploads`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UploadForm {
    /// The document; its file name gives the extension (`.pdf`, `.doc`, `.docx`).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /uploads`' answer: `201`, where to find the record, the record.
pub(super) type Staged = (
    StatusCode,
    [(header::HeaderName, String); 1],
    Json<StagedUpload>,
);

/// A file just staged, as `POST /uploads` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StagedUpload {
    carv_file_id: Uuid,
    file_name: String,
    /// `application/pdf`, `application/msword` or
    /// `application/vnd.openxmlformats-officedocument.wordprocessingml.document`.
    content_type: String,
    file_size: i64,
    #[schema(value_type = String, format = DateTime)]
    uploaded_at: String,
    /// Bind it with a webhook before then.
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    /// The malware scan; absent when files are not scanned (`STOWAGE_CLAMD` unset), so the
    /// answer is then exactly CarvOS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<crate::file_view::ScanView>,
}

impl StagedUpload {
    fn from_record(record: &FileRecord) -> Result<Self> {
        let missing = || ApiError::internal(format!("staged file {} lacks its facts", record.id));
        Ok(StagedUpload {
            carv_file_id: record.id,
            file_name: record.file_name.clone(),
            content_type: record.content_type.clone().ok_or_else(missing)?,
            file_size: record.file_size.ok_or_else(missing)?,
            uploaded_at: api_time(record.uploaded_at.ok_or_else(missing)?),
            expires_at: api_time(record.expires_at.ok_or_else(missing)?),
            scan: record.scan.as_ref().map(crate::file_view::ScanView::from),
        })
    }
}

/// A file's upload record in any state, as `GET /uploads/{id}` answers. The facts of the
/// content are `null` until it has been received.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UploadRecord {
    carv_file_id: Uuid,
    file_name: String,
    #[schema(required = true)]
    content_type: Option<String>,
    #[schema(required = true)]
    file_size: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    uploaded_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    expires_at: Option<String>,
    state: FileState,
}

impl UploadRecord {
    fn from_record(record: &FileRecord) -> Self {
        UploadRecord {
            carv_file_id: record.id,
            file_name: record.file_name.clone(),
            content_type: record.content_type.clone(),
            file_size: record.file_size,
            uploaded_at: record.uploaded_at.map(api_time),
            expires_at: record.expires_at.map(api_time),
            state: record.state,
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        if let Some(code) = e.code().and_then(ErrorCode::from_name) {
            let details = e.details();
            let mut error = ApiError::new(code, e.to_string());
            for (key, value) in details {
                error = error.with_detail(key, value);
            }
            return error;
        }
        match e {
            UploadError::NotDirect => ApiError::file_not_found(),
            UploadError::Busy => {
                ApiError::unavailable("text extraction", "every extraction process is busy")
            }
            UploadError::ScanUnavailable(cause) => ApiError::unavailable("clamd", cause),
            UploadError::Repo(e) => e.into(),
            UploadError::Store(e) => e.into(),
            UploadError::Spill(e) => crate::store::StoreError::from(e).into(),
            other => ApiError::internal(other),
        }
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
        })
}

/// Stage a file.
#[utoipa::path(
    post, path = "/uploads", tag = "uploads", operation_id = "stageUpload",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    params(("X-ATS-Client-ID" = Option<String>, Header, description = "The client id (workspace); not with an upload token")),
    security(("api_key" = [], "client_id" = []), ("upload_token" = [])),
    responses(
        (status = 201, description = "Staged", body = StagedUpload,
            headers(("Location" = String, description = "`/uploads/{carv_file_id}`: the new file's record"))),
        (status = 422, description = "Refused: extension, size, content, missing or empty file", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn create_upload(
    State(state): State<ApiState>,
    caller: Uploader,
    headers: HeaderMap,
    body: Body,
) -> Result<Staged> {
    let started = std::time::Instant::now();
    let result = stage(&state, caller, &headers, body).await;
    let (outcome, bytes) = match &result {
        Ok((_, _, Json(body))) => ("staged", body.file_size as u64),
        Err(e) => (e.code.as_str(), 0),
    };
    state.telemetry().upload(outcome, bytes, started.elapsed());
    result
}

async fn stage(
    state: &ApiState,
    caller: Uploader,
    headers: &HeaderMap,
    body: Body,
) -> Result<Staged> {
    if !is_multipart(headers) {
        return Err(UploadError::Missing.into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type)
        .map_err(|e| ApiError::new(ErrorCode::MalformedMultipart, e.to_string()))?;
    let slot = state.limits().upload_slot(caller.key_id)?;
    let admission = caller.admission(state);
    let limits = MultipartLimits {
        // The file's own limit is enforced exactly while streaming; this bounds the framing.
        max_body_bytes: admission.max_bytes.saturating_add(1024 * 1024),
        ..MultipartLimits::default()
    };
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(body_error));
    // The upload runs in its own task so that a client hanging up mid-body cannot cancel it
    // half-way: it sees the body end in an error and cleans up after itself.
    let task_state = state.clone();
    let record = tokio::spawn(
        async move {
            let mut reader = MultipartReader::new(stream, &boundary, limits);
            let staged =
                receive_upload(&task_state, &caller.client_id, &admission, &mut reader).await;
            if staged.is_err() {
                reader.drain().await;
            }
            drop(slot);
            staged
        }
        .instrument(tracing::Span::current()),
    )
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(file_id = %record.id, size = record.file_size, "file staged");
    staged_answer(&record)
}

/// The `201` of a staged file (`POST /uploads`, a direct upload's completion).
pub(super) fn staged_answer(record: &FileRecord) -> Result<Staged> {
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/uploads/{}", record.id))],
        Json(StagedUpload::from_record(record)?),
    ))
}

/// What went wrong below the multipart reader, from the body's error.
fn body_error(e: axum::Error) -> BodyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return BodyError::TimedOut;
        }
        if error.is::<http_body_util::LengthLimitError>() {
            return BodyError::TooLarge;
        }
        source = error.source();
    }
    BodyError::Io(e.to_string())
}

/// The one `file` part of a multipart body, staged; other parts are skipped.
async fn receive_upload<S>(
    state: &ApiState,
    client_id: &str,
    admission: &staging::Admission,
    reader: &mut MultipartReader<S>,
) -> std::result::Result<FileRecord, UploadError>
where
    S: futures_util::Stream<Item = std::result::Result<bytes::Bytes, BodyError>> + Unpin + Send,
{
    let max = admission.max_bytes;
    let mut pending: Option<staging::Pending> = None;
    loop {
        let part = match reader.next_part().await {
            Ok(Some(part)) => part,
            Ok(None) => break,
            Err(e) => {
                if let Some(pending) = pending {
                    pending.abandon().await;
                }
                return Err(upload_error(e, max));
            }
        };
        if part.name != FILE_PART {
            continue;
        }
        if let Some(pending) = pending.take() {
            pending.abandon().await;
            return Err(UploadError::MultipleFiles);
        }
        let mut source = PartSource { reader, max };
        let file_name = part.file_name.unwrap_or_default();
        pending =
            Some(staging::receive(state, client_id, admission, &file_name, &mut source).await?);
    }
    pending.ok_or(UploadError::Missing)?.complete().await
}

fn upload_error(e: MultipartError, max: u64) -> UploadError {
    match e {
        MultipartError::TooLarge | MultipartError::Body(BodyError::TooLarge) => {
            UploadError::too_large(max)
        }
        MultipartError::Body(BodyError::TimedOut) => UploadError::TimedOut,
        other => UploadError::Malformed(other.to_string()),
    }
}

/// The body of the current part, as the staging pipeline reads it.
struct PartSource<'a, S> {
    reader: &'a mut MultipartReader<S>,
    max: u64,
}

#[async_trait::async_trait]
impl<S> ByteSource for PartSource<'_, S>
where
    S: futures_util::Stream<Item = std::result::Result<bytes::Bytes, BodyError>> + Unpin + Send,
{
    async fn next_chunk(&mut self) -> std::result::Result<Option<bytes::Bytes>, UploadError> {
        self.reader
            .body_chunk()
            .await
            .map_err(|e| upload_error(e, self.max))
    }
}

/// A staged file's record, with its state.
#[utoipa::path(
    get, path = "/uploads/{carv_file_id}", tag = "uploads", operation_id = "getUpload",
    params(("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The record", body = UploadRecord),
        (status = 404, description = "No such file for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn get_upload(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UploadRecord>> {
    let id = parse_file_id(&id)?;
    let record = state
        .repo()
        .get_file(&caller.client_id, id)
        .await?
        .ok_or_else(ApiError::file_not_found)?;
    Ok(Json(UploadRecord::from_record(&record)))
}

/// Discard a staged file early.
#[utoipa::path(
    delete, path = "/uploads/{carv_file_id}", tag = "uploads", operation_id = "discardUpload",
    params(("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 204, description = "Discarded (or already gone)"),
        (status = 404, description = "No such file for this client", body = super::error::ErrorEnvelope),
        (status = 409, description = "Bound, promoted or still receiving", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn delete_upload(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_file_id(&id)?;
    match staging::discard(&state, &caller.client_id, id).await? {
        Discard::Discarded(_) => Ok(StatusCode::NO_CONTENT),
        Discard::AlreadyGone => Ok(StatusCode::NO_CONTENT),
        Discard::NotDiscardable(state) => Err(ApiError::new(
            ErrorCode::FileNotDiscardable,
            format!("File is {state} and can no longer be deleted"),
        )
        .with_detail("state", state.as_str())),
        Discard::NotFound => Err(ApiError::file_not_found()),
    }
}
