//! The one implementation of [`Repo`](super::Repo), shared by both backends.
//!
//! The statements are written once, with `$N` placeholders (PostgreSQL's, which SQLite reads
//! too). A backend module supplies only what differs, then invokes `impl_repo!`:
//! - the column types `Id` and `Time` (`Uuid`/`DateTime<Utc>` on PostgreSQL, hyphenated TEXT
//!   and INTEGER microseconds on SQLite) with `id`, `uuid`, `time` and `utc` to convert;
//! - `IdList` and `id_list` (a list of ids as one bound value) and the statements that are
//!   dialect-specific: `FILE_STATES`, `EXPIRE_DUE`, `BEGIN_WRITE`, and the single statements
//!   PostgreSQL can make of several (`EVENT_WITH_DELIVERIES`, `MARK_STAGED`, `PROMOTE_FILE`,
//!   `FINISH_TEXT_JOB`, `INSERT_DIRECT`: `None` on SQLite, which writes them one by one);
//! - a struct with a `pool` and a `relaxed` pool (writes the sweeper repairs if lost).
//!
//! Every rule (what a bind refusal means, replays, expiry) lives in the domain, not here.

macro_rules! file_columns {
    () => {
        "id, client_id, state, file_name, content_type, file_size, sha256, staging_key, \
         multipart_upload_id, created_at, uploaded_at, expires_at, webhook_id, slot, \
         promoted_key, bound_at, promoted_at, erased_at, text_status, text_chars, text_error, \
         text_reason"
    };
}

macro_rules! webhook_columns {
    () => {
        "id, client_id, kind, user_id, payload, payload_hash, idempotency_key, status, result, \
         created_at"
    };
}

macro_rules! sweep_columns {
    () => {
        "id, started_at, finished_at, expired, objects_deleted, receiving_aborted, \
         orphans_deleted, tombstones_purged, promoted, errors, last_error, erased, \
         erasures_finished"
    };
}

/// Leases due deliveries fairly (`$1`: now, `$2`: lease end, `$3`: how many, `$4`: deliveries
/// per endpoint in flight): an endpoint gets no more than `$4` minus what it has in flight, and
/// turns go round-robin — each client's first due delivery before anyone's second, and within a
/// client each endpoint's first before its second — so a slow or failing endpoint delays only
/// itself. The lease is a conditional update: with several workers each delivery goes to one
/// of them (a row leased meanwhile no longer matches).
pub(super) const CLAIM_DUE: &str = "UPDATE deliveries SET leased_until = $2 \
     WHERE status = 'pending' AND (leased_until IS NULL OR leased_until <= $1) \
       AND (event_id, endpoint_id) IN (SELECT event_id, endpoint_id FROM ( \
         SELECT due.event_id, due.endpoint_id, due.next_attempt_at, \
                ROW_NUMBER() OVER (PARTITION BY due.client_id \
                                   ORDER BY due.turn, due.next_attempt_at) AS client_turn \
         FROM (SELECT d.event_id, d.endpoint_id, d.next_attempt_at, ep.client_id, \
                      ROW_NUMBER() OVER (PARTITION BY d.endpoint_id \
                                         ORDER BY d.next_attempt_at, d.event_id) AS turn \
               FROM deliveries d JOIN event_endpoints ep ON ep.id = d.endpoint_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                 AND (d.leased_until IS NULL OR d.leased_until <= $1) \
                 AND ep.deleted_at IS NULL) due \
         LEFT JOIN (SELECT endpoint_id, COUNT(*) AS busy FROM deliveries \
                    WHERE status = 'pending' AND leased_until > $1 GROUP BY endpoint_id) b \
           ON b.endpoint_id = due.endpoint_id \
         WHERE due.turn + COALESCE(b.busy, 0) <= $4) fair \
       ORDER BY client_turn, next_attempt_at LIMIT $3) \
     RETURNING event_id, endpoint_id, attempt_count, \
         (SELECT url FROM event_endpoints WHERE id = deliveries.endpoint_id), \
         (SELECT secret FROM event_endpoints WHERE id = deliveries.endpoint_id), \
         (SELECT body FROM events WHERE id = deliveries.event_id), \
         (SELECT created_at FROM events WHERE id = deliveries.event_id)";

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
macro_rules! list_files {
    ($filter:literal) => {
        concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE client_id = $1 ",
            $filter,
            " AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        )
    };
}

