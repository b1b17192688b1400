//! API keys and the client ids (workspaces) they may act for.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::is_valid_client_id;
use crate::keys;
use crate::repo::{Repo, RepoError};

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("a key named '{0}' already exists")]
    KeyExists(String),
    #[error("no key named '{0}'")]
    NoSuchKey(String),
    #[error("key '{0}' is revoked")]
    KeyRevoked(String),
    #[error("no key may act for client '{0}'")]
    NoSuchClient(String),
    #[error("'{0}' is not a valid name: use 1-64 of A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A key just created; the secret is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub key: String,
    pub api_key: String,
}

/// A client id mapped to a key, as `stowage clients add --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientAdded {
    pub client_id: String,
    pub workspace: String,
    pub key: String,
    /// Present only when the key was created by this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// A key as `stowage keys list --json` prints it: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyListing {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// To within a minute; `null` if it never authenticated a request.
    pub last_used_at: Option<DateTime<Utc>>,
    pub client_ids: Vec<String>,
}

/// A client id and a key that may act for it, as `stowage clients list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientListing {
    pub client_id: String,
    pub workspace: String,
    pub key: String,
    pub key_revoked: bool,
    pub created_at: DateTime<Utc>,
}

/// Every key, by name.
pub async fn list_keys(repo: &dyn Repo) -> Result<Vec<KeyListing>, AccountError> {
    Ok(repo
        .list_keys()
        .await?
        .into_iter()
        .map(|k| KeyListing {
            name: k.name,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            client_ids: k.client_ids,
        })
        .collect())
}

/// Every client id with each key that may act for it.
pub async fn list_clients(repo: &dyn Repo) -> Result<Vec<ClientListing>, AccountError> {
    Ok(repo
        .list_clients()
        .await?
        .into_iter()
        .map(|g| ClientListing {
            client_id: g.client_id,
            workspace: g.workspace,
            key: g.key_name,
            key_revoked: g.key_revoked,
            created_at: g.created_at,
        })
        .collect())
}

/// Whether a client id means anything here: a key may act for it, or it has files (a client
/// removed since keeps its files, and they can still be erased).
pub async fn client_known(repo: &dyn Repo, client_id: &str) -> Result<bool, RepoError> {
    if repo
        .list_clients()
        .await?
        .iter()
        .any(|grant| grant.client_id == client_id)
    {
        return Ok(true);
    }
    let filter = crate::repo::FileFilter::default();
    Ok(!repo
        .list_files(client_id, &filter, None, 1)
        .await?
        .is_empty())
}

/// Stops every key (or only `key_name`) from acting for a client id; the client's files and
/// webhooks stay, and granting the client id again gives them back. Returns the grants removed.
pub async fn remove_client(
    repo: &dyn Repo,
    client_id: &str,
    key_name: Option<&str>,
) -> Result<u64, AccountError> {
    if let Some(name) = key_name
        && repo.find_key(name).await?.is_none()
    {
        return Err(AccountError::NoSuchKey(name.to_owned()));
    }
    match repo.remove_client(client_id, key_name).await? {
        0 => Err(AccountError::NoSuchClient(client_id.to_owned())),
        removed => Ok(removed),
    }
}

/// Creates a key named `name` and returns its secret.
pub async fn create_key(repo: &dyn Repo, name: &str) -> Result<CreatedKey, AccountError> {
    if !is_valid_client_id(name) {
        return Err(AccountError::InvalidName(name.to_owned()));
    }
    let key = keys::generate(keys::Kind::ApiKey);
    match repo.create_key(key.id, name, &key.secret_hash).await {
        Ok(()) => Ok(CreatedKey {
            key: name.to_owned(),
            api_key: key.plaintext,
        }),
        Err(RepoError::Conflict(_)) => Err(AccountError::KeyExists(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// Revokes a key; requests with it get 401 from then on.
pub async fn revoke_key(repo: &dyn Repo, name: &str) -> Result<(), AccountError> {
    if repo.revoke_key(name).await? {
        Ok(())
    } else {
        Err(AccountError::NoSuchKey(name.to_owned()))
    }
}

/// Maps a client id to a workspace for a key, creating the key first if it does not exist.
pub async fn add_client(
    repo: &dyn Repo,
    client_id: &str,
    key_name: &str,
    workspace: Option<&str>,
) -> Result<ClientAdded, AccountError> {
    if !is_valid_client_id(client_id) {
        return Err(AccountError::InvalidName(client_id.to_owned()));
    }
    // Without a workspace, the client keeps the label it had (even after it was removed).
    let known = match workspace {
        Some(_) => None,
        None => repo.client_workspace(client_id).await?,
    };
    let workspace = workspace.or(known.as_deref()).unwrap_or(client_id).trim();
    if workspace.is_empty() || workspace.len() > 200 {
        return Err(AccountError::InvalidName(workspace.to_owned()));
    }
    let mut api_key = None;
    let key = match repo.find_key(key_name).await? {
        Some(key) => key,
        None => {
            api_key = Some(create_key(repo, key_name).await?.api_key);
            repo.find_key(key_name)
                .await?
                .ok_or_else(|| AccountError::NoSuchKey(key_name.to_owned()))?
        }
    };
    if key.revoked {
        return Err(AccountError::KeyRevoked(key_name.to_owned()));
    }
    repo.grant_client(key.id, client_id, workspace).await?;
    Ok(ClientAdded {
        client_id: client_id.to_owned(),
        workspace: workspace.to_owned(),
        key: key.name,
        api_key,
    })
}

/// On an empty database, creates client `default` with key `default` so a first run needs no
/// other step. Returns what it created, or `None` if keys already exist.
pub async fn bootstrap(repo: &dyn Repo) -> Result<Option<ClientAdded>, AccountError> {
    if repo.has_keys().await? {
        return Ok(None);
    }
    match add_client(repo, "default", "default", None).await {
        Ok(added) => Ok(Some(added)),
        // Another replica bootstrapped at the same moment.
        Err(AccountError::KeyExists(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
