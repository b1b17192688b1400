//! Promotion: a bound file is copied server-side from the staging area to the files area, the
//! staged copy deleted, and the row marked `promoted`. Every step is idempotent, so a promotion
//! interrupted anywhere is simply run again (by the next request that touches the webhook, or by
//! the recovery pass at start-up and on the schedule).

use chrono::Utc;

use crate::app::App;
use crate::domain::{FileRecord, FileState};
use crate::repo::RepoError;
use crate::store::{Area, StoreError};

/// The largest object S3 copies in one request (CopyObject); larger needs a multipart copy.
pub const MAX_SINGLE_COPY_BYTES: i64 = 5 * 1024 * 1024 * 1024;

/// Why a promotion did not complete (the file stays `bound` and is retried).
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("file {0} is {1} bytes, above the 5 GiB a single server-side copy allows")]
    TooLarge(uuid::Uuid, i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Moves a bound file's object to long-term storage and returns the record as it will be once
/// marked; the row itself is not touched (see [`promote_file`]).
pub async fn move_object(app: &App, file: &FileRecord) -> Result<FileRecord, PromoteError> {
    // A size the row does not know is measured, never taken for zero.
    let size = match file.file_size {
        Some(size) => Some(size),
        None => app
            .store()
            .size(Area::Staging, &file.staging_key)
            .await?
            .map(|size| i64::try_from(size).unwrap_or(i64::MAX)),
    };
    // No staged object: an interrupted promotion already moved it (`promote` finds it).
    if let Some(size) = size
        && size > MAX_SINGLE_COPY_BYTES
    {
        return Err(PromoteError::TooLarge(file.id, size));
    }
    app.store().promote(&file.staging_key).await?;
    Ok(file.promoted(&file.staging_key, Utc::now()))
}

/// Promotes one bound file (object, then row); a file already promoted is returned as it is.
pub async fn promote_file(app: &App, file: &FileRecord) -> Result<FileRecord, PromoteError> {
    if file.state != FileState::Bound {
        return Ok(file.clone());
    }
    let promoted = move_object(app, file).await?;
    if !app
        .repo()
        .mark_promoted(file, &file.staging_key, &crate::events::Events)
        .await?
    {
        crate::erasure::after_lost_promotion(app, file.id, &file.staging_key).await;
        return Ok(app
            .repo()
            .get_file(&file.client_id, file.id)
            .await?
            .unwrap_or_else(|| file.clone()));
    }
    tracing::info!(file_id = %file.id, "file promoted");
    Ok(promoted)
}

/// Promotes what it can of a list of files, logging what it cannot; returns the files as they
/// now are.
pub async fn promote_all(app: &App, files: Vec<FileRecord>) -> Vec<FileRecord> {
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        match promote_file(app, &file).await {
            Ok(promoted) => out.push(promoted),
            Err(e) => {
                tracing::warn!(file_id = %file.id, error = %e, "promotion failed; it will be retried");
                out.push(file);
            }
        }
    }
    out
}

/// What a recovery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub promoted: u64,
    pub failed: u64,
}

/// Re-drives every `bound` file to `promoted` (files whose promotion was interrupted).
pub async fn recover_bound(app: &App) -> Result<RecoveryReport, RepoError> {
    const BATCH: i64 = 100;
    let mut report = RecoveryReport::default();
    loop {
        let batch = app.repo().bound_files(BATCH).await?;
        let full = batch.len() as i64 == BATCH;
        let mut progress = false;
        for file in batch {
            let outcome = promote_file(app, &file).await;
            app.telemetry().promotion_retry(outcome.is_ok());
            match outcome {
                Ok(_) => {
                    report.promoted += 1;
                    progress = true;
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(file_id = %file.id, error = %e, "recovery could not promote a bound file");
                }
            }
        }
        if !full || !progress {
            break;
        }
    }
    if report.promoted > 0 || report.failed > 0 {
        tracing::info!(
            promoted = report.promoted,
            failed = report.failed,
            "recovery pass"
        );
    }
    Ok(report)
}
