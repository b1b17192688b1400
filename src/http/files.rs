//! `GET /files`, `GET /files/{id}`, `GET /files/{id}/content`, and erasure: `DELETE /files/{id}`
//! and `POST /erasures`.

use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result, current_request_id, json_body};
use super::paging::{Page, bad_parameter};
use super::{base_url, parse_file_id};
use crate::domain::storage_key;
use crate::domain::{FileState, ScanStatus, TextStatus};
use crate::file_view::FileView;
use crate::file_view::api_time;
use crate::repo::{Erase, FileFilter};
use crate::store::{Area, SignedGet};

/// How long a presigned download URL stays valid.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/files", get(list_files))
        .route("/files/{id}", get(get_file).delete(erase_file))
        .route("/files/{id}/content", get(get_content))
        .route("/files/{id}/text", get(get_text))
        .route("/erasures", post(erase_user))
}

/// The directory store's signed download URL: no API key, the signature is the permission.
pub(super) fn signed_routes() -> Router<ApiState> {
    Router::new().route("/downloads/{client_id}/{file_id}", get(serve_signed))
}

/// A page of files, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct FilePage {
    results: Vec<FileView>,
    /// The path of the next page, or null on the last.
    #[schema(required = true)]
    next: Option<String>,
}

/// The caller's files, newest first.
#[utoipa::path(
    get, path = "/files", tag = "files", operation_id = "listFiles",
    params(
        ("state" = Option<FileState>, Query, description = "Only files in this state"),
        ("user_id" = Option<String>, Query, description = "Only files bound to a webhook for this candidate"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Files per page (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^([0-9a-f]{1,16}[0-9a-f]{32})?$", description = "Where the page starts: from the previous page's `next` (opaque)"),
        ("X-ATS-Client-ID" = String, Header),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "A page of files", body = FilePage),
        super::error::ClientFailures,
    )
)]
async fn list_files(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<FilePage>> {
    let mut filter = FileFilter::default();
    let page = Page::parse(query.as_deref(), |name, value| {
        match name {
            "state" => {
                filter.state = Some(
                    value
                        .parse::<FileState>()
                        .map_err(|e| bad_parameter("state", e))?,
                );
            }
            "user_id" => filter.user_id = Some(value.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let mut files = if filter
        .user_id
        .as_deref()
        .is_some_and(|u| !crate::domain::is_storable_user_id(u))
    {
        Vec::new()
    } else {
        state
            .repo()
            .list_files(&caller.client_id, &filter, page.cursor, page.fetch())
            .await?
    };
    let next = page.finish("/files", &mut files, |(f, _)| (f.created_at, f.id));
    Ok(Json(FilePage {
        results: files
            .into_iter()
            .map(|(file, webhook)| FileView::from_parts(file, webhook.as_ref()))
            .collect(),
        next,
    }))
}

/// Erase a file, in any state: every object of it is deleted and its record keeps only its id,
/// state and `erased_at`. Repeating it answers `204` again.
#[utoipa::path(
    delete, path = "/files/{carv_file_id}", tag = "files", operation_id = "eraseFile",
    params(("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 204, description = "Erased (or erased before)"),
        (status = 404, description = "No such file for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn erase_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_file_id(&id)?;
    match crate::erasure::erase_file(state.app(), &caller.client_id, id).await? {
        Erase::Erased(_) | Erase::AlreadyErased => Ok(StatusCode::NO_CONTENT),
        Erase::NotFound => Err(ApiError::file_not_found()),
    }
}

/// Whose files to erase.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ErasureRequest {
    /// The `user_id` the candidate's webhooks carried.
    #[schema(min_length = 1)]
    user_id: String,
}

/// What an erasure by `user_id` erased.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErasureResult {
    /// Every file bound to the candidate's webhooks (all erased now), oldest first.
    erased: Vec<Uuid>,
}

/// Erase a candidate: every file bound to this client's webhooks with that `user_id`, and the
/// personal `data` those webhooks carried. Repeating it lists the same files.
#[utoipa::path(
    post, path = "/erasures", tag = "files", operation_id = "eraseCandidate",
    request_body(content = ErasureRequest, content_type = "application/json"),
    params(("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Erased", body = ErasureResult),
        (status = 400, description = "invalid_json: the body is not JSON", body = super::error::ErrorEnvelope),
        (status = 422, description = "invalid_payload: no user_id, or an empty one", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn erase_user(
    State(state): State<ApiState>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ErasureResult>> {
    let request: ErasureRequest = json_body(body, "erasure request")?;
    if request.user_id.is_empty() {
        return Err(
            ApiError::new(ErrorCode::InvalidPayload, "user_id must not be empty")
                .with_detail("field", "user_id"),
        );
    }
    // A user_id no webhook can carry (blank, or with a NUL, which PostgreSQL cannot store) has
    // no files to erase.
    if !crate::domain::is_storable_user_id(&request.user_id) {
        return Ok(Json(ErasureResult { erased: Vec::new() }));
    }
    let erased =
        crate::erasure::erase_user(state.app(), &caller.client_id, &request.user_id).await?;
    Ok(Json(ErasureResult { erased }))
}

/// A short-lived download URL (presigned on S3, signed by Stowage on the directory store).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PresignedDownload {
    /// Fetch it with a plain GET and no headers of yours.
    url: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A file in any state, with the webhook it is bound to.
#[utoipa::path(
    get, path = "/files/{carv_file_id}", tag = "files", operation_id = "getFile",
    params(("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The record", body = FileView),
        (status = 404, description = "No such file for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn get_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FileView>> {
    let id = parse_file_id(&id)?;
    let file = state
        .repo()
        .get_file(&caller.client_id, id)
        .await?
        .ok_or_else(ApiError::file_not_found)?;
    let webhook = match file.webhook_id {
        Some(webhook_id) => {
            state
                .repo()
                .get_webhook(&file.client_id, webhook_id)
                .await?
        }
        None => None,
    };
    Ok(Json(FileView::from_parts(file, webhook.as_ref())))
}

/// Characters RFC 5987 allows unencoded in an `ext-value` (`attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment` with the original name: an ASCII fallback and the exact UTF-8 name (RFC 6266,
/// RFC 5987).
pub fn content_disposition(file_name: &str) -> String {
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(file_name, ATTR_CHAR)
    )
}

/// Whether `?redirect=` asks for a redirect (the default) or for the URL in a `200` body.
fn wants_redirect(query: Option<&str>) -> Result<bool> {
    let mut redirect = true;
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "redirect" {
            redirect = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "The redirect parameter is true or false",
                    )
                    .with_detail("parameter", "redirect"));
                }
            };
        }
    }
    Ok(redirect)
}

/// Puts a read of a promoted file (its content or its text) on the audit trail; a file no
/// longer promoted — erased meanwhile — is not found.
async fn record_read(state: &ApiState, caller: &Caller, id: Uuid) -> Result<()> {
    if state
        .repo()
        .record_download(
            &caller.client_id,
            id,
            &caller.key_name,
            &current_request_id(),
            &crate::events::Events,
        )
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::file_not_found())
    }
}

/// How long a client is asked to wait before asking again for text still being extracted.
const TEXT_RETRY_AFTER_SECONDS: u32 = 2;

/// The text of a promoted file, extracted after its promotion.
#[utoipa::path(
    get, path = "/files/{carv_file_id}/text", tag = "files", operation_id = "getFileText",
    params(
        ("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"),
        ("X-ATS-Client-ID" = String, Header),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The document's text: UTF-8, lines ending in `\\n`, ligatures spelled out, words hyphenated across lines joined", content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No such file for this client, or erased", body = super::error::ErrorEnvelope),
        (status = 409, description = "`text_not_ready`: being extracted (`Retry-After` says when to ask again), or the file is not promoted yet", body = super::error::ErrorEnvelope,
            headers(("Retry-After" = u32, description = "Seconds to wait (while extraction is under way)"))),
        (status = 422, description = "`text_unavailable`: the document has no text Stowage can read; `details.reason` is `encrypted`, `no_text_layer`, `unreadable`, `timeout` or `too_large`", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn get_text(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_file_id(&id)?;
    let file = state
        .repo()
        .get_file(&caller.client_id, id)
        .await?
        .ok_or_else(ApiError::file_not_found)?;
    match file.state {
        FileState::Promoted => {}
        FileState::Erased => {
            return Err(ApiError::new(
                ErrorCode::FileNotFound,
                "File was erased; its text is gone",
            ));
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::TextNotReady,
                format!("File is {other}; its text is extracted once it is promoted"),
            )
            .with_detail("state", other.as_str()));
        }
    }
    match file.text.as_ref().map(|t| (t.status, t.failure.as_ref())) {
        Some((TextStatus::Extracted, _)) => {}
        Some((TextStatus::Failed, Some(failure))) => {
            return Err(ApiError::new(
                ErrorCode::TextUnavailable,
                format!("The file has no readable text: {}", failure.message),
            )
            .with_detail("reason", failure.reason.as_str()));
        }
        _ => {
            let mut response = ApiError::new(
                ErrorCode::TextNotReady,
                "The file's text is being extracted; ask again shortly",
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(TEXT_RETRY_AFTER_SECONDS),
            );
            return Ok(response);
        }
    }
    // Reading a candidate's text is reading their file: it goes on the audit trail first.
    record_read(&state, &caller, id).await?;
    let text = state
        .repo()
        .file_text(&caller.client_id, id)
        .await?
        .ok_or_else(ApiError::file_not_found)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response())
}

