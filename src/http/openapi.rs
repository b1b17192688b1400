//! The finishing of the OpenAPI document (`GET /openapi.json`): the security schemes and what
//! every operation shares, which the handlers' annotations cannot say. A leaf: the document
//! itself is derived in `http/mod.rs` from the handlers' annotations, every body the very type
//! its handler returns or parses, declared beside the handler.

use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The authentication schemes every operation refers to.
pub(super) struct Security;

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
            "upload_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("stu_…")
                    .description(Some(
                        "An upload token (`POST /upload-tokens`): opens and completes its own uploads only",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "ops_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the handlers' annotations cannot say, applied to every operation alike:
/// - every response carries `X-Request-Id`;
/// - a client operation (one that takes an API key) may answer `500`, carries the
///   `X-RateLimit-*` headers once the key is verified, and `Retry-After` on `429`;
/// - an operation with a body may answer `408` (the body stalled);
/// - `Location` is always sent where it is documented;
/// - the `X-ATS-Client-ID` header has the shape of a client id;
/// - an upload's form may carry other parts (ignored) whose names are plain header text.
pub(super) fn finish(mut doc: Value) -> Value {
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

/// The document as this service answers it: what depends on the configuration — the largest
/// upload an upload token may allow, the extensions it may name — filled in.
pub(super) fn for_service(mut doc: Value, uploads: &crate::policy::UploadPolicy) -> Value {
    let token = &mut doc["components"]["schemas"]["NewUploadToken"]["properties"];
    if let Some(max_size) = token.get_mut("max_size") {
        max_size["maximum"] = json!(uploads.max_bytes);
    }
    if let Some(extensions) = token.get_mut("allowed_extensions") {
        let names: Vec<&str> = uploads
            .allowed_extensions
            .iter()
            .map(|k| k.extension())
            .collect();
        extensions["items"] = json!({ "type": "string", "enum": names });
    }
    doc
}
