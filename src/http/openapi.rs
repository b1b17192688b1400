//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the handlers'
//! annotations (utoipa). Every response body is the very type its handler returns, declared
//! beside the handler; the request bodies below document what the handlers parse.

use serde::Serialize;
use serde_json::{Value, json};
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
    /// The id `POST /uploads` answered (anything else is `file_not_found`).
    #[schema(format = Uuid)]
    pub carv_file_id: String,
}

/// The file slots of a candidate webhook.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateFiles {
    pub resume: Option<FileRef>,
}

/// The file slots of an application webhook; both are bound, or neither.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationFiles {
    pub resume: Option<FileRef>,
    /// Must not name the same file as `resume`.
    pub cover_letter: Option<FileRef>,
}

/// A candidate webhook (the CarvOS payload).
#[derive(Serialize, ToSchema)]
pub struct CandidateWebhook {
    /// Must equal the `X-ATS-Client-ID` header.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub client_id: String,
    /// The ATS's id of the candidate (not only blanks).
    #[schema(min_length = 1, pattern = "\\S")]
    pub user_id: String,
    /// Anything the ATS sends about the candidate; kept with the webhook.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub files: Option<CandidateFiles>,
}

/// An application webhook (the CarvOS payload).
#[derive(Serialize, ToSchema)]
pub struct ApplicationWebhook {
    /// Must equal the `X-ATS-Client-ID` header.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub client_id: String,
    /// The ATS's id of the candidate (not only blanks).
    #[schema(min_length = 1, pattern = "\\S")]
    pub user_id: String,
    /// Anything the ATS sends about the application; kept with the webhook.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub files: Option<ApplicationFiles>,
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
        super::direct::open_direct,
        super::direct::complete_direct,
        super::webhooks::candidates,
        super::webhooks::applications,
        super::files::get_file,
        super::files::get_content,
        super::files::get_text,
        super::files::list_files,
        super::files::erase_file,
        super::files::erase_user,
        super::events::create_endpoint,
        super::events::list_endpoints,
        super::events::delete_endpoint,
        super::events::test_endpoint,
        super::events::list_events,
        super::events::get_event,
        super::events::redeliver,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::ops::storage,
    ),
    components(schemas(super::error::ErrorEnvelope, UploadForm, CandidateWebhook, ApplicationWebhook)),
    modifiers(&Security),
    tags(
        (name = "uploads", description = "Stage files"),
        (name = "webhooks", description = "Bind staged files to candidates and applications"),
        (name = "files", description = "Read files in any state"),
        (name = "events", description = "Signed events about a client's files, delivered to its endpoints"),
        (name = "operations", description = "Health, readiness, metrics, storage"),
    )
)]
pub struct ApiDoc;

/// What the handlers' annotations cannot say, applied to every operation alike:
/// - every response carries `X-Request-Id`;
/// - a client operation (one that takes an API key) may answer `500`, carries the
///   `X-RateLimit-*` headers once the key is verified, and `Retry-After` on `429`;
/// - an operation with a body may answer `408` (the body stalled);
/// - `Location` is always sent where it is documented;
/// - the `X-ATS-Client-ID` header has the shape of a client id;
/// - an upload's form may carry other parts (ignored) whose names are plain header text.
fn finish(mut doc: Value) -> Value {
    fn header(description: &str, schema: Value, required: bool) -> Value {
        json!({ "description": description, "required": required, "schema": schema })
    }
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } });
    let integer = json!({ "type": "integer", "minimum": 0 });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                let client = operation
                    .get("security")
                    .is_some_and(|s| s.to_string().contains("\"api_key\""));
                let has_body = operation.contains_key("requestBody");
                for parameter in operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if parameter["name"] == "X-ATS-Client-ID" {
                        parameter["description"] =
                            json!("The client id (workspace) the key acts for");
                        parameter["schema"] = json!({
                            "type": "string", "minLength": 1, "maxLength": 64,
                            "pattern": "^[A-Za-z0-9._-]+$"
                        });
                    }
                }
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                if client {
                    responses.entry("500").or_insert_with(|| {
                        json!({ "description": "Internal error (the cause is logged with the request id)", "content": error })
                    });
                }
                if has_body {
                    responses.entry("408").or_insert_with(|| {
                        json!({ "description": "The body stalled longer than STOWAGE_BODY_IDLE_TIMEOUT (or took longer than STOWAGE_BODY_TIMEOUT); nothing was kept", "content": error })
                    });
                }
                for (status, response) in responses.iter_mut() {
                    let Some(headers) = response
                        .as_object_mut()
                        .map(|r| r.entry("headers").or_insert_with(|| json!({})))
                        .and_then(Value::as_object_mut)
                    else {
                        continue;
                    };
                    headers.insert(
                        "X-Request-Id".into(),
                        header(
                            "The request's id, also in the error body and the service's log",
                            json!({ "type": "string" }),
                            true,
                        ),
                    );
                    if let Some(location) = headers.get_mut("Location") {
                        location["required"] = json!(true);
                    }
                    if client {
                        headers.insert(
                            "X-RateLimit-Limit".into(),
                            header(
                                "Requests per minute this key may make (once the key is verified)",
                                integer.clone(),
                                false,
                            ),
                        );
                        headers.insert(
                            "X-RateLimit-Remaining".into(),
                            header(
                                "Requests this key may make right now",
                                integer.clone(),
                                false,
                            ),
                        );
                        headers.insert(
                            "X-RateLimit-Reset".into(),
                            header(
                                "Seconds until the whole allowance is back",
                                integer.clone(),
                                false,
                            ),
                        );
                        if status == "429" {
                            headers.insert(
                                "Retry-After".into(),
                                header(
                                    "Seconds until the next request is allowed (rate_limited)",
                                    integer.clone(),
                                    false,
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    if let Some(form) = doc.pointer_mut("/components/schemas/UploadForm") {
        form["propertyNames"] = json!({ "pattern": "^[^\\u0000-\\u001f\\u007f]*$" });
        form["additionalProperties"] = json!({ "description": "Other parts are ignored" });
    }
    doc
}

/// The finished document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        finish(serde_json::to_value(ApiDoc::openapi()).expect("the document serializes"))
    });
    &DOCUMENT
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> axum::Json<&'static Value> {
    axum::Json(document())
}
