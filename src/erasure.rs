//! Erasure: a file's personal data removed on request (`DELETE /files/{id}`, `POST /erasures`,
//! `stowage erase`) or when it outlives `STOWAGE_FILE_RETENTION`.
//!
//! The row goes first: one transaction turns it into an `erased` tombstone (no name, type, size
//! or hash), records `file.erased` and redacts the earlier events about the file. Its objects
//! are deleted after the commit, in both areas. A file whose objects are not known to be gone —
//! the process died in between, a delete failed, or a write that was already under way when the
//! file was erased (an upload still receiving, a promotion copying) may still land — is finished
//! by the sweeper ([`finish_erasures`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::app::App;
use crate::domain::{ErasureReason, FileState};
use crate::repo::{Erase, ErasedFile, RepoError};
use crate::store::{Area, StoreError};

/// Files erased (by retention) or finished (by the sweeper) a batch at a time.
pub const BATCH: i64 = 500;
/// Upper bound on batches in one sweep step, so a pass always ends.
const MAX_BATCHES: usize = 200;

/// Erases one of a client's files, in any state; its objects are deleted before this returns
/// (or left to the sweeper if that fails).
pub async fn erase_file(app: &App, client_id: &str, id: Uuid) -> Result<Erase, RepoError> {
    let erased = app
        .repo()
        .erase_file(
            client_id,
            id,
            ErasureReason::Request,
            &crate::events::Events,
        )
        .await?;
    if let Erase::Erased(file) = &erased {
        app.telemetry().erased(ErasureReason::Request, 1);
        tracing::info!(file_id = %id, was = ?file.was, "file erased");
        crate::fault::point("erase.after_commit");
        delete_objects(app, std::slice::from_ref(file)).await;
    }
    Ok(erased)
}

/// Erases every file bound to a client's webhooks for `user_id` and removes those webhooks'
/// personal data; the ids of all of them (erased now or before), oldest first.
pub async fn erase_user(app: &App, client_id: &str, user_id: &str) -> Result<Vec<Uuid>, RepoError> {
    let done = app
        .repo()
        .erase_user(client_id, user_id, &crate::events::Events)
        .await?;
    app.telemetry()
        .erased(ErasureReason::Request, done.erased.len());
    tracing::info!(
        files = done.files.len(),
        newly_erased = done.erased.len(),
        "candidate erased"
    );
    crate::fault::point("erase.after_commit");
    delete_objects(app, &done.erased).await;
    Ok(done.files)
}

/// A write that may still be under way for a file erased in this state: an upload receiving
/// its bytes, or a promotion copying them.
fn write_in_flight(was: Option<FileState>) -> bool {
    matches!(was, Some(FileState::Receiving | FileState::Bound))
}

/// Deletes the objects of erased files — an open multipart upload, the staging object, the
/// long-term object — and records the ones that are gone for good; returns what went wrong.
pub async fn delete_objects(app: &App, files: &[ErasedFile]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut failed: HashSet<Uuid> = HashSet::new();
    for file in files {
        if let Some(upload_id) = &file.multipart_upload_id
            && let Err(e) = app
                .store()
                .abort_incomplete(&file.staging_key, Some(upload_id))
                .await
        {
            errors.push(format!("abort upload of {}: {e}", file.id));
            failed.insert(file.id);
        }
    }
    let keys: Vec<String> = files.iter().map(|f| f.staging_key.clone()).collect();
    for area in [Area::Staging, Area::Files] {
        match app.store().delete(area, &keys).await {
            Ok(failures) => {
                for failure in failures {
                    if let Some(file) = files.iter().find(|f| f.staging_key == failure.key) {
                        failed.insert(file.id);
                    }
                    errors.push(format!("delete {}: {}", failure.key, failure.reason));
                }
            }
            // No bucket (or directory): no object.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                errors.push(e.to_string());
                failed.extend(files.iter().map(|f| f.id));
            }
        }
    }
    let gone: Vec<Uuid> = files
        .iter()
        .filter(|f| !failed.contains(&f.id) && !write_in_flight(f.was))
        .map(|f| f.id)
        .collect();
    if !gone.is_empty()
        && let Err(e) = app.repo().objects_erased(&gone).await
    {
        errors.push(format!("record erased objects: {e}"));
    }
    for error in &errors {
        tracing::warn!(%error, "erasure: an object could not be deleted yet; the sweeper retries");
    }
    errors
}

