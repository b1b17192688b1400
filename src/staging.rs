//! Staging a file: the first half of the two-phase flow.
//!
//! The body is streamed: each chunk is counted against the size limit, hashed and passed on to
//! the store; only the first few KiB are held to sniff the type, and `.doc`/`.docx` bodies are
//! spooled to an anonymous temporary file (disk, not memory) for their deep check. The
//! `receiving` row is written before the first byte reaches storage, and every failure removes
//! the row and whatever reached storage.

use std::io::{BufReader, Seek, SeekFrom};

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::domain::{FileRecord, FileState, StagedFacts, sanitize_file_name, storage_key};
use crate::http::AppState;
use crate::repo::{NewFile, RepoError};
use crate::sniff::{self, ContentError, DocumentKind};
use crate::store::{Area, ObjectWriter, StoreError};

/// Name of the multipart part that carries the file.
pub const FILE_PART: &str = "file";

/// Why an upload was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("No file part: send multipart/form-data with one part named 'file'")]
    Missing,
    #[error("Send exactly one part named 'file'")]
    MultipleFiles,
    #[error("File name '{name}' has no extension. Allowed extensions: {allowed}")]
    NoExtension { name: String, allowed: String },
    #[error("File extension '.{ext}' is not allowed. Allowed extensions: {allowed}")]
    ExtensionNotAllowed { ext: String, allowed: String },
    #[error("File is empty")]
    Empty,
    #[error("File size exceeds maximum of {max} bytes ({human})")]
    TooLarge { max: u64, human: String },
    #[error("File content does not match extension '{kind}': detected '{detected}'")]
    ContentMismatch {
        kind: DocumentKind,
        detected: String,
    },
    #[error("File content is not a valid {kind} document: {reason}")]
    ContentInvalid { kind: DocumentKind, reason: String },
    #[error("Malformed multipart body: {0}")]
    Malformed(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl UploadError {
    fn content(kind: DocumentKind, error: ContentError) -> Self {
        match error {
            ContentError::Mismatch { detected } => UploadError::ContentMismatch { kind, detected },
            ContentError::Invalid { reason } => UploadError::ContentInvalid { kind, reason },
        }
    }

    fn too_large(max: u64) -> Self {
        UploadError::TooLarge {
            max,
            human: human_size(max),
        }
    }

    fn from_multipart(e: MultipartError, max: u64) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UploadError::too_large(max)
        } else {
            UploadError::Malformed(e.body_text())
        }
    }
}

