//! Domain types shared by the HTTP layer, the repository and the stores.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Where a file is in its life; see "Life of a file" in `docs/design.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// A row exists, bytes may be on their way to the staging area.
    Receiving,
    /// Fully received and checked; waiting for a webhook.
    Staged,
    /// Claimed by a webhook; promotion to long-term storage pending.
    Bound,
    /// In long-term storage.
    Promoted,
    /// Nobody claimed it in time; object deleted, row kept as a tombstone.
    Expired,
    /// Deleted early by its client; object deleted, row kept as a tombstone.
    Discarded,
    /// Erased (personal data): every object deleted, the row kept as a tombstone with no name,
    /// type, size or hash.
    Erased,
}

impl FileState {
    /// Every state, in life-cycle order.
    pub const ALL: [FileState; 7] = [
        FileState::Receiving,
        FileState::Staged,
        FileState::Bound,
        FileState::Promoted,
        FileState::Expired,
        FileState::Discarded,
        FileState::Erased,
    ];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Receiving => "receiving",
            FileState::Staged => "staged",
            FileState::Bound => "bound",
            FileState::Promoted => "promoted",
            FileState::Expired => "expired",
            FileState::Discarded => "discarded",
            FileState::Erased => "erased",
        }
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown file state '{s}'"))
    }
}

/// One file as the repository knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub id: Uuid,
    pub client_id: String,
    pub state: FileState,
    pub file_name: String,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub sha256: Option<String>,
    pub staging_key: String,
    pub multipart_upload_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The webhook the file is bound to, and in which slot.
    pub webhook_id: Option<Uuid>,
    pub slot: Option<Slot>,
    /// Where the file lives in long-term storage once promoted.
    pub promoted_key: Option<String>,
    pub bound_at: Option<DateTime<Utc>>,
    pub promoted_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
    /// The text extraction of a promoted file (`None` before promotion).
    pub text: Option<TextState>,
    /// Its malware scan (`None`: not scanned, no clamd configured).
    pub scan: Option<ScanRecord>,
}

impl FileRecord {
    /// The record of this bound file once promoted to `promoted_key` at `at`: what the
    /// repository's promotion writes (its text extraction queued), so that an event can be
    /// written in the same statement as the change it reports.
    pub fn promoted(&self, promoted_key: &str, at: DateTime<Utc>) -> FileRecord {
        FileRecord {
            state: FileState::Promoted,
            promoted_key: Some(promoted_key.to_owned()),
            promoted_at: Some(at),
            text: Some(TextState {
                status: TextStatus::Pending,
                chars: None,
                source: None,
                failure: None,
            }),
            ..self.clone()
        }
    }
}

/// Where a promoted file's text extraction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextStatus {
    /// Queued or under way.
    Pending,
    /// Done: `GET /files/{id}/text` has it.
    Extracted,
    /// The document has no text Stowage can read; `error` says why.
    Failed,
}

impl TextStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TextStatus::Pending => "pending",
            TextStatus::Extracted => "extracted",
            TextStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for TextStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            TextStatus::Pending,
            TextStatus::Extracted,
            TextStatus::Failed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown text status '{s}'"))
    }
}

/// What the malware scan of a file said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScanStatus {
    /// clamd found nothing.
    Clean,
    /// clamd could not scan it and `STOWAGE_CLAMD_FAIL_OPEN` staged it all the same.
    Skipped,
    /// A later scan (`stowage rescan`) found it infected: it is quarantined.
    Infected,
}

impl ScanStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Clean => "clean",
            ScanStatus::Skipped => "skipped",
            ScanStatus::Infected => "infected",
        }
    }
}

impl std::str::FromStr for ScanStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ScanStatus::Clean, ScanStatus::Skipped, ScanStatus::Infected]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown scan status '{s}'"))
    }
}

/// A file's malware scan: its outcome, by which engine and signatures, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    pub status: ScanStatus,
    /// `ClamAV 1.4.3`; `None` when skipped.
    pub engine: Option<String>,
    /// The signature database version clamd reported, if it did.
    pub signatures: Option<String>,
    /// The signature that matched (infected only).
    pub found: Option<String>,
}

impl ScanRecord {
    /// A verdict of `engine` (with its `signatures` version): infected if a signature was
    /// `found`, clean otherwise.
    pub fn verdict(engine: String, signatures: Option<String>, found: Option<String>) -> Self {
        ScanRecord {
            status: if found.is_some() {
                ScanStatus::Infected
            } else {
                ScanStatus::Clean
            },
            engine: Some(engine),
            signatures,
            found,
        }
    }

    /// A file staged unscanned (`STOWAGE_CLAMD_FAIL_OPEN`).
    pub fn skipped() -> Self {
        ScanRecord {
            status: ScanStatus::Skipped,
            engine: None,
            signatures: None,
            found: None,
        }
    }
}

/// A promoted file's text: its status, how many characters were extracted, where they came
/// from, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextState {
    pub status: TextStatus,
    pub chars: Option<i64>,
    pub source: Option<crate::text::TextSource>,
    pub failure: Option<crate::text::TextFailure>,
}

