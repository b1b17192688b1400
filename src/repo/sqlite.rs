//! SQLite: the embedded default, for a first run and small single-process installs.
//!
//! Ids are stored as hyphenated TEXT and times as INTEGER microseconds since the Unix epoch.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::{
    ApiKeyRecord, AttemptLog, AttemptRecord, BindAttempt, ClaimedFile, ClientGrant, DeliveryRecord,
    Discard, DueDelivery, EndpointRecord, Erase, ErasedFile, EventRecord, FileFilter, Job,
    KeyGrant, KeySummary, NewFile, NewWebhook, PageCursor, RepoError, Result, SlotRow, StateCount,
    StorageStats, SweepRun, TextOutcome, UserErasure, parse_named,
};
use crate::domain::{
    ErasureReason, FileRecord, FileState, Slot, StagedFacts, TextStatus, WebhookRecord,
};
use crate::events::{DeliveryStatus, EventType};

type Id = String;
type Conn = sqlx::SqliteConnection;
type Time = i64;

fn id(id: Uuid) -> Id {
    id.to_string()
}

fn uuid(raw: Id) -> Result<Uuid> {
    Uuid::parse_str(&raw).map_err(|e| RepoError::Corrupt(format!("id '{raw}': {e}")))
}

fn time(t: DateTime<Utc>) -> Time {
    t.timestamp_micros()
}

fn utc(us: Time) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| RepoError::Corrupt(format!("time {us}")))
}

/// A list of ids as the JSON array `json_each` reads.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .expect("ids serialize")
}

/// IMMEDIATE takes the write lock before anything is read, so concurrent writers (binds, the
/// sweeper's claim) queue on the busy timeout instead of racing on a stale read snapshot.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// SQLite signals nothing: keys are not cached (see `src/repo/key_cache.rs`).
const NOTIFY_KEYS: &str = "SELECT $1";

/// Nothing to wait for: SQLite caches no keys.
struct KeyEcho;

impl KeyEcho {
    async fn listen(_pool: &SqlitePool) -> KeyEcho {
        KeyEcho
    }

    fn token(&self) -> &str {
        ""
    }

    async fn heard(self) {}
}

async fn key_changes(
    _pool: &SqlitePool,
    _keys: &std::sync::Arc<crate::repo::key_cache::KeyCache>,
) -> Result<Option<Box<dyn super::KeyChanges>>> {
    Ok(None)
}

const FILE_STATES: &str =
    "SELECT id, state FROM files WHERE id IN (SELECT value FROM json_each($1))";

/// SQLite has no data-modifying `WITH`: a change, its event and the event's deliveries are
/// written statement by statement, in one transaction (in-process calls, not round trips).
const EVENT_WITH_DELIVERIES: Option<&str> = None;
const MARK_STAGED: Option<&str> = None;
const PROMOTE_FILE: Option<&str> = None;
const FINISH_TEXT_JOB: Option<&str> = None;
const INSERT_DIRECT: Option<&str> = None;

/// After an erasure commits, the write-ahead log (which still holds the pages as they were) is
/// copied into the database and emptied, so erased values are gone from the files on disk.
const AFTER_ERASURE: Option<&str> = Some("PRAGMA wal_checkpoint(TRUNCATE)");

/// One writer at a time (`BEGIN_WRITE`) keeps several sweepers from claiming the same row.
const EXPIRE_DUE: &str = concat!(
    "UPDATE files SET state = 'expired', state_changed_at = $1 \
     WHERE state = 'staged' AND id IN (SELECT id FROM files \
         WHERE state = 'staged' AND expires_at <= $1 ORDER BY expires_at LIMIT $2) \
     RETURNING ",
    file_columns!()
);

/// One writer at a time keeps two workers from leasing the same job.
const CLAIM_JOBS: &str = claim_jobs!("");

const DELIVERIES_OF: &str = deliveries_of!("IN (SELECT value FROM json_each($1))");

/// The write transaction already keeps an erasure out.
const PROMOTED_FILE: &str = promoted_file!("");

const OBJECTS_ERASED: &str = objects_erased!("IN (SELECT value FROM json_each($1))");

const WEBHOOKS_OF: &str = webhooks_of!("IN (SELECT value FROM json_each($1))");

/// One writer at a time keeps two sweepers from erasing the same file.
const RETAINED_DUE: &str = retained_due!("");

/// The SQLite repository.
#[derive(Clone, Debug)]
pub struct SqliteRepo {
    pool: SqlitePool,
    /// The same pool: SQLite has no cheaper commit to offer the writes the sweeper repairs.
    relaxed: SqlitePool,
    /// Never on (nothing signals key changes), so every lookup reads the database.
    keys: std::sync::Arc<crate::repo::key_cache::KeyCache>,
}

impl SqliteRepo {
    /// Opens (creating it and its directory if missing) and migrates a SQLite database.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Freed pages are overwritten with zeros: an erased value is not left behind in
            // the database file (docs/security.md).
            .pragma("secure_delete", "ON");
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                RepoError::Setup(format!(
                    "cannot create the database directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let memory = file == Path::new(":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteRepo {
            relaxed: pool.clone(),
            keys: Default::default(),
            pool,
        })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_repo!(SqliteRepo);
