//! PostgreSQL: for production and for several replicas.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{
    ApiKeyRecord, BindOutcome, ClaimedFile, Discard, KeyGrant, NewFile, NewWebhook, Repo,
    RepoError, Result, SlotFailure, StateCount, StorageStats, SweepRun, classify_failure,
    discard_outcome, is_retry_of, parse_named, parse_state, sole_consumer, state_counts,
};
use crate::domain::{FileRecord, FileState, Slot, StagedFacts, WebhookRecord};

/// The PostgreSQL repository.
#[derive(Clone, Debug)]
pub struct PostgresRepo {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for writes whose loss in a PostgreSQL crash
    /// is repaired by the sweeper (see `docs/decisions.md`): their commits do not wait for the
    /// WAL flush. Writes a client is promised (staged, bound) use `pool`.
    relaxed: PgPool,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: Uuid,
    client_id: String,
    state: String,
    file_name: String,
    content_type: Option<String>,
    file_size: Option<i64>,
    sha256: Option<String>,
    staging_key: String,
    multipart_upload_id: Option<String>,
    created_at: DateTime<Utc>,
    uploaded_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    webhook_id: Option<Uuid>,
    slot: Option<String>,
    promoted_key: Option<String>,
    bound_at: Option<DateTime<Utc>>,
    promoted_at: Option<DateTime<Utc>>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = RepoError;

