//! Direct uploads: the client declares a file (name, size, SHA-256), PUTs its bytes straight to
//! object storage with a URL that binds both, and asks Stowage to complete it. Completing checks
//! what arrived — size, SHA-256 and the same content checks as `POST /uploads`, reading only the
//! byte ranges they need — and stages the file, or refuses it and deletes the object. The answer
//! is recorded, so completing again answers the same. An upload never completed is aborted by
//! the sweeper like any upload that fell silent: its row's activity time is the end of its
//! window.

use std::io::{Seek, SeekFrom};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::app::App;
use crate::domain::{FileRecord, FileState, StagedFacts, sanitize_file_name, storage_key};
use crate::repo::{NewFile, RepoError};
use crate::sniff::ranges::{RangeReader, RangeSource};
use crate::sniff::{self, DocumentKind};
use crate::staging::{UploadError, kind_of};
use crate::store::{Area, DirectPut, Store};

/// What a client declares before sending the bytes.
#[derive(Clone, Debug)]
pub struct Declared {
    pub file_name: String,
    pub file_size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// A direct upload just opened: the file's id and where to PUT its bytes.
#[derive(Debug)]
pub struct Opened {
    pub id: Uuid,
    pub file_name: String,
    pub file_size: u64,
    /// Complete the upload before then; afterwards the sweeper may abort it.
    pub expires_at: DateTime<Utc>,
    pub put: DirectPut,
    /// When the PUT's URL stops working.
    pub put_expires_at: DateTime<Utc>,
}

/// A direct upload's declaration, as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectUpload {
    pub file_id: Uuid,
    pub file_size: i64,
    pub sha256: String,
    /// Why completion refused the file (a serialised [`UploadError`]), once it has.
    pub refusal: Option<String>,
}

/// Checks a declaration the way `POST /uploads` checks a file: name, size, then the SHA-256.
fn check_declared(state: &App, declared: &Declared) -> Result<(String, DocumentKind), UploadError> {
    let file_name = sanitize_file_name(&declared.file_name);
    let kind = kind_of(state, &file_name)?;
    if declared.file_size == 0 {
        return Err(UploadError::Empty);
    }
    if declared.file_size > state.uploads().max_bytes {
        return Err(UploadError::too_large(state.uploads().max_bytes));
    }
    let sha = &declared.sha256;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UploadError::Declaration(
            "sha256 must be the file's SHA-256 as 64 hexadecimal digits".into(),
        ));
    }
    Ok((file_name, kind))
}

/// `POST /uploads/direct`: records the declaration and returns where to PUT the bytes.
/// `base_url` is Stowage's own address, for stores that cannot presign (the local directory).
pub async fn open(
    state: &App,
    client_id: &str,
    declared: &Declared,
    base_url: &str,
) -> Result<Opened, UploadError> {
    let (file_name, _kind) = check_declared(state, declared)?;
    let sha256 = declared.sha256.to_ascii_lowercase();
    let window = state.uploads().direct_window;
    let id = Uuid::new_v4();
    let key = storage_key(client_id, id);
    let created_at = Utc::now();
    let put_expires_at = (created_at + delta(window)?)
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    let expires_at = put_expires_at + delta(state.sweep().receiving_grace)?;
    let put = state
        .store()
        .presign_put(&key, declared.file_size, &sha256, window, base_url)
        .await?;
    state
        .repo()
        .insert_direct(
            &NewFile {
                id,
                client_id: client_id.to_owned(),
                file_name: file_name.clone(),
                staging_key: key,
                created_at,
            },
            &DirectUpload {
                file_id: id,
                file_size: declared.file_size as i64,
                sha256,
                refusal: None,
            },
            put_expires_at,
        )
        .await?;
    Ok(Opened {
        id,
        file_name,
        file_size: declared.file_size,
        expires_at,
        put,
        put_expires_at,
    })
}

fn delta(d: Duration) -> Result<TimeDelta, UploadError> {
    TimeDelta::from_std(d).map_err(|e| UploadError::Internal(e.to_string()))
}

/// Whether an error is the file's fault (a refusal to record and repeat), not a passing one.
fn is_refusal(e: &UploadError) -> bool {
    !matches!(
        e,
        UploadError::Repo(_)
            | UploadError::Store(_)
            | UploadError::Spill(_)
            | UploadError::Internal(_)
            | UploadError::NotReceived
            | UploadError::TimedOut
    )
}

