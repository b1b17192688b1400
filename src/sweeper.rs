//! The scheduled maintenance pass: re-drive interrupted promotions, expire what nobody claimed,
//! abort dead uploads, erase what outlived its retention and finish interrupted erasures, delete
//! orphan objects, purge old tombstones — and record what it did.
//!
//! Safe with several replicas: on PostgreSQL expired rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so two sweepers never delete the same object; every other step is
//! idempotent. Within one process passes never overlap (a tick that finds one running is
//! skipped).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::app::App;
use crate::domain::FileState;
use crate::promotion;
use crate::repo::SweepRun;
use crate::store::Area;

/// Expired files claimed (and keys sent to one DeleteObjects call) at a time.
pub const EXPIRY_BATCH: i64 = 1000;
/// Upper bound on expiry batches in one pass, so a pass always ends.
const MAX_EXPIRY_BATCHES: usize = 1000;

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid sweep schedule '{schedule}': {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("scheduler: {0}")]
    Scheduler(String),
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Counts kept while a pass runs.
struct Tally {
    run: SweepRun,
}

impl Tally {
    fn error(&mut self, step: &str, error: impl std::fmt::Display) {
        tracing::warn!(step, %error, "sweep step failed");
        self.run.errors += 1;
        self.run.last_error = Some(format!("{step}: {error}"));
    }
}

/// Runs one full maintenance pass now and records it. A pass that outlives the sweep timeout
/// is cut off where it is (every step is safe to interrupt) and recorded as failed.
pub async fn run_pass(app: &App) -> SweepRun {
    let mut tally = Tally {
        run: SweepRun {
            id: Uuid::new_v4(),
            started_at: Utc::now(),
            ..SweepRun::default()
        },
    };
    let limit = app.sweep().timeout;
    if tokio::time::timeout(limit, run_steps(app, &mut tally))
        .await
        .is_err()
    {
        tally.error(
            "pass",
            format!("cut off after {}", humantime::format_duration(limit)),
        );
    }
    tally.run.finished_at = Utc::now();
    tally.run.pass_ms = (tally.run.finished_at - tally.run.started_at).num_milliseconds();

    let run = tally.run;
    if let Err(e) = app.repo().record_sweep(&run).await {
        tracing::warn!(error = %e, "could not record the sweep pass");
    }
    app.telemetry().sweep(&run);
    tracing::info!(
        expired = run.expired,
        objects_deleted = run.objects_deleted,
        receiving_aborted = run.receiving_aborted,
        orphans_deleted = run.orphans_deleted,
        tombstones_purged = run.tombstones_purged,
        promoted = run.promoted,
        erased = run.erased,
        erasures_finished = run.erasures_finished,
        errors = run.errors,
        "sweep pass"
    );
    run
}

async fn run_steps(app: &App, tally: &mut Tally) {
    match promotion::recover_bound(app).await {
        Ok(report) => {
            tally.run.promoted = report.promoted as i64;
            if report.failed > 0 {
                tally.error(
                    "promote",
                    format!("{} bound files could not be promoted", report.failed),
                );
            }
        }
        Err(e) => tally.error("promote", e),
    }
    let expiry_started = std::time::Instant::now();
    expire(app, tally).await;
    tally.run.expire_ms = expiry_started.elapsed().as_millis() as i64;
    abort_dead_uploads(app, tally).await;
    close_direct_windows(app, tally).await;
    if let Some(retention) = app.sweep().file_retention {
        let before = Utc::now() - to_delta(retention);
        let (erased, errors) = crate::erasure::apply_retention(app, before).await;
        tally.run.erased += erased;
        for error in errors {
            tally.error("retention", error);
        }
    }
    let settled = Utc::now() - to_delta(app.sweep().erasure_settle);
    let (finished, errors) = crate::erasure::finish_erasures(app, settled).await;
    tally.run.erasures_finished += finished;
    for error in errors {
        tally.error("erasure", error);
    }
    delete_orphans(app, tally).await;
    purge(app, tally).await;
}

