//! The scheduled maintenance pass: re-drive interrupted promotions, expire what nobody claimed,
//! abort dead uploads, delete orphan objects, purge old tombstones — and record what it did.
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

use crate::http::AppState;
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

/// Runs one full maintenance pass now and records it.
pub async fn run_pass(state: &AppState) -> SweepRun {
    let mut tally = Tally {
        run: SweepRun {
            id: Uuid::new_v4(),
            started_at: Utc::now(),
            ..SweepRun::default()
        },
    };
    match promotion::recover_bound(state).await {
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
    expire(state, &mut tally).await;
    tally.run.expire_ms = expiry_started.elapsed().as_millis() as i64;
    abort_dead_uploads(state, &mut tally).await;
    delete_orphans(state, &mut tally).await;
    purge(state, &mut tally).await;
    tally.run.finished_at = Utc::now();
    tally.run.pass_ms = (tally.run.finished_at - tally.run.started_at).num_milliseconds();

    let run = tally.run;
    if let Err(e) = state.repo().record_sweep(&run).await {
        tracing::warn!(error = %e, "could not record the sweep pass");
    }
    state.telemetry().sweep(&run);
    tracing::info!(
        expired = run.expired,
        objects_deleted = run.objects_deleted,
        receiving_aborted = run.receiving_aborted,
        orphans_deleted = run.orphans_deleted,
        tombstones_purged = run.tombstones_purged,
        promoted = run.promoted,
        errors = run.errors,
        "sweep pass"
    );
    run
}

/// Expiry workers per pass where claims cannot overlap: one claims and updates rows while the
/// other waits on DeleteObjects.
const EXPIRY_WORKERS: usize = 2;

/// Staged files past `expires_at`: delete their objects (≤ 1000 keys a call), keep tombstones.
async fn expire(state: &AppState, tally: &mut Tally) {
    let workers = if state.repo().concurrent_claims() {
        EXPIRY_WORKERS
    } else {
        1
    };
    let results = futures_util::future::join_all((0..workers).map(|_| expire_worker(state))).await;
    for worker in results {
        tally.run.expired += worker.run.expired;
        tally.run.objects_deleted += worker.run.objects_deleted;
        tally.run.errors += worker.run.errors;
        if worker.run.last_error.is_some() {
            tally.run.last_error = worker.run.last_error;
        }
    }
}

async fn expire_worker(state: &AppState) -> Tally {
    let mut tally = Tally {
        run: SweepRun::default(),
    };
    for _ in 0..MAX_EXPIRY_BATCHES {
        let claim = match state.repo().claim_expired(EXPIRY_BATCH).await {
            Ok(claim) => claim,
            Err(e) => {
                tally.error("expire", e);
                break;
            }
        };
        let claimed = claim.files().len();
        if claimed == 0 {
            if let Err(e) = claim.complete(&[]).await {
                tally.error("expire", e);
            }
            break;
        }
        let keys: Vec<String> = claim
            .files()
            .iter()
            .map(|f| f.staging_key.clone())
            .collect();
        let failures = match state.store().delete(Area::Staging, &keys).await {
            Ok(failures) => failures,
            // Dropping the claim releases the rows; they are retried next pass.
            Err(e) => {
                tally.error("expire", e);
                break;
            }
        };
        let failed: HashSet<&str> = failures.iter().map(|f| f.key.as_str()).collect();
        for failure in &failures {
            tally.error(
                "expire",
                format!("delete {}: {}", failure.key, failure.reason),
            );
        }
        let deleted: Vec<Uuid> = claim
            .files()
            .iter()
            .filter(|f| !failed.contains(f.staging_key.as_str()))
            .map(|f| f.id)
            .collect();
        tally.run.objects_deleted += deleted.len() as i64;
        match claim.complete(&deleted).await {
            Ok(expired) => tally.run.expired += expired as i64,
            Err(e) => {
                tally.error("expire", e);
                break;
            }
        }
        if (claimed as i64) < EXPIRY_BATCH || deleted.is_empty() {
            break;
        }
    }
    tally
}

/// `receiving` rows older than the grace period: their upload died. Abort its multipart upload,
/// delete any object, delete the row.
async fn abort_dead_uploads(state: &AppState, tally: &mut Tally) {
    let before = Utc::now() - to_delta(state.settings().receiving_grace);
    let rows = match state.repo().stale_receiving(before, EXPIRY_BATCH).await {
        Ok(rows) => rows,
        Err(e) => return tally.error("abort", e),
    };
    for file in rows {
        let cleaned = async {
            state
                .store()
                .abort_incomplete(&file.staging_key, file.multipart_upload_id.as_deref())
                .await?;
            let failures = state
                .store()
                .delete(Area::Staging, std::slice::from_ref(&file.staging_key))
                .await?;
            match failures.first() {
                Some(f) => Err(crate::store::StoreError::Other(f.reason.clone())),
                None => Ok(()),
            }
        }
        .await;
        if let Err(e) = cleaned {
            tally.error("abort", format!("{}: {e}", file.id));
            continue;
        }
        match state.repo().delete_receiving(file.id).await {
            Ok(()) => {
                tracing::info!(file_id = %file.id, "aborted a dead upload");
                tally.run.receiving_aborted += 1;
            }
            Err(e) => tally.error("abort", e),
        }
    }
}

/// The file id a staging key names (`{client_id}/{file_id}`).
fn id_of(key: &str) -> Option<Uuid> {
    key.rsplit('/')
        .next()
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Which of these keys belong to no row that still needs them.
async fn orphans(
    state: &AppState,
    keys: Vec<String>,
) -> Result<Vec<String>, crate::repo::RepoError> {
    let mut live = HashSet::new();
    let ids: Vec<Uuid> = keys.iter().filter_map(|k| id_of(k)).collect();
    for chunk in ids.chunks(EXPIRY_BATCH as usize) {
        live.extend(state.repo().live_staging_ids(chunk).await?);
    }
    Ok(keys
        .into_iter()
        .filter(|k| id_of(k).is_none_or(|id| !live.contains(&id)))
        .collect())
}

/// Objects and incomplete uploads in the staging area, older than the grace period, that no
/// live row references: left by crashes or failed deletes. Each is logged, then deleted.
async fn delete_orphans(state: &AppState, tally: &mut Tally) {
    let cutoff = Utc::now() - to_delta(state.settings().receiving_grace);
    match state.store().list(Area::Staging).await {
        Ok(objects) => {
            let old: Vec<String> = objects
                .into_iter()
                .filter(|o| o.last_modified.is_none_or(|t| t <= cutoff))
                .map(|o| o.key)
                .collect();
            match orphans(state, old).await {
                Ok(orphans) if !orphans.is_empty() => {
                    for key in &orphans {
                        tracing::warn!(key = %key, "deleting an orphan staging object");
                    }
                    match state.store().delete(Area::Staging, &orphans).await {
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

    match state.store().list_incomplete().await {
        Ok(uploads) => {
            let old: Vec<_> = uploads
                .into_iter()
                .filter(|u| u.initiated.is_none_or(|t| t <= cutoff))
                .collect();
            let keys = old.iter().map(|u| u.key.clone()).collect();
            let orphan_keys: HashSet<String> = match orphans(state, keys).await {
                Ok(keys) => keys.into_iter().collect(),
                Err(e) => return tally.error("orphans", e),
            };
            for upload in old.into_iter().filter(|u| orphan_keys.contains(&u.key)) {
                tracing::warn!(key = %upload.key, "aborting an orphan incomplete upload");
                let id = (!upload.upload_id.is_empty()).then_some(upload.upload_id.as_str());
                match state.store().abort_incomplete(&upload.key, id).await {
                    Ok(()) => tally.run.orphans_deleted += 1,
                    Err(e) => tally.error("orphans", e),
                }
            }
        }
        Err(e) => tally.error("orphans", e),
    }
}

/// Tombstones older than the retention period.
async fn purge(state: &AppState, tally: &mut Tally) {
    let before = Utc::now() - to_delta(state.settings().tombstone_retention);
    match state.repo().purge_tombstones(before).await {
        Ok(purged) => tally.run.tombstones_purged += purged as i64,
        Err(e) => tally.error("purge", e),
    }
}

/// The running schedule.
pub struct Scheduler {
    jobs: JobScheduler,
    busy: Arc<Mutex<()>>,
}

/// Starts running [`run_pass`] on a cron schedule (with seconds).
pub async fn start(state: AppState, schedule: &str) -> Result<Scheduler, SchedulerError> {
    let busy = Arc::new(Mutex::new(()));
    let job_busy = busy.clone();
    let job = Job::new_async(schedule, move |_, _| {
        let state = state.clone();
        let busy = job_busy.clone();
        Box::pin(async move {
            let Ok(_guard) = busy.try_lock() else {
                tracing::debug!("maintenance pass still running; tick skipped");
                return;
            };
            run_pass(&state).await;
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
    pub fn run_now(&self, state: AppState) {
        let busy = self.busy.clone();
        tokio::spawn(async move {
            if let Ok(_guard) = busy.try_lock() {
                run_pass(&state).await;
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
    }
}
