//! The one implementation of the repository's roles, shared by both backends: [`SqlRepo`],
//! generic over a [`Dialect`] (`dialect.rs`), the rows both backends decode, the helpers the
//! roles share, and the statement-by-statement forms of the writes PostgreSQL makes as one
//! statement. Each role's methods are in `sql_<role>.rs`.
//!
//! Every rule (what a bind refusal means, replays, expiry) lives in the domain, not here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Pool;
use uuid::Uuid;

use super::dialect::{Conn, DbId, DbTime, Dialect, KeyEcho as _, Query};
use super::key_cache::KeyCache;
use super::{
    AttemptRecord, DeliveryRecord, Erase, ErasedFile, EventRecord, NewFile, RepoError, Result,
    TextWrite, parse_named,
};
use crate::domain::{
    DirectUpload, ErasureReason, FileRecord, FileState, StagedFacts, WebhookRecord,
};
use crate::event_model::{DeliveryStatus, EventRules, NewEvent};

macro_rules! file_columns {
    () => {
        "id, client_id, state, file_name, content_type, file_size, sha256, staging_key, \
         multipart_upload_id, created_at, uploaded_at, expires_at, webhook_id, slot, \
         promoted_key, bound_at, promoted_at, erased_at, text_status, text_chars, text_error, \
         text_reason, text_source, scan_status, scan_engine, scan_signatures, scan_found"
    };
}

/// A delivery's state after an attempt (`$1`, `$2`: event and endpoint; `$3`: status; `$4`: the
/// attempt's number; `$5`: the next attempt's time, if any; `$6`–`$8`: when, the response's
/// status code, the error), where it is still at the attempt before. PostgreSQL's
/// `RECORD_ATTEMPT` writes it with the attempt's row in one statement.
macro_rules! record_delivery {
    () => {
        "UPDATE deliveries SET status = $3, attempt_count = $4, \
                next_attempt_at = COALESCE($5, next_attempt_at), leased_until = NULL, \
                last_attempt_at = $6, response_status_code = $7, error_message = $8 \
         WHERE event_id = $1 AND endpoint_id = $2 AND attempt_count = $4 - 1"
    };
}

macro_rules! webhook_columns {
    () => {
        "id, client_id, kind, user_id, payload, payload_hash, idempotency_key, status, result, \
         created_at"
    };
}

/// A file's webhook read beside it by `LEFT JOIN webhooks w` (see [`FileWithWebhookRow`]).
macro_rules! joined_webhook_columns {
    () => {
        "w.id AS w_id, w.client_id AS w_client_id, w.kind AS w_kind, w.user_id AS w_user_id, \
         w.payload AS w_payload, w.payload_hash AS w_payload_hash, \
         w.idempotency_key AS w_idempotency_key, w.status AS w_status, w.result AS w_result, \
         w.created_at AS w_created_at"
    };
}

macro_rules! sweep_columns {
    () => {
        "id, started_at, finished_at, expired, objects_deleted, receiving_aborted, \
         orphans_deleted, tombstones_purged, promoted, errors, last_error, erased, \
         erasures_finished"
    };
}

/// What a delivery claim (`Dialect::CLAIM_DELIVERIES`) returns of each delivery it leased, `$1`
/// being now: the delivery, its endpoint's URL and secrets, the event's body and time.
macro_rules! claimed_delivery {
    () => {
        " RETURNING event_id, endpoint_id, attempt_count, \
             (SELECT url FROM event_endpoints WHERE id = deliveries.endpoint_id), \
             (SELECT secret FROM event_endpoints WHERE id = deliveries.endpoint_id), \
             (SELECT previous_secret FROM event_endpoints \
              WHERE id = deliveries.endpoint_id AND previous_secret_until > $1), \
             (SELECT body FROM events WHERE id = deliveries.event_id), \
             (SELECT created_at FROM events WHERE id = deliveries.event_id)"
    };
}

/// The deliveries of a list of events (`$in`: how a backend matches an id list), by endpoint.
macro_rules! deliveries_of {
    ($in:literal) => {
        concat!(
            "SELECT event_id, endpoint_id, status, attempt_count, next_attempt_at, \
                    last_attempt_at, response_status_code, error_message \
             FROM deliveries WHERE event_id ",
            $in,
            " ORDER BY event_id, endpoint_id"
        )
    };
}

