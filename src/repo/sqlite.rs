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
    ApiKeyRecord, BindOutcome, ClaimedFile, Discard, KeyGrant, NewFile, NewWebhook, Repo,
    RepoError, Result, SlotFailure, StateCount, StorageStats, SweepRun, classify_failure,
    discard_outcome, is_retry_of, parse_named, parse_state, sole_consumer, state_counts,
};
use crate::domain::{FileRecord, FileState, Slot, StagedFacts, WebhookRecord};

/// The SQLite repository.
#[derive(Clone, Debug)]
pub struct SqliteRepo {
    pool: SqlitePool,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: String,
    client_id: String,
    state: String,
    file_name: String,
    content_type: Option<String>,
    file_size: Option<i64>,
    sha256: Option<String>,
    staging_key: String,
    multipart_upload_id: Option<String>,
    created_at: i64,
    uploaded_at: Option<i64>,
    expires_at: Option<i64>,
    webhook_id: Option<String>,
    slot: Option<String>,
    promoted_key: Option<String>,
    bound_at: Option<i64>,
    promoted_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    client_id: String,
    kind: String,
    user_id: String,
    payload: String,
    payload_hash: String,
    idempotency_key: Option<String>,
    status: String,
    result: Option<String>,
    created_at: i64,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = RepoError;

    fn try_from(row: WebhookRow) -> Result<Self> {
        Ok(WebhookRecord {
            id: parse_id(&row.id)?,
            client_id: row.client_id,
            kind: parse_named(&row.kind)?,
            user_id: row.user_id,
            payload: row.payload,
            payload_hash: row.payload_hash,
            idempotency_key: row.idempotency_key,
            status: parse_named(&row.status)?,
            result: row.result,
            created_at: from_micros(row.created_at)?,
        })
    }
}

macro_rules! webhook_columns {
    () => {
        "id, client_id, kind, user_id, payload, payload_hash, idempotency_key, status, result, \
         created_at"
    };
}

macro_rules! file_columns {
    () => {
        "id, client_id, state, file_name, content_type, file_size, sha256, staging_key, \
         multipart_upload_id, created_at, uploaded_at, expires_at, webhook_id, slot, \
         promoted_key, bound_at, promoted_at"
    };
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| RepoError::Corrupt(format!("time {us}")))
}

fn parse_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|e| RepoError::Corrupt(format!("id '{raw}': {e}")))
}

impl TryFrom<FileRow> for FileRecord {
    type Error = RepoError;

    fn try_from(row: FileRow) -> Result<Self> {
        Ok(FileRecord {
            id: parse_id(&row.id)?,
            client_id: row.client_id,
            state: parse_state(&row.state)?,
            file_name: row.file_name,
            content_type: row.content_type,
            file_size: row.file_size,
            sha256: row.sha256,
            staging_key: row.staging_key,
            multipart_upload_id: row.multipart_upload_id,
            created_at: from_micros(row.created_at)?,
            uploaded_at: row.uploaded_at.map(from_micros).transpose()?,
            expires_at: row.expires_at.map(from_micros).transpose()?,
            webhook_id: row.webhook_id.as_deref().map(parse_id).transpose()?,
            slot: row.slot.as_deref().map(parse_named).transpose()?,
            promoted_key: row.promoted_key,
            bound_at: row.bound_at.map(from_micros).transpose()?,
            promoted_at: row.promoted_at.map(from_micros).transpose()?,
        })
    }
}

/// A list of ids as the JSON array `json_each` reads.
fn id_array(ids: &[Uuid]) -> String {
    serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .expect("ids serialize")
}