/// `52428800` → `50MB`: mebibytes, as the CarvOS API words it.
fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{}MB", bytes / MIB)
    } else {
        let text = format!("{:.2}", bytes as f64 / MIB as f64);
        format!("{}MB", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// The allowed extensions as the error messages list them: `.doc, .docx, .pdf`.
fn allowed_list(state: &AppState) -> String {
    state
        .settings()
        .allowed_extensions
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The document kind a (sanitised) file name claims, if it is allowed.
fn kind_of(state: &AppState, file_name: &str) -> Result<DocumentKind, UploadError> {
    let Some(ext) = sniff::extension_of(file_name) else {
        return Err(UploadError::NoExtension {
            name: file_name.to_owned(),
            allowed: allowed_list(state),
        });
    };
    DocumentKind::from_extension(&ext)
        .filter(|kind| state.settings().allowed_extensions.contains(kind))
        .ok_or_else(|| UploadError::ExtensionNotAllowed {
            ext,
            allowed: allowed_list(state),
        })
}

/// The last chunks of a stream, at least [`sniff::TAIL_LEN`] bytes of them (not copied).
#[derive(Default)]
struct Tail {
    chunks: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Tail {
    fn push(&mut self, chunk: &Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk.clone());
        while let Some(front) = self.chunks.front() {
            if self.len - front.len() < sniff::TAIL_LEN {
                break;
            }
            self.len -= front.len();
            self.chunks.pop_front();
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let joined: Vec<u8> = self.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        joined[joined.len().saturating_sub(sniff::TAIL_LEN)..].to_vec()
    }
}

/// Byte counting, hashing and the size limit, chunk by chunk.
struct Meter {
    size: u64,
    max: u64,
    hasher: Sha256,
}

impl Meter {
    fn take(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(UploadError::too_large(self.max));
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// Reads the file part to its end: the head for sniffing first, then everything else, into the
/// writer (and the spool for deep checks). Returns the spool, rewound.
async fn receive_body(
    state: &AppState,
    id: Uuid,
    kind: DocumentKind,
    head: Vec<Bytes>,
    field: &mut Field<'_>,
    meter: &mut Meter,
    writer: &mut dyn ObjectWriter,
) -> Result<Option<std::fs::File>, UploadError> {
    let mut tail = (kind == DocumentKind::Pdf).then(Tail::default);
    let mut spool = if kind.needs_deep_check() {
        let file =
            tempfile::tempfile().map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
        let async_file = file
            .try_clone()
            .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
        Some((file, tokio::fs::File::from_std(async_file)))
    } else {
        None
    };
    let mut multipart_recorded = false;
    let mut pending = head.into_iter();
    let mut next = pending.next();
    while let Some(chunk) = next {
        if let Some(tail) = tail.as_mut() {
            tail.push(&chunk);
        }
        if let Some((_, spool)) = spool.as_mut() {
            spool
                .write_all(&chunk)
                .await
                .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
        }
        writer.write(chunk).await?;
        if !multipart_recorded && let Some(upload_id) = writer.multipart_upload_id() {
            state.repo().set_multipart_upload(id, upload_id).await?;
            multipart_recorded = true;
            crate::fault::point("upload.mid_multipart");
        }
        next = match pending.next() {
            Some(chunk) => Some(chunk),
            None => {
                let chunk = field
                    .chunk()
                    .await
                    .map_err(|e| UploadError::from_multipart(e, meter.max))?;
                if let Some(chunk) = &chunk {
                    meter.take(chunk)?;
                }
                chunk
            }
        };
    }
    if let Some(tail) = tail {
        sniff::check_pdf_tail(&tail.bytes()).map_err(|e| UploadError::content(kind, e))?;
    }
    match spool {
        None => Ok(None),
        Some((mut file, mut async_file)) => {
            async_file
                .flush()
                .await
                .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
            drop(async_file);
            file.seek(SeekFrom::Start(0))
                .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
            Ok(Some(file))
        }
    }
}

/// Reads until at least [`sniff::HEAD_LEN`] bytes (or the end) are in hand; returns the chunks
/// as received.
async fn read_head(field: &mut Field<'_>, meter: &mut Meter) -> Result<Vec<Bytes>, UploadError> {
    let mut head = Vec::new();
    let mut len = 0;
    while len < sniff::HEAD_LEN {
        match field
            .chunk()
            .await
            .map_err(|e| UploadError::from_multipart(e, meter.max))?
        {
            Some(chunk) => {
                meter.take(&chunk)?;
                len += chunk.len();
                head.push(chunk);
            }
            None => break,
        }
    }
    Ok(head)
}

/// The first [`sniff::HEAD_LEN`] bytes of the head chunks, contiguous.
fn head_bytes(head: &[Bytes]) -> Bytes {
    match head {
        [only] => only.slice(..only.len().min(sniff::HEAD_LEN)),
        _ => {
            let mut joined = BytesMut::with_capacity(sniff::HEAD_LEN);
            for chunk in head {
                let room = sniff::HEAD_LEN - joined.len();
                joined.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if joined.len() == sniff::HEAD_LEN {
                    break;
                }
            }
            joined.freeze()
        }
    }
}

/// Stages the file part of a multipart body for a client; see the module documentation.
pub async fn stage_upload(
    state: AppState,
    client_id: String,
    mut multipart: Multipart,
) -> Result<FileRecord, UploadError> {
    let max = state.settings().max_upload_bytes;
    let mut pending: Option<Pending> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                if let Some(pending) = pending {
                    pending.abandon(&state).await;
                }
                return Err(UploadError::from_multipart(e, max));
            }
        };
        if field.name() != Some(FILE_PART) {
            continue;
        }
        if let Some(pending) = pending.take() {
            pending.abandon(&state).await;
            drain(&mut multipart).await;
            return Err(UploadError::MultipleFiles);
        }
        match receive_file(&state, &client_id, field).await {
            Ok(received) => pending = Some(received),
            Err(e) => {
                drain(&mut multipart).await;
                return Err(e);
            }
        }
    }
    pending.ok_or(UploadError::Missing)?.complete(&state).await
}

/// Reads and discards what is left of a refused upload's body, so that the client, still
/// sending, reads the error instead of a broken connection. Bounded by the body size limit and
/// the idle timeout; stops at the first framing error.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// A file whose bytes have all arrived but which is not yet visible in storage nor `staged`.
struct Pending {
    id: Uuid,
    client_id: String,
    file_name: String,
    key: String,
    kind: DocumentKind,
    writer: Box<dyn ObjectWriter>,
    meter: Meter,
    spool: Option<std::fs::File>,
    now: DateTime<Utc>,
}

/// Checks the name and the head of the file part, writes the `receiving` row, then streams the
/// rest into the staging area. On failure nothing is left behind.
async fn receive_file(
    state: &AppState,
    client_id: &str,
    mut field: Field<'_>,
) -> Result<Pending, UploadError> {
    let file_name = sanitize_file_name(field.file_name().unwrap_or(""));
    let kind = kind_of(state, &file_name)?;
    let mut meter = Meter {
        size: 0,
        max: state.settings().max_upload_bytes,
        hasher: Sha256::new(),
    };
    let head = read_head(&mut field, &mut meter).await?;
    if meter.size == 0 {
        return Err(UploadError::Empty);
    }
    sniff::check_head(kind, &head_bytes(&head)).map_err(|e| UploadError::content(kind, e))?;

    let id = Uuid::new_v4();
    let key = storage_key(client_id, id);
    let now = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    state
        .repo()
        .insert_receiving(&NewFile {
            id,
            client_id: client_id.to_owned(),
            file_name: file_name.clone(),
            staging_key: key.clone(),
            created_at: now,
        })
        .await?;
    crate::fault::point("upload.before_store");
    let mut writer = match state.store().begin_staging(&key).await {
        Ok(writer) => writer,
        Err(e) => {
            abandon(state, id, &key, None, false).await;
            return Err(e.into());
        }
    };
    match receive_body(
        state,
        id,
        kind,
        head,
        &mut field,
        &mut meter,
        writer.as_mut(),
    )
    .await
    {
        Ok(spool) => Ok(Pending {
            id,
            client_id: client_id.to_owned(),
            file_name,
            key,
            kind,
            writer,
            meter,
            spool,
            now,
        }),
        Err(e) => {
            abandon(state, id, &key, Some(writer), false).await;
            Err(e)
        }
    }
}

impl Pending {
    /// Runs the deep check, makes the object visible and marks the row `staged`.
    async fn complete(self, state: &AppState) -> Result<FileRecord, UploadError> {
        let Pending {
            id,
            client_id,
            file_name,
            key,
            kind,
            writer,
            meter,
            spool,
            now,
        } = self;
        if let Some(spool) = spool {
            let limits = state.settings().docx_limits.clone();
            let verdict = tokio::task::spawn_blocking(move || {
                sniff::check_whole(kind, BufReader::new(spool), &limits)
            })
            .await
            .map_err(|e| UploadError::Internal(format!("deep check: {e}")))
            .and_then(|checked| checked.map_err(|e| UploadError::content(kind, e)));
            if let Err(e) = verdict {
                abandon(state, id, &key, Some(writer), false).await;
                return Err(e);
            }
        }
        if let Err(e) = writer.finish().await {
            abandon(state, id, &key, None, true).await;
            return Err(e.into());
        }
        crate::fault::point("upload.after_store");
        let ttl = TimeDelta::from_std(state.settings().upload_ttl)
            .map_err(|e| UploadError::Internal(e.to_string()))?;
        let facts = StagedFacts {
            content_type: kind.content_type().to_owned(),
            file_size: meter.size as i64,
            sha256: hex::encode(meter.hasher.finalize()),
            uploaded_at: now,
            expires_at: now + ttl,
        };
        if let Err(e) = state.repo().mark_staged(id, &facts).await {
            abandon(state, id, &key, None, true).await;
            return Err(e.into());
        }
        Ok(FileRecord {
            id,
            client_id,
            state: FileState::Staged,
            file_name,
            content_type: Some(facts.content_type),
            file_size: Some(facts.file_size),
            sha256: Some(facts.sha256),
            staging_key: key,
            multipart_upload_id: None,
            created_at: now,
            uploaded_at: Some(facts.uploaded_at),
            expires_at: Some(facts.expires_at),
            webhook_id: None,
            slot: None,
            promoted_key: None,
            bound_at: None,
            promoted_at: None,
        })
    }

    /// Throws the pending file away.
    async fn abandon(self, state: &AppState) {
        abandon(state, self.id, &self.key, Some(self.writer), false).await;
    }
}

/// Removes what a failed upload left: the pending write, the stored object, the row.
/// Failures here are logged; the sweeper finds whatever is left (the row stays `receiving`).
async fn abandon(
    state: &AppState,
    id: Uuid,
    key: &str,
    writer: Option<Box<dyn ObjectWriter>>,
    stored: bool,
) {
    let mut clean = true;
    if let Some(writer) = writer
        && let Err(e) = writer.abort().await
    {
        tracing::warn!(file_id = %id, error = %e, "could not abort a failed upload");
        clean = false;
    }
    if stored {
        match state.store().delete(Area::Staging, &[key.to_owned()]).await {
            Ok(failures) if failures.is_empty() => {}
            Ok(failures) => {
                tracing::warn!(file_id = %id, reason = %failures[0].reason, "could not delete a failed upload");
                clean = false;
            }
            // No bucket (or directory), no object.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(file_id = %id, error = %e, "could not delete a failed upload");
                clean = false;
            }
        }
    }
    // Keep the row while something may remain in storage, so the sweeper can find it.
    if clean && let Err(e) = state.repo().delete_receiving(id).await {
        tracing::warn!(file_id = %id, error = %e, "could not delete the row of a failed upload");
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_are_worded_in_mebibytes() {
        assert_eq!(human_size(52_428_800), "50MB");
        assert_eq!(human_size(1_048_576), "1MB");
        assert_eq!(human_size(1_572_864), "1.5MB");
    }
}