/// A page of a client's files, newest first, after the cursor (`$2`, `$3`); `$filter` adds
/// the state and user conditions (from `$5`).
/// A file clients can see: not a direct upload that completion refused (its answer is given
/// again to a repeated completion; the sweeper deletes its row when the window has closed).
macro_rules! visible_file {
    () => {
        "NOT (state = 'receiving' AND EXISTS (SELECT 1 FROM direct_uploads d \
              WHERE d.file_id = files.id AND d.refusal IS NOT NULL))"
    };
}

macro_rules! list_files {
    ($filter:literal) => {
        concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE client_id = $1 AND ",
            visible_file!(),
            " ",
            $filter,
            " AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        )
    };
}

/// The statement that leases due jobs: the ids matched by `$open … $close` (a list, or on
/// PostgreSQL an array looked up by key); `$lock` is how a backend keeps two workers from
/// picking the same rows.
macro_rules! claim_jobs {
    ($open:literal, $lock:literal, $close:literal) => {
        concat!(
            "UPDATE jobs SET leased_until = $2, attempts = attempts + 1 \
             WHERE (leased_until IS NULL OR leased_until <= $1) AND id ",
            $open,
            "SELECT id FROM jobs \
                 WHERE run_at <= $1 AND (leased_until IS NULL OR leased_until <= $1) \
                 ORDER BY run_at LIMIT $3",
            $lock,
            $close,
            " RETURNING id, kind, file_id, attempts, last_error"
        )
    };
}

/// A client's promoted file, held (`$lock`) until the transaction ends.
macro_rules! promoted_file {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND client_id = $2 AND state = 'promoted'",
            $lock
        )
    };
}

/// Promoted files past their retention (`$lock`: how a backend keeps two sweepers apart).
macro_rules! retained_due {
    ($lock:literal) => {
        concat!(
            "SELECT id, client_id, webhook_id FROM files \
             WHERE state = 'promoted' AND promoted_at < $1 \
             ORDER BY promoted_at LIMIT $2",
            $lock
        )
    };
}

/// Marks the objects of a list of erased files deleted (`$in`: how a backend matches an id list).
macro_rules! objects_erased {
    ($in:literal) => {
        concat!(
            "UPDATE files SET objects_deleted_at = $2 WHERE state = 'erased' AND id ",
            $in
        )
    };
}

/// A client's webhooks from a list of ids (`$in`: how a backend matches an id list).
macro_rules! webhooks_of {
    ($in:literal) => {
        concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE client_id = $2 AND id ",
            $in
        )
    };
}

#[derive(sqlx::FromRow)]
pub(super) struct FileRow {
    pub(super) id: DbId,
    pub(super) client_id: String,
    pub(super) state: String,
    pub(super) file_name: String,
    pub(super) content_type: Option<String>,
    pub(super) file_size: Option<i64>,
    pub(super) sha256: Option<String>,
    pub(super) staging_key: String,
    pub(super) multipart_upload_id: Option<String>,
    pub(super) created_at: DbTime,
    pub(super) uploaded_at: Option<DbTime>,
    pub(super) expires_at: Option<DbTime>,
    pub(super) webhook_id: Option<DbId>,
    pub(super) slot: Option<String>,
    pub(super) promoted_key: Option<String>,
    pub(super) bound_at: Option<DbTime>,
    pub(super) promoted_at: Option<DbTime>,
    pub(super) erased_at: Option<DbTime>,
    pub(super) text_status: Option<String>,
    pub(super) text_chars: Option<i64>,
    pub(super) text_error: Option<String>,
    pub(super) text_reason: Option<String>,
    pub(super) text_source: Option<String>,
    pub(super) scan_status: Option<String>,
    pub(super) scan_engine: Option<String>,
    pub(super) scan_signatures: Option<String>,
    pub(super) scan_found: Option<String>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = RepoError;