    fn try_from(row: FileRow) -> Result<Self> {
        Ok(FileRecord {
            id: row.id,
            client_id: row.client_id,
            state: parse_state(&row.state)?,
            file_name: row.file_name,
            content_type: row.content_type,
            file_size: row.file_size,
            sha256: row.sha256,
            staging_key: row.staging_key,
            multipart_upload_id: row.multipart_upload_id,
            created_at: row.created_at,
            uploaded_at: row.uploaded_at,
            expires_at: row.expires_at,
            webhook_id: row.webhook_id,
            slot: row.slot.as_deref().map(parse_named).transpose()?,
            promoted_key: row.promoted_key,
            bound_at: row.bound_at,
            promoted_at: row.promoted_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: Uuid,
    client_id: String,
    kind: String,
    user_id: String,
    payload: String,
    payload_hash: String,
    idempotency_key: Option<String>,
    status: String,
    result: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = RepoError;

    fn try_from(row: WebhookRow) -> Result<Self> {
        Ok(WebhookRecord {
            id: row.id,
            client_id: row.client_id,
            kind: parse_named(&row.kind)?,
            user_id: row.user_id,
            payload: row.payload,
            payload_hash: row.payload_hash,
            idempotency_key: row.idempotency_key,
            status: parse_named(&row.status)?,
            result: row.result,
            created_at: row.created_at,
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

type SweepRow = (
    Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

impl PostgresRepo {
    /// Connects and runs the PostgreSQL migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let relaxed = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options.options([("synchronous_commit", "off")]));
        Ok(PostgresRepo { pool, relaxed })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Repo for PostgresRepo {
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
        sqlx::query("INSERT INTO api_keys (id, name, secret_hash) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(secret_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<(Uuid, String, bool)> =
            sqlx::query_as("SELECT id, name, revoked_at IS NOT NULL FROM api_keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, name, revoked)| ApiKeyRecord { id, name, revoked }))
    }

    async fn revoke_key(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE name = $1",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO client_grants (key_id, client_id, workspace) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = EXCLUDED.workspace",
        )
        .bind(key_id)
        .bind(client_id)
        .bind(workspace)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
        let row: Option<(String, Vec<u8>, bool, bool)> = sqlx::query_as(
            "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, \
                    EXISTS (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = $2) \
             FROM api_keys k WHERE k.id = $1",
        )
        .bind(key_id)
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
             VALUES ($1, $2, 'receiving', $3, $4, $5, $5)",
        )
        .bind(file.id)
        .bind(&file.client_id)
        .bind(&file.file_name)
        .bind(&file.staging_key)
        .bind(file.created_at)
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    async fn set_multipart_upload(&self, id: Uuid, upload_id: &str) -> Result<()> {
        sqlx::query("UPDATE files SET multipart_upload_id = $2 WHERE id = $1")
            .bind(id)
            .bind(upload_id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    async fn mark_staged(&self, id: Uuid, facts: &StagedFacts) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET state = 'staged', content_type = $2, file_size = $3, sha256 = $4, \
                    uploaded_at = $5, expires_at = $6, state_changed_at = $5, multipart_upload_id = NULL \
             WHERE id = $1 AND state = 'receiving'",
        )
        .bind(id)
        .bind(&facts.content_type)
        .bind(facts.file_size)
        .bind(&facts.sha256)
        .bind(facts.uploaded_at)
        .bind(facts.expires_at)
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
        sqlx::query("DELETE FROM files WHERE id = $1 AND state = 'receiving'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_file(&self, client_id: &str, id: Uuid) -> Result<Option<FileRecord>> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND client_id = $2"
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(FileRecord::try_from).transpose()
    }

    async fn discard(&self, client_id: &str, id: Uuid) -> Result<Discard> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "UPDATE files SET state = 'discarded', state_changed_at = now() \
             WHERE id = $1 AND client_id = $2 AND state = 'staged' RETURNING ",
            file_columns!()
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Discard::Discarded(Box::new(row.try_into()?)));
        }
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                .bind(id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        discard_outcome(state.map(|(state,)| state))
    }

    async fn count_by_state(&self) -> Result<Vec<StateCount>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*), COALESCE(SUM(file_size), 0)::BIGINT FROM files GROUP BY state",
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
        let mut tx = self.pool.begin().await?;
        // The same clock as the sweeper's claim (`expire_due`), read once the transaction is open.
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, \
                                   idempotency_key, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing', $8, $8)",
        )
        .bind(webhook.id)
        .bind(&webhook.client_id)
        .bind(webhook.kind.as_str())
        .bind(&webhook.user_id)
        .bind(&webhook.payload)
        .bind(&webhook.payload_hash)
        .bind(&webhook.idempotency_key)
        .bind(webhook.created_at)
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
                "UPDATE files SET state = 'bound', webhook_id = $3, slot = $4, bound_at = $5, \
                        state_changed_at = $5 \
                 WHERE id = $1 AND client_id = $2 AND state = 'staged' AND expires_at > $5 \
                 RETURNING ",
                file_columns!()
            ))
            .bind(file_id)
            .bind(&webhook.client_id)
            .bind(webhook.id)
            .bind(slot.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                bound.push(FileRecord::try_from(row)?);
                continue;
            }
            let current: Option<(String, Option<DateTime<Utc>>, Option<Uuid>)> = sqlx::query_as(
                "SELECT state, expires_at, webhook_id FROM files \
                     WHERE id = $1 AND client_id = $2",
            )
            .bind(file_id)
            .bind(&webhook.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (row, consumer) = match current {
                None => (None, None),
                Some((state, expires_at, consumer)) => {
                    (Some((parse_state(&state)?, expires_at)), consumer)
                }
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
                " FROM webhooks WHERE id = $1"
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
             VALUES ($1, $2, $3, $4, $5, $6, NULL, 'rejected', $7, $8, $8)",
        )
        .bind(webhook.id)
        .bind(&webhook.client_id)
        .bind(webhook.kind.as_str())
        .bind(&webhook.user_id)
        .bind(&webhook.payload)
        .bind(&webhook.payload_hash)
        .bind(result)
        .bind(webhook.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhook_by_key(&self, client_id: &str, key: &str) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE client_id = $1 AND idempotency_key = $2"
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
            " FROM files WHERE webhook_id = $1 ORDER BY slot DESC"
        ))
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn get_webhook(&self, client_id: &str, id: Uuid) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1 AND client_id = $2"
        ))
        .bind(id)
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
        let ids: Vec<Uuid> = promoted.iter().map(|(id, _)| *id).collect();
        let keys: Vec<&str> = promoted.iter().map(|(_, key)| key.as_str()).collect();
        // One statement, one (relaxed) commit for the files and the webhook together.
        sqlx::query(
            "WITH moved AS ( \
                 UPDATE files f SET state = 'promoted', promoted_key = m.key, promoted_at = now(), \
                        state_changed_at = now() \
                 FROM UNNEST($3::uuid[], $4::text[]) AS m(id, key) \
                 WHERE f.id = m.id AND f.state = 'bound' RETURNING f.id) \
             UPDATE webhooks SET status = 'processed', result = $2, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(result)
        .bind(&ids)
        .bind(&keys)
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    async fn mark_promoted(&self, id: Uuid, promoted_key: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = now(), \
                    state_changed_at = now() \
             WHERE id = $1 AND state = 'bound'",
        )
        .bind(id)
        .bind(promoted_key)
        .execute(&self.relaxed)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bound_files(&self, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'bound' ORDER BY bound_at LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ClaimedFile>> {
        // A synchronous commit: the tombstone must outlive a crash, since the object goes next.
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE files SET state = 'expired', state_changed_at = $1 \
             WHERE state = 'staged' AND id IN (SELECT id FROM files \
                 WHERE state = 'staged' AND expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, staging_key",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, staging_key)| ClaimedFile { id, staging_key })
            .collect())
    }

    async fn stale_receiving(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'receiving' AND created_at < $1 ORDER BY created_at LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn file_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, FileState)>> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, state FROM files WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, state)| Ok((id, parse_state(&state)?)))
            .collect()
    }

    async fn purge_tombstones(&self, before: DateTime<Utc>) -> Result<u64> {
        let files = sqlx::query(
            "DELETE FROM files WHERE state IN ('expired', 'discarded') AND state_changed_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM webhooks WHERE status = 'rejected' AND created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sweep_runs WHERE started_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(files.rows_affected())
    }

    async fn record_sweep(&self, run: &SweepRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO sweep_runs (id, started_at, finished_at, expired, objects_deleted, \
                 receiving_aborted, orphans_deleted, tombstones_purged, promoted, errors, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(run.id)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.expired)
        .bind(run.objects_deleted)
        .bind(run.receiving_aborted)
        .bind(run.orphans_deleted)
        .bind(run.tombstones_purged)
        .bind(run.promoted)
        .bind(run.errors)
        .bind(&run.last_error)
        .execute(&self.relaxed)
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
        Ok(row.map(|r| SweepRun {
            id: r.0,
            started_at: r.1,
            finished_at: r.2,
            expired: r.3,
            objects_deleted: r.4,
            receiving_aborted: r.5,
            orphans_deleted: r.6,
            tombstones_purged: r.7,
            promoted: r.8,
            errors: r.9,
            last_error: r.10,
            ..SweepRun::default()
        }))
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        let by_state = self.count_by_state().await?;
        let (expiring_1h, expiring_24h, overdue): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
                 COUNT(*) FILTER (WHERE expires_at > now() AND expires_at <= now() + interval '1 hour'), \
                 COUNT(*) FILTER (WHERE expires_at > now() AND expires_at <= now() + interval '24 hours'), \
                 COUNT(*) FILTER (WHERE expires_at <= now()) \
             FROM files WHERE state = 'staged'",
        )
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
