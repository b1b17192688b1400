//! The scheduled maintenance jobs: re-driving interrupted promotions (and, with the sweeper,
//! expiry). One pass at a time per process; a tick that finds a pass still running is skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::http::AppState;
use crate::promotion::{self, RecoveryReport};

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid sweep schedule '{schedule}': {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("scheduler: {0}")]
    Scheduler(String),
}

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassReport {
    pub recovery: RecoveryReport,
}

/// Runs one maintenance pass now.
pub async fn run_pass(state: &AppState) -> PassReport {
    let recovery = match promotion::recover_bound(state).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "recovery pass failed");
            RecoveryReport::default()
        }
    };
    PassReport { recovery }
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