/// Staged files past `expires_at`: mark them `expired` (tombstones), then delete their objects
/// (≤ 1000 keys a call). An object whose delete fails belongs to a tombstone from then on and
/// is removed by the orphan step.
async fn expire(app: &App, tally: &mut Tally) {
    // Several batches at once (`SweepPolicy::expiry_workers`), and each worker deletes one
    // batch's objects while it marks the next: DeleteObjects calls follow one another instead
    // of waiting on PostgreSQL (bench/notes.md).
    let workers = app.sweep().expiry_workers;
    let results = futures_util::future::join_all((0..workers).map(|_| expire_worker(app))).await;
    for worker in results {
        tally.run.expired += worker.run.expired;
        tally.run.objects_deleted += worker.run.objects_deleted;
        tally.run.errors += worker.run.errors;
        if worker.run.last_error.is_some() {
            tally.run.last_error = worker.run.last_error;
        }
    }
}

/// One expiry worker: claims a batch (its tombstones committed), then deletes its objects while
/// it claims the next, so its DeleteObjects calls follow one another without waiting on
/// PostgreSQL. A batch's objects are deleted only after its rows are tombstones, as before.
async fn expire_worker(app: &App) -> Tally {
    let mut tally = Tally {
        run: SweepRun::default(),
    };
    let batch = app.sweep().expiry_batch;
    // The batch whose objects are to be deleted next.
    let mut deleting: Option<Vec<String>> = None;
    for _ in 0..MAX_EXPIRY_BATCHES {
        let claim = app
            .repo()
            .expire_due(Utc::now(), batch, &crate::events::Events);
        let previous = deleting.take();
        let delete = async {
            match &previous {
                Some(keys) => delete_expired(app, keys, &mut tally).await,
                None => true,
            }
        };
        let (claimed, deleted) = tokio::join!(claim, delete);
        let expired = match claimed {
            Ok(expired) => expired,
            Err(e) => {
                tally.error("expire", e);
                break;
            }
        };
        tally.run.expired += expired.len() as i64;
        let keys: Vec<String> = expired.iter().map(|f| f.staging_key.clone()).collect();
        let last = (expired.len() as i64) < batch || !deleted;
        if !keys.is_empty() {
            deleting = Some(keys);
        }
        if last {
            break;
        }
    }
    if let Some(keys) = deleting {
        delete_expired(app, &keys, &mut tally).await;
    }
    tally
}

/// Deletes an expired batch's objects; whether the store answered. The rows are tombstones
/// already: an object left behind is deleted by the orphan step later.
async fn delete_expired(app: &App, keys: &[String], tally: &mut Tally) -> bool {
    match app.store().delete(Area::Staging, keys).await {
        Ok(failures) => {
            tally.run.objects_deleted += (keys.len() - failures.len()) as i64;
            for failure in &failures {
                tally.error(
                    "expire",
                    format!("delete {}: {}", failure.key, failure.reason),
                );
            }
            true
        }
        Err(e) => {
            tally.error("expire", e);
            false
        }
    }
}

/// `receiving` rows silent for longer than the grace period: their upload died. The row is
/// deleted first, conditionally (an upload that completed or showed activity meanwhile keeps
/// it), and only then its multipart upload aborted and its object deleted: a completion racing
/// the abort either staged the file first (and the abort leaves it) or finds no row and stages
/// nothing. What a failed delete leaves has no row and goes with the orphans.
async fn abort_dead_uploads(app: &App, tally: &mut Tally) {
    let before = Utc::now() - to_delta(app.sweep().receiving_grace);
    let rows = match app.repo().stale_receiving(before, EXPIRY_BATCH).await {
        Ok(rows) => rows,
        Err(e) => return tally.error("abort", e),
    };
    for file in rows {
        match app.repo().abort_receiving(file.id, before).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tally.error("abort", e);
                continue;
            }
        }
        tally.run.receiving_aborted += 1;
        crate::fault::pause("abort.after_row").await;
        let cleaned = async {
            app.store()
                .abort_incomplete(&file.staging_key, file.multipart_upload_id.as_deref())
                .await?;
            let failures = app
                .store()
                .delete(Area::Staging, std::slice::from_ref(&file.staging_key))
                .await?;
            match failures.first() {
                Some(f) => Err(crate::store::StoreError::Other(f.reason.clone())),
                None => Ok(()),
            }
        }
        .await;
        match cleaned {
            Ok(()) => tracing::info!(file_id = %file.id, "aborted a dead upload"),
            Err(e) => tally.error("abort", format!("{}: {e}", file.id)),
        }
    }
}

