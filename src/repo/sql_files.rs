//! The `FileRepo` of both backends: files from their first byte to their tombstone, direct uploads, erasure. A macro for now, like `impl_repo!` in `sql.rs`,
//! which invokes it in each backend's module and supplies what it names (id and time types,
//! conversions, the dialect statements, the helpers of `sql.rs`).

macro_rules! impl_files_repo {
    ($Repo:ident) => {
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

            async fn mark_staged(
                &self,
                file_id: Uuid,
                facts: &StagedFacts,
                event: &crate::events::NewEvent,
            ) -> Result<()> {
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
    };
}