    fn try_from(row: FileRow) -> Result<Self> {
        Ok(FileRecord {
            id: row.id.0,
            client_id: row.client_id,
            state: parse_named(&row.state)?,
            file_name: row.file_name,
            content_type: row.content_type,
            file_size: row.file_size,
            sha256: row.sha256,
            staging_key: row.staging_key,
            multipart_upload_id: row.multipart_upload_id,
            created_at: row.created_at.0,
            uploaded_at: row.uploaded_at.map(|t| t.0),
            expires_at: row.expires_at.map(|t| t.0),
            webhook_id: row.webhook_id.map(|id| id.0),
            slot: row.slot.as_deref().map(parse_named).transpose()?,
            promoted_key: row.promoted_key,
            bound_at: row.bound_at.map(|t| t.0),
            promoted_at: row.promoted_at.map(|t| t.0),
            erased_at: row.erased_at.map(|t| t.0),
            text: match row.text_status {
                None => None,
                Some(status) => Some(crate::domain::TextState {
                    status: parse_named(&status)?,
                    chars: row.text_chars,
                    source: row.text_source.as_deref().map(parse_named).transpose()?,
                    failure: match row.text_reason {
                        None => None,
                        Some(reason) => Some(crate::text::TextFailure::new(
                            parse_named(&reason)?,
                            row.text_error.unwrap_or_default(),
                        )),
                    },
                }),
            },
            scan: match row.scan_status {
                None => None,
                Some(status) => Some(crate::domain::ScanRecord {
                    status: parse_named(&status)?,
                    engine: row.scan_engine,
                    signatures: row.scan_signatures,
                    found: row.scan_found,
                }),
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    pub(super) id: DbId,
    pub(super) client_id: String,
    pub(super) kind: String,
    pub(super) user_id: String,
    pub(super) payload: String,
    pub(super) payload_hash: String,
    pub(super) idempotency_key: Option<String>,
    pub(super) status: String,
    pub(super) result: Option<String>,
    pub(super) created_at: DbTime,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = RepoError;

    fn try_from(row: WebhookRow) -> Result<Self> {
        Ok(WebhookRecord {
            id: row.id.0,
            client_id: row.client_id,
            kind: parse_named(&row.kind)?,
            user_id: row.user_id,
            payload: row.payload,
            payload_hash: row.payload_hash,
            idempotency_key: row.idempotency_key,
            status: parse_named(&row.status)?,
            result: row.result,
            created_at: row.created_at.0,
        })
    }
}

/// A file and its webhook in one row: the file's columns as [`FileRow`], the webhook's
/// (`joined_webhook_columns!`) all NULL when the file is not bound.
#[derive(sqlx::FromRow)]
pub(super) struct FileWithWebhookRow {
    #[sqlx(flatten)]
    pub(super) file: FileRow,
    pub(super) w_id: Option<DbId>,
    pub(super) w_client_id: Option<String>,
    pub(super) w_kind: Option<String>,
    pub(super) w_user_id: Option<String>,
    pub(super) w_payload: Option<String>,
    pub(super) w_payload_hash: Option<String>,
    pub(super) w_idempotency_key: Option<String>,
    pub(super) w_status: Option<String>,
    pub(super) w_result: Option<String>,
    pub(super) w_created_at: Option<DbTime>,
}

impl FileWithWebhookRow {
    /// The file and its webhook, if it has one.
    pub(super) fn records(self) -> Result<(FileRecord, Option<WebhookRecord>)> {
        let webhook = match (
            self.w_id,
            self.w_client_id,
            self.w_kind,
            self.w_user_id,
            self.w_payload,
            self.w_payload_hash,
            self.w_status,
            self.w_created_at,
        ) {
            (
                Some(id),
                Some(client_id),
                Some(kind),
                Some(user_id),
                Some(payload),
                Some(payload_hash),
                Some(status),
                Some(created_at),
            ) => Some(WebhookRecord::try_from(WebhookRow {
                id,
                client_id,
                kind,
                user_id,
                payload,
                payload_hash,
                idempotency_key: self.w_idempotency_key,
                status,
                result: self.w_result,
                created_at,
            })?),
            _ => None,
        };
        Ok((FileRecord::try_from(self.file)?, webhook))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SweepRow {
    pub(super) id: DbId,
    pub(super) started_at: DbTime,
    pub(super) finished_at: DbTime,
    pub(super) expired: i64,
    pub(super) objects_deleted: i64,
    pub(super) receiving_aborted: i64,
    pub(super) orphans_deleted: i64,
    pub(super) tombstones_purged: i64,
    pub(super) promoted: i64,
    pub(super) errors: i64,
    pub(super) last_error: Option<String>,
    pub(super) erased: i64,
    pub(super) erasures_finished: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    pub(super) id: DbId,
    pub(super) client_id: String,
    pub(super) event_type: String,
    pub(super) body: String,
    pub(super) created_at: DbTime,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = RepoError;

    fn try_from(row: EventRow) -> Result<Self> {
        Ok(EventRecord {
            id: row.id.0,
            client_id: row.client_id,
            event_type: row.event_type.parse().map_err(
                |e: crate::event_model::EndpointError| RepoError::Corrupt(e.to_string()),
            )?,
            body: row.body,
            created_at: row.created_at.0,
            deliveries: Vec::new(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    pub(super) event_id: DbId,
    pub(super) endpoint_id: DbId,
    pub(super) status: String,
    pub(super) attempt_count: i32,
    pub(super) next_attempt_at: DbTime,
    pub(super) last_attempt_at: Option<DbTime>,
    pub(super) response_status_code: Option<i32>,
    pub(super) error_message: Option<String>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = RepoError;

    fn try_from(row: DeliveryRow) -> Result<Self> {
        let status: DeliveryStatus = parse_named(&row.status)?;
        Ok(DeliveryRecord {
            endpoint_id: row.endpoint_id.0,
            status,
            attempt_count: row.attempt_count,
            response_status_code: row.response_status_code,
            error_message: row.error_message,
            last_attempt_at: row.last_attempt_at.map(|t| t.0),
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(row.next_attempt_at.0),
            attempts: Vec::new(),
        })
    }
}

pub(super) fn files(rows: Vec<FileRow>) -> Result<Vec<FileRecord>> {
    rows.into_iter().map(FileRecord::try_from).collect()
}

/// Stowage's repository on a backend `D` (see [`Dialect`]): every role trait is implemented
/// once, in the `sql_<role>.rs` modules, generic over the dialect.
#[derive(Debug)]
pub struct SqlRepo<D: Dialect> {
    pub(super) pool: Pool<D::Db>,
    /// Where writes the sweeper repairs if lost go (a cheaper commit where the backend has one).
    pub(super) relaxed: Pool<D::Db>,
    /// API keys already looked up (`src/repo/key_cache.rs`); on only where key changes are
    /// signalled.
    pub(super) keys: Arc<KeyCache>,
}

impl<D: Dialect> Clone for SqlRepo<D> {
    fn clone(&self) -> Self {
        SqlRepo {
            pool: self.pool.clone(),
            relaxed: self.relaxed.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<D: Dialect> SqlRepo<D> {
    pub(super) fn new(pool: Pool<D::Db>, relaxed: Pool<D::Db>) -> Self {
        SqlRepo {
            pool,
            relaxed,
            keys: Default::default(),
        }
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// `AFTER_ERASURE`, if the backend needs it: failures are logged (the erasure itself has
    /// committed).
    pub(super) async fn after_erasure(&self) {
        if let Some(statement) = D::AFTER_ERASURE
            && let Err(e) = D::query(statement).execute(&self.pool).await
        {
            tracing::warn!(error = %e, "could not flush erased values from the database files");
        }
    }

    /// The webhook with this id, read within a transaction.
    pub(super) async fn webhook_in(
        conn: &mut Conn<D>,
        webhook_id: Uuid,
    ) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = D::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1"
        ))
        .bind(webhook_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(WebhookRecord::try_from).transpose()
    }

    /// Ends a transaction that changed keys or grants: the notification every replica's
    /// cache listens for, the commit, this process's cache emptied, and the wait for the
    /// notification to come back (see `src/repo/key_cache.rs`).
    pub(super) async fn key_change_done(
        mut tx: sqlx::Transaction<'_, D::Db>,
        echo: D::Echo,
        keys: &crate::repo::key_cache::KeyCache,
    ) -> Result<()> {
        D::query(D::NOTIFY_KEYS)
            .bind(echo.token())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        keys.clear();
        echo.heard().await;
        Ok(())
    }

    /// Queues an event, due at `at`, for each endpoint of its client that is in use and
    /// subscribed to its type and does not have it queued already.
    pub(super) async fn fan_out(
        conn: &mut Conn<D>,
        event_id: Uuid,
        client_id: &str,
        event_type: crate::event_model::EventType,
        at: DateTime<Utc>,
    ) -> Result<()> {
        D::query(
            "INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
             SELECT $1, id, 'pending', 0, $2 FROM event_endpoints \
             WHERE client_id = $3 AND deleted_at IS NULL AND disabled_at IS NULL \
               AND (event_types IS NULL OR event_types LIKE $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(event_id)
        .bind(at)
        .bind(client_id)
        .bind(event_type.subscription_pattern())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Writes the event reporting a file's change (its record carries its webhook, if bound).
    pub(super) async fn write_file_event(
        conn: &mut Conn<D>,
        rules: &dyn EventRules,
        event_type: crate::event_model::EventType,
        file: &FileRecord,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let event = Self::file_event(&mut *conn, rules, event_type, file, at).await?;
        D::write_event(conn, &event).await
    }

    /// The event reporting a file's change (its record carries its webhook, if bound).
    pub(super) async fn file_event(
        conn: &mut Conn<D>,
        rules: &dyn EventRules,
        event_type: crate::event_model::EventType,
        file: &FileRecord,
        at: DateTime<Utc>,
    ) -> Result<crate::event_model::NewEvent> {
        let webhook = match file.webhook_id {
            Some(webhook_id) => Self::webhook_in(conn, webhook_id).await?,
            None => None,
        };
        Ok(rules.file(event_type, file, webhook.as_ref(), at))
    }

    /// Erases a client's file in the caller's transaction: the row becomes a tombstone with
    /// no name, type, size or hash (a conditional update on the state just read, re-read if
    /// a concurrent change won), `file.erased` is recorded and earlier events redacted.
    pub(super) async fn erase_in(
        conn: &mut Conn<D>,
        rules: &dyn EventRules,
        client_id: &str,
        file_id: Uuid,
        reason: ErasureReason,
        at: DateTime<Utc>,
    ) -> Result<Erase> {
        // Each retry follows a committed state change, and a file changes state a few
        // times at most.
        for _ in 0..8 {
            let state: Option<(String,)> =
                D::query("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                    .bind(file_id)
                    .bind(client_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let was: FileState = match state {
                None => return Ok(Erase::NotFound),
                Some((state,)) => parse_named(&state)?,
            };
            if was == FileState::Erased {
                return Ok(Erase::AlreadyErased);
            }
            let row: Option<FileRow> = D::query(concat!(
                "UPDATE files SET state = 'erased', file_name = '', content_type = NULL, \
                        file_size = NULL, sha256 = NULL, erased_at = $3, \
                        state_changed_at = $3, objects_deleted_at = NULL, text_status = NULL, \
                        text_chars = NULL, text_error = NULL, text_reason = NULL, \
                        text_source = NULL \
                 WHERE id = $1 AND client_id = $2 AND state = $4 RETURNING ",
                file_columns!()
            ))
            .bind(file_id)
            .bind(client_id)
            .bind(at)
            .bind(was.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else { continue };
            let file = FileRecord::try_from(row)?;
            let earlier = D::erase_remains(&mut *conn, file_id).await?;
            D::write_event(&mut *conn, &rules.erased(&file, reason, at)).await?;
            let redacted: Vec<(Uuid, String)> = earlier
                .into_iter()
                .filter_map(|(event_id, body)| Some((event_id.0, rules.redact(&body)?)))
                .collect();
            if !redacted.is_empty() {
                D::replace_event_bodies(&mut *conn, &redacted).await?;
            }
            return Ok(Erase::Erased(ErasedFile {
                id: file.id,
                staging_key: file.staging_key,
                multipart_upload_id: file.multipart_upload_id,
                was: Some(was),
            }));
        }
        Err(RepoError::Conflict(format!(
            "file {file_id} kept changing while being erased"
        )))
    }

    /// Removes the personal `data` from a stored webhook. Without it the payload is no longer
    /// the one that was sent: its hash and idempotency key go too, so a re-send is answered
    /// afresh (and finds its files erased).
    pub(super) async fn scrub_webhook(
        conn: &mut Conn<D>,
        webhook_id: DbId,
        payload: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        D::query(
            "UPDATE webhooks SET payload = $2, payload_hash = '', idempotency_key = NULL, \
                    updated_at = $3 WHERE id = $1",
        )
        .bind(webhook_id)
        .bind(crate::domain::without_personal_data(payload))
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

// The writes PostgreSQL makes as one statement, statement by statement: the defaults of the
// `Dialect` methods of the same names (SQLite has no data-modifying `WITH`; its statements are
// in-process calls, not round trips).

/// Writes an event to the outbox with one pending delivery for each endpoint of its client that
/// is in use and subscribed to its type — in the caller's transaction, so the event exists if
/// and only if the change it reports does.
pub(super) async fn write_event_by_steps<D: Dialect>(
    conn: &mut Conn<D>,
    event: &NewEvent,
) -> Result<()> {
    D::query(
        "INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.id)
    .bind(&event.client_id)
    .bind(event.event_type.as_str())
    .bind(&event.body)
    .bind(event.created_at)
    .bind(event.file_id)
    .execute(&mut *conn)
    .await?;
    SqlRepo::<D>::fan_out(
        conn,
        event.id,
        &event.client_id,
        event.event_type,
        event.created_at,
    )
    .await
}

/// What an erased file leaves besides its row, deleted (its text, its jobs, what its direct
/// upload's declaration said), and its earlier events (id, body) — statement by statement.
pub(super) async fn erase_remains_by_steps<D: Dialect>(
    conn: &mut Conn<D>,
    file_id: Uuid,
) -> Result<Vec<(DbId, String)>> {
    for statement in [
        "DELETE FROM file_texts WHERE file_id = $1",
        "DELETE FROM jobs WHERE file_id = $1",
        // A direct upload's window stays, for the sweeper to delete its staging key again once
        // the window has closed.
        "UPDATE direct_uploads SET file_size = NULL, sha256 = NULL, refusal = NULL \
         WHERE file_id = $1",
    ] {
        D::query(statement)
            .bind(file_id)
            .execute(&mut *conn)
            .await?;
    }
    D::query("SELECT id, body FROM events WHERE file_id = $1 AND event_type <> 'file.erased'")
        .bind(file_id)
        .fetch_all(&mut *conn)
        .await
}

/// Marks a receiving file staged and writes its event, in one transaction; whether it was
/// still receiving.
pub(super) async fn mark_staged_by_steps<D: Dialect>(
    pool: &Pool<D::Db>,
    file_id: Uuid,
    facts: &StagedFacts,
    event: &NewEvent,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let row: Option<(bool,)> = D::query(
        "UPDATE files SET state = 'staged', content_type = $2, file_size = $3, \
                sha256 = $4, uploaded_at = $5, expires_at = $6, \
                state_changed_at = $5, multipart_upload_id = NULL, \
                scan_status = $7, scan_engine = $8, scan_signatures = $9 \
         WHERE id = $1 AND state = 'receiving' RETURNING TRUE",
    )
    .bind(file_id)
    .bind(&facts.content_type)
    .bind(facts.file_size)
    .bind(&facts.sha256)
    .bind(facts.uploaded_at)
    .bind(facts.expires_at)
    .bind(facts.scan.as_ref().map(|s| s.status.as_str()))
    .bind(facts.scan.as_ref().and_then(|s| s.engine.as_deref()))
    .bind(facts.scan.as_ref().and_then(|s| s.signatures.as_deref()))
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_none() {
        return Ok(false);
    }
    D::write_event(&mut tx, event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks a bound file promoted under `key` and queues its text job, with `event`, in the
/// caller's transaction; whether it was still bound.
pub(super) async fn promote_by_steps<D: Dialect>(
    conn: &mut Conn<D>,
    file_id: Uuid,
    key: &str,
    event: &NewEvent,
) -> Result<bool> {
    let at = event.created_at;
    let row: Option<(bool,)> = D::query(
        "UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                state_changed_at = $3, text_status = 'pending', text_chars = NULL, \
                text_error = NULL, text_reason = NULL, text_source = NULL \
         WHERE id = $1 AND state = 'bound' RETURNING TRUE",
    )
    .bind(file_id)
    .bind(key)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_none() {
        return Ok(false);
    }
    // The text job is queued with the promotion: a promoted file always gets its text.
    D::query(
        "INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at) \
         VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(crate::domain::JobKind::ExtractText.as_str())
    .bind(file_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    D::write_event(conn, event).await?;
    Ok(true)
}

/// Records a text job's outcome where the file is still promoted and pending, its text and its
/// event, and ends the job, in one transaction; whether the file took the outcome.
pub(super) async fn finish_text_job_by_steps<D: Dialect>(
    pool: &Pool<D::Db>,
    write: TextWrite<'_>,
) -> Result<bool> {
    let failure = write.state.failure.as_ref();
    let mut tx = pool.begin_with(D::BEGIN_WRITE).await?;
    let row: Option<(bool,)> = D::query(
        "UPDATE files SET text_status = $2, text_chars = $3, text_error = $4, text_reason = $5, \
         text_source = $6 WHERE id = $1 AND state = 'promoted' AND text_status = 'pending' RETURNING TRUE",
    )
    .bind(write.file_id)
    .bind(write.state.status.as_str())
    .bind(write.state.chars)
    .bind(failure.map(|f| f.message.as_str()))
    .bind(failure.map(|f| f.reason.as_str()))
    .bind(write.state.source.map(|s| s.as_str()))
    .fetch_optional(&mut *tx)
    .await?;
    let taken = row.is_some();
    if taken {
        if let Some(text) = write.text {
            D::query(
                "INSERT INTO file_texts (file_id, body) VALUES ($1, $2) \
                 ON CONFLICT (file_id) DO UPDATE SET body = excluded.body",
            )
            .bind(write.file_id)
            .bind(text)
            .execute(&mut *tx)
            .await?;
        }
        D::write_event(&mut tx, write.event).await?;
    }
    D::query("DELETE FROM jobs WHERE id = $1")
        .bind(write.job_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(taken)
}

/// `record_delivery!`'s `$1`–`$8`, from an attempt.
pub(super) fn bind_delivery<'q, D: Dialect>(
    query: Query<'q, D>,
    attempt: &'q AttemptRecord,
) -> Query<'q, D> {
    query
        .bind(attempt.event_id)
        .bind(attempt.endpoint_id)
        .bind(attempt.status.as_str())
        .bind(attempt.attempt)
        .bind(attempt.next_attempt_at)
        .bind(attempt.attempted_at)
        .bind(attempt.response_status_code)
        .bind(&attempt.error_message)
}

/// Records a delivery attempt where the delivery is still at the attempt before: its new state,
/// the attempt's row and, if it delivered, the end of its endpoint's run of failures, in one
/// transaction; whether it was (another worker may have recorded it first).
pub(super) async fn record_attempt_by_steps<D: Dialect>(
    pool: &Pool<D::Db>,
    attempt: &AttemptRecord,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = bind_delivery(D::query(record_delivery!()), attempt)
        .execute(&mut *tx)
        .await?;
    if done == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    D::query(
        "INSERT INTO delivery_attempts (event_id, endpoint_id, attempt, attempted_at, \
                                        duration_ms, response_status_code, error_message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(attempt.event_id)
    .bind(attempt.endpoint_id)
    .bind(attempt.attempt)
    .bind(attempt.attempted_at)
    .bind(attempt.duration_ms)
    .bind(attempt.response_status_code)
    .bind(&attempt.error_message)
    .execute(&mut *tx)
    .await?;
    if attempt.status == DeliveryStatus::Delivered {
        D::query(END_FAILURES)
            .bind(attempt.endpoint_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A delivery ends its endpoint's (`$1`) run of failures.
const END_FAILURES: &str =
    "UPDATE event_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL";

/// Writes a direct upload's `receiving` row and its declaration. No transaction, on the relaxed
/// pool, like any `receiving` row: a file row without its declaration (or lost in a crash) is
/// aborted by the sweeper.
pub(super) async fn insert_direct_by_steps<D: Dialect>(
    pool: &Pool<D::Db>,
    file: &NewFile,
    direct: &DirectUpload,
) -> Result<()> {
    D::query(
        "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                            state_changed_at, active_at) \
         VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $6)",
    )
    .bind(file.id)
    .bind(&file.client_id)
    .bind(&file.file_name)
    .bind(&file.staging_key)
    .bind(file.created_at)
    .bind(direct.window_ends_at)
    .execute(pool)
    .await?;
    D::query(
        "INSERT INTO direct_uploads (file_id, file_size, sha256, window_ends_at, upload_token) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(file.id)
    .bind(direct.file_size)
    .bind(&direct.sha256)
    .bind(direct.window_ends_at)
    .bind(direct.upload_token)
    .execute(pool)
    .await?;
    Ok(())
}
