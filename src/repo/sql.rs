//! The one implementation of [`Repo`](super::Repo), shared by both backends.
//!
//! The statements are written once, with `$N` placeholders (PostgreSQL's, which SQLite reads
//! too). A backend module supplies only what differs, then invokes `impl_repo!`:
//! - the column types `Id` and `Time` (`Uuid`/`DateTime<Utc>` on PostgreSQL, hyphenated TEXT
//!   and INTEGER microseconds on SQLite) with `id`, `uuid`, `time` and `utc` to convert;
//! - `IdList` and `id_list` (a list of ids as one bound value) and the statements that are
//!   dialect-specific: `FILE_STATES`, `EXPIRE_DUE`, `BEGIN_WRITE`;
//! - a struct with a `pool` and a `relaxed` pool (writes the sweeper repairs if lost).
//!
//! Every rule (what a bind refusal means, replays, expiry) lives in the domain, not here.

macro_rules! file_columns {
    () => {
        "id, client_id, state, file_name, content_type, file_size, sha256, staging_key, \
         multipart_upload_id, created_at, uploaded_at, expires_at, webhook_id, slot, \
         promoted_key, bound_at, promoted_at"
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
         orphans_deleted, tombstones_purged, promoted, errors, last_error"
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
        }

        fn files(rows: Vec<FileRow>) -> Result<Vec<FileRecord>> {
            rows.into_iter().map(FileRecord::try_from).collect()
        }

        #[async_trait]
        impl Repo for $Repo {
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
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1",
                )
                .bind(name)
                .bind(time(Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO client_grants (key_id, client_id, workspace, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = excluded.workspace",
                )
                .bind(id(key_id))
                .bind(client_id)
                .bind(workspace)
                .bind(time(Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
                let row: Option<(String, Vec<u8>, bool, Option<Time>, bool)> = sqlx::query_as(
                    "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, k.last_used_at, EXISTS \
                         (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = $2) \
                     FROM api_keys k WHERE k.id = $1",
                )
                .bind(id(key_id))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(key_name, secret_hash, revoked, last_used_at, client_allowed)| {
                    Ok(KeyGrant {
                        key_name,
                        secret_hash,
                        revoked,
                        last_used_at: last_used_at.map(utc).transpose()?,
                        client_allowed,
                    })
                })
                .transpose()
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
                let done = sqlx::query(
                    "UPDATE event_endpoints SET deleted_at = $3 \
                     WHERE id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR client_id = $2)",
                )
                .bind(id(endpoint_id))
                .bind(client_id)
                .bind(time(Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
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
                let done = sqlx::query(
                    "DELETE FROM client_grants WHERE client_id = $1 \
                     AND ($2 IS NULL OR key_id IN (SELECT id FROM api_keys WHERE name = $2))",
                )
                .bind(client_id)
                .bind(key_name)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

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

            async fn touch_receiving(&self, file_id: Uuid, at: DateTime<Utc>) -> Result<()> {
                sqlx::query("UPDATE files SET active_at = $2 WHERE id = $1 AND state = 'receiving'")
                    .bind(id(file_id))
                    .bind(time(at))
                    .execute(&self.relaxed)
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

            async fn mark_staged(&self, file_id: Uuid, facts: &StagedFacts) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'staged', content_type = $2, file_size = $3, \
                            sha256 = $4, uploaded_at = $5, expires_at = $6, state_changed_at = $5, \
                            multipart_upload_id = NULL \
                     WHERE id = $1 AND state = 'receiving'",
                )
                .bind(id(file_id))
                .bind(&facts.content_type)
                .bind(facts.file_size)
                .bind(&facts.sha256)
                .bind(time(facts.uploaded_at))
                .bind(time(facts.expires_at))
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(RepoError::Conflict(format!("file {file_id} is no longer receiving")))
                }
            }

            async fn delete_receiving(&self, file_id: Uuid) -> Result<()> {
                sqlx::query("DELETE FROM files WHERE id = $1 AND state = 'receiving'")
                    .bind(id(file_id))
                    .execute(&self.pool)
                    .await?;
                Ok(())
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
                let row: Option<FileRow> = sqlx::query_as(concat!(
                    "UPDATE files SET state = 'discarded', state_changed_at = $3 \
                     WHERE id = $1 AND client_id = $2 AND state = 'staged' RETURNING ",
                    file_columns!()
                ))
                .bind(id(file_id))
                .bind(client_id)
                .bind(time(Utc::now()))
                .fetch_optional(&self.pool)
                .await?;
                if let Some(row) = row {
                    return Ok(Discard::Discarded(Box::new(row.try_into()?)));
                }
                let state: Option<(String,)> =
                    sqlx::query_as("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                        .bind(id(file_id))
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await?;
                state.map(|(state,)| parse_named(&state)).transpose().map(Discard::after_refusal)
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
                webhook_id: Uuid,
                result: &str,
                promoted: &[(Uuid, String)],
            ) -> Result<()> {
                let now = time(Utc::now());
                // One (relaxed) commit for the files and the webhook together.
                let mut tx = self.relaxed.begin_with(BEGIN_WRITE).await?;
                for (file_id, key) in promoted {
                    sqlx::query(
                        "UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                                state_changed_at = $3 \
                         WHERE id = $1 AND state = 'bound'",
                    )
                    .bind(id(*file_id))
                    .bind(key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE webhooks SET status = 'processed', result = $2, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(id(webhook_id))
                .bind(result)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn mark_promoted(&self, file_id: Uuid, promoted_key: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                            state_changed_at = $3 \
                     WHERE id = $1 AND state = 'bound'",
                )
                .bind(id(file_id))
                .bind(promoted_key)
                .bind(time(Utc::now()))
                .execute(&self.relaxed)
                .await?;
                Ok(done.rows_affected() == 1)
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

            async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ClaimedFile>> {
                // A synchronous commit: the tombstone must outlive a crash, since the object
                // goes next.
                let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
                let rows: Vec<(Id, String)> = sqlx::query_as(EXPIRE_DUE)
                    .bind(time(now))
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.into_iter()
                    .map(|(file_id, staging_key)| Ok(ClaimedFile { id: uuid(file_id)?, staging_key }))
                    .collect()
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

            async fn purge_tombstones(&self, before: DateTime<Utc>) -> Result<u64> {
                let files = sqlx::query(
                    "DELETE FROM files WHERE state IN ('expired', 'discarded') \
                     AND state_changed_at < $1",
                )
                .bind(time(before))
                .execute(&self.pool)
                .await?;
                sqlx::query("DELETE FROM webhooks WHERE status = 'rejected' AND created_at < $1")
                    .bind(time(before))
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
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
                Ok(StorageStats { by_state, expiring_1h, expiring_24h, overdue })
            }
        }
    };
}