/// Direct uploads whose window closed a grace period ago: a URL signed for the window may still
/// have brought bytes after the upload stopped being live (refused, discarded, erased, promoted
/// or expired), so their staging key is deleted again. A staged or bound file's staging key is
/// its object and stays; a receiving one is the abort's.
async fn close_direct_windows(app: &App, tally: &mut Tally) {
    let before = Utc::now() - to_delta(app.sweep().receiving_grace);
    let due = match app
        .repo()
        .closing_direct_windows(before, EXPIRY_BATCH)
        .await
    {
        Ok(due) => due,
        Err(e) => return tally.error("direct", e),
    };
    for (id, key, file_state) in due {
        match file_state {
            FileState::Receiving => continue,
            FileState::Staged | FileState::Bound => {}
            _ => match app
                .store()
                .delete(Area::Staging, std::slice::from_ref(&key))
                .await
            {
                Ok(failures) if failures.is_empty() => {}
                Ok(failures) => {
                    tally.error("direct", format!("delete {key}: {}", failures[0].reason));
                    continue;
                }
                Err(e) => {
                    tally.error("direct", format!("delete {key}: {e}"));
                    continue;
                }
            },
        }
        if let Err(e) = app.repo().close_direct_window(id).await {
            tally.error("direct", e);
        }
    }
}

/// The file id a staging key names, if Stowage made the key (`{client_id}/{file_id}`).
fn id_of(key: &str) -> Option<Uuid> {
    let (client_id, id) = key.split_once('/')?;
    if !crate::domain::is_valid_client_id(client_id) {
        return None;
    }
    let id = Uuid::parse_str(id).ok()?;
    (crate::domain::storage_key(client_id, id) == key).then_some(id)
}

/// Which of these staging keys nothing needs any more: keys of tombstones (expired,
/// discarded, erased, promoted) and keys with no row at all, once older than the grace period. A
/// tombstone's young object is left to whoever made the tombstone: another sweeper that has
/// just expired it deletes it next, and deleting it here too would delete it twice. Keys
/// Stowage did not make are logged and left alone.
async fn orphans(
    app: &App,
    keys: Vec<(String, bool)>,
) -> Result<Vec<String>, crate::repo::RepoError> {
    let mut states = std::collections::HashMap::new();
    let ids: Vec<Uuid> = keys.iter().filter_map(|(k, _)| id_of(k)).collect();
    for chunk in ids.chunks(EXPIRY_BATCH as usize) {
        states.extend(app.repo().file_states(chunk).await?);
    }
    Ok(keys
        .into_iter()
        .filter(|(key, old)| match id_of(key) {
            None => {
                tracing::warn!(key = %key, "a staging object Stowage did not name; left alone");
                false
            }
            Some(id) => match states.get(&id) {
                Some(FileState::Receiving | FileState::Staged | FileState::Bound) => false,
                _ => *old,
            },
        })
        .map(|(key, _)| key)
        .collect())
}

/// Objects and incomplete uploads in the staging area that no live row references: left by
/// crashes or failed deletes. Each is logged, then deleted.
async fn delete_orphans(app: &App, tally: &mut Tally) {
    let cutoff = Utc::now() - to_delta(app.sweep().receiving_grace);
    match app.store().list(Area::Staging).await {
        Ok(objects) => {
            let keys: Vec<(String, bool)> = objects
                .into_iter()
                .map(|o| {
                    let old = o.last_modified.is_none_or(|t| t <= cutoff);
                    (o.key, old)
                })
                .collect();
            match orphans(app, keys).await {
                Ok(orphans) if !orphans.is_empty() => {
                    for key in &orphans {
                        tracing::warn!(key = %key, "deleting an orphan staging object");
                    }
                    match app.store().delete(Area::Staging, &orphans).await {
                        Ok(failures) => {
                            tally.run.orphans_deleted += (orphans.len() - failures.len()) as i64;
                            for f in failures {
                                tally.error("orphans", format!("delete {}: {}", f.key, f.reason));
                            }
                        }
                        Err(e) => tally.error("orphans", e),
                    }
                }
                Ok(_) => {}
                Err(e) => tally.error("orphans", e),
            }
        }
        Err(e) => tally.error("orphans", e),
    }

    match app.store().list_incomplete().await {
        Ok(uploads) => {
            let keys = uploads
                .iter()
                .map(|u| (u.key.clone(), u.initiated.is_none_or(|t| t <= cutoff)))
                .collect();
            let orphan_keys: HashSet<String> = match orphans(app, keys).await {
                Ok(keys) => keys.into_iter().collect(),
                Err(e) => return tally.error("orphans", e),
            };
            for upload in uploads.into_iter().filter(|u| orphan_keys.contains(&u.key)) {
                tracing::warn!(key = %upload.key, "aborting an orphan incomplete upload");
                let id = (!upload.upload_id.is_empty()).then_some(upload.upload_id.as_str());
                match app.store().abort_incomplete(&upload.key, id).await {
                    Ok(()) => tally.run.orphans_deleted += 1,
                    Err(e) => tally.error("orphans", e),
                }
            }
        }
        Err(e) => tally.error("orphans", e),
    }
}

