//! Client authentication: `X-API-Key` names an account, `X-ATS-Client-ID` one of its workspaces.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use crate::{keys, repo};

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header carrying the client id.
pub const CLIENT_ID_HEADER: &str = "x-ats-client-id";

/// An authenticated caller acting for one client id.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client_id: String,
    pub key_name: String,
    pub key_id: uuid::Uuid,
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "Missing, unknown or revoked API key",
    )
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let presented = header(parts, API_KEY_HEADER).ok_or_else(unauthorized)?;
        let (key_id, secret) = keys::parse(presented).ok_or_else(unauthorized)?;
        let client_id = header(parts, CLIENT_ID_HEADER).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "The X-ATS-Client-ID header is required",
            )
        })?;
        // Cached on PostgreSQL while key changes can be heard (src/repo/key_cache.rs).
        let grant = state
            .repo()
            .key_grant(key_id, client_id)
            .await?
            .ok_or_else(unauthorized)?;
        if grant.revoked || !keys::verify(secret, &grant.secret_hash) {
            return Err(unauthorized());
        }
        // The key is genuine: now it counts against its own allowance (and only then).
        state
            .limits()
            .admit(key_id, parts.extensions.get::<super::limits::RateSlot>())?;
        if !grant.client_allowed {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "This API key is not allowed to act for that client id",
            ));
        }
        let now = chrono::Utc::now();
        if grant
            .last_used_at
            .is_none_or(|last| now - last >= repo::KEY_USE_PRECISION)
        {
            // Off the request path: a lost write only makes "last used" a minute staler.
            let app = state.app.clone();
            tokio::spawn(async move {
                if let Err(e) = app.repo().key_used(key_id, now).await {
                    tracing::debug!(error = %e, "could not record key use");
                }
            });
        }
        if let Some(slot) = parts.extensions.get::<super::access::AccessSlot>() {
            slot.caller(client_id, &grant.key_name);
        }
        Ok(Caller {
            client_id: client_id.to_owned(),
            key_name: grant.key_name,
            key_id,
        })
    }
}
