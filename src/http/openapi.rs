//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the handlers'
//! annotations and the schema types below (utoipa).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::{FileState, Slot, WebhookKind};

/// The error envelope every failure answers with.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The inside of the error envelope.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, e.g. `file_expired`.
    pub code: String,
    pub message: String,
    /// Per-field or per-slot details, e.g. `{"files.resume": "…"}`.
    #[schema(value_type = Option<Object>)]
    pub details: Option<BTreeMap<String, String>>,
    /// Also in the `X-Request-Id` header and the service's log.
    pub request_id: String,
}

/// The multipart form of `POST /uploads`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The document; its file name gives the extension (`.pdf`, `.doc`, `.docx`).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A file reference in a webhook.
#[derive(Serialize, ToSchema)]
pub struct FileRef {
    pub carv_file_id: String,
}

/// The file slots of a webhook.
#[derive(Serialize, ToSchema)]
pub struct WebhookFiles {
    pub resume: Option<FileRef>,
    /// Applications only.
    pub cover_letter: Option<FileRef>,
}

/// A candidate or application webhook (the CarvOS payload).
#[derive(Serialize, ToSchema)]
pub struct WebhookRequest {
    /// Must equal the `X-ATS-Client-ID` header.
    pub client_id: String,
    pub user_id: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub files: Option<WebhookFiles>,
}

/// A file as a processed webhook reports it.
#[derive(Serialize, ToSchema)]
pub struct WebhookFile {
    pub carv_file_id: Uuid,
    pub state: FileState,
    pub file_name: String,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub sha256: Option<String>,
    pub storage_key: String,
}

/// The answer to a processed webhook (also to its retries).
#[derive(Serialize, ToSchema)]
pub struct WebhookResponse {
    pub webhook_id: Uuid,
    pub kind: WebhookKind,
    pub client_id: String,
    pub user_id: String,
    pub received_at: String,
    /// Keyed by slot: `resume`, `cover_letter`.
    pub files: BTreeMap<String, WebhookFile>,
}

/// The webhook a file is bound to.
#[derive(Serialize, ToSchema)]
pub struct BoundWebhook {
    pub webhook_id: Uuid,
    pub kind: WebhookKind,
    pub user_id: String,
    pub slot: Option<Slot>,
    pub received_at: String,
}

/// A file in any state, with its webhook.
#[derive(Serialize, ToSchema)]
pub struct FileView {
    pub carv_file_id: Uuid,
    pub file_name: String,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub sha256: Option<String>,
    pub state: FileState,
    pub uploaded_at: Option<String>,
    pub expires_at: Option<String>,
    pub bound_at: Option<String>,
    pub promoted_at: Option<String>,
    pub storage_key: Option<String>,
    pub webhook: Option<BoundWebhook>,
}

/// A presigned download (S3 backend).
#[derive(Serialize, ToSchema)]
pub struct PresignedDownload {
    pub url: String,
    pub expires_at: String,
}

/// Readiness of each dependency.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `database`, `staging_bucket`, `files_bucket`: `ok` or `unavailable: …`.
    pub checks: BTreeMap<String, String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "client_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-ATS-Client-ID"))),
        );
        components.add_security_scheme(
            "ops_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stowage",
        description = "Two-phase staged file uploads: stage a document, bind it to a webhook exactly once, promote it to long-term storage."
    ),
    paths(
        super::uploads::create_upload,
        super::uploads::get_upload,
        super::uploads::delete_upload,
        super::webhooks::candidates,
        super::webhooks::applications,
        super::files::get_file,
        super::files::get_content,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::ops::storage,
    ),
    components(schemas(ErrorEnvelope, ErrorBody, UploadForm, WebhookRequest, WebhookResponse, FileView, Readiness)),
    modifiers(&Security),
    tags(
        (name = "uploads", description = "Stage files"),
        (name = "webhooks", description = "Bind staged files to candidates and applications"),
        (name = "files", description = "Read files in any state"),
        (name = "operations", description = "Health, readiness, metrics, storage"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
