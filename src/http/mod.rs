//! The HTTP API: one module per route group, the error envelope and authentication.

pub mod auth;
pub mod error;
mod files;
pub mod limits;
pub mod multipart;
pub mod openapi;
mod ops;
mod uploads;
mod webhooks;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyDeadlineLayer, RequestBodyTimeoutLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::repo::Repo;
use crate::sniff::{DocumentKind, DocxLimits};
use crate::store::Store;
use crate::telemetry::Telemetry;
use error::{ApiError, ErrorCode, REQUEST_ID};
use limits::Limits;

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The knobs the handlers need, taken from [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub upload_ttl: Duration,
    pub max_upload_bytes: u64,
    pub allowed_extensions: BTreeSet<DocumentKind>,
    pub docx_limits: DocxLimits,
    pub ops_token: Option<String>,
    pub body_idle_timeout: Duration,
    pub body_timeout: Duration,
    pub header_read_timeout: Duration,
    pub receiving_grace: Duration,
    pub tombstone_retention: Duration,
    pub sweep_timeout: Duration,
    pub rate_limit: u64,
    pub max_concurrent_uploads: usize,
    /// Temporary disk space for uploads in flight (shared with the S3 store's writers).
    pub spill: crate::spill::Spill,
}

impl Settings {
    /// The handler settings a configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            upload_ttl: config.upload_ttl,
            max_upload_bytes: config.max_upload_bytes,
            allowed_extensions: config.allowed_extensions.clone(),
            docx_limits: DocxLimits::default(),
            ops_token: config.ops_token.clone(),
            body_idle_timeout: config.body_idle_timeout,
            body_timeout: config.body_timeout,
            header_read_timeout: config.header_read_timeout,
            receiving_grace: config.receiving_grace,
            tombstone_retention: config.tombstone_retention,
            sweep_timeout: config.sweep_timeout,
            rate_limit: config.rate_limit,
            max_concurrent_uploads: config.max_concurrent_uploads,
            spill: crate::spill::Spill::new(
                config.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
                config.spill_limit,
            ),
        }
    }
}

struct Shared {
    repo: Arc<dyn Repo>,
    store: Arc<dyn Store>,
    settings: Settings,
    telemetry: Telemetry,
    limits: Limits,
}

/// What every handler shares: the repository, the store and the settings.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Bundles the parts of a running service.
    pub fn new(repo: Arc<dyn Repo>, store: Arc<dyn Store>, settings: Settings) -> Self {
        let limits = Limits::new(settings.rate_limit, settings.max_concurrent_uploads);
        AppState(Arc::new(Shared {
            repo,
            store,
            settings,
            telemetry: Telemetry::new(),
            limits,
        }))
    }

    /// The per-key abuse limits.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// This instance's metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.0.telemetry
    }

    /// The database.
    pub fn repo(&self) -> &dyn Repo {
        self.0.repo.as_ref()
    }

    /// The object store.
    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    /// The handler settings.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
}

/// The whole HTTP API as a router.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let body_idle_timeout = state.settings().body_idle_timeout;
    let body_timeout = state.settings().body_timeout;

    let client_routes = Router::new()
        .merge(uploads::routes())
        .merge(webhooks::routes())
        .merge(files::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ));
    Router::new()
        .merge(client_routes)
        .merge(ops::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(request_context))
                .layer(RequestBodyTimeoutLayer::new(body_idle_timeout))
                .layer(RequestBodyDeadlineLayer::new(body_timeout)),
        )
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
