//! Upload tokens: what a browser uploads with instead of the client's API key. An ATS backend
//! mints one (`POST /upload-tokens`) for one client; it is short-lived, scoped to opening and
//! completing uploads, narrowed (size, extensions) below the service's limits, counted at each
//! upload it opens and revocable. Only the SHA-256 of its secret is stored, and every check is
//! a database read or one conditional update, so every replica honours it at once.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::app::App;
use crate::keys::{self, Kind};
use crate::repo::{RepoError, UploadTokenRecord};
use crate::sniff::DocumentKind;
use crate::staging::Admission;

/// How long a token lives unless asked otherwise.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(900);
/// The longest a token may live.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(86_400);
/// The most uploads one token may open.
pub const MAX_FILES: u32 = 20;

/// What the minting backend asks for; every field may be left out.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub expires_in: Option<u64>,
    pub max_files: Option<u64>,
    pub max_size: Option<u64>,
    pub allowed_extensions: Option<Vec<String>>,
}

/// A request the service cannot grant: which field, and why.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> TokenError {
    TokenError::Invalid {
        field,
        message: message.into(),
    }
}

/// A token just minted: its secret is in this value only.
#[derive(Debug)]
pub struct Minted {
    pub token: UploadToken,
    /// `stu_…`, to hand to the browser; never stored.
    pub plaintext: String,
    pub max_files: u32,
}

/// A token in force, as an upload sees it.
#[derive(Clone, Debug)]
pub struct UploadToken {
    pub id: Uuid,
    pub client_id: String,
    /// The API key that minted it.
    pub key_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub max_size: u64,
    pub extensions: BTreeSet<DocumentKind>,
}

impl UploadToken {
    /// What an upload opened with this token may be; opening one counts towards it.
    pub fn admission(&self) -> Admission {
        Admission {
            max_bytes: self.max_size,
            extensions: self.extensions.clone(),
            token: Some(self.id),
        }
    }
}

/// Mints a token for `client_id`, by the API key `key_id` (which must be allowed to act for it).
pub async fn mint(
    app: &App,
    client_id: &str,
    key_id: Uuid,
    request: &TokenRequest,
) -> Result<Minted, TokenError> {
    let service = Admission::service(app);
    let expires_in = match request.expires_in {
        None => DEFAULT_EXPIRES_IN,
        Some(s) if (1..=MAX_EXPIRES_IN.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(invalid(
                "expires_in",
                format!(
                    "expires_in must be 1 to {} seconds",
                    MAX_EXPIRES_IN.as_secs()
                ),
            ));
        }
    };
    let max_files = match request.max_files {
        None => 1,
        Some(n) if (1..=u64::from(MAX_FILES)).contains(&n) => n as u32,
        Some(_) => {
            return Err(invalid(
                "max_files",
                format!("max_files must be 1 to {MAX_FILES}"),
            ));
        }
    };
    let max_size = match request.max_size {
        None => service.max_bytes,
        Some(n) if (1..=service.max_bytes).contains(&n) => n,
        Some(_) => {
            return Err(invalid(
                "max_size",
                format!(
                    "max_size must be 1 to {} bytes (the service's limit)",
                    service.max_bytes
                ),
            ));
        }
    };
    let extensions = match &request.allowed_extensions {
        None => service.extensions.clone(),
        Some(names) => narrow_extensions(&service.extensions, names)?,
    };
    let created_at = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| invalid("expires_in", e.to_string()))?;
    let expires_at = created_at
        + TimeDelta::from_std(expires_in).map_err(|e| invalid("expires_in", e.to_string()))?;
    let secret = keys::generate(Kind::UploadToken);
    app.repo()
        .create_upload_token(&UploadTokenRecord {
            id: secret.id,
            client_id: client_id.to_owned(),
            key_id,
            secret_hash: secret.secret_hash,
            expires_at,
            max_files: max_files as i32,
            max_size: max_size as i64,
            allowed_extensions: spell(&extensions),
            created_at,
            used: 0,
            revoked: false,
        })
        .await?;
    Ok(Minted {
        token: UploadToken {
            id: secret.id,
            client_id: client_id.to_owned(),
            key_id,
            expires_at,
            max_size,
            extensions,
        },
        plaintext: secret.plaintext,
        max_files,
    })
}

