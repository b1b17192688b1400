//! The `JobRepo` of both backends: background jobs and the text job.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{DbId, Dialect};
use super::sql::{FileWithWebhookRow, SqlRepo};
use super::{Job, JobRepo, Result, TextWrite, parse_named};
use crate::domain::{FileRecord, WebhookRecord};

#[async_trait]
impl<D: Dialect> JobRepo for SqlRepo<D> {
    async fn claim_jobs(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        // A lease on the relaxed pool: one lost in a PostgreSQL crash only lets the job be
        // leased again, as its running out would (docs/decisions.md).
        let rows: Vec<(DbId, String, DbId, i32, Option<String>)> = D::query(D::CLAIM_JOBS)
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(&self.relaxed)
            .await?;
        rows.into_iter()
            .map(|(job_id, kind, file_id, attempts, last_error)| {
                let kind = parse_named(&kind)?;
                Ok(Job {
                    id: job_id.0,
                    kind,
                    file_id: file_id.0,
                    attempts,
                    last_error,
                })
            })
            .collect()
    }

    async fn retry_job(&self, job_id: Uuid, at: DateTime<Utc>, error: &str) -> Result<()> {
        D::query("UPDATE jobs SET run_at = $2, leased_until = NULL, last_error = $3 WHERE id = $1")
            .bind(job_id)
            .bind(at)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_text_job(&self, write: TextWrite<'_>) -> Result<bool> {
        D::finish_text_job(&self.relaxed, write).await
    }

    async fn drop_job(&self, job_id: Uuid) -> Result<()> {
        D::query("DELETE FROM jobs WHERE id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn promoted_file(
        &self,
        file_id: Uuid,
    ) -> Result<Option<(FileRecord, Option<WebhookRecord>)>> {
        // The file and its webhook in one statement (one round trip per text job, not two).
        let row: Option<FileWithWebhookRow> = D::query(concat!(
            "SELECT f.*, ",
            joined_webhook_columns!(),
            " FROM (SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND state = 'promoted') f \
             LEFT JOIN webhooks w ON w.id = f.webhook_id"
        ))
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(FileWithWebhookRow::records).transpose()
    }

    async fn file_text(&self, client_id: &str, file_id: Uuid) -> Result<Option<String>> {
        let row: Option<(String,)> = D::query(
            "SELECT t.body FROM file_texts t JOIN files f ON f.id = t.file_id \
             WHERE f.id = $1 AND f.client_id = $2 AND f.state = 'promoted'",
        )
        .bind(file_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(body,)| body))
    }
}
