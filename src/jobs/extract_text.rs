//! `extract_text`: a promoted file's text, extracted once in the background (queued by
//! promotion in its own transaction), in an isolated child (`extraction`), recorded with its
//! `file.text_extracted` / `file.text_failed` event.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::BackgroundJob;
use crate::app::App;
use crate::domain::{FileRecord, JobKind, TextState, WebhookRecord};
use crate::events::NewEvent;
use crate::extraction::{RunError, Wait, extract_isolated};
use crate::repo::{Job, TextWrite};
use crate::sniff::DocumentKind;
use crate::store::Area;
use crate::text::{FailureReason, TextFailure};

/// Attempts at a job whose extraction could not run (storage unreachable, the child could not
/// start, the process died mid-job) before the file's text is recorded as failed.
pub const MAX_JOB_ATTEMPTS: i32 = 5;

/// The text job.
pub struct ExtractText;

#[async_trait::async_trait]
impl BackgroundJob for ExtractText {
    const KIND: JobKind = JobKind::ExtractText;

    async fn run(app: &App, job: Job) {
        run_job(app, job).await;
    }
}

/// Reads the promoted file, extracts its text and records the outcome (with its event). A
/// failure to run at all leaves the job to be retried.
async fn run_job(app: &App, job: Job) {
    let started = Instant::now();
    match attempt(app, &job).await {
        Ok(Some((file, webhook, outcome))) => {
            app.telemetry().text_extraction(&outcome, started.elapsed());
            if let Err(failure) = &outcome {
                tracing::info!(file_id = %job.file_id, reason = failure.reason.as_str(),
                    message = %failure.message, "text extraction failed");
            }
            let state = TextState::after(&outcome);
            let event = NewEvent::text_recorded(&file, webhook.as_ref(), &state, Utc::now());
            let write = TextWrite {
                job_id: job.id,
                file_id: file.id,
                state: &state,
                text: outcome.as_ref().ok().map(|text| text.body.as_str()),
                event: &event,
            };
            if let Err(e) = app.repo().finish_text_job(write).await {
                tracing::warn!(file_id = %job.file_id, error = %e, "recording extracted text; the job is retried");
            }
        }
        // Nothing to do: the file is no longer promoted (erased meanwhile) or is gone.
        Ok(None) => {
            if let Err(e) = app.repo().drop_job(job.id).await {
                tracing::warn!(file_id = %job.file_id, error = %e, "dropping a text job");
            }
        }
        Err(e) => {
            let wait = retry_wait(job.attempts);
            tracing::warn!(file_id = %job.file_id, attempt = job.attempts, error = %e,
                retry_in = ?wait, "text extraction could not run");
            let at = Utc::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default();
            if let Err(e) = app.repo().retry_job(job.id, at, &e.to_string()).await {
                tracing::warn!(file_id = %job.file_id, error = %e, "postponing a text job");
            }
        }
    }
}

/// The wait before a job that could not run is tried again: 10 s, doubling.
fn retry_wait(attempts: i32) -> Duration {
    Duration::from_secs(10).saturating_mul(1 << attempts.clamp(0, 10))
}

/// The promoted file, its webhook and the outcome of its extraction, or `None` if there is
/// nothing to extract.
type Attempt = Option<(
    FileRecord,
    Option<WebhookRecord>,
    Result<crate::text::Text, TextFailure>,
)>;

async fn attempt(app: &App, job: &Job) -> Result<Attempt, RunError> {
    let Some((file, webhook)) = app.repo().promoted_file(job.file_id).await? else {
        return Ok(None);
    };
    if job.attempts > MAX_JOB_ATTEMPTS {
        let failure = TextFailure::new(
            FailureReason::Unreadable,
            format!(
                "extraction did not complete in {MAX_JOB_ATTEMPTS} attempts: {}",
                job.last_error
                    .as_deref()
                    .unwrap_or("the process running it stopped")
            ),
        );
        return Ok(Some((file, webhook, Err(failure))));
    }
    let Some(kind) = file
        .content_type
        .as_deref()
        .and_then(DocumentKind::from_content_type)
    else {
        let failure = TextFailure::new(
            FailureReason::Unreadable,
            "the file's type has no text extractor",
        );
        return Ok(Some((file, webhook, Err(failure))));
    };
    let key = file.promoted_key.as_deref().unwrap_or(&file.staging_key);
    let input = app.store().open(Area::Files, key).await?;
    let outcome = extract_isolated(app.text(), kind, input, Wait::Unbounded).await?;
    Ok(Some((file, webhook, outcome)))
}
