//! Staging a file: the first half of the two-phase flow.
//!
//! The pipeline takes a file name and a source of bytes; it knows nothing of HTTP (the
//! multipart framing is the uploads handler's). The bytes are streamed: each chunk is counted
//! against the size limit, hashed and passed on to the store; only the first few KiB are held
//! to sniff the type, and `.doc`/`.docx` bodies are spooled to an anonymous temporary file
//! (disk, not memory) for their deep check. The `receiving` row is written before the first
//! byte reaches storage, and a guard removes the row and whatever reached storage on every
//! failure.

use std::collections::BTreeSet;
use std::io::BufReader;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::app::App;
use crate::domain::{FileRecord, StagedFacts, sanitize_file_name, storage_key};
use crate::repo::{Discard, NewFile, RepoError};
use crate::sniff::{self, ContentError, DocumentKind};
use crate::spill::SpillFile;
use crate::store::{Area, ObjectWriter, StoreError};

/// Where the bytes of a file come from (a multipart part, an object read back from storage).
#[async_trait]
pub trait ByteSource: Send {
    /// The next chunk; `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, UploadError>;
}

/// Why an upload was refused or failed. A refusal is recorded as a [`Refusal`] (its code,
/// message and details), so that a direct upload's completion can answer it again.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("No file part: send multipart/form-data with one part named 'file'")]
    Missing,
    /// The upload token is used up, expired or revoked (checked as the upload opens).
    #[error("This upload token is used up, expired or revoked")]
    TokenSpent,
    /// An upload token may complete only the direct uploads it opened.
    #[error("This upload token did not open this upload")]
    OtherToken,
    /// clamd found malware.
    #[error("The file is infected: {signature}")]
    Infected { signature: String },
    /// clamd could not scan the file, and unscanned files are refused.
    #[error("{0}")]
    ScanUnavailable(String),
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
    /// `STOWAGE_MIN_TEXT_CHARS`: the wording of the resume document APIs beside Stowage.
    #[error("CV seems too short. Please upload a complete CV (at least {min} characters)")]
    TextTooShort { min: u64, chars: i64 },
    #[error("Could not read file: {0}")]
    TextUnreadable(crate::text::TextFailure),
    #[error("Malformed multipart body: {0}")]
    Malformed(String),
    #[error("The request body was not received in time")]
    TimedOut,
    /// A direct upload's declaration is not usable (other than its name or size).
    #[error("{0}")]
    Declaration(String),
    /// A direct upload whose object is not the size declared.
    #[error(
        "File size does not match the declared size: {declared} bytes declared, {received} received"
    )]
    SizeMismatch { declared: u64, received: u64 },
    /// A direct upload whose object is not the bytes declared.
    #[error("File content does not match the declared SHA-256")]
    ChecksumMismatch,
    /// A direct upload completed before its bytes arrived (not a refusal: send them, complete
    /// again).
    #[error(
        "The file has not been received yet: PUT it to the upload URL, then complete the upload"
    )]
    NotReceived,
    /// No direct upload of this id for this client.
    #[error("File not found")]
    NotDirect,
    /// The upload's row was aborted (its bytes fell silent for longer than the grace period) or
    /// its file erased while the bytes arrived: nothing of it is kept.
    #[error("The upload was aborted or its file erased while it was received; nothing was kept")]
    Aborted,
    /// Every text extraction process is busy (`STOWAGE_TEXT_CONCURRENCY`): retry later.
    #[error("Every text extraction process is busy; retry later")]
    Busy,
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A refusal recorded earlier, answered again.
    #[error("{}", .0.message)]
    Recorded(Refusal),
}

/// A refusal as it is recorded and answered: the error envelope's code, message and details.
/// Stored as such (not as a serialised [`UploadError`]), so renaming a variant changes nothing
/// already recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
}

impl UploadError {
    pub(crate) fn content(kind: DocumentKind, error: ContentError) -> Self {
        match error {
            ContentError::Mismatch { detected } => UploadError::ContentMismatch { kind, detected },
            ContentError::Invalid { reason } => UploadError::ContentInvalid { kind, reason },
        }
    }