type SweepRow = (
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

impl SqliteRepo {
    /// Opens (creating it and its directory if missing) and migrates a SQLite database.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RepoError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let memory = file == Path::new(":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteRepo { pool })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Repo for SqliteRepo {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn has_keys(&self) -> Result<bool> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_keys)")
            .fetch_one(&self.pool)
            .await?;
        Ok(any)
    }

    async fn create_key(&self, id: Uuid, name: &str, secret_hash: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(secret_hash)
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<(String, String, bool)> =
            sqlx::query_as("SELECT id, name, revoked_at IS NOT NULL FROM api_keys WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(id, name, revoked)| {
            Ok(ApiKeyRecord {
                id: parse_id(&id)?,
                name,
                revoked,
            })
        })
        .transpose()
    }

    async fn revoke_key(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
        )
        .bind(name)
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO client_grants (key_id, client_id, workspace, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = excluded.workspace",
        )
        .bind(key_id.to_string())
        .bind(client_id)
        .bind(workspace)
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
        let row: Option<(String, Vec<u8>, bool, bool)> = sqlx::query_as(
            "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, \
                    EXISTS (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = ?2) \
             FROM api_keys k WHERE k.id = ?1",
        )
        .bind(key_id.to_string())
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(key_name, secret_hash, revoked, client_allowed)| KeyGrant {
                key_name,
                secret_hash,
                revoked,
                client_allowed,
            },
        ))
    }

    async fn insert_receiving(&self, file: &NewFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, state_changed_at) \
             VALUES (?1, ?2, 'receiving', ?3, ?4, ?5, ?5)",
        )
        .bind(file.id.to_string())
        .bind(&file.client_id)
        .bind(&file.file_name)
        .bind(&file.staging_key)
        .bind(micros(file.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_multipart_upload(&self, id: Uuid, upload_id: &str) -> Result<()> {
        sqlx::query("UPDATE files SET multipart_upload_id = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(upload_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_staged(&self, id: Uuid, facts: &StagedFacts) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET state = 'staged', content_type = ?2, file_size = ?3, sha256 = ?4, \
                    uploaded_at = ?5, expires_at = ?6, state_changed_at = ?5, multipart_upload_id = NULL \
             WHERE id = ?1 AND state = 'receiving'",
        )
        .bind(id.to_string())
        .bind(&facts.content_type)
        .bind(facts.file_size)
        .bind(&facts.sha256)
        .bind(micros(facts.uploaded_at))
        .bind(micros(facts.expires_at))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(RepoError::Conflict(format!(
                "file {id} is no longer receiving"
            )))
        }
    }

    async fn delete_receiving(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = ?1 AND state = 'receiving'")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_file(&self, client_id: &str, id: Uuid) -> Result<Option<FileRecord>> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = ?1 AND client_id = ?2"
        ))
        .bind(id.to_string())
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(FileRecord::try_from).transpose()
    }

    async fn discard(&self, client_id: &str, id: Uuid) -> Result<Discard> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "UPDATE files SET state = 'discarded', state_changed_at = ?3 \
             WHERE id = ?1 AND client_id = ?2 AND state = 'staged' RETURNING ",
            file_columns!()
        ))
        .bind(id.to_string())
        .bind(client_id)
        .bind(micros(Utc::now()))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Discard::Discarded(Box::new(row.try_into()?)));
        }
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM files WHERE id = ?1 AND client_id = ?2")
                .bind(id.to_string())
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        discard_outcome(state.map(|(state,)| state))
    }

    async fn count_by_state(&self) -> Result<Vec<StateCount>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*), COALESCE(SUM(file_size), 0) FROM files GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        state_counts(rows)
    }

    async fn bind_files(
        &self,
        webhook: &NewWebhook,
        files: &[(Slot, Uuid)],
    ) -> Result<BindOutcome> {
        // IMMEDIATE takes the write lock up front, so concurrent binders queue on the busy
        // timeout instead of failing on a stale read snapshot.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, \
                                   idempotency_key, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'processing', ?8, ?8)",
        )
        .bind(webhook.id.to_string())
        .bind(&webhook.client_id)
        .bind(webhook.kind.as_str())
        .bind(&webhook.user_id)
        .bind(&webhook.payload)
        .bind(&webhook.payload_hash)
        .bind(&webhook.idempotency_key)
        .bind(micros(webhook.created_at))
        .execute(&mut *tx)
        .await;
        match inserted.map_err(RepoError::from) {
            Ok(_) => {}
            Err(RepoError::Conflict(_)) => return Ok(BindOutcome::KeyTaken),
            Err(e) => return Err(e),
        }

        let mut bound = Vec::with_capacity(files.len());
        let mut failures = Vec::new();
        let mut consumers = Vec::new();
        for &(slot, file_id) in files {
            let row: Option<FileRow> = sqlx::query_as(concat!(
                "UPDATE files SET state = 'bound', webhook_id = ?3, slot = ?4, bound_at = ?5, \
                        state_changed_at = ?5 \
                 WHERE id = ?1 AND client_id = ?2 AND state = 'staged' AND expires_at > ?5 \
                 RETURNING ",
                file_columns!()
            ))
            .bind(file_id.to_string())
            .bind(&webhook.client_id)
            .bind(webhook.id.to_string())
            .bind(slot.as_str())
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                bound.push(FileRecord::try_from(row)?);
                continue;
            }
            let current: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
                "SELECT state, expires_at, webhook_id FROM files WHERE id = ?1 AND client_id = ?2",
            )
            .bind(file_id.to_string())
            .bind(&webhook.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (row, consumer) = match current {
                None => (None, None),
                Some((state, expires_at, consumer)) => (
                    Some((
                        parse_state(&state)?,
                        expires_at.map(from_micros).transpose()?,
                    )),
                    consumer,
                ),
            };
            let failure = classify_failure(row, now);
            if failure == SlotFailure::Consumed {
                consumers.push(consumer);
            }
            failures.push((slot, failure));
        }

        if failures.is_empty() {
            crate::fault::pause("bind.before_commit").await;
            tx.commit().await?;
            return Ok(BindOutcome::Bound(bound));
        }
        tx.rollback().await?;
        if let Some(first) = sole_consumer(&consumers, files.len()) {
            let earlier: Option<WebhookRow> = sqlx::query_as(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhooks WHERE id = ?1"
            ))
            .bind(first)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(earlier) = earlier {
                let earlier = WebhookRecord::try_from(earlier)?;
                if is_retry_of(&earlier, webhook) {
                    return Ok(BindOutcome::Replay(Box::new(earlier)));
                }
            }
        }
        Ok(BindOutcome::Rejected(failures))
    }

    async fn insert_rejected_webhook(&self, webhook: &NewWebhook, result: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, \
                                   idempotency_key, status, result, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 'rejected', ?7, ?8, ?8)",
        )
        .bind(webhook.id.to_string())
        .bind(&webhook.client_id)
        .bind(webhook.kind.as_str())
        .bind(&webhook.user_id)
        .bind(&webhook.payload)
        .bind(&webhook.payload_hash)
        .bind(result)
        .bind(micros(webhook.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhook_by_key(&self, client_id: &str, key: &str) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE client_id = ?1 AND idempotency_key = ?2"
        ))
        .bind(client_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(WebhookRecord::try_from).transpose()
    }

    async fn webhook_files(&self, webhook_id: Uuid) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE webhook_id = ?1 ORDER BY slot DESC"
        ))
        .bind(webhook_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn get_webhook(&self, client_id: &str, id: Uuid) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = ?1 AND client_id = ?2"
        ))
        .bind(id.to_string())
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(WebhookRecord::try_from).transpose()
    }

    async fn finish_webhook(
        &self,
        id: Uuid,
        result: &str,
        promoted: &[(Uuid, String)],
    ) -> Result<()> {
        let now = micros(Utc::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (file_id, key) in promoted {
            sqlx::query(
                "UPDATE files SET state = 'promoted', promoted_key = ?2, promoted_at = ?3, \
                        state_changed_at = ?3 \
                 WHERE id = ?1 AND state = 'bound'",
            )
            .bind(file_id.to_string())
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE webhooks SET status = 'processed', result = ?2, updated_at = ?3 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(result)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_promoted(&self, id: Uuid, promoted_key: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE files SET state = 'promoted', promoted_key = ?2, promoted_at = ?3, \
                    state_changed_at = ?3 \
             WHERE id = ?1 AND state = 'bound'",
        )
        .bind(id.to_string())
        .bind(promoted_key)
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bound_files(&self, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'bound' ORDER BY bound_at LIMIT ?1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ClaimedFile>> {
        // IMMEDIATE: the write lock is taken before the rows are read, so a bind holding it
        // (BEGIN IMMEDIATE too) is waited for, never raced on a stale snapshot.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "UPDATE files SET state = 'expired', state_changed_at = ?1 \
             WHERE state = 'staged' AND id IN (SELECT id FROM files \
                 WHERE state = 'staged' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2) \
             RETURNING id, staging_key",
        )
        .bind(micros(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(id, staging_key)| {
                Ok(ClaimedFile {
                    id: parse_id(&id)?,
                    staging_key,
                })
            })
            .collect()
    }

    async fn stale_receiving(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'receiving' AND created_at < ?1 ORDER BY created_at LIMIT ?2"
        ))
        .bind(micros(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn file_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, FileState)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, state FROM files WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_array(ids))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, state)| Ok((parse_id(&id)?, parse_state(&state)?)))
            .collect()
    }

    async fn purge_tombstones(&self, before: DateTime<Utc>) -> Result<u64> {
        let files = sqlx::query(
            "DELETE FROM files WHERE state IN ('expired', 'discarded') AND state_changed_at < ?1",
        )
        .bind(micros(before))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM webhooks WHERE status = 'rejected' AND created_at < ?1")
            .bind(micros(before))
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sweep_runs WHERE started_at < ?1")
            .bind(micros(before))
            .execute(&self.pool)
            .await?;
        Ok(files.rows_affected())
    }

    async fn record_sweep(&self, run: &SweepRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO sweep_runs (id, started_at, finished_at, expired, objects_deleted, \
                 receiving_aborted, orphans_deleted, tombstones_purged, promoted, errors, last_error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .bind(run.id.to_string())
        .bind(micros(run.started_at))
        .bind(micros(run.finished_at))
        .bind(run.expired)
        .bind(run.objects_deleted)
        .bind(run.receiving_aborted)
        .bind(run.orphans_deleted)
        .bind(run.tombstones_purged)
        .bind(run.promoted)
        .bind(run.errors)
        .bind(&run.last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn last_sweep(&self) -> Result<Option<SweepRun>> {
        let row: Option<SweepRow> = sqlx::query_as(
            "SELECT id, started_at, finished_at, expired, objects_deleted, receiving_aborted, \
                    orphans_deleted, tombstones_purged, promoted, errors, last_error \
             FROM sweep_runs ORDER BY started_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SweepRun {
                id: parse_id(&r.0)?,
                started_at: from_micros(r.1)?,
                finished_at: from_micros(r.2)?,
                expired: r.3,
                objects_deleted: r.4,
                receiving_aborted: r.5,
                orphans_deleted: r.6,
                tombstones_purged: r.7,
                promoted: r.8,
                errors: r.9,
                last_error: r.10,
                ..SweepRun::default()
            })
        })
        .transpose()
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        let by_state = self.count_by_state().await?;
        let now = Utc::now();
        let hour = 3_600_000_000_i64;
        let (expiring_1h, expiring_24h, overdue): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
                 COALESCE(SUM(expires_at > ?1 AND expires_at <= ?1 + ?2), 0), \
                 COALESCE(SUM(expires_at > ?1 AND expires_at <= ?1 + ?3), 0), \
                 COALESCE(SUM(expires_at <= ?1), 0) \
             FROM files WHERE state = 'staged'",
        )
        .bind(micros(now))
        .bind(hour)
        .bind(24 * hour)
        .fetch_one(&self.pool)
        .await?;
        Ok(StorageStats {
            by_state,
            expiring_1h,
            expiring_24h,
            overdue,
        })
    }
}
