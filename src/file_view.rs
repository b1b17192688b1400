//! A file as clients see it — the `GET /files/{id}` record — shared by the API and the events
//! that report a file's changes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{
    FileRecord, FileState, Slot, TextState, TextStatus, WebhookKind, WebhookRecord,
};

/// Times as clients see them: `2026-03-12T10:30:00Z`.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A file's malware scan (`STOWAGE_CLAMD`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanView {
    /// `clean`; `skipped` (clamd could not scan it and `STOWAGE_CLAMD_FAIL_OPEN` staged it);
    /// `infected` (found by `stowage rescan`: quarantined).
    status: crate::domain::ScanStatus,
    /// `ClamAV 1.4.3`; `null` when skipped.
    #[schema(required = true)]
    engine: Option<String>,
    /// The signature database version clamd reported.
    #[schema(required = true)]
    signatures: Option<String>,
    /// The signature found (infected only).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

impl From<&crate::domain::ScanRecord> for ScanView {
    fn from(scan: &crate::domain::ScanRecord) -> Self {
        ScanView {
            status: scan.status,
            engine: scan.engine.clone(),
            signatures: scan.signatures.clone(),
            signature: scan.found.clone(),
        }
    }
}

/// The webhook a file is bound to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BoundWebhook {
    webhook_id: Uuid,
    kind: WebhookKind,
    user_id: String,
    #[schema(required = true)]
    slot: Option<Slot>,
    #[schema(format = DateTime)]
    received_at: String,
}

/// A file as clients see it: its whole record, or — once erased — only what an erasure keeps.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum FileView {
    Record(Box<FileRecordView>),
    Erased(ErasedFileView),
}

/// What is left of an erased file: no name, type, size, hash or webhook.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErasedFileView {
    carv_file_id: Uuid,
    /// Always `erased`.
    state: FileState,
    #[schema(format = DateTime)]
    erased_at: String,
}

/// A file in any state but erased, with its webhook.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileRecordView {
    carv_file_id: Uuid,
    file_name: String,
    #[schema(required = true)]
    content_type: Option<String>,
    #[schema(required = true)]
    file_size: Option<i64>,
    /// Hex SHA-256 of the content.
    #[schema(required = true)]
    sha256: Option<String>,
    state: FileState,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    uploaded_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    expires_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    bound_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    promoted_at: Option<String>,
    /// The key in long-term storage, once promoted.
    #[schema(required = true)]
    storage_key: Option<String>,
    #[schema(required = true)]
    webhook: Option<BoundWebhook>,
    /// The text extraction, once the file is promoted (`GET /files/{id}/text`).
    #[schema(required = true)]
    text: Option<TextView>,
    /// The malware scan; absent when files are not scanned (`STOWAGE_CLAMD` unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<ScanView>,
}

/// Where a promoted file's text extraction stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TextView {
    status: TextStatus,
    /// Characters of text extracted.
    #[schema(required = true)]
    chars: Option<i64>,
    /// Where the text came from: `document` (the document's own text) or `ocr` (recognised
    /// from the images of a scanned PDF's pages, with `STOWAGE_OCR`); null until extracted.
    #[schema(value_type = Option<String>, required = true)]
    source: Option<crate::text::TextSource>,
    /// Why there is no text: `encrypted`, `no_text_layer`, `unreadable`, `timeout`, `too_large`.
    #[schema(value_type = Option<String>, required = true)]
    reason: Option<crate::text::FailureReason>,
    /// The same, as a sentence.
    #[schema(required = true)]
    error: Option<String>,
}

impl From<&TextState> for TextView {
    fn from(text: &TextState) -> Self {
        TextView {
            status: text.status,
            chars: text.chars,
            source: text.source.or(match text.status {
                // Extracted before sources were recorded: always the document's own text.
                TextStatus::Extracted => Some(crate::text::TextSource::Document),
                _ => None,
            }),
            reason: text.failure.as_ref().map(|f| f.reason),
            error: text.failure.as_ref().map(|f| f.message.clone()),
        }
    }
}

impl FileView {
    /// The record of a file and the webhook it is bound to, if any.
    pub fn from_parts(file: FileRecord, webhook: Option<&WebhookRecord>) -> FileView {
        if file.state == FileState::Erased {
            return FileView::Erased(ErasedFileView {
                carv_file_id: file.id,
                state: file.state,
                erased_at: api_time(file.erased_at.unwrap_or(file.created_at)),
            });
        }
        let webhook = webhook
            .filter(|w| Some(w.id) == file.webhook_id)
            .map(|w| BoundWebhook {
                webhook_id: w.id,
                kind: w.kind,
                user_id: w.user_id.clone(),
                slot: file.slot,
                received_at: api_time(w.created_at),
            });
        FileView::Record(Box::new(FileRecordView {
            carv_file_id: file.id,
            file_name: file.file_name,
            content_type: file.content_type,
            file_size: file.file_size,
            sha256: file.sha256,
            state: file.state,
            uploaded_at: file.uploaded_at.map(api_time),
            expires_at: file.expires_at.map(api_time),
            bound_at: file.bound_at.map(api_time),
            promoted_at: file.promoted_at.map(api_time),
            storage_key: file.promoted_key,
            webhook,
            text: file.text.as_ref().map(TextView::from),
            scan: file.scan.as_ref().map(ScanView::from),
        }))
    }
}