/// `POST /uploads/{id}/complete`: checks what arrived and stages it, or refuses it (deleting
/// the object). Completing a file already staged (or further along) answers with its record;
/// one already refused, with the same refusal.
pub async fn complete(state: &App, client_id: &str, id: Uuid) -> Result<FileRecord, UploadError> {
    let Some((record, direct)) = state.repo().direct_upload(client_id, id).await? else {
        return Err(UploadError::NotDirect);
    };
    if record.state != FileState::Receiving {
        return settled(record);
    }
    if let Some(refusal) = &direct.refusal {
        return Err(recorded(refusal));
    }
    match check_arrived(state, &record, &direct).await {
        Ok(facts) => match state.repo().mark_staged(&record, &facts).await {
            Ok(()) => {}
            // Completed (or aborted) by someone else meanwhile: answer as they did.
            Err(RepoError::Conflict(_)) => return again(state, client_id, id).await,
            Err(e) => return Err(e.into()),
        },
        Err(e) if is_refusal(&e) => {
            let refusal = serde_json::to_string(&e)
                .map_err(|e| UploadError::Internal(format!("refusal: {e}")))?;
            // Recorded first: a refusal that was answered must be answered again.
            if !state.repo().refuse_direct(id, &refusal).await? {
                return again(state, client_id, id).await;
            }
            let deleted = state
                .store()
                .delete(Area::Staging, std::slice::from_ref(&record.staging_key))
                .await;
            match deleted {
                Ok(failures) if failures.is_empty() => {}
                // The sweeper deletes it with the row at the end of the window.
                other => {
                    tracing::warn!(file_id = %id, outcome = ?other.map(|f| f.len()), "a refused direct upload's object was not deleted")
                }
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    again(state, client_id, id).await
}

async fn again(state: &App, client_id: &str, id: Uuid) -> Result<FileRecord, UploadError> {
    match state.repo().direct_upload(client_id, id).await? {
        None => Err(UploadError::NotDirect),
        Some((record, _)) if record.state != FileState::Receiving => settled(record),
        Some((_, direct)) => match direct.refusal {
            Some(refusal) => Err(recorded(&refusal)),
            None => Err(UploadError::NotReceived),
        },
    }
}

/// The answer for a direct upload that is no longer receiving.
fn settled(record: FileRecord) -> Result<FileRecord, UploadError> {
    match record.state {
        FileState::Expired | FileState::Discarded => Err(UploadError::Gone(record.state)),
        _ => Ok(record),
    }
}

fn recorded(refusal: &str) -> UploadError {
    serde_json::from_str(refusal).unwrap_or_else(|e| {
        UploadError::Internal(format!("a recorded refusal cannot be read: {e}"))
    })
}

/// Size, SHA-256 and content of what arrived, as `POST /uploads` would have checked them.
async fn check_arrived(
    state: &App,
    record: &FileRecord,
    direct: &DirectUpload,
) -> Result<StagedFacts, UploadError> {
    let kind = kind_of(state, &record.file_name)?;
    let key = &record.staging_key;
    let store = state.store();
    let declared = u64::try_from(direct.file_size).unwrap_or(0);
    // A small file comes in one request (one byte more than declared, to see a longer one);
    // a larger one is measured by a HEAD, and its checksum taken where the store verified it.
    let (size, bytes, verified_sha256) = if declared <= SMALL {
        let read = store
            .read_range(Area::Staging, key, 0, declared + 1)
            .await?;
        let Some((bytes, size)) = read else {
            return Err(UploadError::NotReceived);
        };
        (size, Some(bytes), None)
    } else {
        let Some(stat) = store.stat(Area::Staging, key).await? else {
            return Err(UploadError::NotReceived);
        };
        (stat.size, None, stat.verified_sha256)
    };
    if size != declared {
        return Err(UploadError::SizeMismatch {
            declared,
            received: size,
        });
    }
    let sha256 = match (&bytes, verified_sha256) {
        (Some(bytes), _) => hex::encode(Sha256::digest(bytes)),
        (None, Some(verified)) => verified,
        (None, None) => hash_object(store, key).await?,
    };
    if !sha256.eq_ignore_ascii_case(&direct.sha256) {
        return Err(UploadError::ChecksumMismatch);
    }
    match &bytes {
        Some(bytes) => check_content(state, kind, InMemory(bytes.clone()), size).await?,
        None => {
            let stored = StoredObject {
                state: state.clone(),
                key: key.to_owned(),
                runtime: tokio::runtime::Handle::current(),
            };
            check_content(state, kind, stored, size).await?;
        }
    }
    if let Some(min) = state.text().min_chars {
        match bytes {
            Some(bytes) => {
                let reader = std::io::Cursor::new(bytes);
                crate::staging::check_text_of(state, kind, reader, min).await?;
            }
            None => {
                let reader = store.open(Area::Staging, key).await?;
                crate::staging::check_text_of(state, kind, reader, min).await?;
            }
        }
    }
    let now = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    Ok(StagedFacts {
        content_type: kind.content_type().to_owned(),
        file_size: size as i64,
        sha256: sha256.to_ascii_lowercase(),
        uploaded_at: now,
        expires_at: now + delta(state.uploads().ttl)?,
    })
}

/// Reads the whole object to hash it: for stores that do not verify a checksum themselves.
async fn hash_object(store: &dyn Store, key: &str) -> Result<String, UploadError> {
    let mut reader = store.open(Area::Staging, key).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| UploadError::Internal(format!("reading the object: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Files up to this size are completed from one GET of the whole object; larger ones from a
/// `HEAD` and ranged GETs of what the checks read.
const SMALL: u64 = 1024 * 1024;

/// A small object, read whole, as a [`RangeSource`].
struct InMemory(bytes::Bytes);

impl RangeSource for InMemory {
    fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut all = &self.0[..];
        all.read_at(offset, len)
    }
}

/// The object in staging as a [`RangeSource`]: each block is one ranged GET.
struct StoredObject {
    state: App,
    key: String,
    runtime: tokio::runtime::Handle,
}

impl RangeSource for StoredObject {
    fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let read = self
            .state
            .store()
            .read_range(Area::Staging, &self.key, offset, len as u64);
        match self.runtime.block_on(read) {
            Ok(Some((bytes, _))) => Ok(bytes.to_vec()),
            Ok(None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the object is gone",
            )),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The content checks of `POST /uploads`, on ranges of the stored object: the head, a PDF's
/// tail (and, for the ZIP a PDF may hide, head and tail), the ZIP or OLE directories and what
/// they point at; a `.txt` is read whole.
async fn check_content<S: RangeSource + Send + 'static>(
    state: &App,
    kind: DocumentKind,
    source: S,
    size: u64,
) -> Result<(), UploadError> {
    // Only the parts that decide the type are inflated: the others are held to the sizes the
    // ZIP directory declares (reading them all would read the whole file).
    let limits = sniff::DocxLimits {
        inflate_all: false,
        ..state.uploads().docx_limits.clone()
    };
    tokio::task::spawn_blocking(move || {
        let content = |e| UploadError::content(kind, e);
        let io = |e: std::io::Error| UploadError::Internal(format!("reading the object: {e}"));
        let mut reader = RangeReader::new(source, size);
        let head = reader.range(0, sniff::HEAD_LEN).map_err(io)?;
        sniff::check_head(kind, &head).map_err(content)?;
        match kind {
            DocumentKind::Pdf => {
                let tail_at = size.saturating_sub(sniff::TAIL_LEN as u64);
                let tail = reader.range(tail_at, sniff::TAIL_LEN).map_err(io)?;
                let mut archive = sniff::ArchiveScanner::default();
                archive.feed(&head);
                let mut archive_tail = sniff::ArchiveScanner::default();
                archive_tail.feed(&tail);
                archive.finish().map_err(content)?;
                archive_tail.finish().map_err(content)?;
                sniff::check_pdf_tail(&tail).map_err(content)?;
            }
            DocumentKind::Txt => {
                let mut utf8 = sniff::Utf8Stream::default();
                let mut at = 0;
                while at < size {
                    let chunk = reader.range(at, sniff::ranges::BLOCK).map_err(io)?;
                    utf8.feed(&chunk).map_err(content)?;
                    at += chunk.len() as u64;
                }
                utf8.finish().map_err(content)?;
            }
            DocumentKind::Doc | DocumentKind::Docx => {
                reader.seek(SeekFrom::Start(0)).map_err(io)?;
                sniff::check_whole(kind, reader, &limits).map_err(content)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| UploadError::Internal(format!("content check: {e}")))?
}
