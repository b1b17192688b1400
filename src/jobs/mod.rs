//! Background jobs: work that must outlive a process, kept in the `jobs` table and leased by the
//! worker (`worker.rs`) one replica at a time. Each kind is one [`BackgroundJob`] in a file of
//! its own, registered once in [`run`] (an exhaustive match: a new [`JobKind`] does not compile
//! until it is).

mod extract_text;

pub use extract_text::{ExtractText, MAX_JOB_ATTEMPTS};

use crate::app::App;
use crate::domain::JobKind;
use crate::repo::Job;

/// One kind of background job.
#[async_trait::async_trait]
pub trait BackgroundJob {
    /// Its kind, as the `jobs` table names it.
    const KIND: JobKind;

    /// Runs one leased job to its end: done (the job deleted), retried later, or failed for
    /// good — each recorded by the job itself.
    async fn run(app: &App, job: Job);
}

/// Runs a leased job by its kind.
pub async fn run(app: &App, job: Job) {
    match job.kind {
        JobKind::ExtractText => ExtractText::run(app, job).await,
    }
}
