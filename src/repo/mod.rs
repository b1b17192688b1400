//! The `Repo` trait: everything Stowage keeps in its database, with a PostgreSQL and a SQLite
//! implementation. The statements are written once (`sql.rs` and one `sql_<role>.rs` per role);
//! each backend module holds only
//! its column types, its dialect-specific statements and its connection set-up, and has its own
//! `migrations/` folder (run when a repository is opened).

#[macro_use]
mod sql;
mod dialect;
pub mod key_cache;
mod postgres;
mod sql_files;
mod sql_jobs;
mod sql_keys;
mod sql_outbox;
mod sql_sweep;
mod sql_tokens;
mod sql_webhooks;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    ErasureReason, FileRecord, FileState, Slot, StagedFacts, WebhookKind, WebhookRecord,
};
use crate::event_model::{DeliveryStatus, EventRules, EventType};

pub use postgres::PostgresRepo;
pub use sqlite::SqliteRepo;

/// What can go wrong in the database layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The database cannot be reached (connection refused, pool exhausted, I/O).
    #[error("database unavailable: {}", describe(.0))]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {}", describe(.0))]
    Database(#[source] sqlx::Error),
    /// The URL names no backend Stowage has.
    #[error("unsupported database URL '{0}' (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl(String),
    /// The database cannot be set up where the URL points (a directory cannot be made…).
    #[error("{0}")]
    Setup(String),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A database error as an operator should read it: the server's message and its SQLSTATE, not
/// the server's source position ("at line 334") that sqlx's own text ends with.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

impl From<sqlx::Error> for RepoError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
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

/// A key as `stowage keys list` shows it: no secret, not even its hash.
#[derive(Clone, Debug)]
pub struct KeySummary {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When a request last authenticated with it (to within [`KEY_USE_PRECISION`]).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The client ids it may act for, sorted.
    pub client_ids: Vec<String>,
}

/// A client id granted to a key, as `stowage clients list` shows it.
#[derive(Clone, Debug)]
pub struct ClientGrant {
    pub client_id: String,
    pub workspace: String,
    pub key_name: String,
    pub key_revoked: bool,
    pub created_at: DateTime<Utc>,
}

/// How stale a key's `last_used_at` may be: it is written at most once per this interval per
/// key, so authenticating does not turn every request into a database write.
pub const KEY_USE_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// An event endpoint as stored. The secret is kept readable: it signs every delivery.
#[derive(Clone, Debug)]
pub struct EndpointRecord {
    pub id: Uuid,
    pub client_id: String,
    pub url: String,
    /// `None`: every type.
    pub event_types: Option<Vec<crate::event_model::EventType>>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    /// Since when no deliveries are made to it (disabled by its client, or after failing
    /// every attempt for `STOWAGE_EVENT_DISABLE_AFTER`).
    pub disabled_at: Option<DateTime<Utc>>,
}

impl EndpointRecord {
    /// The secrets a delivery made at `now` is signed with: the current one, then the previous
    /// one while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret
            && *until > now
        {
            secrets.push(previous);
        }
        secrets
    }

    /// The types delivered to it: its list, or every type.
    pub fn delivered_types(&self) -> Vec<crate::event_model::EventType> {
        self.event_types
            .clone()
            .unwrap_or_else(|| crate::event_model::EventType::ALL.to_vec())
    }
}

/// A job the worker has claimed (leased).
#[derive(Clone, Debug)]
pub struct Job {
    pub id: Uuid,
    pub kind: crate::domain::JobKind,
    pub file_id: Uuid,
    /// Claims so far, this one included.
    pub attempts: i32,
    /// Why the last attempt could not run, if it could not.
    pub last_error: Option<String>,
}

/// A text job's outcome as the domain decided it: the file's text state, its text (if
/// extracted) and the event reporting it.
#[derive(Clone, Copy, Debug)]
pub struct TextWrite<'a> {
    pub job_id: Uuid,
    pub file_id: Uuid,
    pub state: &'a crate::domain::TextState,
    pub text: Option<&'a str>,
    pub event: &'a crate::event_model::NewEvent,
}