    /// The error code the API answers this with (`error.code`), for every error that is the
    /// request's or the file's; `None` for passing failures (database, storage, internal) and
    /// for an upload that is not there to be completed (`file_not_found`).
    pub fn code(&self) -> Option<&str> {
        Some(match self {
            UploadError::Missing => "file_missing",
            UploadError::MultipleFiles => "multiple_files",
            UploadError::NoExtension { .. } => "file_name_invalid",
            UploadError::ExtensionNotAllowed { .. } => "file_extension_not_allowed",
            UploadError::Empty => "file_empty",
            UploadError::TooLarge { .. } => "file_too_large",
            UploadError::ContentMismatch { .. } => "file_content_mismatch",
            UploadError::ContentInvalid { .. } => "file_content_invalid",
            UploadError::TextTooShort { .. } => "text_too_short",
            UploadError::TextUnreadable(_) => "text_unreadable",
            UploadError::Malformed(_) => "malformed_multipart",
            UploadError::TimedOut => "request_timeout",
            UploadError::Declaration(_) => "invalid_payload",
            UploadError::SizeMismatch { .. } => "file_size_mismatch",
            UploadError::ChecksumMismatch => "file_checksum_mismatch",
            UploadError::NotReceived => "upload_not_received",
            UploadError::Aborted => "upload_aborted",
            UploadError::TokenSpent => "unauthorized",
            UploadError::OtherToken => "token_scope",
            UploadError::Infected { .. } => "file_infected",
            UploadError::Recorded(refusal) => &refusal.code,
            UploadError::NotDirect
            | UploadError::ScanUnavailable(_)
            | UploadError::Busy
            | UploadError::Repo(_)
            | UploadError::Store(_)
            | UploadError::Spill(_)
            | UploadError::Internal(_) => return None,
        })
    }

