//! The `JobRepo` of both backends: background jobs and the text job. A macro for now, like `impl_repo!` in `sql.rs`,
//! which invokes it in each backend's module and supplies what it names (id and time types,
//! conversions, the dialect statements, the helpers of `sql.rs`).

macro_rules! impl_jobs_repo {
    ($Repo:ident) => {
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
    };
}
