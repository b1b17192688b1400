//! The `Repo` trait: everything Stowage keeps in its database, with a PostgreSQL and a SQLite
//! implementation. Each backend has its own module and its own `migrations/` folder; migrations
//! run when a repository is opened.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{FileRecord, FileState, StagedFacts};

pub use postgres::PostgresRepo;
pub use sqlite::SqliteRepo;

/// What can go wrong in the database layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The database cannot be reached (connection refused, pool exhausted, I/O).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The URL names no backend Stowage has.
    #[error("unsupported database URL '{0}' (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl(String),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for RepoError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => RepoError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                RepoError::Conflict(db.message().to_owned())
            }
            _ => RepoError::Database(e),
        }
    }
}

/// Result alias for the database layer.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// A stored API key.
#[derive(Clone, Debug)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub revoked: bool,
}

/// What the database says about a key presented with a client id.
#[derive(Clone, Debug)]
pub struct KeyGrant {
    pub key_name: String,
    pub secret_hash: Vec<u8>,
    pub revoked: bool,
    /// Whether the key may act for the client id it was presented with.
    pub client_allowed: bool,
}

/// A file row about to be written before its first byte is stored.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub id: Uuid,
    pub client_id: String,
    pub file_name: String,
    pub staging_key: String,
    pub created_at: DateTime<Utc>,
}

/// Outcome of asking to discard a staged file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discard {
    /// The file was staged and is now a tombstone; its object must be deleted.
    Discarded(Box<FileRecord>),
    /// It was already a tombstone; nothing to do.
    AlreadyGone,
    /// It is in a state that cannot be discarded (receiving, bound, promoted).
    NotDiscardable(FileState),
    /// No such file for this client.
    NotFound,
}

/// Counts of files and bytes in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateCount {
    pub state: FileState,
    pub files: i64,
    pub bytes: i64,
}

/// Everything Stowage keeps in its database.
#[async_trait]
pub trait Repo: Send + Sync {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;

    /// Whether any API key exists (first-run bootstrap).
    async fn has_keys(&self) -> Result<bool>;
    /// Stores a new key; `Conflict` if the name is taken.
    async fn create_key(&self, id: Uuid, name: &str, secret_hash: &[u8]) -> Result<()>;
    /// Looks a key up by name.
    async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>>;
    /// Revokes a key; `false` if there is no key of that name.
    async fn revoke_key(&self, name: &str) -> Result<bool>;
    /// Lets a key act for a client id (its workspace); idempotent, updates the workspace.
    async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()>;
    /// The key with this id and whether it may act for `client_id`.
    async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>>;

    /// Writes the `receiving` row of a file whose bytes are about to be stored.
    async fn insert_receiving(&self, file: &NewFile) -> Result<()>;
    /// Remembers the multipart upload a receiving file is using, so it can be aborted after a crash.
    async fn set_multipart_upload(&self, id: Uuid, upload_id: &str) -> Result<()>;
    /// Marks a received and checked file `staged`.
    async fn mark_staged(&self, id: Uuid, facts: &StagedFacts) -> Result<()>;
    /// Deletes the row of a file whose upload failed (only while it is `receiving`).
    async fn delete_receiving(&self, id: Uuid) -> Result<()>;
    /// A client's file in any state.
    async fn get_file(&self, client_id: &str, id: Uuid) -> Result<Option<FileRecord>>;
    /// Turns a staged file into a `discarded` tombstone (a conditional update).
    async fn discard(&self, client_id: &str, id: Uuid) -> Result<Discard>;
    /// Files and bytes per state, across all clients.
    async fn count_by_state(&self) -> Result<Vec<StateCount>>;
}

/// Opens the repository a database URL names, creating a SQLite file if needed, and runs its
/// migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Repo>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresRepo::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteRepo::connect(url).await?))
    } else {
        Err(RepoError::UnsupportedUrl(url.to_owned()))
    }
}

fn parse_state(raw: &str) -> Result<FileState> {
    raw.parse().map_err(RepoError::Corrupt)
}
