//! The `SweepRepo` of both backends: the maintenance pass and statistics. A macro for now, like `impl_repo!` in `sql.rs`,
//! which invokes it in each backend's module and supplies what it names (id and time types,
//! conversions, the dialect statements, the helpers of `sql.rs`).

macro_rules! impl_sweep_repo {
    ($Repo:ident) => {
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
                        Ok(StateCount {
                            state: parse_named(&state)?,
                            files,
                            bytes,
                        })
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
                    claimed.push(ClaimedFile {
                        id: file.id,
                        staging_key: file.staging_key,
                    });
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn stale_receiving(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<FileRecord>> {
                let rows: Vec<FileRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    file_columns!(),
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
                    "INSERT INTO sweep_runs (",
                    sweep_columns!(),
                    ") \
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
                    "SELECT ",
                    sweep_columns!(),
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
