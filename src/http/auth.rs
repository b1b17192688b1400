//! Client authentication: `X-API-Key` names an account, `X-ATS-Client-ID` one of its workspaces.
//! A browser uploads with an upload token instead (`Authorization: Bearer stu_…`), which names
//! its client and opens and completes its own uploads only ([`Uploader`]); presented anywhere
//! else it is `403 token_scope`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use crate::staging::Admission;
use crate::upload_tokens::{self, Refused, UploadToken};
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

/// The credentials of `Authorization: Bearer …`, if that is how the request authenticates.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = header(parts, "authorization")?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The upload token a request presents instead of an API key, checked; `None` if it presents
/// an API key or no bearer credentials at all.
async fn presented_token(parts: &Parts, state: &ApiState) -> Option<Result<UploadToken, ApiError>> {
    if header(parts, API_KEY_HEADER).is_some() {
        return None;
    }
    let presented = bearer(parts)?;
    Some(match upload_tokens::authenticate(state, presented).await {
        Ok(Ok(token)) => Ok(token),
        Ok(Err(refused)) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            match refused {
                Refused::Unknown => "Unknown upload token",
                Refused::Expired => "This upload token has expired",
                Refused::Revoked => "This upload token has been revoked",
            },
        )),
        Err(e) => Err(e.into()),
    })
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
        if let Some(token) = presented_token(parts, state).await {
            token?;
            return Err(ApiError::new(
                ErrorCode::TokenScope,
                "An upload token only opens and completes its own uploads; use an API key",
            ));
        }
        let presented = header(parts, API_KEY_HEADER).ok_or_else(unauthorized)?;
        let (key_id, secret) =
            keys::parse(keys::Kind::ApiKey, presented).ok_or_else(unauthorized)?;
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

/// Who opens (and completes) an upload: a client's API key ([`Caller`]), or an upload token
/// that names its client itself.
#[derive(Clone, Debug)]
pub struct Uploader {
    pub client_id: String,
    /// The key whose concurrent uploads this one counts towards (a token's minting key).
    pub key_id: uuid::Uuid,
    pub token: Option<UploadToken>,
}

impl Uploader {
    /// What an upload this caller opens may be.
    pub fn admission(&self, state: &ApiState) -> Admission {
        match &self.token {
            Some(token) => token.admission(),
            None => Admission::service(state),
        }
    }

    /// The upload token's id, if the caller is one.
    pub fn token_id(&self) -> Option<uuid::Uuid> {
        self.token.as_ref().map(|t| t.id)
    }
}

impl FromRequestParts<ApiState> for Uploader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let Some(token) = presented_token(parts, state).await else {
            let caller = Caller::from_request_parts(parts, state).await?;
            return Ok(Uploader {
                client_id: caller.client_id,
                key_id: caller.key_id,
                token: None,
            });
        };
        let token = token?;
        // A token has its own request allowance, so a page cannot use up its backend's.
        state
            .limits()
            .admit(token.id, parts.extensions.get::<super::limits::RateSlot>())?;
        if let Some(slot) = parts.extensions.get::<super::access::AccessSlot>() {
            slot.caller(&token.client_id, &format!("upload-token:{}", token.id));
        }
        Ok(Uploader {
            client_id: token.client_id.clone(),
            key_id: token.key_id,
            token: Some(token),
        })
    }
}