/// A delivery the worker has claimed (leased): what to send, and where.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    /// Attempts made before this one.
    pub attempt_count: i32,
    pub url: String,
    pub secret: String,
    /// The secret before the last rotation, while it still signs.
    pub previous_secret: Option<String>,
    /// The event, byte for byte as recorded.
    pub body: String,
    /// When the event happened.
    pub event_created_at: DateTime<Utc>,
}

/// What `PATCH /event-endpoints/{id}` changes; `None`: unchanged.
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    /// `Some(None)`: every type.
    pub event_types: Option<Option<Vec<crate::event_model::EventType>>>,
    pub disabled: Option<bool>,
}

/// One attempt at a delivery, and what the delivery becomes after it.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    /// Which attempt this was, from 1.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub response_status_code: Option<i32>,
    pub error_message: Option<String>,
    pub status: DeliveryStatus,
    /// When to try again (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One attempt as the delivery log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptLog {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub response_status_code: Option<i32>,
    pub error_message: Option<String>,
}

/// The delivery of an event to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub endpoint_id: Uuid,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub response_status_code: Option<i32>,
    pub error_message: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the worker tries next (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first (read only for a single event).
    pub attempts: Vec<AttemptLog>,
}

/// An event from the outbox, with its deliveries.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub id: Uuid,
    pub client_id: String,
    pub event_type: EventType,
    /// The event as delivered.
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryRecord>,
}

/// Where a page of a list (events, files) starts: after this entry, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Signals that API keys or grants changed, from any process (see `src/repo/key_cache.rs`); the
/// repository's key cache follows them while this is alive and polled.
#[async_trait]
pub trait KeyChanges: Send {
    /// Waits for the next change (and empties the cache); an error means the signals are lost
    /// from here on (and the cache is off).
    async fn next(&mut self) -> Result<()>;
}

/// What the database says about a key presented with a client id.
#[derive(Clone, Debug)]
pub struct KeyGrant {
    pub key_name: String,
    pub secret_hash: Vec<u8>,
    pub revoked: bool,
    /// When the key last authenticated a request, as recorded.
    pub last_used_at: Option<DateTime<Utc>>,
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

impl NewFile {
    /// The record of this file while its bytes arrive.
    pub fn receiving(&self) -> FileRecord {
        FileRecord {
            id: self.id,
            client_id: self.client_id.clone(),
            state: FileState::Receiving,
            file_name: self.file_name.clone(),
            content_type: None,
            file_size: None,
            sha256: None,
            staging_key: self.staging_key.clone(),
            multipart_upload_id: None,
            created_at: self.created_at,
            uploaded_at: None,
            expires_at: None,
            webhook_id: None,
            slot: None,
            promoted_key: None,
            bound_at: None,
            promoted_at: None,
            erased_at: None,
            text: None,
            scan: None,
        }
    }
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

/// A file just erased: its row is a tombstone, its objects are still to be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasedFile {
    pub id: Uuid,
    pub staging_key: String,
    /// A multipart upload the file's upload had open, to abort.
    pub multipart_upload_id: Option<String>,
    /// The state it was erased from (`None`: read back by the sweeper, not known).
    pub was: Option<FileState>,
}

/// Outcome of asking to erase a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Erase {
    /// The row is now an `erased` tombstone (and `file.erased` recorded); delete its objects.
    Erased(ErasedFile),
    /// It was erased before; nothing to do.
    AlreadyErased,
    /// No such file for this client.
    NotFound,
}

/// What erasing a candidate (`user_id`) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserErasure {
    /// Every file bound to the candidate's webhooks, all erased now, oldest first.
    pub files: Vec<Uuid>,
    /// The ones this call erased, whose objects are to be deleted.
    pub erased: Vec<ErasedFile>,
}

/// Which of a client's files `GET /files` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFilter {
    pub state: Option<FileState>,
    /// Only files bound to a webhook with this `user_id`.
    pub user_id: Option<String>,
}

/// A webhook about to be recorded.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub id: Uuid,
    pub client_id: String,
    pub kind: WebhookKind,
    pub user_id: String,
    pub payload: String,
    pub payload_hash: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A file's row as a refused bind found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRow {
    pub state: FileState,
    pub expires_at: Option<DateTime<Utc>>,
    /// The webhook it is bound to, if any.
    pub webhook_id: Option<Uuid>,
}