/// The extensions asked for (`pdf` or `.PDF`), each one the service allows; at least one.
fn narrow_extensions(
    service: &BTreeSet<DocumentKind>,
    names: &[String],
) -> Result<BTreeSet<DocumentKind>, TokenError> {
    let allowed = spell(service).replace(',', ", ");
    let mut kinds = BTreeSet::new();
    for name in names {
        let bare = name.trim().trim_start_matches('.');
        let kind = DocumentKind::from_extension(bare)
            .filter(|k| service.contains(k))
            .ok_or_else(|| {
                invalid(
                    "allowed_extensions",
                    format!("'{name}' is not an extension this service accepts ({allowed})"),
                )
            })?;
        kinds.insert(kind);
    }
    if kinds.is_empty() {
        return Err(invalid(
            "allowed_extensions",
            "allowed_extensions must name at least one extension",
        ));
    }
    Ok(kinds)
}

/// `pdf,docx`: extensions as they are stored and as `STOWAGE_ALLOWED_EXTENSIONS` spells them.
pub fn spell(kinds: &BTreeSet<DocumentKind>) -> String {
    kinds
        .iter()
        .map(|k| k.extension())
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a presented token does not authenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not shaped like a token, unknown, or the wrong secret.
    Unknown,
    /// Past its `expires_at`.
    Expired,
    /// Revoked, or its key revoked, or the client taken from its key.
    Revoked,
}

/// The token a browser presented, if it is genuine and in force now. Whether it is used up is
/// decided when an upload opens (`Admission::open`): completing an upload it opened stays
/// possible after its last upload was opened.
pub async fn authenticate(
    app: &App,
    presented: &str,
) -> Result<Result<UploadToken, Refused>, RepoError> {
    let Some((id, secret)) = keys::parse(Kind::UploadToken, presented) else {
        return Ok(Err(Refused::Unknown));
    };
    let Some(record) = app.repo().upload_token(id).await? else {
        return Ok(Err(Refused::Unknown));
    };
    if !keys::verify(secret, &record.secret_hash) {
        return Ok(Err(Refused::Unknown));
    }
    if record.revoked {
        return Ok(Err(Refused::Revoked));
    }
    if Utc::now() >= record.expires_at {
        return Ok(Err(Refused::Expired));
    }
    let extensions = record
        .allowed_extensions
        .split(',')
        .filter_map(DocumentKind::from_extension)
        .collect();
    Ok(Ok(UploadToken {
        id,
        client_id: record.client_id,
        key_id: record.key_id,
        expires_at: record.expires_at,
        max_size: u64::try_from(record.max_size).unwrap_or(0),
        extensions,
    }))
}

/// Revokes a token of this client at once, on every replica; `false` if it has no such token.
pub async fn revoke(app: &App, client_id: &str, id: Uuid) -> Result<bool, RepoError> {
    app.repo()
        .revoke_upload_token(client_id, id, Utc::now())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_narrow_to_a_subset_of_the_service() {
        let service: BTreeSet<_> = [DocumentKind::Pdf, DocumentKind::Docx].into();
        let narrowed = narrow_extensions(&service, &[".PDF".into()]).unwrap();
        assert_eq!(spell(&narrowed), "pdf");
        assert!(matches!(
            narrow_extensions(&service, &["doc".into()]),
            Err(TokenError::Invalid {
                field: "allowed_extensions",
                ..
            })
        ));
        assert!(narrow_extensions(&service, &[]).is_err());
    }
}
