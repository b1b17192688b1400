//! `/event-endpoints`: where a client wants to hear about its files.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result};
use super::uploads::api_time;
use crate::events::{self, EventType, RegisterError};
use crate::repo::EndpointRecord;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/event-endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route("/event-endpoints/{id}", delete(delete_endpoint))
}

/// What registers an endpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    /// `https://` to a public address (see STOWAGE_EVENTS_ALLOW_PRIVATE).
    #[schema(min_length = 1, pattern = "^https?://")]
    url: String,
    /// The types to deliver; omitted or empty: every type.
    #[schema(value_type = Option<Vec<EventType>>)]
    events: Option<Vec<String>>,
}

/// An endpoint as listed: never its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EndpointView {
    id: Uuid,
    url: String,
    /// The types delivered to it.
    events: Vec<EventType>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new endpoint, with its signing secret — shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_…`: verifies `X-Webhook-Signature`. Store it now; it is not shown again.
    secret: String,
}

/// The endpoints of the caller's client.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EndpointList {
    results: Vec<EndpointView>,
}

fn view(endpoint: &EndpointRecord) -> EndpointView {
    EndpointView {
        id: endpoint.id,
        url: endpoint.url.clone(),
        events: endpoint.delivered_types(),
        created_at: api_time(endpoint.created_at),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidPayload, message).with_detail("field", field)
}

/// Register an endpoint; its secret is in this answer only.
#[utoipa::path(
    post, path = "/event-endpoints", tag = "events", operation_id = "createEventEndpoint",
    request_body(content = NewEndpoint, content_type = "application/json"),
    params(("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 201, description = "Registered", body = CreatedEndpoint),
        (status = 422, description = "invalid_payload: not https, not a public address, unknown event type", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn create_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedEndpoint>)> {
    let body = body.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let request: NewEndpoint = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("Request body is not valid JSON: {e}"),
            )
        } else {
            invalid("body", format!("Invalid endpoint: {e}"))
        }
    })?;
    let types = events::parse_types(request.events.iter().flatten().map(String::as_str))
        .map_err(|e| invalid("events", e.to_string()))?;
    let endpoint = events::register_endpoint(
        state.repo(),
        &caller.client_id,
        &request.url,
        types,
        state.events().allow_private,
    )
    .await
    .map_err(|e| match e {
        RegisterError::Endpoint(e) => invalid("url", e.to_string()),
        RegisterError::Repo(e) => e.into(),
    })?;
    tracing::info!(endpoint_id = %endpoint.id, url = %endpoint.url, "event endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint: view(&endpoint),
            secret: endpoint.secret,
        }),
    ))
}

/// The caller's endpoints (no secrets).
#[utoipa::path(
    get, path = "/event-endpoints", tag = "events", operation_id = "listEventEndpoints",
    params(("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The endpoints, oldest first", body = EndpointList),
        super::error::ClientFailures,
    )
)]
async fn list_endpoints(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<EndpointList>> {
    let endpoints = state.repo().list_endpoints(Some(&caller.client_id)).await?;
    Ok(Json(EndpointList {
        results: endpoints.iter().map(view).collect(),
    }))
}

/// Stop delivering to an endpoint.
#[utoipa::path(
    delete, path = "/event-endpoints/{id}", tag = "events", operation_id = "deleteEventEndpoint",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 204, description = "Removed: nothing more is delivered to it"),
        (status = 404, description = "No such endpoint for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn delete_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let not_found = || ApiError::new(ErrorCode::EndpointNotFound, "Event endpoint not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if state
        .repo()
        .remove_endpoint(Some(&caller.client_id), id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