/// What one attempt to bind a webhook's files did. What a refusal means (which failure, or a
/// retry of an earlier webhook) is decided by the domain (`webhooks::bind`).
#[derive(Clone, Debug)]
pub enum BindAttempt {
    /// The webhook is recorded and every file bound to it (in the order asked).
    Bound(Vec<FileRecord>),
    /// Nothing was written. Each slot that could not be bound, with its file's row as the
    /// transaction saw it (`None`: no such file for this client), and the time the bind used.
    Refused {
        at: DateTime<Utc>,
        slots: Vec<(Slot, Option<SlotRow>)>,
    },
    /// Another webhook of this client already holds the idempotency key.
    KeyTaken,
}

/// A file just marked `expired`: its staging object is to be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedFile {
    pub id: Uuid,
    pub staging_key: String,
}

/// One sweep pass, as recorded for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SweepRun {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub expired: i64,
    pub objects_deleted: i64,
    pub receiving_aborted: i64,
    pub orphans_deleted: i64,
    pub tombstones_purged: i64,
    pub promoted: i64,
    /// Promoted files erased because they outlived `STOWAGE_FILE_RETENTION`.
    pub erased: i64,
    /// Erased files whose objects this pass deleted (an erasure interrupted, or racing a write).
    pub erasures_finished: i64,
    pub errors: i64,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Time spent expiring files, and on the whole pass (reported, not stored).
    #[serde(default)]
    pub expire_ms: i64,
    #[serde(default)]
    pub pass_ms: i64,
}

/// Files and bytes per state plus what is about to expire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    pub by_state: Vec<StateCount>,
    /// Staged files expiring within the next hour / day.
    pub expiring_1h: i64,
    pub expiring_24h: i64,
    /// Staged files already past `expires_at`, waiting for the sweeper.
    pub overdue: i64,
    /// Event deliveries not yet delivered nor failed, and when the oldest one's event happened.
    pub deliveries_pending: i64,
    pub oldest_pending_event_at: Option<DateTime<Utc>>,
}

/// Counts of files and bytes in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateCount {
    pub state: FileState,
    pub files: i64,
    pub bytes: i64,
}

/// Everything Stowage keeps in its database, by role: each role a trait, and the repository
/// every one of them.
pub trait Repo:
    KeyRepo + TokenRepo + OutboxRepo + FileRepo + WebhookRepo + JobRepo + SweepRepo
{
}

impl<T: KeyRepo + TokenRepo + OutboxRepo + FileRepo + WebhookRepo + JobRepo + SweepRepo> Repo
    for T
{
}

/// An upload token as stored (src/upload_tokens.rs): only the SHA-256 of its secret.
#[derive(Clone, Debug)]
pub struct UploadTokenRecord {
    pub id: Uuid,
    pub client_id: String,
    /// The API key that minted it.
    pub key_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub max_files: i32,
    pub max_size: i64,
    /// Comma-separated, as `STOWAGE_ALLOWED_EXTENSIONS` spells them.
    pub allowed_extensions: String,
    pub created_at: DateTime<Utc>,
    /// Uploads opened with it so far.
    pub used: i32,
    /// Revoked itself, or its key revoked, or the client taken from its key.
    pub revoked: bool,
}

