//! The `WebhookRepo` of both backends: webhooks, their bindings and results, promotion.

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::dialect::{DbId, DbTime, Dialect};
use super::sql::{FileRow, SqlRepo, WebhookRow, files};
use super::{BindAttempt, NewWebhook, RepoError, Result, SlotRow, WebhookRepo, parse_named};
use crate::domain::{FileRecord, Slot, WebhookRecord};
use crate::event_model::{EventRules, EventType};

#[async_trait]
impl<D: Dialect> WebhookRepo for SqlRepo<D> {
    async fn bind_files(
        &self,
        webhook: &NewWebhook,
        slots: &[(Slot, Uuid)],
    ) -> Result<BindAttempt> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // The clock is read once the write lock is held: the same clock as the
        // sweeper's claim (`expire_due`), so the two can never both take a file.
        let now = Utc::now();
        let inserted = D::query(
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
        match inserted {
            Ok(_) => {}
            Err(RepoError::Conflict(_)) => return Ok(BindAttempt::KeyTaken),
            Err(e) => return Err(e),
        }
        let mut bound = Vec::with_capacity(slots.len());
        let mut refused = Vec::new();
        for &(slot, file_id) in slots {
            let row: Option<FileRow> = D::query(concat!(
                "UPDATE files SET state = 'bound', webhook_id = $3, slot = $4, \
                        bound_at = $5, state_changed_at = $5 \
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
            let current: Option<(String, Option<DbTime>, Option<DbId>)> = D::query(
                "SELECT state, expires_at, webhook_id FROM files \
                 WHERE id = $1 AND client_id = $2",
            )
            .bind(file_id)
            .bind(&webhook.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            let current = current
                .map(|(state, expires_at, webhook_id)| {
                    Ok::<_, RepoError>(SlotRow {
                        state: parse_named(&state)?,
                        expires_at: expires_at.map(|t| t.0),
                        webhook_id: webhook_id.map(|id| id.0),
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
            Ok(BindAttempt::Refused {
                at: now,
                slots: refused,
            })
        }
    }

    async fn insert_rejected_webhook(&self, webhook: &NewWebhook, result: &str) -> Result<()> {
        D::query(
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
        let row: Option<WebhookRow> = D::query(concat!(
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
        let rows: Vec<FileRow> = D::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE webhook_id = $1"
        ))
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        let mut files = files(rows)?;
        files.sort_by_key(|f| f.slot);
        Ok(files)
    }

    async fn get_webhook(
        &self,
        client_id: &str,
        webhook_id: Uuid,
    ) -> Result<Option<WebhookRecord>> {
        let row: Option<WebhookRow> = D::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1 AND client_id = $2"
        ))
        .bind(webhook_id)
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
        rules: &dyn EventRules,
    ) -> Result<Vec<Uuid>> {
        let now = Utc::now();
        // One (relaxed) commit for the files, their events and the webhook together.
        let mut tx = self.relaxed.begin_with(D::BEGIN_WRITE).await?;
        let mut not_bound = Vec::new();
        for file in moved {
            let Some(key) = file.promoted_key.as_deref() else {
                continue;
            };
            let file = file.promoted(key, now);
            let event = rules.file(EventType::FilePromoted, &file, Some(webhook), now);
            if !D::promote(&mut tx, file.id, key, &event).await? {
                not_bound.push(file.id);
            }
        }
        D::query(
            "UPDATE webhooks SET status = 'processed', result = $2, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(webhook.id)
        .bind(result)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(not_bound)
    }

    async fn mark_promoted(
        &self,
        file: &FileRecord,
        promoted_key: &str,
        rules: &dyn EventRules,
    ) -> Result<bool> {
        let now = Utc::now();
        let mut tx = self.relaxed.begin_with(D::BEGIN_WRITE).await?;
        let file = file.promoted(promoted_key, now);
        let event = Self::file_event(&mut tx, rules, EventType::FilePromoted, &file, now).await?;
        if !D::promote(&mut tx, file.id, promoted_key, &event).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn bound_files(&self, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = D::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'bound' ORDER BY bound_at LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        files(rows)
    }
}