/// The bytes of a promoted file: a redirect to a short-lived URL that serves them (presigned on
/// S3, signed by Stowage on the directory store), or with `?redirect=false` that URL in a `200`
/// body — the same on both stores.
#[utoipa::path(
    get, path = "/files/{carv_file_id}/content", tag = "files", operation_id = "getFileContent",
    params(
        ("carv_file_id" = String, Path, format = Uuid, description = "The id `POST /uploads` answered"),
        ("X-ATS-Client-ID" = String, Header),
        ("redirect" = Option<bool>, Query, description = "false: answer 200 with the presigned URL instead of redirecting to it (a client that follows redirects with its own headers would send its API key to the storage host)"),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "With redirect=false: the URL to fetch the bytes from (plain GET, none of your headers; served as an attachment with the original name)", body = PresignedDownload),
        (status = 307, description = "The URL to fetch the bytes from (Location and body)", body = PresignedDownload,
            headers(("Location" = String, description = "The short-lived URL; fetch it without your headers"))),
        (status = 404, description = "No such file for this client", body = super::error::ErrorEnvelope),
        (status = 409, description = "Not promoted yet", body = super::error::ErrorEnvelope),
        (status = 410, description = "file_quarantined: a later scan (`stowage rescan`) found it infected", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn get_content(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let id = parse_file_id(&id)?;
    let redirect = wants_redirect(query.as_deref())?;
    let file = state
        .repo()
        .get_file(&caller.client_id, id)
        .await?
        .ok_or_else(ApiError::file_not_found)?;
    if let Some(scan) = file
        .scan
        .as_ref()
        .filter(|s| s.status == ScanStatus::Infected)
    {
        return Err(quarantined(scan));
    }
    let key = match (&file.state, &file.promoted_key) {
        (FileState::Promoted, Some(key)) => key.clone(),
        (FileState::Erased, _) => {
            return Err(ApiError::new(
                ErrorCode::FileNotFound,
                "File was erased; its content is gone",
            ));
        }
        (other, _) => {
            return Err(ApiError::new(
                ErrorCode::FileNotPromoted,
                format!("File is {other}; its content is available once it is promoted"),
            )
            .with_detail("state", other.as_str()));
        }
    };
    crate::fault::pause("download.before_record").await;
    // The audit trail first: content is handed out only once the download is on record.
    record_read(&state, &caller, id).await?;
    let disposition = content_disposition(&file.file_name);
    let content_type = file
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let url = state
        .store()
        .download_url(
            &key,
            &disposition,
            &content_type,
            DOWNLOAD_URL_TTL,
            &base_url(&state, &headers),
        )
        .await?;
    let expires_at = Utc::now() + chrono::TimeDelta::from_std(DOWNLOAD_URL_TTL).expect("minutes");
    let location = redirect
        .then(|| HeaderValue::from_str(&url))
        .transpose()
        .map_err(ApiError::internal)?;
    let status = if redirect {
        StatusCode::TEMPORARY_REDIRECT
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        Json(PresignedDownload {
            url,
            expires_at: api_time(expires_at),
        }),
    )
        .into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A signed download's query.
#[derive(Deserialize)]
struct SignedDownload {
    expires: i64,
    disposition: String,
    #[serde(rename = "type")]
    content_type: String,
    signature: String,
}

/// Serves a promoted file on the directory store to whoever holds the signed URL
/// `410 file_quarantined`: a later scan found the file infected.
fn quarantined(scan: &crate::domain::ScanRecord) -> ApiError {
    let signature = scan.found.as_deref().unwrap_or("malware");
    ApiError::new(
        ErrorCode::FileQuarantined,
        format!("File is quarantined: a later scan found it infected ({signature})"),
    )
    .with_detail("signature", signature)
}

/// `GET /files/{id}/content` handed out (its "presigned GET"), with the headers signed for.
async fn serve_signed(
    State(state): State<ApiState>,
    Path((client_id, file_id)): Path<(String, String)>,
    Query(query): Query<SignedDownload>,
) -> Result<Response> {
    let forbidden = || {
        ApiError::new(
            ErrorCode::Forbidden,
            "This download URL is not valid (or no longer)",
        )
    };
    let file_id = Uuid::parse_str(&file_id).map_err(|_| forbidden())?;
    let key = storage_key(&client_id, file_id);
    let get = SignedGet {
        key: &key,
        expires: query.expires,
        content_disposition: &query.disposition,
        content_type: &query.content_type,
    };
    if Utc::now().timestamp() > query.expires
        || !state.store().verify_signed_get(&get, &query.signature)
    {
        return Err(forbidden());
    }
    // Quarantined since the URL was signed: not handed out.
    if let Some(file) = state.repo().get_file(&client_id, file_id).await?
        && let Some(scan) = file
            .scan
            .as_ref()
            .filter(|s| s.status == ScanStatus::Infected)
    {
        return Err(quarantined(scan));
    }
    // Erased (or never promoted) since the URL was signed: nothing to hand out.
    let Some((stream, length)) = state.store().read(Area::Files, &key).await? else {
        return Err(ApiError::file_not_found());
    };
    let headers = [
        (header::CONTENT_TYPE, query.content_type),
        (header::CONTENT_LENGTH, length.to_string()),
        (header::CONTENT_DISPOSITION, query.disposition),
        (header::CACHE_CONTROL, "no-store".to_owned()),
    ];
    let body = Body::from_stream(stream);
    Ok((headers, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::{content_disposition, wants_redirect};

    #[test]
    fn redirect_is_the_default_and_false_turns_it_off() {
        assert!(wants_redirect(None).unwrap());
        assert!(wants_redirect(Some("x=1")).unwrap());
        assert!(wants_redirect(Some("redirect=true")).unwrap());
        assert!(!wants_redirect(Some("redirect=false")).unwrap());
        assert!(!wants_redirect(Some("a=b&redirect=0")).unwrap());
        assert!(wants_redirect(Some("redirect=maybe")).is_err());
        assert!(wants_redirect(Some("redirect")).is_err());
    }

    #[test]
    fn plain_names_are_kept_and_encoded_both_ways() {
        assert_eq!(
            content_disposition("resume.pdf"),
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''resume.pdf"
        );
    }

    #[test]
    fn unicode_and_quotes_get_a_fallback_and_an_exact_form() {
        assert_eq!(
            content_disposition("Lebenslauf Jürgen \"final\".pdf"),
            "attachment; filename=\"Lebenslauf J_rgen _final_.pdf\"; \
             filename*=UTF-8''Lebenslauf%20J%C3%BCrgen%20%22final%22.pdf"
        );
    }
}
