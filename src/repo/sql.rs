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

        impl_keys_repo!($Repo);

        impl_outbox_repo!($Repo);

        impl_files_repo!($Repo);

        impl_webhooks_repo!($Repo);

        impl_jobs_repo!($Repo);

        impl_sweep_repo!($Repo);
    };
}
