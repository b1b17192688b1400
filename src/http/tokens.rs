//! `/upload-tokens`: what an ATS backend mints for a candidate's browser, so the page uploads
//! without the client's API key (`src/upload_tokens.rs`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result, json_body, whole};
use crate::file_view::api_time;
use crate::upload_tokens::{self, TokenError, TokenRequest};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/upload-tokens", post(create_token))
        .route("/upload-tokens/{id}", delete(revoke_token))
}

/// What a token may do; every field may be left out (an empty body asks for the defaults).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUploadToken {
    /// Seconds until it expires: default 900, at most 86400.
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "whole::optional")]
    expires_in: Option<u64>,
    /// How many uploads (proxied or direct) it may open: default 1, at most 20. A refused
    /// upload counts too.
    #[schema(minimum = 1, maximum = 20)]
    #[serde(default, deserialize_with = "whole::optional")]
    max_files: Option<u64>,
    /// Largest file it may upload, in bytes: default and at most the service's limit.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole::optional")]
    max_size: Option<u64>,
    /// Extensions it may upload (`pdf`, `docx`…): default and at most the service's.
    #[schema(min_items = 1)]
    allowed_extensions: Option<Vec<String>>,
}

/// A token just minted: `token` is in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CreatedUploadToken {
    id: Uuid,
    /// `stu_…`: the browser sends it as `Authorization: Bearer stu_…`.
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
    max_files: u32,
    max_size: u64,
    /// Without dots: `["pdf", "docx"]`.
    allowed_extensions: Vec<String>,
}

/// Mint an upload token for a browser.
#[utoipa::path(
    post, path = "/upload-tokens", tag = "uploads", operation_id = "createUploadToken",
    request_body(content = Option<NewUploadToken>, content_type = "application/json", description = "Optional: no body asks for the defaults"),
    params(("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 201, description = "Minted; the token is shown only here", body = CreatedUploadToken),
        (status = 422, description = "invalid_payload: a limit beyond the service's (`details.field` names it)", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedUploadToken>)> {
    // No body, or `null`, asks for the defaults.
    let request: NewUploadToken = match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => NewUploadToken::default(),
        _ => json_body::<Option<NewUploadToken>>(body, "upload token")?.unwrap_or_default(),
    };
    let request = TokenRequest {
        expires_in: request.expires_in,
        max_files: request.max_files,
        max_size: request.max_size,
        allowed_extensions: request.allowed_extensions,
    };
    let minted = upload_tokens::mint(&state, &caller.client_id, caller.key_id, &request)
        .await
        .map_err(|e| match e {
            TokenError::Invalid { field, message } => {
                ApiError::new(ErrorCode::InvalidPayload, message).with_detail("field", field)
            }
            TokenError::Repo(e) => e.into(),
        })?;
    tracing::info!(token_id = %minted.token.id, "upload token minted");
    Ok((
        StatusCode::CREATED,
        Json(CreatedUploadToken {
            id: minted.token.id,
            token: minted.plaintext,
            expires_at: api_time(minted.token.expires_at),
            max_files: minted.max_files,
            max_size: minted.token.max_size,
            allowed_extensions: minted
                .token
                .extensions
                .iter()
                .map(|k| k.extension().to_owned())
                .collect(),
        }),
    ))
}

/// Revoke an upload token: at once, on every replica. Uploads it already opened stay.
#[utoipa::path(
    delete, path = "/upload-tokens/{id}", tag = "uploads", operation_id = "revokeUploadToken",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 204, description = "Revoked (or already)"),
        (status = 404, description = "upload_token_not_found: no such token for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let not_found = || ApiError::new(ErrorCode::UploadTokenNotFound, "Upload token not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if !upload_tokens::revoke(&state, &caller.client_id, id).await? {
        return Err(not_found());
    }
    tracing::info!(token_id = %id, "upload token revoked");
    Ok(StatusCode::NO_CONTENT)
}