/// A promotion that copied a file's object and then found the file no longer bound: if the
/// file was erased meanwhile, the copy it just made is deleted.
pub async fn after_lost_promotion(app: &App, id: Uuid, key: &str) {
    let erased = match app.repo().file_states(&[id]).await {
        Ok(states) => states.iter().any(|(_, s)| *s == FileState::Erased),
        Err(e) => {
            tracing::warn!(file_id = %id, error = %e, "could not check a file after a lost promotion");
            return;
        }
    };
    if erased {
        match app.store().delete(Area::Files, &[key.to_owned()]).await {
            Ok(failures) if failures.is_empty() => {
                tracing::info!(file_id = %id, "deleted the copy of a file erased while it was promoted");
            }
            Ok(failures) => {
                let reason = failures
                    .iter()
                    .map(|f| f.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(file_id = %id, %reason, "could not delete the copy of an erased file; the sweeper retries");
            }
            Err(e) => {
                tracing::warn!(file_id = %id, error = %e, "could not delete the copy of an erased file; the sweeper retries");
            }
        }
    }
}

/// Sweep step: erased files whose objects are not known to be gone, erased before `before` (when
/// no write under way can still land). Their objects are deleted (again).
pub async fn finish_erasures(app: &App, before: DateTime<Utc>) -> (i64, Vec<String>) {
    let (mut finished, mut errors) = (0, Vec::new());
    for _ in 0..MAX_BATCHES {
        let files = match app.repo().unfinished_erasures(before, BATCH).await {
            Ok(files) => files,
            Err(e) => {
                errors.push(e.to_string());
                break;
            }
        };
        let failures = delete_objects(app, &files).await;
        let progress = failures.is_empty();
        if progress {
            finished += files.len() as i64;
        }
        errors.extend(failures);
        // A batch that failed would be read again as it is: leave it for the next pass.
        if (files.len() as i64) < BATCH || !progress {
            break;
        }
    }
    (finished, errors)
}

/// Sweep step: files promoted before `before` (`STOWAGE_FILE_RETENTION` ago) are erased, a batch
/// per transaction (each file to one sweeper), their objects deleted.
pub async fn apply_retention(app: &App, before: DateTime<Utc>) -> (i64, Vec<String>) {
    let (mut erased, mut errors) = (0, Vec::new());
    for _ in 0..MAX_BATCHES {
        let files = match app
            .repo()
            .erase_retained(before, BATCH, &crate::events::Events)
            .await
        {
            Ok(files) => files,
            Err(e) => {
                errors.push(e.to_string());
                break;
            }
        };
        erased += files.len() as i64;
        app.telemetry()
            .erased(ErasureReason::Retention, files.len());
        errors.extend(delete_objects(app, &files).await);
        if (files.len() as i64) < BATCH {
            break;
        }
    }
    if erased > 0 {
        tracing::info!(files = erased, "files past their retention erased");
    }
    (erased, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_write_under_way_keeps_an_erasure_open() {
        assert!(write_in_flight(Some(FileState::Receiving)));
        assert!(write_in_flight(Some(FileState::Bound)));
        for settled in [
            FileState::Staged,
            FileState::Promoted,
            FileState::Expired,
            FileState::Discarded,
        ] {
            assert!(!write_in_flight(Some(settled)));
        }
        assert!(!write_in_flight(None), "the sweeper's own pass");
    }
}