    /// What the answer's `details` say.
    pub fn details(&self) -> std::collections::BTreeMap<String, String> {
        let detail = match self {
            UploadError::TextTooShort { chars, .. } => Some(("chars", chars.to_string())),
            UploadError::SizeMismatch { received, .. } => Some(("received", received.to_string())),
            UploadError::TextUnreadable(failure) => {
                Some(("reason", failure.reason.as_str().into()))
            }
            UploadError::Recorded(refusal) => return refusal.details.clone(),
            _ => None,
        };
        detail.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The refusal to record, if this is the file's fault (not a passing failure, nor a file
    /// that has not arrived or is gone).
    pub fn refusal(&self) -> Option<Refusal> {
        if matches!(
            self,
            UploadError::NotReceived
                | UploadError::Aborted
                | UploadError::TimedOut
                | UploadError::TokenSpent
                | UploadError::OtherToken
        ) {
            return None;
        }
        Some(Refusal {
            code: self.code()?.to_owned(),
            message: self.to_string(),
            details: self.details(),
        })
    }

    /// The size-limit refusal, worded as the API promises.
    pub fn too_large(max: u64) -> Self {
        UploadError::TooLarge {
            max,
            human: human_size(max),
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

/// What one upload may be: the service's limits, narrowed by the upload token it is opened
/// with, if any — which it then counts towards (`src/upload_tokens.rs`).
#[derive(Clone, Debug)]
pub struct Admission {
    pub max_bytes: u64,
    pub extensions: BTreeSet<DocumentKind>,
    /// The upload token the upload is opened with.
    pub token: Option<Uuid>,
}

impl Admission {
    /// The service's own limits (`STOWAGE_MAX_UPLOAD_BYTES`, `STOWAGE_ALLOWED_EXTENSIONS`).
    pub fn service(app: &App) -> Self {
        Admission {
            max_bytes: app.uploads().max_bytes,
            extensions: app.uploads().allowed_extensions.clone(),
            token: None,
        }
    }

    /// The allowed extensions as the error messages list them: `.doc, .docx, .pdf`.
    fn allowed_list(&self) -> String {
        self.extensions
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The document kind a (sanitised) file name claims, if it is allowed.
    pub fn kind_of(&self, file_name: &str) -> Result<DocumentKind, UploadError> {
        let Some(ext) = sniff::extension_of(file_name) else {
            return Err(UploadError::NoExtension {
                name: file_name.to_owned(),
                allowed: self.allowed_list(),
            });
        };
        DocumentKind::from_extension(&ext)
            .filter(|kind| self.extensions.contains(kind))
            .ok_or_else(|| UploadError::ExtensionNotAllowed {
                ext,
                allowed: self.allowed_list(),
            })
    }

    /// Counts the upload being opened towards its token, if any: one conditional update, so
    /// every replica shares the count; refused once the token is used up, expired or revoked.
    pub async fn open(&self, app: &App) -> Result<(), UploadError> {
        match self.token {
            Some(token) if !app.repo().use_upload_token(token, Utc::now()).await? => {
                Err(UploadError::TokenSpent)
            }
            _ => Ok(()),
        }
    }
}

/// Byte counting, hashing and the size limit, chunk by chunk.
pub(crate) struct Meter {
    size: u64,
    max: u64,
    hasher: Sha256,
}

impl Meter {
    /// A meter refusing more than `max` bytes.
    pub(crate) fn new(max: u64) -> Meter {
        Meter {
            size: 0,
            max,
            hasher: Sha256::new(),
        }
    }

    /// Bytes taken so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of everything taken, as lower-case hex.
    pub(crate) fn sha256_hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }

    /// Counts and hashes a chunk; past the limit, the size-limit refusal.
    pub(crate) fn take(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(UploadError::too_large(self.max));
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// The upload checks that look at the bytes as they stream past, and the spool the whole-document
/// checks read afterwards. One pipeline for both ways in: `POST /uploads` feeds it the part as
/// it arrives, a direct upload's completion the stored object as it is read back.
pub(crate) struct StreamChecks {
    app: App,
    kind: DocumentKind,
    tail: Option<sniff::PdfTail>,
    archive: Option<sniff::ArchiveScanner>,
    utf8: Option<sniff::Utf8Stream>,
    rtf: Option<sniff::RtfStream>,
    spool: Option<(SpillFile, tokio::fs::File)>,
    /// The malware scan, fed as the bytes pass (`STOWAGE_CLAMD`).
    scan: Option<crate::scan::ScanSession>,
}

/// What the stream checks leave for the rest of the pipeline.
pub(crate) struct Streamed {
    /// The spool, rewound, for [`check_document`].
    pub(crate) spool: Option<SpillFile>,
    /// The scan's outcome, when files are scanned.
    pub(crate) scan: Option<crate::domain::ScanRecord>,
}

impl StreamChecks {
    /// The checks a file of `kind` needs; a spool when a whole-document check will read it.
    pub(crate) fn new(app: &App, kind: DocumentKind) -> Result<StreamChecks, UploadError> {
        let pdf = kind == DocumentKind::Pdf;
        let text_check = app.text().min_chars.is_some();
        let spool = if kind.needs_deep_check() || text_check {
            let file = app.spill().file()?;
            let async_file = tokio::fs::File::from_std(file.try_clone()?);
            Some((file, async_file))
        } else {
            None
        };
        Ok(StreamChecks {
            app: app.clone(),
            kind,
            tail: pdf.then(sniff::PdfTail::default),
            archive: pdf.then(sniff::ArchiveScanner::default),
            utf8: (kind == DocumentKind::Txt).then(sniff::Utf8Stream::default),
            rtf: (kind == DocumentKind::Rtf).then(sniff::RtfStream::default),
            spool,
            scan: app.scanner().map(|s| s.session()),
        })
    }

    /// Looks at the next chunk of the file.
    pub(crate) async fn feed(&mut self, chunk: &Bytes) -> Result<(), UploadError> {
        let kind = self.kind;
        if let Some(tail) = self.tail.as_mut() {
            tail.feed(chunk);
        }
        if let Some(archive) = self.archive.as_mut() {
            archive.feed(chunk);
        }
        if let Some(utf8) = self.utf8.as_mut() {
            utf8.feed(chunk)
                .map_err(|e| UploadError::content(kind, e))?;
        }
        if let Some(rtf) = self.rtf.as_mut() {
            rtf.feed(chunk).map_err(|e| UploadError::content(kind, e))?;
        }
        if let Some((file, spool)) = self.spool.as_mut() {
            file.reserve(chunk.len())?;
            spool
                .write_all(chunk)
                .await
                .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
        }
        if let Some(scan) = self.scan.as_mut() {
            scan.feed(chunk).await;
        }
        Ok(())
    }

    /// The checks that needed the whole stream (an archive anywhere in a PDF, its tail, the end
    /// of UTF-8 text) and the scan's verdict; the spool, rewound, for [`check_document`].
    /// Malware is reported as such before any content refusal it may also earn; a content
    /// refusal before a scan that could not be made.
    pub(crate) async fn end(self) -> Result<Streamed, UploadError> {
        let kind = self.kind;
        let content = (|| {
            if let Some(archive) = self.archive {
                archive
                    .finish()
                    .map_err(|e| UploadError::content(kind, e))?;
            }
            if let Some(utf8) = self.utf8 {
                utf8.finish().map_err(|e| UploadError::content(kind, e))?;
            }
            if let Some(rtf) = self.rtf {
                rtf.finish().map_err(|e| UploadError::content(kind, e))?;
            }
            if let Some(tail) = self.tail {
                tail.finish().map_err(|e| UploadError::content(kind, e))?;
            }
            Ok::<_, UploadError>(())
        })();
        let scan = match self.scan {
            None => Ok(None),
            Some(session) => scan_verdict(&self.app, session).await.map(Some),
        };
        let scan = match (content, scan) {
            (_, Err(infected @ UploadError::Infected { .. })) => return Err(infected),
            (Err(refused), _) => return Err(refused),
            (Ok(()), scan) => scan?,
        };
        let spool = match self.spool {
            None => None,
            Some((mut file, mut async_file)) => {
                async_file
                    .flush()
                    .await
                    .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
                drop(async_file);
                file.rewound()?;
                Some(file)
            }
        };
        Ok(Streamed { spool, scan })
    }
}

/// The scan's verdict as the pipeline takes it: clean, infected (`file_infected`), or — clamd
/// unreachable or too slow — refused with 503 (`scan_unavailable`), or staged marked `skipped`
/// under `STOWAGE_CLAMD_FAIL_OPEN`.
async fn scan_verdict(
    app: &App,
    session: crate::scan::ScanSession,
) -> Result<crate::domain::ScanRecord, UploadError> {
    use crate::domain::ScanRecord;
    use crate::scan::Verdict;
    let (outcome, took) = session.finish().await;
    let (label, result) = match outcome {
        Ok((Verdict::Clean, engine)) => (
            "clean",
            Ok(ScanRecord::verdict(engine.engine, engine.signatures, None)),
        ),
        Ok((Verdict::Infected(signature), _)) => {
            tracing::warn!(%signature, "upload refused: clamd found malware");
            ("infected", Err(UploadError::Infected { signature }))
        }
        Err(e) if app.scan().fail_open => {
            tracing::warn!(error = %e, "file staged unscanned (STOWAGE_CLAMD_FAIL_OPEN)");
            ("skipped", Ok(ScanRecord::skipped()))
        }
        Err(e) => ("error", Err(UploadError::ScanUnavailable(e.to_string()))),
    };
    app.telemetry().scan(label, took);
    result
}

/// A file refused for its content, scanned as far as it was read: malware is reported as such
/// (`file_infected`) rather than as the content error it also is.
async fn infected_or(app: &App, seen: &[Bytes], refused: UploadError) -> UploadError {
    let Some(scanner) = app.scanner() else {
        return refused;
    };
    let mut session = scanner.session();
    for chunk in seen {
        session.feed(chunk).await;
    }
    match session.finish().await.0 {
        Ok((crate::scan::Verdict::Infected(signature), _)) => {
            tracing::warn!(%signature, "upload refused: clamd found malware");
            UploadError::Infected { signature }
        }
        _ => refused,
    }
}

/// The checks of the whole document, once every byte has been seen: the deep structure of a
/// `.doc`/`.docx` (every entry inflated, within the bomb limits), then, with
/// `STOWAGE_MIN_TEXT_CHARS`, the text check. Both ways in end here.
pub(crate) async fn check_document(
    app: &App,
    kind: DocumentKind,
    spool: Option<SpillFile>,
) -> Result<(), UploadError> {
    let mut spool = spool;
    if kind.needs_deep_check()
        && let Some(mut file) = spool.take()
    {
        let limits = app.uploads().docx_limits.clone();
        spool = Some(
            tokio::task::spawn_blocking(move || {
                sniff::check_whole(kind, BufReader::new(file.rewound()?), &limits)
                    .map_err(|e| UploadError::content(kind, e))?;
                Ok::<_, UploadError>(file)
            })
            .await
            .map_err(|e| UploadError::Internal(format!("deep check: {e}")))??,
        );
    }
    if let Some(min) = app.text().min_chars {
        let file = spool
            .as_mut()
            .ok_or_else(|| UploadError::Internal("the spool for the text check is gone".into()))?;
        check_text(app, kind, file, min).await?;
    }
    Ok(())
}

/// Reads the file to its end into the writer, through the stream checks. Returns the spool,
/// rewound.
async fn receive_body(
    cleanup: &mut Cleanup,
    kind: DocumentKind,
    head: Vec<Bytes>,
    source: &mut dyn ByteSource,
    meter: &mut Meter,
) -> Result<Streamed, UploadError> {
    let mut checks = StreamChecks::new(&cleanup.app, kind)?;
    let mut multipart_recorded = false;
    let heartbeat = cleanup.app.uploads().heartbeat;
    let mut last_sign = std::time::Instant::now();
    let mut pending = head.into_iter();
    let mut next = pending.next();
    while let Some(chunk) = next {
        checks.feed(&chunk).await?;
        let writer = cleanup.writer()?;
        writer.write(chunk).await?;
        if !multipart_recorded && let Some(upload_id) = writer.multipart_upload_id() {
            let upload_id = upload_id.to_owned();
            cleanup
                .app
                .repo()
                .set_multipart_upload(cleanup.id, &upload_id)
                .await?;
            multipart_recorded = true;
            crate::fault::point("upload.mid_multipart");
        }
        if last_sign.elapsed() >= heartbeat {
            last_sign = std::time::Instant::now();
            let touched = cleanup.app.repo().touch_receiving(cleanup.id, Utc::now());
            match touched.await {
                Ok(true) => {}
                // Aborted by the sweeper or erased meanwhile: nothing of it may be kept.
                Ok(false) => return Err(UploadError::Aborted),
                Err(e) => {
                    tracing::warn!(file_id = %cleanup.id, error = %e, "could not record upload activity")
                }
            }
        }
        next = match pending.next() {
            Some(chunk) => Some(chunk),
            None => {
                let chunk = source.next_chunk().await?;
                if let Some(chunk) = &chunk {
                    meter.take(chunk)?;
                }
                chunk
            }
        };
    }
    checks.end().await
}

/// `STOWAGE_MIN_TEXT_CHARS`: extracts the received file's text (isolated, as after promotion)
/// and refuses a file with less than `min` characters, or none to read.
async fn check_text(
    app: &App,
    kind: DocumentKind,
    spool: &mut SpillFile,
    min: u64,
) -> Result<(), UploadError> {
    let file = spool
        .rewound()?
        .try_clone()
        .map_err(|e| UploadError::Internal(format!("spool: {e}")))?;
    let input = tokio::fs::File::from_std(file);
    let wait = crate::extraction::Wait::Bounded;
    let extracted = crate::extraction::extract_isolated(app.text(), kind, input, wait)
        .await
        .map_err(|e| match e {
            crate::extraction::RunError::Busy => UploadError::Busy,
            e => UploadError::Internal(format!("text check: {e}")),
        })?;
    let text = extracted.map_err(UploadError::TextUnreadable)?;
    let chars = crate::text::char_count(&text.body);
    if u64::try_from(chars).unwrap_or(0) < min {
        return Err(UploadError::TextTooShort { min, chars });
    }
    Ok(())
}

/// Reads until at least [`sniff::HEAD_LEN`] bytes (or the end) are in hand and checks them:
/// not empty, the magic bytes of `kind`. Returns the chunks as received.
/// What the file turns out to be (an RTF document named `.doc` is RTF, where RTF is
/// `allowed`) is returned with the head.
pub(crate) async fn read_head(
    app: &App,
    kind: DocumentKind,
    allowed: &BTreeSet<DocumentKind>,
    source: &mut dyn ByteSource,
    meter: &mut Meter,
) -> Result<(DocumentKind, Vec<Bytes>), UploadError> {
    let mut head = Vec::new();
    let mut len = 0;
    while len < sniff::HEAD_LEN {
        match source.next_chunk().await? {
            Some(chunk) => {
                meter.take(&chunk)?;
                len += chunk.len();
                head.push(chunk);
            }
            None => break,
        }
    }
    if meter.size == 0 {
        return Err(UploadError::Empty);
    }
    let first = head_bytes(&head);
    let actual = sniff::actual_kind(kind, &first);
    let kind = if allowed.contains(&actual) {
        actual
    } else {
        kind
    };
    if let Err(e) = sniff::check_head(kind, &first) {
        return Err(infected_or(app, &head, UploadError::content(kind, e)).await);
    }
    Ok((kind, head))
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

/// What a failed upload leaves behind and must be removed: its `receiving` row, its pending
/// write, and, once the write was finished, its object. Armed from the moment the row exists;
/// [`Cleanup::disarm`] on success. Error paths await [`Cleanup::run`]; a guard dropped armed (a
/// cancelled or panicking task) cleans up in the background.
struct Cleanup {
    app: App,
    id: Uuid,
    key: String,
    writer: Option<Box<dyn ObjectWriter>>,
    stored: bool,
    armed: bool,
}

impl Cleanup {
    fn writer(&mut self) -> Result<&mut Box<dyn ObjectWriter>, UploadError> {
        self.writer
            .as_mut()
            .ok_or_else(|| UploadError::Internal("the object writer is gone".into()))
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Removes what the failed upload left. Failures here are logged; the sweeper finds
    /// whatever is left (the row stays `receiving` while something may remain in storage).
    async fn run(mut self) {
        self.armed = false;
        clean_up(
            &self.app,
            self.id,
            &self.key,
            self.writer.take(),
            self.stored,
        )
        .await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (app, id, key, writer, stored) = (
            self.app.clone(),
            self.id,
            std::mem::take(&mut self.key),
            self.writer.take(),
            self.stored,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { clean_up(&app, id, &key, writer, stored).await });
        }
    }
}

async fn clean_up(
    app: &App,
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
        match app.store().delete(Area::Staging, &[key.to_owned()]).await {
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
    if clean && let Err(e) = app.repo().delete_receiving(id).await {
        tracing::warn!(file_id = %id, error = %e, "could not delete the row of a failed upload");
    }
}

/// A file whose bytes have all arrived but which is not yet visible in storage nor `staged`.
/// Dropping it (or [`Pending::abandon`]) removes everything it wrote.
pub struct Pending {
    cleanup: Cleanup,
    /// The file's row as written (`receiving`).
    receiving: FileRecord,
    kind: DocumentKind,
    meter: Meter,
    spool: Option<SpillFile>,
    scan: Option<crate::domain::ScanRecord>,
    now: DateTime<Utc>,
}

/// Checks the name and the head of a file, writes the `receiving` row, then streams the rest
/// from `source` into the staging area. On failure nothing is left behind.
pub async fn receive(
    app: &App,
    client_id: &str,
    admission: &Admission,
    raw_file_name: &str,
    source: &mut dyn ByteSource,
) -> Result<Pending, UploadError> {
    let file_name = sanitize_file_name(raw_file_name);
    let kind = admission.kind_of(&file_name)?;
    let mut meter = Meter::new(admission.max_bytes);
    let (kind, head) = read_head(app, kind, &admission.extensions, source, &mut meter).await?;
    admission.open(app).await?;

    let id = Uuid::new_v4();
    let key = storage_key(client_id, id);
    // The row's creation keeps full precision (it orders `GET /files`); the times clients see
    // are whole seconds.
    let created_at = Utc::now();
    let now = created_at
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    let new_file = NewFile {
        id,
        client_id: client_id.to_owned(),
        file_name,
        staging_key: key.clone(),
        created_at,
    };
    app.repo().insert_receiving(&new_file).await?;
    let mut cleanup = Cleanup {
        app: app.clone(),
        id,
        key: key.clone(),
        writer: None,
        stored: false,
        armed: true,
    };
    crate::fault::point("upload.before_store");
    let received = async {
        cleanup.writer = Some(app.store().begin_staging(&key).await?);
        receive_body(&mut cleanup, kind, head, source, &mut meter).await
    }
    .await;
    match received {
        Ok(streamed) => Ok(Pending {
            cleanup,
            receiving: new_file.receiving(),
            kind,
            meter,
            spool: streamed.spool,
            scan: streamed.scan,
            now,
        }),
        Err(e) => {
            let e = aborted_or(app, id, e).await;
            cleanup.run().await;
            Err(e)
        }
    }
}

/// A storage failure of an upload whose row the sweeper aborted (or an erasure took) while its
/// bytes arrived — its multipart upload aborted under it — is that abort, not a storage fault.
async fn aborted_or(app: &App, id: Uuid, e: UploadError) -> UploadError {
    if !matches!(e, UploadError::Store(_)) {
        return e;
    }
    match app.repo().touch_receiving(id, Utc::now()).await {
        Ok(false) => UploadError::Aborted,
        _ => e,
    }
}

impl Pending {
    /// Runs the deep check, makes the object visible and marks the row `staged`.
    pub async fn complete(self) -> Result<FileRecord, UploadError> {
        let Pending {
            mut cleanup,
            receiving,
            kind,
            meter,
            spool,
            scan,
            now,
        } = self;
        let finished = async {
            let app = cleanup.app.clone();
            check_document(&app, kind, spool).await?;
            let writer = cleanup
                .writer
                .take()
                .ok_or_else(|| UploadError::Internal("the object writer is gone".into()))?;
            // A failed finish aborts its own write; the object may exist all the same.
            cleanup.stored = true;
            writer.finish().await?;
            crate::fault::point("upload.after_store");
            let ttl = TimeDelta::from_std(app.uploads().ttl)
                .map_err(|e| UploadError::Internal(e.to_string()))?;
            let facts = StagedFacts {
                content_type: kind.content_type().to_owned(),
                file_size: meter.size() as i64,
                sha256: meter.sha256_hex(),
                uploaded_at: now,
                expires_at: now + ttl,
                scan,
            };
            match app
                .repo()
                .mark_staged(
                    receiving.id,
                    &facts,
                    &crate::events::NewEvent::staged(&receiving, &facts),
                )
                .await
            {
                Ok(()) => {}
                // Aborted by the sweeper (it fell silent) or erased while its bytes arrived.
                Err(RepoError::Conflict(_)) => return Err(UploadError::Aborted),
                Err(e) => return Err(e.into()),
            }
            crate::fault::point("upload.after_staged");
            Ok(facts)
        }
        .await;
        let facts = match finished {
            Ok(facts) => facts,
            Err(e) => {
                let e = aborted_or(&cleanup.app.clone(), cleanup.id, e).await;
                cleanup.run().await;
                return Err(e);
            }
        };
        cleanup.disarm();
        Ok(facts.staged(&receiving))
    }

    /// Throws the pending file away.
    pub async fn abandon(self) {
        self.cleanup.run().await;
    }
}

/// `DELETE /uploads/{id}`: a staged file becomes a `discarded` tombstone (so no webhook can bind
/// it any more), then its object is deleted; if that fails, the sweeper deletes it later.
pub async fn discard(app: &App, client_id: &str, id: Uuid) -> Result<Discard, RepoError> {
    let outcome = app
        .repo()
        .discard(client_id, id, &crate::events::Events)
        .await?;
    if let Discard::Discarded(record) = &outcome {
        let key = std::slice::from_ref(&record.staging_key);
        match app.store().delete(Area::Staging, key).await {
            Ok(failures) if failures.is_empty() => {}
            Ok(failures) => {
                tracing::warn!(file_id = %id, reason = %failures[0].reason, "discarded file's object not deleted")
            }
            Err(e) => {
                tracing::warn!(file_id = %id, error = %e, "discarded file's object not deleted")
            }
        }
        tracing::info!(file_id = %id, "file discarded");
    }
    Ok(outcome)
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
