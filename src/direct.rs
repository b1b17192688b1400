//! Direct uploads: the client declares a file (name, size, SHA-256), PUTs its bytes straight to
//! object storage with a URL that binds both, and asks Stowage to complete it. Completing runs
//! the pipeline of `POST /uploads` (`staging`) over the stored object, read once — only the
//! source of the bytes differs — and stages the file, or refuses it and deletes the object. The
//! answer is recorded, so completing again answers the same. An upload never completed is
//! aborted by the sweeper like any upload that fell silent: its row's activity time is the end
//! of its window. Once the window has closed, the sweeper deletes the staging key again of an
//! upload that is no longer live, so a still-signed URL cannot bring bytes back.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::app::App;
use crate::domain::{
    DirectUpload, FileRecord, FileState, StagedFacts, sanitize_file_name, storage_key,
};
use crate::repo::{NewFile, RepoError};
use crate::sniff::DocumentKind;
use crate::staging::{self, Admission, ByteSource, Meter, Refusal, StreamChecks, UploadError};
use crate::store::{Area, DirectPut, StoreError};

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

/// Checks a declaration the way `POST /uploads` checks a file: name, size, then the SHA-256.
fn check_declared(
    admission: &Admission,
    declared: &Declared,
) -> Result<(String, DocumentKind), UploadError> {
    let file_name = sanitize_file_name(&declared.file_name);
    let kind = admission.kind_of(&file_name)?;
    if declared.file_size == 0 {
        return Err(UploadError::Empty);
    }
    if declared.file_size > admission.max_bytes {
        return Err(UploadError::too_large(admission.max_bytes));
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
    app: &App,
    client_id: &str,
    admission: &Admission,
    declared: &Declared,
    base_url: &str,
) -> Result<Opened, UploadError> {
    let (file_name, _kind) = check_declared(admission, declared)?;
    let sha256 = declared.sha256.to_ascii_lowercase();
    let window = app.uploads().direct_window;
    let id = Uuid::new_v4();
    let key = storage_key(client_id, id);
    let created_at = Utc::now();
    let put_expires_at = (created_at + delta(window)?)
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    let expires_at = put_expires_at + delta(app.sweep().receiving_grace)?;
    let put = app
        .store()
        .presign_put(&key, declared.file_size, &sha256, window, base_url)
        .await?;
    admission.open(app).await?;
    app.repo()
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
                window_ends_at: put_expires_at,
                upload_token: admission.token,
            },
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

/// `POST /uploads/{id}/complete`: checks what arrived and stages it, or refuses it (deleting
/// the object). Completing a file already staged (or further along) answers with its record;
/// one already refused, with the same refusal. After the upload's window, or once the file was
/// discarded, erased or aborted, there is nothing to complete (`file_not_found`).
///
/// Completion and the sweeper's abort settle on one conditional change of the row: staging is
/// conditional on the row still `receiving`, and the sweeper deletes the row (conditionally)
/// before it deletes the object, so a file is never staged without its bytes.
///
/// With an upload token (`token`), only an upload that token opened can be completed; any other
/// id, known or not, is outside its scope.
pub async fn complete(
    app: &App,
    client_id: &str,
    token: Option<Uuid>,
    id: Uuid,
) -> Result<FileRecord, UploadError> {
    let upload = app.repo().direct_upload(client_id, id).await?;
    if token.is_some() && upload.as_ref().is_none_or(|(_, d)| d.upload_token != token) {
        return Err(UploadError::OtherToken);
    }
    let Some((record, direct)) = upload else {
        return Err(UploadError::NotDirect);
    };
    if record.state != FileState::Receiving {
        return settled(record);
    }
    if let Some(refusal) = &direct.refusal {
        return Err(recorded(refusal));
    }
    if Utc::now() > direct.window_ends_at {
        return Err(UploadError::NotDirect);
    }
    match check_arrived(app, &record, &direct).await {
        Ok(facts) => {
            crate::fault::pause("complete.before_staged").await;
            match app
                .repo()
                .mark_staged(
                    record.id,
                    &facts,
                    &crate::events::NewEvent::staged(&record, &facts),
                )
                .await
            {
                Ok(()) => Ok(facts.staged(&record)),
                // Completed, refused or aborted by someone else meanwhile: answer as they did.
                Err(RepoError::Conflict(_)) => again(app, client_id, id).await,
                Err(e) => Err(e.into()),
            }
        }
        Err(e) if let Some(refusal) = e.refusal() => {
            let refusal = serde_json::to_string(&refusal)
                .map_err(|e| UploadError::Internal(format!("refusal: {e}")))?;
            // Recorded first: a refusal that was answered must be answered again.
            if !app.repo().refuse_direct(id, &refusal).await? {
                return again(app, client_id, id).await;
            }
            let deleted = app
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
            Err(e)
        }
        // The object went missing or the row changed under the check (aborted, erased): the
        // row says what the answer is.
        Err(e @ (UploadError::NotReceived | UploadError::Store(StoreError::NotFound(_)))) => {
            match again(app, client_id, id).await {
                Err(UploadError::NotReceived) => Err(e),
                other => other,
            }
        }
        Err(e) => Err(e),
    }
}

async fn again(app: &App, client_id: &str, id: Uuid) -> Result<FileRecord, UploadError> {
    match app.repo().direct_upload(client_id, id).await? {
        None => Err(UploadError::NotDirect),
        Some((record, _)) if record.state != FileState::Receiving => settled(record),
        Some((_, direct)) => match direct.refusal {
            Some(refusal) => Err(recorded(&refusal)),
            None => Err(UploadError::NotReceived),
        },
    }
}

/// The answer for a direct upload that is no longer receiving: its record while it is live,
/// `file_not_found` once it is a tombstone (expired, discarded, erased), as a webhook naming a
/// discarded or erased file is told.
fn settled(record: FileRecord) -> Result<FileRecord, UploadError> {
    match record.state {
        FileState::Staged | FileState::Bound | FileState::Promoted => Ok(record),
        _ => Err(UploadError::NotDirect),
    }
}

/// A recorded refusal, answered again. One recorded before refusals were stored as a code and
/// a message cannot be read back as such: it is answered as a refusal all the same.
fn recorded(refusal: &str) -> UploadError {
    UploadError::Recorded(serde_json::from_str(refusal).unwrap_or_else(|_| Refusal {
        code: "file_content_invalid".into(),
        message: "The file was refused; upload it again".into(),
        details: Default::default(),
    }))
}

/// The stored object, read once from its start, as the staging pipeline's source of bytes.
struct StoredBytes(crate::store::ObjectStream);

#[async_trait::async_trait]
impl ByteSource for StoredBytes {
    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, UploadError> {
        use futures_util::StreamExt;
        self.0.next().await.transpose().map_err(|e| {
            UploadError::Store(StoreError::Unavailable(format!("reading the object: {e}")))
        })
    }
}

/// What arrived, checked by the pipeline of `POST /uploads` (`staging`): streamed once through
/// the size count and SHA-256, the magic bytes, the stream checks (an archive anywhere in a
/// PDF, its tail, UTF-8 text), then the whole-document checks (every `.docx` entry inflated
/// within the bomb limits, OLE chains) and the text check. Only the source of the bytes differs,
/// and the declared size and SHA-256 are held against what was read.
async fn check_arrived(
    app: &App,
    record: &FileRecord,
    direct: &DirectUpload,
) -> Result<StagedFacts, UploadError> {
    let kind = Admission::service(app).kind_of(&record.file_name)?;
    let declared = u64::try_from(direct.file_size).unwrap_or(0);
    let Some((stream, size)) = app.store().read(Area::Staging, &record.staging_key).await? else {
        return Err(UploadError::NotReceived);
    };
    let mismatch = |received| UploadError::SizeMismatch { declared, received };
    if size != declared {
        return Err(mismatch(size));
    }
    let mut source = StoredBytes(stream);
    let mut meter = Meter::new(declared);
    let taken = |e| match e {
        UploadError::TooLarge { .. } => mismatch(size),
        e => e,
    };
    let allowed = &Admission::service(app).extensions;
    let (kind, head) = staging::read_head(app, kind, allowed, &mut source, &mut meter)
        .await
        .map_err(taken)?;
    let mut checks = StreamChecks::new(app, kind)?;
    for chunk in &head {
        checks.feed(chunk).await?;
    }
    while let Some(chunk) = source.next_chunk().await? {
        meter.take(&chunk).map_err(taken)?;
        checks.feed(&chunk).await?;
    }
    if meter.size() != declared {
        return Err(mismatch(meter.size()));
    }
    let sha256 = meter.sha256_hex();
    if !sha256.eq_ignore_ascii_case(&direct.sha256) {
        return Err(UploadError::ChecksumMismatch);
    }
    let streamed = checks.end().await?;
    staging::check_document(app, kind, streamed.spool).await?;
    let now = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    Ok(StagedFacts {
        content_type: kind.content_type().to_owned(),
        file_size: size as i64,
        sha256,
        uploaded_at: now,
        expires_at: now + delta(app.uploads().ttl)?,
        scan: streamed.scan,
    })
}