impl TextState {
    /// The text state an extraction's outcome leaves a file in.
    pub fn after(outcome: &Result<crate::text::Text, crate::text::TextFailure>) -> TextState {
        match outcome {
            Ok(text) => TextState {
                status: TextStatus::Extracted,
                chars: Some(crate::text::char_count(&text.body)),
                source: Some(text.source),
                failure: None,
            },
            Err(failure) => TextState {
                status: TextStatus::Failed,
                chars: None,
                source: None,
                failure: Some(failure.clone()),
            },
        }
    }
}

/// Whether a webhook could carry this `user_id`: not blank, and no NUL (which PostgreSQL cannot
/// store in text).
pub fn is_storable_user_id(user_id: &str) -> bool {
    !user_id.trim().is_empty() && !user_id.contains('\0')
}

/// Why a file was erased, as its `file.erased` event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErasureReason {
    /// A client asked (`DELETE /files/{id}`, `POST /erasures`, `stowage erase`).
    Request,
    /// It was promoted longer ago than `STOWAGE_FILE_RETENTION`.
    Retention,
}

impl ErasureReason {
    /// The name in the event.
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureReason::Request => "request",
            ErasureReason::Retention => "retention",
        }
    }
}

/// The two kinds of webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Candidate,
    Application,
}

impl WebhookKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Candidate => "candidate",
            WebhookKind::Application => "application",
        }
    }

    /// The file slots a webhook of this kind may fill.
    pub fn slots(self) -> &'static [Slot] {
        match self {
            WebhookKind::Candidate => &[Slot::Resume],
            WebhookKind::Application => &[Slot::Resume, Slot::CoverLetter],
        }
    }
}

impl FromStr for WebhookKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "candidate" => Ok(WebhookKind::Candidate),
            "application" => Ok(WebhookKind::Application),
            other => Err(format!("unknown webhook kind '{other}'")),
        }
    }
}

/// The kinds of background job (`src/jobs/`), as the `jobs` table names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Extract a promoted file's text.
    ExtractText,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ExtractText => "extract_text",
        }
    }
}

impl FromStr for JobKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "extract_text" => Ok(JobKind::ExtractText),
            other => Err(format!("unknown job kind '{other}'")),
        }
    }
}

/// A named place for a file in a webhook. Slots are ordered as declared — `resume`, then
/// `cover_letter` — and every list of a webhook's files is in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    Resume,
    CoverLetter,
}

impl Slot {
    /// The name used in payloads and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Resume => "resume",
            Slot::CoverLetter => "cover_letter",
        }
    }
}

impl FromStr for Slot {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resume" => Ok(Slot::Resume),
            "cover_letter" => Ok(Slot::CoverLetter),
            other => Err(format!("unknown file slot '{other}'")),
        }
    }
}

/// Why one slot of a webhook could not be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotFailure {
    /// No such file for this client (or it was discarded, or is still being received).
    NotFound,
    /// The file is past its `expires_at` (swept or not).
    Expired { expired_at: Option<DateTime<Utc>> },
    /// The file is bound to another webhook.
    Consumed,
}

impl SlotFailure {
    /// Why a file could not be bound, from its state and expiry as they are at `now` (`None`:
    /// no row for this client); `None` if it is bindable after all.
    pub fn of(row: Option<(FileState, Option<DateTime<Utc>>)>, now: DateTime<Utc>) -> Option<Self> {
        Some(match row {
            None => SlotFailure::NotFound,
            Some((FileState::Staged, Some(expires_at))) if expires_at > now => return None,
            Some((FileState::Staged | FileState::Expired, expired_at)) => {
                SlotFailure::Expired { expired_at }
            }
            Some((FileState::Bound | FileState::Promoted, _)) => SlotFailure::Consumed,
            Some((FileState::Receiving | FileState::Discarded | FileState::Erased, _)) => {
                SlotFailure::NotFound
            }
        })
    }

    /// The machine code a client sees for this slot.
    pub fn code(self) -> &'static str {
        match self {
            SlotFailure::NotFound => "file_not_found",
            SlotFailure::Expired { .. } => "file_expired",
            SlotFailure::Consumed => "file_already_consumed",
        }
    }

    /// What the client should do about it.
    pub fn message(self) -> String {
        match self {
            SlotFailure::NotFound => {
                "File not found: no such carv_file_id for this client".to_owned()
            }
            SlotFailure::Expired {
                expired_at: Some(at),
            } => format!(
                "File expired at {}; upload a new file and retry the webhook",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            SlotFailure::Expired { expired_at: None } => {
                "File expired; upload a new file and retry the webhook".to_owned()
            }
            SlotFailure::Consumed => "File was already used by another webhook; upload the file \
                 again to get a new carv_file_id"
                .to_owned(),
        }
    }
}

/// Where a webhook is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Files bound; promotion under way (or interrupted, to be re-driven).
    Processing,
    /// Files bound and promotion attempted; `result` holds the answer.
    Processed,
    /// Refused; nothing was bound.
    Rejected,
}