/// Tombstones older than the retention period, and upload tokens a day after they expired (until
/// then a late request hears "expired" rather than "unknown").
async fn purge(app: &App, tally: &mut Tally) {
    let now = Utc::now();
    if let Err(e) = app
        .repo()
        .purge_upload_tokens(now - chrono::TimeDelta::days(1))
        .await
    {
        tally.error("purge", e);
    }
    let before = now - to_delta(app.sweep().tombstone_retention);
    let erasures_before = now - to_delta(app.sweep().erasure_log_retention);
    match app.repo().purge_tombstones(before, erasures_before).await {
        Ok(purged) => tally.run.tombstones_purged += purged as i64,
        Err(e) => tally.error("purge", e),
    }
    // After the purge, so that its deletions are in the totals at once.
    if let Err(e) = app.repo().fold_file_counts().await {
        tally.error("counts", e);
    }
}

/// The running schedule.
pub struct Scheduler {
    jobs: JobScheduler,
    busy: Arc<Mutex<()>>,
}

/// Starts running [`run_pass`] on a cron schedule (with seconds).
pub async fn start(app: App, schedule: &str) -> Result<Scheduler, SchedulerError> {
    let busy = Arc::new(Mutex::new(()));
    let job_busy = busy.clone();
    let job = Job::new_async(schedule, move |_, _| {
        let app = app.clone();
        let busy = job_busy.clone();
        Box::pin(async move {
            let Ok(_guard) = busy.try_lock() else {
                tracing::debug!("maintenance pass still running; tick skipped");
                return;
            };
            run_pass(&app).await;
        })
    })
    .map_err(|e| SchedulerError::Schedule {
        schedule: schedule.to_owned(),
        reason: e.to_string(),
    })?;
    let jobs = JobScheduler::new()
        .await
        .map_err(|e| SchedulerError::Scheduler(e.to_string()))?;
    jobs.add(job)
        .await
        .map_err(|e| SchedulerError::Scheduler(e.to_string()))?;
    jobs.start()
        .await
        .map_err(|e| SchedulerError::Scheduler(e.to_string()))?;
    Ok(Scheduler { jobs, busy })
}

impl Scheduler {
    /// Starts a pass now in the background unless one is running (start-up recovery).
    pub fn run_now(&self, app: App) {
        let busy = self.busy.clone();
        tokio::spawn(async move {
            if let Ok(_guard) = busy.try_lock() {
                run_pass(&app).await;
            }
        });
    }

    /// Stops scheduling and waits (up to `deadline`) for a pass in progress to finish.
    pub async fn stop(mut self, deadline: Duration) {
        if let Err(e) = self.jobs.shutdown().await {
            tracing::warn!(error = %e, "scheduler shutdown");
        }
        if tokio::time::timeout(deadline, self.busy.lock())
            .await
            .is_err()
        {
            tracing::warn!("a maintenance pass was still running at the shutdown deadline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::id_of;

    #[test]
    fn keys_name_their_file() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(id_of(&format!("acme/{id}")), Some(id));
        assert_eq!(id_of("acme/not-an-id"), None);
        assert_eq!(id_of("stray"), None);
        assert_eq!(id_of(&format!("a/b/{id}")), None, "not a key Stowage makes");
        assert_eq!(id_of(&format!("../{id}")), None);
        assert_eq!(id_of(&format!("acme/{}", id.simple())), None);
    }
}
