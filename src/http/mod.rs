//! The HTTP API: one module per route group, the error envelope and authentication.

mod access;
pub mod auth;
mod direct;
pub mod error;
mod events;
mod files;
pub mod limits;
pub mod multipart;
pub mod openapi;
mod ops;
mod paging;
mod query;
mod tokens;
mod uploads;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyDeadlineLayer, RequestBodyTimeoutLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use error::{ApiError, ErrorCode, REQUEST_ID};
use limits::Limits;
use openapi::Security as OpenApiSecurity;

/// The whole API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Stowage",
        description = "Two-phase staged file uploads: stage a document, bind it to a webhook exactly once, promote it to long-term storage."
    ),
    paths(
        uploads::create_upload,
        uploads::get_upload,
        uploads::delete_upload,
        direct::open_direct,
        direct::complete_direct,
        tokens::create_token,
        tokens::revoke_token,
        webhooks::candidates,
        webhooks::applications,
        files::get_file,
        files::get_content,
        files::get_text,
        files::list_files,
        files::erase_file,
        files::erase_user,
        events::create_endpoint,
        events::list_endpoints,
        events::delete_endpoint,
        events::update_endpoint,
        events::rotate_secret,
        events::test_endpoint,
        events::list_events,
        events::get_event,
        events::redeliver,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::storage,
    ),
    components(schemas(error::ErrorEnvelope, uploads::UploadForm, webhooks::CandidateWebhook, webhooks::ApplicationWebhook)),
    modifiers(&OpenApiSecurity),
    tags(
        (name = "uploads", description = "Stage files"),
        (name = "webhooks", description = "Bind staged files to candidates and applications"),
        (name = "files", description = "Read files in any state"),
        (name = "events", description = "Signed events about a client's files, delivered to its endpoints"),
        (name = "operations", description = "Health, readiness, metrics, storage"),
    )
)]
struct ApiDoc;

/// The finished OpenAPI document, built once.
pub fn openapi_document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        let doc = <ApiDoc as utoipa::OpenApi>::openapi();
        openapi::finish(serde_json::to_value(doc).expect("the document serializes"))
    });
    &DOCUMENT
}

/// `GET /openapi.json`: the document with this service's own limits filled in.
async fn openapi_json(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::for_service(
        openapi_document().clone(),
        state.uploads(),
    ))
}

/// The address clients reach Stowage on: `STOWAGE_PUBLIC_URL`, else the request's `Host`.
pub(super) fn base_url(state: &ApiState, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &state.uploads().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A path id; anything that is not a UUID names no file.
pub(crate) fn parse_file_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::file_not_found())
}

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What every handler shares: the application and this instance's per-key abuse limits.
#[derive(Clone)]
pub struct ApiState {
    app: App,
    limits: Arc<Limits>,
}

impl ApiState {
    /// The application behind the API.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The per-key abuse limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl std::ops::Deref for ApiState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// The whole HTTP API as a router.
pub fn app(app: App) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let body_idle_timeout = app.http().body_idle_timeout;
    let body_timeout = app.http().body_timeout;
    let limits = Arc::new(Limits::new(
        app.http().rate_limit,
        app.http().max_concurrent_uploads,
    ));
    let cors = cors_layer(&app.http().cors_origins);
    let state = ApiState { app, limits };

    let client_routes = Router::new()
        .merge(direct::routes())
        .merge(uploads::routes())
        .merge(tokens::routes())
        .merge(webhooks::routes())
        .merge(files::routes())
        .merge(events::routes())
        .route_layer(middleware::from_fn(limits::rate_headers));
    Router::new()
        .merge(client_routes)
        .merge(direct::signed_routes())
        .merge(files::signed_routes())
        .merge(ops::routes())
        .route("/openapi.json", axum::routing::get(openapi_json))
        .route_layer(middleware::from_fn(query::refuse_unknown_parameters))
        .route_layer(middleware::from_fn(access::note_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    // The span only: every request is logged once by the access log, and a
                    // 500's cause once where it happens, so the layer's own "response failed"
                    // line (an ERROR for every 503 a readiness probe answers) is off.
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get(REQUEST_ID_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
                        })
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(request_context))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    access::access_log,
                ))
                .layer(RequestBodyTimeoutLayer::new(body_idle_timeout))
                .layer(RequestBodyDeadlineLayer::new(body_timeout)),
        )
        .layer(cors)
}

/// `STOWAGE_CORS_ORIGINS`: browsers on these origins may call the API (and preflight it).
fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-ats-client-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-amz-checksum-sha256"),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Whether a client-supplied request id is a plain token worth keeping: 1–128 of
/// `[A-Za-z0-9._:-]`. Anything else (spaces, quotes, control characters, kilobytes) could
/// forge or flood log lines, so it is replaced by a fresh id.
pub fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

async fn drop_unsafe_request_id(mut req: Request) -> Request {
    let unsafe_id = req
        .headers()
        .get_all(REQUEST_ID_HEADER)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !is_plain_request_id(v.as_bytes()));
    if unsafe_id {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

/// Makes the request id available to error responses further in.
async fn request_context(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    REQUEST_ID.scope(id, next.run(req)).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "No such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this route",
    )
}
