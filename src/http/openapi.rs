//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the handlers'
//! annotations (utoipa). Every response body is the very type its handler returns, declared
//! beside the handler; the request bodies below document what the handlers parse.

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

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
    components(schemas(super::error::ErrorEnvelope, UploadForm, WebhookRequest)),
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
