//! The `SweepRepo` of both backends: the maintenance pass and statistics.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{Arg, DbId, DbTime, Dialect};
use super::sql::{FileRow, SqlRepo, SweepRow, files};
use super::{ClaimedFile, Result, StateCount, StorageStats, SweepRepo, SweepRun, parse_named};
use crate::domain::{FileRecord, FileState};
use crate::event_model::{EventRules, EventType};

#[async_trait]
impl<D: Dialect> SweepRepo for SqlRepo<D> {
    async fn ping(&self) -> Result<()> {
        D::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_by_state(&self) -> Result<Vec<StateCount>> {
        // The folded totals and the changes since (migration 0019): the same cost at any
        // number of files.
        let rows: Vec<(String, i64, i64)> = D::query(
            "SELECT state, CAST(SUM(files) AS BIGINT), CAST(SUM(bytes) AS BIGINT) FROM ( \
                 SELECT state, files, bytes FROM file_counts \
                 UNION ALL SELECT state, files, bytes FROM file_count_changes) c \
             GROUP BY state HAVING SUM(files) <> 0",
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

    async fn fold_file_counts(&self) -> Result<u64> {
        // The changes a concurrent fold deletes first are not returned here: each is added to
        // the totals once.
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let changes: Vec<(String, i64, i64)> =
            D::query("DELETE FROM file_count_changes RETURNING state, files, bytes")
                .fetch_all(&mut *tx)
                .await?;
        let mut totals = std::collections::BTreeMap::<&str, (i64, i64)>::new();
        for (state, files, bytes) in &changes {
            let total = totals.entry(state.as_str()).or_default();
            total.0 += files;
            total.1 += bytes;
        }
        for (state, (files, bytes)) in totals {
            D::query(
                "INSERT INTO file_counts (state, files, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (state) DO UPDATE SET files = file_counts.files + excluded.files, \
                     bytes = file_counts.bytes + excluded.bytes",
            )
            .bind(state)
            .bind(files)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changes.len() as u64)
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        rules: &dyn EventRules,
    ) -> Result<Vec<ClaimedFile>> {
        // A synchronous commit: the tombstone must outlive a crash, since the object
        // goes next.
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let rows: Vec<FileRow> = D::query(D::EXPIRE_DUE)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let file = FileRecord::try_from(row)?;
            // Staged files: no webhook to look up, the event is the rules' alone.
            events
                .push(Self::file_event(&mut tx, rules, EventType::FileExpired, &file, now).await?);
            claimed.push(ClaimedFile {
                id: file.id,
                staging_key: file.staging_key,
            });
        }
        // The batch's events and deliveries in batch statements: the outbox costs the sweeper
        // a statement per batch, not one per file.
        D::write_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn stale_receiving(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<FileRecord>> {
        let rows: Vec<FileRow> = D::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE state = 'receiving' AND active_at < $1 \
             ORDER BY active_at LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        files(rows)
    }

    async fn file_states(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, FileState)>> {
        let rows: Vec<(DbId, String)> = D::query(D::FILE_STATES)
            .bind(Arg::ids(ids))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(file_id, state)| Ok((file_id.0, parse_named(&state)?)))
            .collect()
    }

    async fn purge_tombstones(
        &self,
        before: DateTime<Utc>,
        erasures_before: DateTime<Utc>,
    ) -> Result<u64> {
        let files = D::query(
            "DELETE FROM files WHERE state IN ('expired', 'discarded', 'erased') \
             AND state_changed_at < $1 \
             AND (state <> 'erased' OR objects_deleted_at IS NOT NULL)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        D::query("DELETE FROM webhooks WHERE status = 'rejected' AND created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        // An event goes with its deliveries (deleted first, so none is ever left without its
        // event; PostgreSQL has no foreign key to do it) and their attempts (ON DELETE CASCADE).
        for purge in [
            "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events \
               WHERE created_at < $1 AND (event_type <> 'file.erased' OR created_at < $2))",
            "DELETE FROM events WHERE created_at < $1 \
               AND (event_type <> 'file.erased' OR created_at < $2)",
        ] {
            D::query(purge)
                .bind(before)
                .bind(erasures_before)
                .execute(&self.pool)
                .await?;
        }
        D::query("DELETE FROM sweep_runs WHERE started_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(files)
    }

    async fn record_sweep(&self, run: &SweepRun) -> Result<()> {
        D::query(concat!(
            "INSERT INTO sweep_runs (",
            sweep_columns!(),
            ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(run.id)
        .bind(run.started_at)
        .bind(run.finished_at)
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
        let row: Option<SweepRow> = D::query(concat!(
            "SELECT ",
            sweep_columns!(),
            " FROM sweep_runs ORDER BY started_at DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SweepRun {
                id: r.id.0,
                started_at: r.started_at.0,
                finished_at: r.finished_at.0,
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
        let (expiring_1h, expiring_24h, overdue): (i64, i64, i64) = D::query(
            // Three ranges of the staged files' deadline index: what is counted is what
            // expires soon, not every staged file.
            "SELECT \
                 (SELECT COUNT(*) FROM files \
                  WHERE state = 'staged' AND expires_at > $1 AND expires_at <= $2), \
                 (SELECT COUNT(*) FROM files \
                  WHERE state = 'staged' AND expires_at > $1 AND expires_at <= $3), \
                 (SELECT COUNT(*) FROM files WHERE state = 'staged' AND expires_at <= $1)",
        )
        .bind(now)
        .bind(now + chrono::TimeDelta::hours(1))
        .bind(now + chrono::TimeDelta::hours(24))
        .fetch_one(&self.pool)
        .await?;
        let (deliveries_pending, oldest): (i64, Option<DbTime>) = D::query(
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
            oldest_pending_event_at: oldest.map(|t| t.0),
        })
    }
}
