//! The `FileRepo` of both backends: files from their first byte to their tombstone, direct uploads, erasure.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{Arg, DbId, DbTime, Dialect};
use super::sql::{FileRow, SqlRepo, WebhookRow, files};
use super::{
    Discard, Erase, ErasedFile, FileFilter, FileRepo, NewFile, PageCursor, RepoError, Result,
    UserErasure, parse_named,
};
use crate::domain::{ErasureReason, FileRecord, FileState, StagedFacts, WebhookRecord};
use crate::event_model::{EventRules, EventType};

#[async_trait]
impl<D: Dialect> FileRepo for SqlRepo<D> {
    async fn insert_receiving(&self, file: &NewFile) -> Result<()> {
        D::query(
            "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                                state_changed_at, active_at) \
             VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $5)",
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

    async fn touch_receiving(&self, file_id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        let done =
            D::query("UPDATE files SET active_at = $2 WHERE id = $1 AND state = 'receiving'")
                .bind(file_id)
                .bind(at)
                .execute(&self.relaxed)
                .await?;
        Ok(done == 1)
    }

    async fn abort_receiving(&self, file_id: Uuid, before: DateTime<Utc>) -> Result<bool> {
        let done =
            D::query("DELETE FROM files WHERE id = $1 AND state = 'receiving' AND active_at < $2")
                .bind(file_id)
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done == 1)
    }

    async fn closing_direct_windows(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(Uuid, String, FileState)>> {
        let rows: Vec<(DbId, String, String)> = D::query(
            "SELECT f.id, f.staging_key, f.state FROM direct_uploads d \
             JOIN files f ON f.id = d.file_id \
             WHERE NOT d.window_closed AND d.window_ends_at < $1 \
             ORDER BY d.window_ends_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(file_id, key, state)| Ok((file_id.0, key, parse_named(&state)?)))
            .collect()
    }

    async fn close_direct_window(&self, file_id: Uuid) -> Result<()> {
        D::query("UPDATE direct_uploads SET window_closed = TRUE WHERE file_id = $1")
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_multipart_upload(&self, file_id: Uuid, upload_id: &str) -> Result<()> {
        D::query("UPDATE files SET multipart_upload_id = $2 WHERE id = $1")
            .bind(file_id)
            .bind(upload_id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    async fn mark_staged(
        &self,
        file_id: Uuid,
        facts: &StagedFacts,
        event: &crate::event_model::NewEvent,
    ) -> Result<()> {
        let changed = D::mark_staged(&self.pool, file_id, facts, event).await?;
        if !changed {
            return Err(RepoError::Conflict(format!(
                "file {file_id} is no longer receiving"
            )));
        }
        Ok(())
    }

    async fn delete_receiving(&self, file_id: Uuid) -> Result<()> {
        D::query("DELETE FROM files WHERE id = $1 AND state = 'receiving'")
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_direct(
        &self,
        file: &NewFile,
        direct: &crate::domain::DirectUpload,
    ) -> Result<()> {
        D::insert_direct(&self.relaxed, file, direct).await
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
            window_ends_at: Option<DbTime>,
            upload_token: Option<DbId>,
        }
        let row: Option<DirectRow> = D::query(concat!(
            "SELECT ", file_columns!(), ", \
                    (SELECT file_size FROM direct_uploads WHERE file_id = $1) AS declared_size, \
                    (SELECT sha256 FROM direct_uploads WHERE file_id = $1) AS declared_sha256, \
                    (SELECT refusal FROM direct_uploads WHERE file_id = $1) AS refusal, \
                    (SELECT window_ends_at FROM direct_uploads WHERE file_id = $1) AS window_ends_at, \
                    (SELECT upload_token FROM direct_uploads WHERE file_id = $1) AS upload_token \
             FROM files WHERE id = $1 AND client_id = $2"
        ))
        .bind(file_id)
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
            window_ends_at: window_ends_at.0,
            upload_token: row.upload_token.map(|id| id.0),
        };
        Ok(Some((FileRecord::try_from(row.file)?, direct)))
    }

    async fn refuse_direct(&self, file_id: Uuid, refusal: &str) -> Result<bool> {
        let done = D::query(
            "UPDATE direct_uploads SET refusal = $2 WHERE file_id = $1 AND refusal IS NULL \
               AND EXISTS (SELECT 1 FROM files WHERE id = $1 AND state = 'receiving')",
        )
        .bind(file_id)
        .bind(refusal)
        .execute(&self.pool)
        .await?;
        Ok(done == 1)
    }

    async fn file_client(&self, file_id: Uuid) -> Result<Option<String>> {
        let row: Option<(String,)> = D::query("SELECT client_id FROM files WHERE id = $1")
            .bind(file_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(client_id,)| client_id))
    }

    async fn promoted_files(
        &self,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = D::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'promoted' AND ($1 IS NULL OR promoted_at >= $1) \
               AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .bind(since)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FileRecord::try_from).collect()
    }

    async fn record_scan(&self, file_id: Uuid, scan: &crate::domain::ScanRecord) -> Result<bool> {
        let done = D::query(
            "UPDATE files SET scan_status = $2, scan_engine = $3, scan_signatures = $4, \
                    scan_found = $5 \
             WHERE id = $1 AND state = 'promoted' \
               AND (scan_status IS NULL OR scan_status <> 'infected')",
        )
        .bind(file_id)
        .bind(scan.status.as_str())
        .bind(scan.engine.as_deref())
        .bind(scan.signatures.as_deref())
        .bind(scan.found.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(done == 1)
    }

    async fn quarantine(
        &self,
        file_id: Uuid,
        scan: &crate::domain::ScanRecord,
        rules: &dyn EventRules,
    ) -> Result<Option<FileRecord>> {
        let now = Utc::now();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row: Option<FileRow> = D::query(concat!(
            "UPDATE files SET scan_status = 'infected', scan_engine = $2, scan_signatures = $3, \
                    scan_found = $4 \
             WHERE id = $1 AND state = 'promoted' \
               AND (scan_status IS NULL OR scan_status <> 'infected') RETURNING ",
            file_columns!()
        ))
        .bind(file_id)
        .bind(scan.engine.as_deref())
        .bind(scan.signatures.as_deref())
        .bind(scan.found.as_deref())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let file = FileRecord::try_from(row)?;
        let webhook = match file.webhook_id {
            Some(webhook_id) => Self::webhook_in(&mut tx, webhook_id).await?,
            None => None,
        };
        let event = rules.file(EventType::FileInfected, &file, webhook.as_ref(), now);
        D::write_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Some(file))
    }

    async fn get_file(&self, client_id: &str, file_id: Uuid) -> Result<Option<FileRecord>> {
        let row: Option<FileRow> = D::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND client_id = $2 AND ",
            visible_file!()
        ))
        .bind(file_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(FileRecord::try_from).transpose()
    }

    async fn discard(
        &self,
        client_id: &str,
        file_id: Uuid,
        rules: &dyn EventRules,
    ) -> Result<Discard> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let row: Option<FileRow> = D::query(concat!(
            "UPDATE files SET state = 'discarded', state_changed_at = $3 \
             WHERE id = $1 AND client_id = $2 AND state = 'staged' RETURNING ",
            file_columns!()
        ))
        .bind(file_id)
        .bind(client_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let file = FileRecord::try_from(row)?;
            Self::write_file_event(&mut tx, rules, EventType::FileDiscarded, &file, now).await?;
            tx.commit().await?;
            return Ok(Discard::Discarded(Box::new(file)));
        }
        tx.rollback().await?;
        let state: Option<(String,)> =
            D::query("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                .bind(file_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        state
            .map(|(state,)| parse_named(&state))
            .transpose()
            .map(Discard::after_refusal)
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
        let mut query = D::query(statement)
            .bind(client_id)
            .bind(cursor.created_at)
            .bind(cursor.id)
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
            D::query(D::WEBHOOKS_OF)
                .bind(Arg::ids(&webhook_ids))
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
                let webhook = webhooks
                    .iter()
                    .find(|w| Some(w.id) == file.webhook_id)
                    .cloned();
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
        rules: &dyn EventRules,
    ) -> Result<bool> {
        let now = Utc::now();
        // Read again inside the transaction, only while promoted, and held until the event
        // is written: a file erased since the caller looked is not handed out, and an
        // erasure waits for this event and then redacts it.
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row: Option<FileRow> = D::query(D::PROMOTED_FILE)
            .bind(file_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let file = FileRecord::try_from(row)?;
        let webhook = match file.webhook_id {
            Some(webhook_id) => Self::webhook_in(&mut tx, webhook_id).await?,
            None => None,
        };
        let event = rules.downloaded(&file, webhook.as_ref(), key_name, request_id, now);
        D::write_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn erase_file(
        &self,
        client_id: &str,
        file_id: Uuid,
        reason: ErasureReason,
        rules: &dyn EventRules,
    ) -> Result<Erase> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let erased = Self::erase_in(&mut tx, rules, client_id, file_id, reason, Utc::now()).await?;
        tx.commit().await?;
        if matches!(erased, Erase::Erased(_)) {
            self.after_erasure().await;
        }
        Ok(erased)
    }

    async fn erase_user(
        &self,
        client_id: &str,
        user_id: &str,
        rules: &dyn EventRules,
    ) -> Result<UserErasure> {
        let now = Utc::now();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let ids: Vec<(DbId,)> = D::query(
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
            let file_id = file_id.0;
            if let Erase::Erased(file) = Self::erase_in(
                &mut tx,
                rules,
                client_id,
                file_id,
                ErasureReason::Request,
                now,
            )
            .await?
            {
                done.erased.push(file);
            }
            done.files.push(file_id);
        }
        let webhooks: Vec<(DbId, String)> =
            D::query("SELECT id, payload FROM webhooks WHERE client_id = $1 AND user_id = $2")
                .bind(client_id)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        for (webhook_id, payload) in webhooks {
            Self::scrub_webhook(&mut tx, webhook_id, &payload, now).await?;
        }
        tx.commit().await?;
        self.after_erasure().await;
        Ok(done)
    }

    async fn erase_retained(
        &self,
        before: DateTime<Utc>,
        limit: i64,
        rules: &dyn EventRules,
    ) -> Result<Vec<ErasedFile>> {
        let now = Utc::now();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let due: Vec<(DbId, String, Option<DbId>)> = D::query(D::RETAINED_DUE)
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut erased = Vec::with_capacity(due.len());
        let mut webhooks = Vec::new();
        for (file_id, client_id, webhook_id) in due {
            let file_id = file_id.0;
            if let Erase::Erased(file) = Self::erase_in(
                &mut tx,
                rules,
                &client_id,
                file_id,
                ErasureReason::Retention,
                now,
            )
            .await?
            {
                erased.push(file);
            }
            webhooks.extend(webhook_id);
        }
        // A webhook whose files are all erased has no reason to keep its personal data.
        webhooks.sort();
        webhooks.dedup();
        for webhook_id in webhooks {
            let spent: Option<(String,)> = D::query(
                "SELECT payload FROM webhooks WHERE id = $1 AND NOT EXISTS \
                     (SELECT 1 FROM files WHERE webhook_id = $1 AND state <> 'erased')",
            )
            .bind(webhook_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((payload,)) = spent {
                Self::scrub_webhook(&mut tx, webhook_id, &payload, now).await?;
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
        let rows: Vec<(DbId, String, Option<String>)> = D::query(
            "SELECT id, staging_key, multipart_upload_id FROM files \
             WHERE state = 'erased' AND objects_deleted_at IS NULL AND erased_at < $1 \
             ORDER BY erased_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(file_id, staging_key, multipart_upload_id)| {
                Ok(ErasedFile {
                    id: file_id.0,
                    staging_key,
                    multipart_upload_id,
                    was: None,
                })
            })
            .collect()
    }

    async fn objects_erased(&self, ids: &[Uuid]) -> Result<()> {
        // Relaxed: a mark lost in a crash leaves the tombstone to the sweeper, which deletes
        // its objects again (they are gone: nothing to do) and marks it.
        D::query(D::OBJECTS_ERASED)
            .bind(Arg::ids(ids))
            .bind(Utc::now())
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }
}