/// The statement that leases due jobs; `$lock` is how a backend keeps two workers from
/// picking the same rows.
macro_rules! claim_jobs {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET leased_until = $2, attempts = attempts + 1 \
             WHERE (leased_until IS NULL OR leased_until <= $1) AND id IN (SELECT id FROM jobs \
                 WHERE run_at <= $1 AND (leased_until IS NULL OR leased_until <= $1) \
                 ORDER BY run_at LIMIT $3",
            $lock,
            ") RETURNING id, kind, file_id, attempts, last_error"
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

macro_rules! impl_repo {
    ($Repo:ident) => {
        #[derive(sqlx::FromRow)]
        struct FileRow {
            id: Id,
            client_id: String,
            state: String,
            file_name: String,
            content_type: Option<String>,
            file_size: Option<i64>,
            sha256: Option<String>,
            staging_key: String,
            multipart_upload_id: Option<String>,
            created_at: Time,
            uploaded_at: Option<Time>,
            expires_at: Option<Time>,
            webhook_id: Option<Id>,
            slot: Option<String>,
            promoted_key: Option<String>,
            bound_at: Option<Time>,
            promoted_at: Option<Time>,
            erased_at: Option<Time>,
            text_status: Option<String>,
            text_chars: Option<i64>,
            text_error: Option<String>,
            text_reason: Option<String>,
        }

        impl TryFrom<FileRow> for FileRecord {
            type Error = RepoError;

            fn try_from(row: FileRow) -> Result<Self> {
                Ok(FileRecord {
                    id: uuid(row.id)?,
                    client_id: row.client_id,
                    state: parse_named(&row.state)?,
                    file_name: row.file_name,
                    content_type: row.content_type,
                    file_size: row.file_size,
                    sha256: row.sha256,
                    staging_key: row.staging_key,
                    multipart_upload_id: row.multipart_upload_id,
                    created_at: utc(row.created_at)?,
                    uploaded_at: row.uploaded_at.map(utc).transpose()?,
                    expires_at: row.expires_at.map(utc).transpose()?,
                    webhook_id: row.webhook_id.map(uuid).transpose()?,
                    slot: row.slot.as_deref().map(parse_named).transpose()?,
                    promoted_key: row.promoted_key,
                    bound_at: row.bound_at.map(utc).transpose()?,
                    promoted_at: row.promoted_at.map(utc).transpose()?,
                    erased_at: row.erased_at.map(utc).transpose()?,
                    text: match row.text_status {
                        None => None,
                        Some(status) => Some(crate::domain::TextState {
                            status: parse_named(&status)?,
                            chars: row.text_chars,
                            failure: match row.text_reason {
                                None => None,
                                Some(reason) => Some(crate::text::TextFailure::new(
                                    parse_named(&reason)?,
                                    row.text_error.unwrap_or_default(),
                                )),
                            },
                        }),
                    },
                })
            }
        }

        #[derive(sqlx::FromRow)]
        struct WebhookRow {
            id: Id,
            client_id: String,
            kind: String,
            user_id: String,
            payload: String,
            payload_hash: String,
            idempotency_key: Option<String>,
            status: String,
            result: Option<String>,
            created_at: Time,
        }

        impl TryFrom<WebhookRow> for WebhookRecord {
            type Error = RepoError;

            fn try_from(row: WebhookRow) -> Result<Self> {
                Ok(WebhookRecord {
                    id: uuid(row.id)?,
                    client_id: row.client_id,
                    kind: parse_named(&row.kind)?,
                    user_id: row.user_id,
                    payload: row.payload,
                    payload_hash: row.payload_hash,
                    idempotency_key: row.idempotency_key,
                    status: parse_named(&row.status)?,
                    result: row.result,
                    created_at: utc(row.created_at)?,
                })
            }
        }

        #[derive(sqlx::FromRow)]
        struct SweepRow {
            id: Id,
            started_at: Time,
            finished_at: Time,
            expired: i64,
            objects_deleted: i64,
            receiving_aborted: i64,
            orphans_deleted: i64,
            tombstones_purged: i64,
            promoted: i64,
            errors: i64,
            last_error: Option<String>,
            erased: i64,
            erasures_finished: i64,
        }

        #[derive(sqlx::FromRow)]
        struct EventRow {
            id: Id,
            client_id: String,
            event_type: String,
            body: String,
            created_at: Time,
        }

        impl TryFrom<EventRow> for EventRecord {
            type Error = RepoError;

            fn try_from(row: EventRow) -> Result<Self> {
                Ok(EventRecord {
                    id: uuid(row.id)?,
                    client_id: row.client_id,
                    event_type: row
                        .event_type
                        .parse()
                        .map_err(|e: crate::events::EndpointError| RepoError::Corrupt(e.to_string()))?,
                    body: row.body,
                    created_at: utc(row.created_at)?,
                    deliveries: Vec::new(),
                })
            }
        }

        #[derive(sqlx::FromRow)]
        struct DeliveryRow {
            event_id: Id,
            endpoint_id: Id,
            status: String,
            attempt_count: i32,
            next_attempt_at: Time,
            last_attempt_at: Option<Time>,
            response_status_code: Option<i32>,
            error_message: Option<String>,
        }

        impl TryFrom<DeliveryRow> for DeliveryRecord {
            type Error = RepoError;

            fn try_from(row: DeliveryRow) -> Result<Self> {
                let status: DeliveryStatus = parse_named(&row.status)?;
                Ok(DeliveryRecord {
                    endpoint_id: uuid(row.endpoint_id)?,
                    status,
                    attempt_count: row.attempt_count,
                    response_status_code: row.response_status_code,
                    error_message: row.error_message,
                    last_attempt_at: row.last_attempt_at.map(utc).transpose()?,
                    next_attempt_at: (status == DeliveryStatus::Pending)
                        .then(|| utc(row.next_attempt_at))
                        .transpose()?,
                    attempts: Vec::new(),
                })
            }
        }

        fn files(rows: Vec<FileRow>) -> Result<Vec<FileRecord>> {
            rows.into_iter().map(FileRecord::try_from).collect()
        }

        /// The webhook with this id, read within a transaction.
        async fn webhook_in(conn: &mut Conn, webhook_id: Uuid) -> Result<Option<WebhookRecord>> {
            let row: Option<WebhookRow> = sqlx::query_as(concat!(
                "SELECT ", webhook_columns!(), " FROM webhooks WHERE id = $1"
            ))
            .bind(id(webhook_id))
            .fetch_optional(&mut *conn)
            .await?;
            row.map(WebhookRecord::try_from).transpose()
        }

        /// Ends a transaction that changed keys or grants: the notification every replica's
        /// cache listens for, the commit, this process's cache emptied, and the wait for the
        /// notification to come back (see `src/repo/key_cache.rs`).
        async fn key_change_done(
            mut tx: sqlx::Transaction<'_, <Conn as sqlx::Connection>::Database>,
            echo: KeyEcho,
            keys: &crate::repo::key_cache::KeyCache,
        ) -> Result<()> {
            sqlx::query(NOTIFY_KEYS)
                .bind(echo.token())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            keys.clear();
            echo.heard().await;
            Ok(())
        }

        /// Writes an event to the outbox with one pending delivery for each endpoint of its
        /// client that is in use and subscribed to its type — in the caller's transaction, so
        /// the event exists if and only if the change it reports does.
        async fn write_event(conn: &mut Conn, event: &crate::events::NewEvent) -> Result<()> {
            let query = sqlx::query(EVENT_WITH_DELIVERIES.unwrap_or(
                "INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            ))
            .bind(id(event.id))
            .bind(&event.client_id)
            .bind(event.event_type.as_str())
            .bind(&event.body)
            .bind(time(event.created_at))
            .bind(event.file_id.map(id));
            if EVENT_WITH_DELIVERIES.is_some() {
                query
                    .bind(event.event_type.subscription_pattern())
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            query.execute(&mut *conn).await?;
            fan_out(conn, event.id, &event.client_id, event.event_type, event.created_at).await
        }

        /// Queues an event, due at `at`, for each endpoint of its client that is in use and
        /// subscribed to its type and does not have it queued already.
        async fn fan_out(
            conn: &mut Conn,
            event_id: Uuid,
            client_id: &str,
            event_type: crate::events::EventType,
            at: DateTime<Utc>,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
                 SELECT $1, id, 'pending', 0, $2 FROM event_endpoints \
                 WHERE client_id = $3 AND deleted_at IS NULL \
                   AND (event_types IS NULL OR event_types LIKE $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id(event_id))
            .bind(time(at))
            .bind(client_id)
            .bind(event_type.subscription_pattern())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Marks a bound file promoted and queues its text job, with `event` (in the caller's
        /// transaction); whether it was bound. `file` is the record as [`FileRecord::promoted`]
        /// says the row becomes, and `event` reports it.
        async fn promote_in(
            conn: &mut Conn,
            file: &FileRecord,
            event: &crate::events::NewEvent,
        ) -> Result<bool> {
            let key = file.promoted_key.as_deref().unwrap_or(&file.staging_key);
            let at = event.created_at;
            // Both forms answer one row holding `true` when the file was still bound.
            let promote = |sql| {
                sqlx::query_as::<_, (bool,)>(sql)
                    .bind(id(file.id))
                    .bind(key)
                    .bind(time(at))
            };
            if let Some(statement) = PROMOTE_FILE {
                let row = promote(statement)
                    .bind(id(Uuid::new_v4()))
                    .bind(crate::domain::JobKind::ExtractText.as_str())
                    .bind(id(event.id))
                    .bind(&event.client_id)
                    .bind(event.event_type.as_str())
                    .bind(&event.body)
                    .bind(event.event_type.subscription_pattern())
                    .fetch_optional(&mut *conn)
                    .await?;
                return Ok(matches!(row, Some((true,))));
            }
            let row = promote(
                "UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                        state_changed_at = $3, text_status = 'pending', text_chars = NULL, \
                        text_error = NULL, text_reason = NULL \
                 WHERE id = $1 AND state = 'bound' RETURNING TRUE",
            )
            .fetch_optional(&mut *conn)
            .await?;
            if !matches!(row, Some((true,))) {
                return Ok(false);
            }
            // The text job is queued with the promotion: a promoted file always gets its text.
            sqlx::query(
                "INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at) \
                 VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id(Uuid::new_v4()))
            .bind(crate::domain::JobKind::ExtractText.as_str())
            .bind(id(file.id))
            .bind(time(at))
            .execute(&mut *conn)
            .await?;
            write_event(conn, event).await?;
            Ok(true)
        }

        /// Writes the event reporting a file's change (its record carries its webhook, if bound).
        async fn write_file_event(
            conn: &mut Conn,
            event_type: crate::events::EventType,
            file: &FileRecord,
            at: DateTime<Utc>,
        ) -> Result<()> {
            let event = file_event(&mut *conn, event_type, file, at).await?;
            write_event(conn, &event).await
        }

        /// The event reporting a file's change (its record carries its webhook, if bound).
        async fn file_event(
            conn: &mut Conn,
            event_type: crate::events::EventType,
            file: &FileRecord,
            at: DateTime<Utc>,
        ) -> Result<crate::events::NewEvent> {
            let webhook = match file.webhook_id {
                Some(webhook_id) => webhook_in(conn, webhook_id).await?,
                None => None,
            };
            Ok(crate::events::NewEvent::file(event_type, file, webhook.as_ref(), at))
        }

        /// Erases a client's file in the caller's transaction: the row becomes a tombstone with
        /// no name, type, size or hash (a conditional update on the state just read, re-read if
        /// a concurrent change won), `file.erased` is recorded and earlier events redacted.
        async fn erase_in(
            conn: &mut Conn,
            client_id: &str,
            file_id: Uuid,
            reason: ErasureReason,
            at: DateTime<Utc>,
        ) -> Result<Erase> {
            // Each retry follows a committed state change, and a file changes state a few
            // times at most.
            for _ in 0..8 {
                let state: Option<(String,)> =
                    sqlx::query_as("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                        .bind(id(file_id))
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
                let row: Option<FileRow> = sqlx::query_as(concat!(
                    "UPDATE files SET state = 'erased', file_name = '', content_type = NULL, \
                            file_size = NULL, sha256 = NULL, erased_at = $3, \
                            state_changed_at = $3, objects_deleted_at = NULL, text_status = NULL, \
                            text_chars = NULL, text_error = NULL, text_reason = NULL \
                     WHERE id = $1 AND client_id = $2 AND state = $4 RETURNING ",
                    file_columns!()
                ))
                .bind(id(file_id))
                .bind(client_id)
                .bind(time(at))
                .bind(was.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else { continue };
                let file = FileRecord::try_from(row)?;
                for statement in [
                    "DELETE FROM file_texts WHERE file_id = $1",
                    "DELETE FROM jobs WHERE file_id = $1",
                    // A direct upload's window stays, for the sweeper to delete its staging
                    // key again once the window has closed.
                    "UPDATE direct_uploads SET file_size = NULL, sha256 = NULL, refusal = NULL \
                     WHERE file_id = $1",
                ] {
                    sqlx::query(statement).bind(id(file_id)).execute(&mut *conn).await?;
                }
                write_event(&mut *conn, &crate::events::NewEvent::erased(&file, reason, at)).await?;
                let earlier: Vec<(Id, String)> = sqlx::query_as(
                    "SELECT id, body FROM events WHERE file_id = $1 AND event_type <> 'file.erased'",
                )
                .bind(id(file_id))
                .fetch_all(&mut *conn)
                .await?;
                for (event_id, body) in earlier {
                    if let Some(redacted) = crate::events::redact_body(&body) {
                        sqlx::query("UPDATE events SET body = $2 WHERE id = $1")
                            .bind(event_id)
                            .bind(redacted)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                return Ok(Erase::Erased(ErasedFile {
                    id: file.id,
                    staging_key: file.staging_key,
                    multipart_upload_id: file.multipart_upload_id,
                    was: Some(was),
                }));
            }
            Err(RepoError::Conflict(format!("file {file_id} kept changing while being erased")))
        }

        /// Removes the personal `data` from a stored webhook. Without it the payload is no longer
        /// the one that was sent: its hash and idempotency key go too, so a re-send is answered
        /// afresh (and finds its files erased).
        async fn scrub_webhook(
            conn: &mut Conn,
            webhook_id: Id,
            payload: &str,
            at: DateTime<Utc>,
        ) -> Result<()> {
            sqlx::query(
                "UPDATE webhooks SET payload = $2, payload_hash = '', idempotency_key = NULL, \
                        updated_at = $3 WHERE id = $1",
            )
            .bind(webhook_id)
            .bind(crate::domain::without_personal_data(payload))
            .bind(time(at))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        impl $Repo {
            /// `AFTER_ERASURE`, if the backend needs it: failures are logged (the erasure
            /// itself has committed).
            async fn after_erasure(&self) {
                if let Some(statement) = AFTER_ERASURE
                    && let Err(e) = sqlx::query(statement).execute(&self.pool).await
                {
                    tracing::warn!(error = %e, "could not flush erased values from the database files");
                }
            }
        }

        #[async_trait]
        impl super::KeyRepo for $Repo {
            async fn has_keys(&self) -> Result<bool> {
                let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_keys)")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(any)
            }

            async fn create_key(&self, key_id: Uuid, name: &str, secret_hash: &[u8]) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id(key_id))
                .bind(name)
                .bind(secret_hash)
                .bind(time(Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
                let row: Option<(Id, String, bool)> = sqlx::query_as(
                    "SELECT id, name, revoked_at IS NOT NULL FROM api_keys WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(key_id, name, revoked)| {
                    Ok(ApiKeyRecord { id: uuid(key_id)?, name, revoked })
                })
                .transpose()
            }

            async fn revoke_key(&self, name: &str) -> Result<bool> {
                let echo = KeyEcho::listen(&self.pool).await;
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1",
                )
                .bind(name)
                .bind(time(Utc::now()))
                .execute(&mut *tx)
                .await?;
                key_change_done(tx, echo, &self.keys).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn key_changes(&self) -> Result<Option<Box<dyn super::KeyChanges>>> {
                key_changes(&self.pool, &self.keys).await
            }

            async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
                let echo = KeyEcho::listen(&self.pool).await;
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO client_grants (key_id, client_id, workspace, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = excluded.workspace",
                )
                .bind(id(key_id))
                .bind(client_id)
                .bind(workspace)
                .bind(time(Utc::now()))
                .execute(&mut *tx)
                .await?;
                key_change_done(tx, echo, &self.keys).await?;
                Ok(())
            }

            async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
                if let Some(grant) = self.keys.get(key_id, client_id) {
                    return Ok(Some(grant));
                }
                let lookup = self.keys.begin();
                let row: Option<(String, Vec<u8>, bool, Option<Time>, bool)> = sqlx::query_as(
                    "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, k.last_used_at, EXISTS \
                         (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = $2) \
                     FROM api_keys k WHERE k.id = $1",
                )
                .bind(id(key_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                let grant = row
                    .map(|(key_name, secret_hash, revoked, last_used_at, client_allowed)| {
                        Ok::<_, RepoError>(KeyGrant {
                            key_name,
                            secret_hash,
                            revoked,
                            last_used_at: last_used_at.map(utc).transpose()?,
                            client_allowed,
                        })
                    })
                    .transpose()?;
                if let Some(grant) = &grant {
                    self.keys.put(lookup, key_id, client_id, grant);
                }
                Ok(grant)
            }

            fn keys_cached(&self) -> bool {
                self.keys.is_on()
            }

            async fn key_used(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(id(key_id))
                .bind(time(at))
                .execute(&self.relaxed)
                .await?;
                self.keys.used(key_id, at);
                Ok(())
            }

            async fn list_keys(&self) -> Result<Vec<KeySummary>> {
                let keys: Vec<(Id, String, Time, Option<Time>, Option<Time>)> = sqlx::query_as(
                    "SELECT id, name, created_at, revoked_at, last_used_at FROM api_keys ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                let grants: Vec<(Id, String)> = sqlx::query_as(
                    "SELECT key_id, client_id FROM client_grants ORDER BY client_id",
                )
                .fetch_all(&self.pool)
                .await?;
                keys.into_iter()
                    .map(|(key_id, name, created_at, revoked_at, last_used_at)| {
                        Ok(KeySummary {
                            client_ids: grants
                                .iter()
                                .filter(|(k, _)| *k == key_id)
                                .map(|(_, c)| c.clone())
                                .collect(),
                            name,
                            created_at: utc(created_at)?,
                            revoked_at: revoked_at.map(utc).transpose()?,
                            last_used_at: last_used_at.map(utc).transpose()?,
                        })
                    })
                    .collect()
            }

            async fn list_clients(&self) -> Result<Vec<ClientGrant>> {
                let rows: Vec<(String, String, String, bool, Time)> = sqlx::query_as(
                    "SELECT g.client_id, g.workspace, k.name, k.revoked_at IS NOT NULL, g.created_at \
                     FROM client_grants g JOIN api_keys k ON k.id = g.key_id \
                     ORDER BY g.client_id, k.name",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(client_id, workspace, key_name, key_revoked, created_at)| {
                        Ok(ClientGrant {
                            client_id,
                            workspace,
                            key_name,
                            key_revoked,
                            created_at: utc(created_at)?,
                        })
                    })
                    .collect()
            }

            async fn remove_client(&self, client_id: &str, key_name: Option<&str>) -> Result<u64> {
                let echo = KeyEcho::listen(&self.pool).await;
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "DELETE FROM client_grants WHERE client_id = $1 \
                     AND ($2 IS NULL OR key_id IN (SELECT id FROM api_keys WHERE name = $2))",
                )
                .bind(client_id)
                .bind(key_name)
                .execute(&mut *tx)
                .await?;
                key_change_done(tx, echo, &self.keys).await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait]
        impl super::OutboxRepo for $Repo {
            async fn create_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
                let types = endpoint.event_types.as_ref().map(|types| {
                    serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                        .expect("names serialize")
                });
                sqlx::query(
                    "INSERT INTO event_endpoints (id, client_id, url, event_types, secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id(endpoint.id))
                .bind(&endpoint.client_id)
                .bind(&endpoint.url)
                .bind(types)
                .bind(&endpoint.secret)
                .bind(time(endpoint.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_endpoints(&self, client_id: Option<&str>) -> Result<Vec<EndpointRecord>> {
                let rows: Vec<(Id, String, String, Option<String>, String, Time)> = sqlx::query_as(
                    "SELECT id, client_id, url, event_types, secret, created_at FROM event_endpoints \
                     WHERE deleted_at IS NULL AND ($1 IS NULL OR client_id = $1) \
                     ORDER BY created_at, id",
                )
                .bind(client_id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(endpoint_id, client_id, url, types, secret, created_at)| {
                        let event_types = types
                            .map(|raw| {
                                let names: Vec<String> = serde_json::from_str(&raw)
                                    .map_err(|e| RepoError::Corrupt(format!("event types {raw}: {e}")))?;
                                crate::events::parse_types(names.iter().map(String::as_str))
                                    .map_err(|e| RepoError::Corrupt(e.to_string()))
                            })
                            .transpose()?
                            .flatten();
                        Ok(EndpointRecord {
                            id: uuid(endpoint_id)?,
                            client_id,
                            url,
                            event_types,
                            secret,
                            created_at: utc(created_at)?,
                        })
                    })
                    .collect()
            }

            async fn remove_endpoint(&self, client_id: Option<&str>, endpoint_id: Uuid) -> Result<bool> {
                let now = time(Utc::now());
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE event_endpoints SET deleted_at = $3 \
                     WHERE id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR client_id = $2)",
                )
                .bind(id(endpoint_id))
                .bind(client_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE deliveries SET status = 'failed', leased_until = NULL, \
                            error_message = 'endpoint removed' \
                     WHERE endpoint_id = $1 AND status = 'pending'",
                )
                .bind(id(endpoint_id))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn claim_deliveries(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: i64,
                per_endpoint: u32,
            ) -> Result<Vec<DueDelivery>> {
                let rows: Vec<(Id, Id, i32, String, String, String, Time)> = sqlx::query_as(super::sql::CLAIM_DUE)
                    .bind(time(now))
                    .bind(time(lease_until))
                    .bind(limit)
                    .bind(i64::from(per_endpoint))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(event_id, endpoint_id, attempt_count, url, secret, body, created_at)| {
                        Ok(DueDelivery {
                            event_created_at: utc(created_at)?,
                            event_id: uuid(event_id)?,
                            endpoint_id: uuid(endpoint_id)?,
                            attempt_count,
                            url,
                            secret,
                            body,
                        })
                    })
                    .collect()
            }

            async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<bool> {
                // Relaxed: a lost record only means the delivery is sent again (at least once).
                let mut tx = self.relaxed.begin().await?;
                let done = sqlx::query(
                    "UPDATE deliveries SET status = $3, attempt_count = $4, \
                            next_attempt_at = COALESCE($5, next_attempt_at), leased_until = NULL, \
                            last_attempt_at = $6, response_status_code = $7, error_message = $8 \
                     WHERE event_id = $1 AND endpoint_id = $2 AND attempt_count = $4 - 1",
                )
                .bind(id(attempt.event_id))
                .bind(id(attempt.endpoint_id))
                .bind(attempt.status.as_str())
                .bind(attempt.attempt)
                .bind(attempt.next_attempt_at.map(time))
                .bind(time(attempt.attempted_at))
                .bind(attempt.response_status_code)
                .bind(&attempt.error_message)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO delivery_attempts (event_id, endpoint_id, attempt, attempted_at, \
                                                    duration_ms, response_status_code, error_message) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(id(attempt.event_id))
                .bind(id(attempt.endpoint_id))
                .bind(attempt.attempt)
                .bind(time(attempt.attempted_at))
                .bind(attempt.duration_ms)
                .bind(attempt.response_status_code)
                .bind(&attempt.error_message)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_events(
                &self,
                client_id: &str,
                event_type: Option<EventType>,
                cursor: Option<PageCursor>,
                limit: i64,
            ) -> Result<Vec<EventRecord>> {
                let rows: Vec<EventRow> = sqlx::query_as(
                    "SELECT id, client_id, event_type, body, created_at FROM events \
                     WHERE client_id = $1 AND ($2 IS NULL OR event_type = $2) \
                       AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND id < $4)) \
                     ORDER BY created_at DESC, id DESC LIMIT $5",
                )
                .bind(client_id)
                .bind(event_type.map(EventType::as_str))
                .bind(cursor.map(|c| time(c.created_at)))
                .bind(cursor.map(|c| id(c.id)))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut events = rows
                    .into_iter()
                    .map(EventRecord::try_from)
                    .collect::<Result<Vec<_>>>()?;
                let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
                let deliveries: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_OF)
                    .bind(id_list(&ids))
                    .fetch_all(&self.pool)
                    .await?;
                for row in deliveries {
                    let event_id = uuid(row.event_id.clone())?;
                    if let Some(event) = events.iter_mut().find(|e| e.id == event_id) {
                        event.deliveries.push(row.try_into()?);
                    }
                }
                Ok(events)
            }

            async fn get_event(&self, client_id: &str, event_id: Uuid) -> Result<Option<EventRecord>> {
                let row: Option<EventRow> = sqlx::query_as(
                    "SELECT id, client_id, event_type, body, created_at FROM events \
                     WHERE id = $1 AND client_id = $2",
                )
                .bind(id(event_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let mut event = EventRecord::try_from(row)?;
                let deliveries: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_OF)
                    .bind(id_list(&[event_id]))
                    .fetch_all(&self.pool)
                    .await?;
                event.deliveries = deliveries
                    .into_iter()
                    .map(DeliveryRecord::try_from)
                    .collect::<Result<_>>()?;
                let attempts: Vec<(Id, i32, Time, i64, Option<i32>, Option<String>)> = sqlx::query_as(
                    "SELECT endpoint_id, attempt, attempted_at, duration_ms, response_status_code, \
                            error_message \
                     FROM delivery_attempts WHERE event_id = $1 ORDER BY endpoint_id, attempt",
                )
                .bind(id(event_id))
                .fetch_all(&self.pool)
                .await?;
                for (endpoint_id, attempt, attempted_at, duration_ms, code, error) in attempts {
                    let endpoint_id = uuid(endpoint_id)?;
                    if let Some(delivery) =
                        event.deliveries.iter_mut().find(|d| d.endpoint_id == endpoint_id)
                    {
                        delivery.attempts.push(AttemptLog {
                            attempt,
                            attempted_at: utc(attempted_at)?,
                            duration_ms,
                            response_status_code: code,
                            error_message: error,
                        });
                    }
                }
                Ok(Some(event))
            }

            async fn redeliver(&self, client_id: &str, event_id: Uuid, now: DateTime<Utc>) -> Result<bool> {
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let event_type: Option<(String,)> =
                    sqlx::query_as("SELECT event_type FROM events WHERE id = $1 AND client_id = $2")
                        .bind(id(event_id))
                        .bind(client_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((event_type,)) = event_type else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let event_type: EventType = event_type
                    .parse()
                    .map_err(|e: crate::events::EndpointError| RepoError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, \
                            leased_until = NULL \
                     WHERE event_id = $1 AND endpoint_id IN \
                         (SELECT id FROM event_endpoints WHERE deleted_at IS NULL)",
                )
                .bind(id(event_id))
                .bind(time(now))
                .execute(&mut *tx)
                .await?;
                fan_out(&mut tx, event_id, client_id, event_type, now).await?;
                tx.commit().await?;
                Ok(true)
            }
        }

        #[async_trait]
        impl super::FileRepo for $Repo {
            async fn insert_receiving(&self, file: &NewFile) -> Result<()> {
                sqlx::query(
                    "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                                        state_changed_at, active_at) \
                     VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $5)",
                )
                .bind(id(file.id))
                .bind(&file.client_id)
                .bind(&file.file_name)
                .bind(&file.staging_key)
                .bind(time(file.created_at))
                .execute(&self.relaxed)
                .await?;
                Ok(())
            }

            async fn touch_receiving(&self, file_id: Uuid, at: DateTime<Utc>) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE files SET active_at = $2 WHERE id = $1 AND state = 'receiving'",
                )
                .bind(id(file_id))
                .bind(time(at))
                .execute(&self.relaxed)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn abort_receiving(&self, file_id: Uuid, before: DateTime<Utc>) -> Result<bool> {
                let done = sqlx::query(
                    "DELETE FROM files WHERE id = $1 AND state = 'receiving' AND active_at < $2",
                )
                .bind(id(file_id))
                .bind(time(before))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn closing_direct_windows(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<(Uuid, String, FileState)>> {
                let rows: Vec<(Id, String, String)> = sqlx::query_as(
                    "SELECT f.id, f.staging_key, f.state FROM direct_uploads d \
                     JOIN files f ON f.id = d.file_id \
                     WHERE NOT d.window_closed AND d.window_ends_at < $1 \
                     ORDER BY d.window_ends_at LIMIT $2",
                )
                .bind(time(before))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(file_id, key, state)| Ok((uuid(file_id)?, key, parse_named(&state)?)))
                    .collect()
            }

            async fn close_direct_window(&self, file_id: Uuid) -> Result<()> {
                sqlx::query("UPDATE direct_uploads SET window_closed = TRUE WHERE file_id = $1")
                    .bind(id(file_id))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_multipart_upload(&self, file_id: Uuid, upload_id: &str) -> Result<()> {
                sqlx::query("UPDATE files SET multipart_upload_id = $2 WHERE id = $1")
                    .bind(id(file_id))
                    .bind(upload_id)
                    .execute(&self.relaxed)
                    .await?;
                Ok(())
            }

            async fn mark_staged(&self, receiving: &FileRecord, facts: &StagedFacts) -> Result<()> {
                let file_id = receiving.id;
                let staged = facts.staged(receiving);
                let event = crate::events::NewEvent::file(
                    EventType::FileStaged, &staged, None, facts.uploaded_at);
                // Both forms answer one row holding `true` when the file was still receiving.
                let update = |sql| {
                    sqlx::query_as::<_, (bool,)>(sql)
                        .bind(id(file_id))
                        .bind(&facts.content_type)
                        .bind(facts.file_size)
                        .bind(&facts.sha256)
                        .bind(time(facts.uploaded_at))
                        .bind(time(facts.expires_at))
                };
                let changed = if let Some(statement) = MARK_STAGED {
                    let row = update(statement)
                        .bind(id(event.id))
                        .bind(&event.client_id)
                        .bind(event.event_type.as_str())
                        .bind(&event.body)
                        .bind(event.event_type.subscription_pattern())
                        .fetch_optional(&self.pool)
                        .await?;
                    matches!(row, Some((true,)))
                } else {
                    let mut tx = self.pool.begin().await?;
                    let row = update(
                        "UPDATE files SET state = 'staged', content_type = $2, file_size = $3, \
                                sha256 = $4, uploaded_at = $5, expires_at = $6, \
                                state_changed_at = $5, multipart_upload_id = NULL \
                         WHERE id = $1 AND state = 'receiving' RETURNING TRUE",
                    )
                    .fetch_optional(&mut *tx)
                    .await?;
                    let changed = matches!(row, Some((true,)));
                    if changed {
                        write_event(&mut tx, &event).await?;
                        tx.commit().await?;
                    }
                    changed
                };
                if !changed {
                    return Err(RepoError::Conflict(format!("file {file_id} is no longer receiving")));
                }
                Ok(())
            }

            async fn delete_receiving(&self, file_id: Uuid) -> Result<()> {
                sqlx::query("DELETE FROM files WHERE id = $1 AND state = 'receiving'")
                    .bind(id(file_id))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_direct(
                &self,
                file: &NewFile,
                direct: &crate::domain::DirectUpload,
            ) -> Result<()> {
                let window_end = direct.window_ends_at;
                // No transaction, on the relaxed pool, like any `receiving` row: a file row
                // without its declaration (or lost in a crash) is aborted by the sweeper.
                let file_row = |sql| {
                    sqlx::query(sql)
                        .bind(id(file.id))
                        .bind(&file.client_id)
                        .bind(&file.file_name)
                        .bind(&file.staging_key)
                        .bind(time(file.created_at))
                        .bind(time(window_end))
                };
                if let Some(statement) = INSERT_DIRECT {
                    file_row(statement)
                        .bind(direct.file_size)
                        .bind(&direct.sha256)
                        .execute(&self.relaxed)
                        .await?;
                    return Ok(());
                }
                file_row(
                    "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                                        state_changed_at, active_at) \
                     VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $6)",
                )
                .execute(&self.relaxed)
                .await?;
                sqlx::query(
                    "INSERT INTO direct_uploads (file_id, file_size, sha256, window_ends_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id(file.id))
                .bind(direct.file_size)
                .bind(&direct.sha256)
                .bind(time(window_end))
                .execute(&self.relaxed)
                .await?;
                Ok(())
            }

            async fn direct_upload(
                &self,
                client_id: &str,
                file_id: Uuid,
            ) -> Result<Option<(FileRecord, crate::domain::DirectUpload)>> {
                // The file and its declaration in one read.
                #[derive(sqlx::FromRow)]
                struct DirectRow {
                    #[sqlx(flatten)]
                    file: FileRow,
                    declared_size: Option<i64>,
                    declared_sha256: Option<String>,
                    refusal: Option<String>,
                    window_ends_at: Option<Time>,
                }
                let row: Option<DirectRow> = sqlx::query_as(concat!(
                    "SELECT ", file_columns!(), ", \
                            (SELECT file_size FROM direct_uploads WHERE file_id = $1) AS declared_size, \
                            (SELECT sha256 FROM direct_uploads WHERE file_id = $1) AS declared_sha256, \
                            (SELECT refusal FROM direct_uploads WHERE file_id = $1) AS refusal, \
                            (SELECT window_ends_at FROM direct_uploads WHERE file_id = $1) AS window_ends_at \
                     FROM files WHERE id = $1 AND client_id = $2"
                ))
                .bind(id(file_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                // An erased upload keeps no declaration: there is nothing to complete.
                let (Some(file_size), Some(sha256), Some(window_ends_at)) =
                    (row.declared_size, row.declared_sha256, row.window_ends_at)
                else {
                    return Ok(None);
                };
                let direct = crate::domain::DirectUpload {
                    file_id,
                    file_size,
                    sha256,
                    refusal: row.refusal,
                    window_ends_at: utc(window_ends_at)?,
                };
                Ok(Some((FileRecord::try_from(row.file)?, direct)))
            }

            async fn refuse_direct(&self, file_id: Uuid, refusal: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE direct_uploads SET refusal = $2 WHERE file_id = $1 AND refusal IS NULL \
                       AND EXISTS (SELECT 1 FROM files WHERE id = $1 AND state = 'receiving')",
                )
                .bind(id(file_id))
                .bind(refusal)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_file(&self, client_id: &str, file_id: Uuid) -> Result<Option<FileRecord>> {
                let row: Option<FileRow> = sqlx::query_as(concat!(
                    "SELECT ", file_columns!(), " FROM files WHERE id = $1 AND client_id = $2"
                ))
                .bind(id(file_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(FileRecord::try_from).transpose()
            }

            async fn discard(&self, client_id: &str, file_id: Uuid) -> Result<Discard> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await?;
                let row: Option<FileRow> = sqlx::query_as(concat!(
                    "UPDATE files SET state = 'discarded', state_changed_at = $3 \
                     WHERE id = $1 AND client_id = $2 AND state = 'staged' RETURNING ",
                    file_columns!()
                ))
                .bind(id(file_id))
                .bind(client_id)
                .bind(time(now))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row {
                    let file = FileRecord::try_from(row)?;
                    write_file_event(&mut tx, EventType::FileDiscarded, &file, now).await?;
                    tx.commit().await?;
                    return Ok(Discard::Discarded(Box::new(file)));
                }
                tx.rollback().await?;
                let state: Option<(String,)> =
                    sqlx::query_as("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                        .bind(id(file_id))
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await?;
                state.map(|(state,)| parse_named(&state)).transpose().map(Discard::after_refusal)
            }

            async fn list_files(
                &self,
                client_id: &str,
                filter: &FileFilter,
                cursor: Option<PageCursor>,
                limit: i64,
            ) -> Result<Vec<(FileRecord, Option<WebhookRecord>)>> {
                // No cursor: from the end of time. A row comparison, so a page is one range scan
                // of (client_id, created_at DESC, id DESC) however deep it is.
                let cursor = cursor.unwrap_or(PageCursor {
                    created_at: DateTime::<Utc>::from_timestamp(253_402_300_799, 0)
                        .expect("9999-12-31 is a time"),
                    id: Uuid::max(),
                });
                // One statement per filter combination, so each gets a plan of its own (an
                // `$n IS NULL OR …` branch would keep a generic plan off the better index).
                let statement = match (filter.state, &filter.user_id) {
                    (None, None) => list_files!(""),
                    (Some(_), None) => list_files!("AND state = $5"),
                    (None, Some(_)) => list_files!(
                        "AND webhook_id IN (SELECT id FROM webhooks WHERE client_id = $1 AND user_id = $5)"
                    ),
                    (Some(_), Some(_)) => list_files!(
                        "AND state = $5 \
                         AND webhook_id IN (SELECT id FROM webhooks WHERE client_id = $1 AND user_id = $6)"
                    ),
                };
                let mut query = sqlx::query_as(statement)
                    .bind(client_id)
                    .bind(time(cursor.created_at))
                    .bind(id(cursor.id))
                    .bind(limit);
                if let Some(state) = filter.state {
                    query = query.bind(state.as_str());
                }
                if let Some(user_id) = &filter.user_id {
                    query = query.bind(user_id);
                }
                let rows: Vec<FileRow> = query.fetch_all(&self.pool).await?;
                let found = files(rows)?;
                let mut webhook_ids: Vec<Uuid> = found.iter().filter_map(|f| f.webhook_id).collect();
                webhook_ids.sort();
                webhook_ids.dedup();
                let webhooks: Vec<WebhookRow> = if webhook_ids.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_as(WEBHOOKS_OF)
                        .bind(id_list(&webhook_ids))
                        .bind(client_id)
                        .fetch_all(&self.pool)
                        .await?
                };
                let webhooks = webhooks
                    .into_iter()
                    .map(WebhookRecord::try_from)
                    .collect::<Result<Vec<_>>>()?;
                Ok(found
                    .into_iter()
                    .map(|file| {
                        let webhook = webhooks.iter().find(|w| Some(w.id) == file.webhook_id).cloned();
                        (file, webhook)
                    })
                    .collect())
            }

            async fn record_download(
                &self,
                client_id: &str,
                file_id: Uuid,
                key_name: &str,
                request_id: &str,
            ) -> Result<bool> {
                let now = Utc::now();
                // Read again inside the transaction, only while promoted, and held until the event
                // is written: a file erased since the caller looked is not handed out, and an
                // erasure waits for this event and then redacts it.
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let row: Option<FileRow> = sqlx::query_as(PROMOTED_FILE)
                    .bind(id(file_id))
                    .bind(client_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let file = FileRecord::try_from(row)?;
                let webhook = match file.webhook_id {
                    Some(webhook_id) => webhook_in(&mut tx, webhook_id).await?,
                    None => None,
                };
                let event = crate::events::NewEvent::downloaded(
                    &file,
                    webhook.as_ref(),
                    key_name,
                    request_id,
                    now,
                );
                write_event(&mut tx, &event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn erase_file(
                &self,
                client_id: &str,
                file_id: Uuid,
                reason: ErasureReason,
            ) -> Result<Erase> {
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let erased = erase_in(&mut tx, client_id, file_id, reason, Utc::now()).await?;
                tx.commit().await?;
                if matches!(erased, Erase::Erased(_)) {
                    self.after_erasure().await;
                }
                Ok(erased)
            }

            async fn erase_user(&self, client_id: &str, user_id: &str) -> Result<UserErasure> {
                let now = Utc::now();
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let ids: Vec<(Id,)> = sqlx::query_as(
                    "SELECT id FROM files WHERE client_id = $1 AND webhook_id IN \
                         (SELECT id FROM webhooks WHERE client_id = $1 AND user_id = $2) \
                     ORDER BY created_at, id",
                )
                .bind(client_id)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut done = UserErasure::default();
                for (file_id,) in ids {
                    let file_id = uuid(file_id)?;
                    if let Erase::Erased(file) =
                        erase_in(&mut tx, client_id, file_id, ErasureReason::Request, now).await?
                    {
                        done.erased.push(file);
                    }
                    done.files.push(file_id);
                }
                let webhooks: Vec<(Id, String)> = sqlx::query_as(
                    "SELECT id, payload FROM webhooks WHERE client_id = $1 AND user_id = $2",
                )
                .bind(client_id)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                for (webhook_id, payload) in webhooks {
                    scrub_webhook(&mut tx, webhook_id, &payload, now).await?;
                }
                tx.commit().await?;
                self.after_erasure().await;
                Ok(done)
            }

            async fn erase_retained(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<ErasedFile>> {
                let now = Utc::now();
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let due: Vec<(Id, String, Option<Id>)> = sqlx::query_as(RETAINED_DUE)
                    .bind(time(before))
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut erased = Vec::with_capacity(due.len());
                let mut webhooks = Vec::new();
                for (file_id, client_id, webhook_id) in due {
                    let file_id = uuid(file_id)?;
                    if let Erase::Erased(file) =
                        erase_in(&mut tx, &client_id, file_id, ErasureReason::Retention, now).await?
                    {
                        erased.push(file);
                    }
                    webhooks.extend(webhook_id);
                }
                // A webhook whose files are all erased has no reason to keep its personal data.
                webhooks.sort();
                webhooks.dedup();
                for webhook_id in webhooks {
                    let spent: Option<(String,)> = sqlx::query_as(
                        "SELECT payload FROM webhooks WHERE id = $1 AND NOT EXISTS \
                             (SELECT 1 FROM files WHERE webhook_id = $1 AND state <> 'erased')",
                    )
                    .bind(&webhook_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((payload,)) = spent {
                        scrub_webhook(&mut tx, webhook_id, &payload, now).await?;
                    }
                }
                tx.commit().await?;
                if !erased.is_empty() {
                    self.after_erasure().await;
                }
                Ok(erased)
            }

            async fn unfinished_erasures(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<ErasedFile>> {
                let rows: Vec<(Id, String, Option<String>)> = sqlx::query_as(
                    "SELECT id, staging_key, multipart_upload_id FROM files \
                     WHERE state = 'erased' AND objects_deleted_at IS NULL AND erased_at < $1 \
                     ORDER BY erased_at LIMIT $2",
                )
                .bind(time(before))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(file_id, staging_key, multipart_upload_id)| {
                        Ok(ErasedFile {
                            id: uuid(file_id)?,
                            staging_key,
                            multipart_upload_id,
                            was: None,
                        })
                    })
                    .collect()
            }

            async fn objects_erased(&self, ids: &[Uuid]) -> Result<()> {
                sqlx::query(OBJECTS_ERASED)
                    .bind(id_list(ids))
                    .bind(time(Utc::now()))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl super::WebhookRepo for $Repo {
            async fn bind_files(
                &self,
                webhook: &NewWebhook,
                slots: &[(Slot, Uuid)],
            ) -> Result<BindAttempt> {
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                // The clock is read once the write lock is held: the same clock as the
                // sweeper's claim (`expire_due`), so the two can never both take a file.
                let now = Utc::now();
                let inserted = sqlx::query(
                    "INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, \
                                           idempotency_key, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing', $8, $8)",
                )
                .bind(id(webhook.id))
                .bind(&webhook.client_id)
                .bind(webhook.kind.as_str())
                .bind(&webhook.user_id)
                .bind(&webhook.payload)
                .bind(&webhook.payload_hash)
                .bind(&webhook.idempotency_key)
                .bind(time(webhook.created_at))
                .execute(&mut *tx)
                .await;
                match inserted.map_err(RepoError::from) {
                    Ok(_) => {}
                    Err(RepoError::Conflict(_)) => return Ok(BindAttempt::KeyTaken),
                    Err(e) => return Err(e),
                }
                let mut bound = Vec::with_capacity(slots.len());
                let mut refused = Vec::new();
                for &(slot, file_id) in slots {
                    let row: Option<FileRow> = sqlx::query_as(concat!(
                        "UPDATE files SET state = 'bound', webhook_id = $3, slot = $4, \
                                bound_at = $5, state_changed_at = $5 \
                         WHERE id = $1 AND client_id = $2 AND state = 'staged' AND expires_at > $5 \
                         RETURNING ",
                        file_columns!()
                    ))
                    .bind(id(file_id))
                    .bind(&webhook.client_id)
                    .bind(id(webhook.id))
                    .bind(slot.as_str())
                    .bind(time(now))
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(row) = row {
                        bound.push(FileRecord::try_from(row)?);
                        continue;
                    }
                    let current: Option<(String, Option<Time>, Option<Id>)> = sqlx::query_as(
                        "SELECT state, expires_at, webhook_id FROM files \
                         WHERE id = $1 AND client_id = $2",
                    )
                    .bind(id(file_id))
                    .bind(&webhook.client_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let current = current
                        .map(|(state, expires_at, webhook_id)| {
                            Ok::<_, RepoError>(SlotRow {
                                state: parse_named(&state)?,
                                expires_at: expires_at.map(utc).transpose()?,
                                webhook_id: webhook_id.map(uuid).transpose()?,
                            })
                        })
                        .transpose()?;
                    refused.push((slot, current));
                }
                if refused.is_empty() {
                    crate::fault::pause("bind.before_commit").await;
                    tx.commit().await?;
                    Ok(BindAttempt::Bound(bound))
                } else {
                    tx.rollback().await?;
                    Ok(BindAttempt::Refused { at: now, slots: refused })
                }
            }

            async fn insert_rejected_webhook(&self, webhook: &NewWebhook, result: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, \
                                           idempotency_key, status, result, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, 'rejected', $7, $8, $8)",
                )
                .bind(id(webhook.id))
                .bind(&webhook.client_id)
                .bind(webhook.kind.as_str())
                .bind(&webhook.user_id)
                .bind(&webhook.payload)
                .bind(&webhook.payload_hash)
                .bind(result)
                .bind(time(webhook.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn webhook_by_key(&self, client_id: &str, key: &str) -> Result<Option<WebhookRecord>> {
                let row: Option<WebhookRow> = sqlx::query_as(concat!(
                    "SELECT ", webhook_columns!(),
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
                    "SELECT ", file_columns!(), " FROM files WHERE webhook_id = $1"
                ))
                .bind(id(webhook_id))
                .fetch_all(&self.pool)
                .await?;
                let mut files = files(rows)?;
                files.sort_by_key(|f| f.slot);
                Ok(files)
            }

            async fn get_webhook(&self, client_id: &str, webhook_id: Uuid) -> Result<Option<WebhookRecord>> {
                let row: Option<WebhookRow> = sqlx::query_as(concat!(
                    "SELECT ", webhook_columns!(), " FROM webhooks WHERE id = $1 AND client_id = $2"
                ))
                .bind(id(webhook_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(WebhookRecord::try_from).transpose()
            }

            async fn finish_webhook(
                &self,
                webhook: &WebhookRecord,
                result: &str,
                moved: &[FileRecord],
            ) -> Result<Vec<Uuid>> {
                let now = Utc::now();
                // One (relaxed) commit for the files, their events and the webhook together.
                let mut tx = self.relaxed.begin_with(BEGIN_WRITE).await?;
                let mut not_bound = Vec::new();
                for file in moved {
                    let Some(key) = file.promoted_key.as_deref() else { continue };
                    let file = file.promoted(key, now);
                    let event = crate::events::NewEvent::file(
                        EventType::FilePromoted, &file, Some(webhook), now);
                    if !promote_in(&mut tx, &file, &event).await? {
                        not_bound.push(file.id);
                    }
                }
                sqlx::query(
                    "UPDATE webhooks SET status = 'processed', result = $2, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(id(webhook.id))
                .bind(result)
                .bind(time(now))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(not_bound)
            }

            async fn mark_promoted(&self, file: &FileRecord, promoted_key: &str) -> Result<bool> {
                let now = Utc::now();
                let mut tx = self.relaxed.begin_with(BEGIN_WRITE).await?;
                let file = file.promoted(promoted_key, now);
                let event = file_event(&mut tx, EventType::FilePromoted, &file, now).await?;
                if !promote_in(&mut tx, &file, &event).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn bound_files(&self, limit: i64) -> Result<Vec<FileRecord>> {
                let rows: Vec<FileRow> = sqlx::query_as(concat!(
                    "SELECT ", file_columns!(),
                    " FROM files WHERE state = 'bound' ORDER BY bound_at LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                files(rows)
            }
        }

        #[async_trait]
        impl super::JobRepo for $Repo {
            async fn claim_jobs(
                &self,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Job>> {
                let rows: Vec<(Id, String, Id, i32, Option<String>)> = sqlx::query_as(CLAIM_JOBS)
                    .bind(time(now))
                    .bind(time(until))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(job_id, kind, file_id, attempts, last_error)| {
                        let kind = parse_named(&kind)?;
                        Ok(Job { id: uuid(job_id)?, kind, file_id: uuid(file_id)?, attempts, last_error })
                    })
                    .collect()
            }

            async fn retry_job(&self, job_id: Uuid, at: DateTime<Utc>, error: &str) -> Result<()> {
                sqlx::query("UPDATE jobs SET run_at = $2, leased_until = NULL, last_error = $3 WHERE id = $1")
                    .bind(id(job_id))
                    .bind(time(at))
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn finish_text_job(
                &self,
                job_id: Uuid,
                file: &FileRecord,
                outcome: &TextOutcome,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let (text, failure, event_type) = match outcome {
                    TextOutcome::Extracted(text) => (Some(text.as_str()), None, EventType::FileTextExtracted),
                    TextOutcome::Failed(failure) => (None, Some(failure), EventType::FileTextFailed),
                };
                let state = crate::domain::TextState {
                    status: if text.is_some() { TextStatus::Extracted } else { TextStatus::Failed },
                    chars: text.map(crate::text::char_count),
                    failure: failure.cloned(),
                };
                // The file as the outcome leaves it, for the event written with it.
                let recorded = FileRecord { text: Some(state.clone()), ..file.clone() };
                let event =
                    file_event(&mut *self.relaxed.acquire().await?, event_type, &recorded, at).await?;
                // Both forms answer one row holding `true` when the file took the outcome.
                let record = |sql| {
                    sqlx::query_as::<_, (bool,)>(sql)
                        .bind(id(file.id))
                        .bind(state.status.as_str())
                        .bind(state.chars)
                        .bind(failure.map(|f| f.message.as_str()))
                        .bind(failure.map(|f| f.reason.as_str()))
                };
                if let Some(statement) = FINISH_TEXT_JOB {
                    let (taken,) = record(statement)
                        .bind(text)
                        .bind(id(event.id))
                        .bind(&event.client_id)
                        .bind(event_type.as_str())
                        .bind(&event.body)
                        .bind(time(at))
                        .bind(event_type.subscription_pattern())
                        .bind(id(job_id))
                        .fetch_one(&self.relaxed)
                        .await?;
                    return Ok(taken);
                }
                let mut tx = self.relaxed.begin_with(BEGIN_WRITE).await?;
                let row = record(
                    "UPDATE files SET text_status = $2, text_chars = $3, text_error = $4, \
                            text_reason = $5 \
                     WHERE id = $1 AND state = 'promoted' AND text_status = 'pending' \
                     RETURNING TRUE",
                )
                .fetch_optional(&mut *tx)
                .await?;
                let taken = matches!(row, Some((true,)));
                if taken {
                    if let Some(text) = text {
                        sqlx::query(
                            "INSERT INTO file_texts (file_id, body) VALUES ($1, $2) \
                             ON CONFLICT (file_id) DO UPDATE SET body = excluded.body",
                        )
                        .bind(id(file.id))
                        .bind(text)
                        .execute(&mut *tx)
                        .await?;
                    }
                    write_event(&mut tx, &event).await?;
                }
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(id(job_id))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(taken)
            }

            async fn drop_job(&self, job_id: Uuid) -> Result<()> {
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(id(job_id))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn promoted_file(&self, file_id: Uuid) -> Result<Option<FileRecord>> {
                let row: Option<FileRow> = sqlx::query_as(concat!(
                    "SELECT ", file_columns!(), " FROM files WHERE id = $1 AND state = 'promoted'"
                ))
                .bind(id(file_id))
                .fetch_optional(&self.pool)
                .await?;
                row.map(FileRecord::try_from).transpose()
            }

            async fn file_text(&self, client_id: &str, file_id: Uuid) -> Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT t.body FROM file_texts t JOIN files f ON f.id = t.file_id \
                     WHERE f.id = $1 AND f.client_id = $2 AND f.state = 'promoted'",
                )
                .bind(id(file_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(body,)| body))
            }
        }

        #[async_trait]
        impl super::SweepRepo for $Repo {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn count_by_state(&self) -> Result<Vec<StateCount>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*), CAST(COALESCE(SUM(file_size), 0) AS BIGINT) \
                     FROM files GROUP BY state",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(state, files, bytes)| {
                        Ok(StateCount { state: parse_named(&state)?, files, bytes })
                    })
                    .collect()
            }

            async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ClaimedFile>> {
                // A synchronous commit: the tombstone must outlive a crash, since the object
                // goes next.
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let rows: Vec<FileRow> = sqlx::query_as(EXPIRE_DUE)
                    .bind(time(now))
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut claimed = Vec::with_capacity(rows.len());
                for row in rows {
                    let file = FileRecord::try_from(row)?;
                    write_file_event(&mut tx, EventType::FileExpired, &file, now).await?;
                    claimed.push(ClaimedFile { id: file.id, staging_key: file.staging_key });
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn stale_receiving(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<FileRecord>> {
                let rows: Vec<FileRow> = sqlx::query_as(concat!(
                    "SELECT ", file_columns!(),
                    " FROM files WHERE state = 'receiving' AND active_at < $1 \
                     ORDER BY active_at LIMIT $2"
                ))
                .bind(time(before))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                files(rows)
            }

            async fn file_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, FileState)>> {
                let rows: Vec<(Id, String)> = sqlx::query_as(FILE_STATES)
                    .bind(id_list(ids))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(file_id, state)| Ok((uuid(file_id)?, parse_named(&state)?)))
                    .collect()
            }

            async fn purge_tombstones(
                &self,
                before: DateTime<Utc>,
                erasures_before: DateTime<Utc>,
            ) -> Result<u64> {
                let files = sqlx::query(
                    "DELETE FROM files WHERE (state IN ('expired', 'discarded') \
                         OR (state = 'erased' AND objects_deleted_at IS NOT NULL)) \
                     AND state_changed_at < $1",
                )
                .bind(time(before))
                .execute(&self.pool)
                .await?;
                sqlx::query("DELETE FROM webhooks WHERE status = 'rejected' AND created_at < $1")
                    .bind(time(before))
                    .execute(&self.pool)
                    .await?;
                // An event goes with its deliveries and their attempts (ON DELETE CASCADE).
                sqlx::query(
                    "DELETE FROM events WHERE created_at < $1 \
                       AND (event_type <> 'file.erased' OR created_at < $2)",
                )
                    .bind(time(before))
                    .bind(time(erasures_before))
                    .execute(&self.pool)
                    .await?;
                sqlx::query("DELETE FROM sweep_runs WHERE started_at < $1")
                    .bind(time(before))
                    .execute(&self.pool)
                    .await?;
                Ok(files.rows_affected())
            }

            async fn record_sweep(&self, run: &SweepRun) -> Result<()> {
                sqlx::query(concat!(
                    "INSERT INTO sweep_runs (", sweep_columns!(), ") \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(id(run.id))
                .bind(time(run.started_at))
                .bind(time(run.finished_at))
                .bind(run.expired)
                .bind(run.objects_deleted)
                .bind(run.receiving_aborted)
                .bind(run.orphans_deleted)
                .bind(run.tombstones_purged)
                .bind(run.promoted)
                .bind(run.errors)
                .bind(&run.last_error)
                .bind(run.erased)
                .bind(run.erasures_finished)
                .execute(&self.relaxed)
                .await?;
                Ok(())
            }

            async fn last_sweep(&self) -> Result<Option<SweepRun>> {
                let row: Option<SweepRow> = sqlx::query_as(concat!(
                    "SELECT ", sweep_columns!(),
                    " FROM sweep_runs ORDER BY started_at DESC LIMIT 1"
                ))
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok(SweepRun {
                        id: uuid(r.id)?,
                        started_at: utc(r.started_at)?,
                        finished_at: utc(r.finished_at)?,
                        expired: r.expired,
                        objects_deleted: r.objects_deleted,
                        receiving_aborted: r.receiving_aborted,
                        orphans_deleted: r.orphans_deleted,
                        tombstones_purged: r.tombstones_purged,
                        promoted: r.promoted,
                        errors: r.errors,
                        last_error: r.last_error,
                        erased: r.erased,
                        erasures_finished: r.erasures_finished,
                        ..SweepRun::default()
                    })
                })
                .transpose()
            }

            async fn storage_stats(&self) -> Result<StorageStats> {
                let by_state = self.count_by_state().await?;
                let now = Utc::now();
                let (expiring_1h, expiring_24h, overdue): (i64, i64, i64) = sqlx::query_as(
                    "SELECT \
                         COUNT(*) FILTER (WHERE expires_at > $1 AND expires_at <= $2), \
                         COUNT(*) FILTER (WHERE expires_at > $1 AND expires_at <= $3), \
                         COUNT(*) FILTER (WHERE expires_at <= $1) \
                     FROM files WHERE state = 'staged'",
                )
                .bind(time(now))
                .bind(time(now + chrono::TimeDelta::hours(1)))
                .bind(time(now + chrono::TimeDelta::hours(24)))
                .fetch_one(&self.pool)
                .await?;
                let (deliveries_pending, oldest): (i64, Option<Time>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(e.created_at) FROM deliveries d \
                     JOIN events e ON e.id = d.event_id WHERE d.status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(StorageStats {
                    by_state,
                    expiring_1h,
                    expiring_24h,
                    overdue,
                    deliveries_pending,
                    oldest_pending_event_at: oldest.map(utc).transpose()?,
                })
            }
        }
    };
}