impl WebhookStatus {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Processing => "processing",
            WebhookStatus::Processed => "processed",
            WebhookStatus::Rejected => "rejected",
        }
    }
}

impl FromStr for WebhookStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "processing" => Ok(WebhookStatus::Processing),
            "processed" => Ok(WebhookStatus::Processed),
            "rejected" => Ok(WebhookStatus::Rejected),
            other => Err(format!("unknown webhook status '{other}'")),
        }
    }
}

/// A webhook as the repository keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub client_id: String,
    pub kind: WebhookKind,
    pub user_id: String,
    pub payload: String,
    pub payload_hash: String,
    pub idempotency_key: Option<String>,
    pub status: WebhookStatus,
    pub result: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The facts known once a file has been fully received and checked.
#[derive(Clone, Debug)]
pub struct StagedFacts {
    pub content_type: String,
    pub file_size: i64,
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The malware scan, when clamd is configured.
    pub scan: Option<ScanRecord>,
}

impl StagedFacts {
    /// The record of a receiving file once staged with these facts: what the repository's
    /// `mark_staged` writes.
    pub fn staged(&self, receiving: &FileRecord) -> FileRecord {
        FileRecord {
            state: FileState::Staged,
            content_type: Some(self.content_type.clone()),
            file_size: Some(self.file_size),
            sha256: Some(self.sha256.clone()),
            multipart_upload_id: None,
            uploaded_at: Some(self.uploaded_at),
            expires_at: Some(self.expires_at),
            scan: self.scan.clone(),
            ..receiving.clone()
        }
    }
}

/// The storage key of a file: generated, never built from a client-supplied name.
pub fn storage_key(client_id: &str, file_id: Uuid) -> String {
    format!("{client_id}/{file_id}")
}

/// Whether a client id is safe to use in storage keys and logs: 1–64 of `[A-Za-z0-9._-]`,
/// not starting with a dot.
pub fn is_valid_client_id(client_id: &str) -> bool {
    (1..=64).contains(&client_id.len())
        && !client_id.starts_with('.')
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The longest display name kept, in characters.
const MAX_FILE_NAME_CHARS: usize = 255;

/// A client-supplied file name made safe for display: only its last path component, without
/// control characters, trimmed, and at most 255 characters (keeping the extension).
pub fn sanitize_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    if trimmed.chars().count() <= MAX_FILE_NAME_CHARS {
        return trimmed.to_owned();
    }
    match trimmed.rsplit_once('.') {
        Some((stem, ext)) if ext.chars().count() < 16 => {
            let keep = MAX_FILE_NAME_CHARS - ext.chars().count() - 1;
            format!("{}.{ext}", stem.chars().take(keep).collect::<String>())
        }
        _ => trimmed.chars().take(MAX_FILE_NAME_CHARS).collect(),
    }
}

/// A direct upload's declaration, as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectUpload {
    pub file_id: Uuid,
    pub file_size: i64,
    pub sha256: String,
    /// Why completion refused the file (a serialised `staging::UploadError`), once it has.
    pub refusal: Option<String>,
    /// When its upload URL stops working: completing later finds nothing to complete.
    pub window_ends_at: DateTime<Utc>,
    /// The upload token it was opened with, if any: only that token (or an API key of the
    /// client) may complete it.
    pub upload_token: Option<Uuid>,
}

/// JSON with object keys sorted at every level, whatever serde_json's map type is.
pub fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

/// A stored payload with the candidate's personal `data` removed (erasure); the rest — client,
/// `user_id`, the files it named — is kept. A payload that does not parse is emptied.
pub fn without_personal_data(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("data");
            canonical_json(&serde_json::Value::Object(map))
        }
        _ => "{}".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in FileState::ALL {
            assert_eq!(state.as_str().parse::<FileState>(), Ok(state));
        }
        assert!("gone".parse::<FileState>().is_err());
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitize_file_name("../../etc/passwd.pdf"), "passwd.pdf");
        assert_eq!(sanitize_file_name("C:\\Users\\jane\\cv.docx"), "cv.docx");
        assert_eq!(sanitize_file_name("re\0su\nme.pdf"), "resume.pdf");
        assert_eq!(sanitize_file_name("  ..hidden.pdf "), "hidden.pdf");
        assert_eq!(sanitize_file_name("evil\u{202E}fdp.exe"), "evilfdp.exe");
    }

    #[test]
    fn long_file_names_keep_their_extension() {
        let name = format!("{}.pdf", "a".repeat(400));
        let clean = sanitize_file_name(&name);
        assert_eq!(clean.chars().count(), 255);
        assert!(clean.ends_with(".pdf"));
    }

    #[test]
    fn client_ids_are_restricted_to_key_safe_characters() {
        assert!(is_valid_client_id("acme-eu_1.prod"));
        assert!(!is_valid_client_id(""));
        assert!(!is_valid_client_id("../x"));
        assert!(!is_valid_client_id("a/b"));
        assert!(!is_valid_client_id(&"a".repeat(65)));
    }
}