/// Upload tokens: minted by an API key for one client, counted at each upload they open.
#[async_trait]
pub trait TokenRepo: Send + Sync {
    /// Stores a new token (its `used` and `revoked` are ignored).
    async fn create_upload_token(&self, token: &UploadTokenRecord) -> Result<()>;
    /// The token with this id, whatever its state.
    async fn upload_token(&self, id: Uuid) -> Result<Option<UploadTokenRecord>>;
    /// Counts one more upload opened with the token, in one conditional update: `false` if it
    /// is used up, expired at `now` or revoked (itself, its key or its key's grant).
    async fn use_upload_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool>;
    /// Revokes a token of this client; `false` if the client has no such token.
    async fn revoke_upload_token(
        &self,
        client_id: &str,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Deletes the tokens that expired before `before`; how many.
    async fn purge_upload_tokens(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// API keys and the client ids they act for.
#[async_trait]
pub trait KeyRepo: Send + Sync {
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
    /// Listens for changes to keys and grants made by any process, emptying the key cache at
    /// each (and keeping it on only while listening); `None` where the database cannot signal
    /// them (SQLite: keys are then read at every request, in-process).
    async fn key_changes(&self) -> Result<Option<Box<dyn KeyChanges>>>;
    /// Whether key lookups are being served from the cache (`src/repo/key_cache.rs`).
    fn keys_cached(&self) -> bool;
    /// Records that a key authenticated a request at `at`.
    async fn key_used(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Every key, by name.
    async fn list_keys(&self) -> Result<Vec<KeySummary>>;
    /// Every client id granted to a key, by client id then key name.
    async fn list_clients(&self) -> Result<Vec<ClientGrant>>;
    /// The workspace label a client id was last granted with, kept after its grants are removed.
    async fn client_workspace(&self, client_id: &str) -> Result<Option<String>>;
    /// Takes a client id away from every key (or only from `key_name`); the number of grants
    /// removed. The client's files and webhooks stay.
    async fn remove_client(&self, client_id: &str, key_name: Option<&str>) -> Result<u64>;
}

/// Event endpoints, the outbox's deliveries and their attempts.
#[async_trait]
pub trait OutboxRepo: Send + Sync {
    /// Registers an event endpoint.
    async fn create_endpoint(&self, endpoint: &EndpointRecord) -> Result<()>;
    /// The endpoints in use, oldest first: a client's, or every client's.
    async fn list_endpoints(&self, client_id: Option<&str>) -> Result<Vec<EndpointRecord>>;
    /// Changes an endpoint of this client (url, types, disabled or enabled); `None` if it has
    /// none in use with this id. Disabling fails its pending deliveries (as removing does);
    /// enabling redelivers nothing by itself.
    async fn update_endpoint(
        &self,
        client_id: &str,
        id: Uuid,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Option<EndpointRecord>>;
    /// Replaces an endpoint's secret; the one before keeps signing until `overlap_until`.
    /// `false` if the client has no such endpoint in use.
    async fn rotate_secret(
        &self,
        client_id: &str,
        id: Uuid,
        secret: &str,
        overlap_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Records that an attempt at `at` failed: it starts (or continues) the endpoint's run of
    /// failures (a delivery ends it: `record_attempt`). With `disable_before`, an endpoint
    /// whose run of failures began before then is disabled (its pending deliveries failed):
    /// `true` if this call disabled it.
    async fn endpoint_failed(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        disable_before: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// Removes an endpoint (of this client, if given); `false` if there is none in use. Nothing
    /// more is delivered to it (its pending deliveries fail); its delivery log stays.
    async fn remove_endpoint(&self, client_id: Option<&str>, id: Uuid) -> Result<bool>;
    /// Leases up to `limit` deliveries that are due at `now` (pending, not leased by another
    /// worker, to an endpoint in use) until `lease_until`, fairly: at most `per_endpoint` in
    /// flight to one endpoint, round-robin across clients and their endpoints. With several
    /// workers each delivery goes to one of them (a conditional update).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        per_endpoint: u32,
    ) -> Result<Vec<DueDelivery>>;
    /// Logs an attempt and moves its delivery on, and a delivered one ends its endpoint's run
    /// of failures; `false` (nothing written) if another worker recorded this attempt first.
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<bool>;
    /// A client's events, newest first, after `cursor`, of one type if given, with their
    /// deliveries (without the attempt log).
    async fn list_events(
        &self,
        client_id: &str,
        event_type: Option<EventType>,
        cursor: Option<PageCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>>;
    /// One of a client's events, with its deliveries and every attempt.
    async fn get_event(&self, client_id: &str, id: Uuid) -> Result<Option<EventRecord>>;
    /// Queues an event again for every endpoint in use subscribed to it, due at `now`; `false`
    /// if the client has no such event.
    async fn redeliver(&self, client_id: &str, id: Uuid, now: DateTime<Utc>) -> Result<bool>;
}

/// Files from their first byte to their tombstone: receiving, staged, discarded, direct uploads, downloads and erasure.
#[async_trait]
pub trait FileRepo: Send + Sync {
    /// Writes the `receiving` row of a file whose bytes are about to be stored.
    async fn insert_receiving(&self, file: &NewFile) -> Result<()>;
    /// Records that bytes of a `receiving` file are still arriving (the sweeper aborts an
    /// upload silent for longer than the grace period, however long it has run).
    /// `false`: the row is no longer receiving (aborted, erased): the upload must stop.
    async fn touch_receiving(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool>;
    /// Deletes a `receiving` row with no activity since `before` (a dead upload), before its
    /// objects are deleted: whether this call deleted it. Conditional, so an upload that
    /// completed (or showed activity) meanwhile keeps its row, and its bytes.
    async fn abort_receiving(&self, id: Uuid, before: DateTime<Utc>) -> Result<bool>;
    /// Remembers the multipart upload a receiving file is using, so it can be aborted after a crash.
    async fn set_multipart_upload(&self, id: Uuid, upload_id: &str) -> Result<()>;
    /// Marks a received and checked file `staged` with these facts, and writes `event` (its
    /// `file.staged`, as the domain built it) in the same change; `Conflict` if it is no
    /// longer receiving (and then no event is written).
    async fn mark_staged(
        &self,
        id: Uuid,
        facts: &StagedFacts,
        event: &crate::event_model::NewEvent,
    ) -> Result<()>;
    /// Deletes the row of a file whose upload failed (only while it is `receiving`).
    async fn delete_receiving(&self, id: Uuid) -> Result<()>;
    /// Writes the `receiving` row of a direct upload and its declaration (two writes, no
    /// transaction: a row left without its declaration is aborted like any dead upload). The
    /// row's activity time is the end of its window: the sweeper aborts it a grace period
    /// later.
    async fn insert_direct(
        &self,
        file: &NewFile,
        direct: &crate::domain::DirectUpload,
    ) -> Result<()>;
    /// Direct uploads whose window ended before `before` and whose staging key has not been
    /// dealt with since: the file's id, staging key and state, oldest window first.
    async fn closing_direct_windows(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(Uuid, String, FileState)>>;
    /// Records that a closed window's staging key was dealt with.
    async fn close_direct_window(&self, id: Uuid) -> Result<()>;
    /// A client's direct upload: the file's row and its declaration.
    async fn direct_upload(
        &self,
        client_id: &str,
        id: Uuid,
    ) -> Result<Option<(FileRecord, crate::domain::DirectUpload)>>;
    /// Records why completing a direct upload refused it, unless something was recorded first
    /// or the file is no longer `receiving`; whether this one was recorded.
    async fn refuse_direct(&self, id: Uuid, refusal: &str) -> Result<bool>;
    /// Which client a file (in any state) belongs to.
    async fn file_client(&self, id: Uuid) -> Result<Option<String>>;
    /// Promoted files (promoted at or after `since`, if given) after `after` in id order, at
    /// most `limit`: what `stowage rescan` walks.
    async fn promoted_files(
        &self,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<FileRecord>>;
    /// Records a later scan of a promoted file that found nothing; `false` if it is no longer
    /// promoted or is quarantined.
    async fn record_scan(&self, id: Uuid, scan: &crate::domain::ScanRecord) -> Result<bool>;
    /// Quarantines a promoted file a later scan found infected, with its `file.infected` event,
    /// in one transaction; the file as quarantined, or `None` if it is no longer promoted or
    /// was quarantined already.
    async fn quarantine(
        &self,
        id: Uuid,
        scan: &crate::domain::ScanRecord,
        rules: &dyn EventRules,
    ) -> Result<Option<FileRecord>>;
    /// A client's file in any state — except a direct upload that completion refused, which is
    /// finished for the client from then on (`None`, and left out of `list_files`).
    async fn get_file(&self, client_id: &str, id: Uuid) -> Result<Option<FileRecord>>;
    /// Turns a staged file into a `discarded` tombstone (a conditional update).
    async fn discard(&self, client_id: &str, id: Uuid, rules: &dyn EventRules) -> Result<Discard>;
    /// A client's files, newest first, after `cursor`, with the webhook each is bound to.
    async fn list_files(
        &self,
        client_id: &str,
        filter: &FileFilter,
        cursor: Option<PageCursor>,
        limit: i64,
    ) -> Result<Vec<(FileRecord, Option<WebhookRecord>)>>;
    /// Records that a promoted file's content is being handed out (`file.downloaded`); `false`
    /// if the client has no such file promoted (erased since the caller looked, say).
    async fn record_download(
        &self,
        client_id: &str,
        id: Uuid,
        key_name: &str,
        request_id: &str,
        rules: &dyn EventRules,
    ) -> Result<bool>;
    /// In one transaction: turns a client's file, in any state, into an `erased` tombstone (no
    /// name, type, size or hash), records `file.erased` and redacts the earlier events about it.
    /// A conditional update on the state it was read in, so a concurrent bind, promotion or
    /// expiry either happens before (and is erased) or finds the file erased.
    async fn erase_file(
        &self,
        client_id: &str,
        id: Uuid,
        reason: ErasureReason,
        rules: &dyn EventRules,
    ) -> Result<Erase>;
    /// In one transaction: erases every file bound to this client's webhooks for `user_id` and
    /// removes the personal `data` (and the idempotency key and payload hash) of those webhooks.
    async fn erase_user(
        &self,
        client_id: &str,
        user_id: &str,
        rules: &dyn EventRules,
    ) -> Result<UserErasure>;
    /// Erases up to `limit` files promoted before `before` (retention), in one transaction;
    /// with several sweepers each file goes to one of them.
    async fn erase_retained(
        &self,
        before: DateTime<Utc>,
        limit: i64,
        rules: &dyn EventRules,
    ) -> Result<Vec<ErasedFile>>;
    /// Erased files erased before `before` whose objects are not known to be deleted.
    async fn unfinished_erasures(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ErasedFile>>;
    /// Records that the objects of these erased files are deleted.
    async fn objects_erased(&self, ids: &[Uuid]) -> Result<()>;
}

/// Webhooks: binding their files all or none, their results, promotion.
#[async_trait]
pub trait WebhookRepo: Send + Sync {
    /// In one transaction: records the webhook and binds every file to it with a conditional
    /// update (`staged`, this client, not expired) — all or none.
    async fn bind_files(&self, webhook: &NewWebhook, files: &[(Slot, Uuid)])
    -> Result<BindAttempt>;
    /// Records a webhook that was refused (it holds no idempotency key).
    async fn insert_rejected_webhook(&self, webhook: &NewWebhook, result: &str) -> Result<()>;
    /// The accepted webhook of a client holding an idempotency key.
    async fn webhook_by_key(&self, client_id: &str, key: &str) -> Result<Option<WebhookRecord>>;
    /// The files bound to a webhook, in slot order.
    async fn webhook_files(&self, webhook_id: Uuid) -> Result<Vec<FileRecord>>;
    /// A webhook by id, within a client.
    async fn get_webhook(&self, client_id: &str, id: Uuid) -> Result<Option<WebhookRecord>>;
    /// In one transaction: marks the webhook's files whose objects were moved (`promoted`,
    /// id and long-term key) promoted, stores the answer and marks the webhook processed. Not
    /// flushed synchronously on PostgreSQL: losing it in a crash only leaves files `bound`, which
    /// the recovery pass promotes again (the copy finds them in place). Returns the files that
    /// were no longer bound (erased meanwhile, or promoted by another path).
    /// `moved` holds the files whose objects were moved, as [`FileRecord::promoted`] says
    /// (others are left bound).
    async fn finish_webhook(
        &self,
        webhook: &WebhookRecord,
        result: &str,
        moved: &[FileRecord],
        rules: &dyn EventRules,
    ) -> Result<Vec<Uuid>>;
    /// Marks a bound file promoted; `false` if it was not bound (already promoted).
    async fn mark_promoted(
        &self,
        file: &FileRecord,
        promoted_key: &str,
        rules: &dyn EventRules,
    ) -> Result<bool>;
    /// Bound files waiting for promotion, oldest first.
    async fn bound_files(&self, limit: i64) -> Result<Vec<FileRecord>>;
}

/// Background jobs and what the text job reads and records.
#[async_trait]
pub trait JobRepo: Send + Sync {
    /// Leases up to `limit` due jobs until `until`, counting the attempt.
    async fn claim_jobs(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Job>>;
    /// Releases a job that could not run, to be claimed again at `at`.
    async fn retry_job(&self, id: Uuid, at: DateTime<Utc>, error: &str) -> Result<()>;
    /// Records a text job's outcome on its file (if still promoted and pending), with its
    /// event, and deletes the job — one transaction. Whether the file took the outcome.
    async fn finish_text_job(&self, write: TextWrite<'_>) -> Result<bool>;
    /// Deletes a job with nothing left to do (its file is no longer promoted).
    async fn drop_job(&self, job_id: Uuid) -> Result<()>;
    /// A promoted file, by id alone (for the worker), with its webhook.
    async fn promoted_file(&self, id: Uuid) -> Result<Option<(FileRecord, Option<WebhookRecord>)>>;
    /// A client's promoted file's extracted text.
    async fn file_text(&self, client_id: &str, id: Uuid) -> Result<Option<String>>;
}

/// The maintenance pass and the operators' view: expiry, dead uploads, tombstones, statistics.
#[async_trait]
pub trait SweepRepo: Send + Sync {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Files and bytes per state, across all clients.
    async fn count_by_state(&self) -> Result<Vec<StateCount>>;
    /// Adds the per-state changes recorded since the last fold to the totals
    /// `count_by_state` reads; how many changes it folded.
    async fn fold_file_counts(&self) -> Result<u64>;
    /// In one write transaction, marks up to `limit` staged files whose `expires_at` is at or
    /// before `now` `expired` and returns them. The rows are tombstones before any object is
    /// deleted, so no webhook can bind a file whose object is going away; with several sweepers
    /// each row goes to one of them (`SKIP LOCKED` on PostgreSQL, the write lock on SQLite).
    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        rules: &dyn EventRules,
    ) -> Result<Vec<ClaimedFile>>;
    /// `receiving` rows with no activity since `before` (uploads that died).
    async fn stale_receiving(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<FileRecord>>;
    /// The state of each of these files that still has a row.
    async fn file_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, FileState)>>;
    /// Deletes tombstones (and refused webhooks, events with their delivery logs, and sweep
    /// records) older than `before`.
    /// `file.erased` events, the proof of an erasure, are kept until `erasures_before`.
    async fn purge_tombstones(
        &self,
        before: DateTime<Utc>,
        erasures_before: DateTime<Utc>,
    ) -> Result<u64>;
    /// Records a sweep pass.
    async fn record_sweep(&self, run: &SweepRun) -> Result<()>;
    /// The most recent sweep pass.
    async fn last_sweep(&self) -> Result<Option<SweepRun>>;
    /// Files and bytes per state and what is about to expire.
    async fn storage_stats(&self) -> Result<StorageStats>;
}

/// Opens the repository a database URL names, creating a SQLite file if needed, and runs its
/// migrations.
/// `max_connections` is everything the repository may open to PostgreSQL (both pools and the
/// key-change listeners, which borrow from them); SQLite keeps its own small pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Repo>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresRepo::connect(url, max_connections).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteRepo::connect(url).await?))
    } else {
        Err(RepoError::UnsupportedUrl(url.to_owned()))
    }
}

impl Discard {
    /// What a discard that changed no row means, from the row's state (`None`: no such row).
    fn after_refusal(state: Option<FileState>) -> Discard {
        match state {
            None => Discard::NotFound,
            Some(FileState::Expired | FileState::Discarded | FileState::Erased) => {
                Discard::AlreadyGone
            }
            Some(other) => Discard::NotDiscardable(other),
        }
    }
}

/// A stored name (state, kind, slot, status) read back.
fn parse_named<T: std::str::FromStr<Err = String>>(raw: &str) -> Result<T> {
    raw.parse().map_err(RepoError::Corrupt)
}
