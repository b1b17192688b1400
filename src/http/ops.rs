//! Operations endpoints: liveness and readiness. They take no client headers.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use crate::report::StorageReport;
use crate::store::Area;

/// Longest a readiness probe waits on one dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ops/storage", get(storage))
}

/// When `STOWAGE_OPS_TOKEN` is set, `/metrics` and `/ops/storage` need it as a bearer token.
fn check_ops_token(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.http().ops_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "This endpoint needs Authorization: Bearer <STOWAGE_OPS_TOKEN>",
        ))
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "getMetrics",
    security((), ("ops_token" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, description = "STOWAGE_OPS_TOKEN is set and was not given", body = super::error::ErrorEnvelope),
    )
)]
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_ops_token(&state, &headers)?;
    let stats = state.repo().storage_stats().await?;
    let text = state.telemetry().render(&stats);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Files and bytes per state, expiry, the last sweep.
#[utoipa::path(
    get, path = "/ops/storage", tag = "operations", operation_id = "getStorageReport",
    security((), ("ops_token" = [])),
    responses(
        (status = 200, description = "Storage report", body = StorageReport),
        (status = 401, description = "STOWAGE_OPS_TOKEN is set and was not given", body = super::error::ErrorEnvelope),
    )
)]
async fn storage(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<StorageReport>, ApiError> {
    check_ops_token(&state, &headers)?;
    Ok(Json(StorageReport::load(state.repo()).await?))
}

/// The answer of `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "getHealth", responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness of each dependency.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    checks: ReadinessChecks,
}

/// Each dependency: `ok` or `unavailable` (the cause is in the service's log).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ReadinessChecks {
    database: String,
    staging_bucket: String,
    files_bucket: String,
    /// With `STOWAGE_CLAMD` only. While it is unavailable uploads are refused (503), so the
    /// replica is not ready — unless `STOWAGE_CLAMD_FAIL_OPEN` stages them unscanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    clamd: Option<String>,
}

/// `ok` or `unavailable`. The cause (which may name internal hosts and paths) goes to the log
/// with the request id, never to the unauthenticated caller.
async fn probe<F, E>(dependency: &str, check: F) -> String
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let cause = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => return "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
    };
    tracing::warn!(
        request_id = %super::error::current_request_id(),
        dependency,
        cause,
        "readiness check failed"
    );
    "unavailable".to_owned()
}

/// The database and both buckets answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down (named in checks)", body = Readiness),
    )
)]
async fn readyz(State(state): State<ApiState>) -> Response {
    let clamd = async {
        match state.scanner() {
            Some(scanner) => Some(probe("clamd", scanner.ping()).await),
            None => None,
        }
    };
    let (database, staging, files, clamd) = tokio::join!(
        probe("database", state.repo().ping()),
        probe("staging_bucket", state.store().check(Area::Staging)),
        probe("files_bucket", state.store().check(Area::Files)),
        clamd,
    );
    let scanning = clamd.as_deref().is_none_or(|c| c == "ok") || state.scan().fail_open;
    let ready = [&database, &staging, &files].iter().all(|s| *s == "ok") && scanning;
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks: ReadinessChecks {
            database,
            staging_bucket: staging,
            files_bucket: files,
            clamd,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
