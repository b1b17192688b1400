//! `/event-endpoints` and `/events`: where a client wants to hear about its files, what it was
//! told, and telling it again.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Result, json_body};
use super::paging::{Page, bad_parameter};
use crate::delivery::RegisterError;
use crate::events::{self, DeliveryStatus, EventType};
use crate::file_view::api_time;
use crate::repo::{DeliveryRecord, EndpointRecord, EventRecord};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/event-endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/event-endpoints/{id}",
            delete(delete_endpoint).patch(update_endpoint),
        )
        .route("/event-endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/event-endpoints/{id}/test", post(test_endpoint))
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/events/{id}/redeliver", post(redeliver))
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
    /// Nothing is delivered to it (`PATCH` it with `"disabled": false` to deliver again).
    disabled: bool,
    /// Since when: disabled by the client, or after failing every attempt for
    /// `STOWAGE_EVENT_DISABLE_AFTER`.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    disabled_at: Option<String>,
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
        disabled: endpoint.disabled_at.is_some(),
        disabled_at: endpoint.disabled_at.map(api_time),
    }
}

/// The caller's endpoint in use with this id, or `404 endpoint_not_found`.
async fn own_endpoint(state: &ApiState, caller: &Caller, id: Uuid) -> Result<EndpointRecord> {
    state
        .repo()
        .list_endpoints(Some(&caller.client_id))
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(endpoint_not_found)
}

fn endpoint_not_found() -> ApiError {
    ApiError::new(ErrorCode::EndpointNotFound, "Event endpoint not found")
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
        (status = 409, description = "too_many_endpoints: the client has `STOWAGE_EVENT_ENDPOINTS_PER_CLIENT` already", body = super::error::ErrorEnvelope),
        (status = 422, description = "invalid_payload: not https, not a public address, unknown event type", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn create_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedEndpoint>)> {
    let request: NewEndpoint = json_body(body, "endpoint")?;
    let types = events::parse_types(request.events.iter().flatten().map(String::as_str))
        .map_err(|e| invalid("events", e.to_string()))?;
    let endpoint = crate::delivery::register_endpoint(
        state.repo(),
        &caller.client_id,
        &request.url,
        types,
        state.events(),
    )
    .await
    .map_err(|e| match e {
        RegisterError::Endpoint(e) => invalid("url", e.to_string()),
        e @ RegisterError::TooMany(_) => ApiError::new(ErrorCode::TooManyEndpoints, e.to_string()),
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

/// What `PATCH /event-endpoints/{id}` changes; a field left out stays as it is.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointPatch {
    /// `https://` to a public address (see STOWAGE_EVENTS_ALLOW_PRIVATE).
    #[schema(min_length = 1, pattern = "^https?://")]
    url: Option<String>,
    /// The types to deliver; `null` or empty: every type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<EventType>>)]
    events: Option<Option<Vec<String>>>,
    /// `true`: deliver nothing (pending deliveries fail); `false`: deliver new events again
    /// (nothing is redelivered by itself).
    disabled: Option<bool>,
}

/// A field that is present, even as `null`: `Some(None)`; absent: `None` (by `default`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Change an endpoint: where it points, what it gets, whether it is disabled.
#[utoipa::path(
    patch, path = "/event-endpoints/{id}", tag = "events", operation_id = "updateEventEndpoint",
    request_body(content = EndpointPatch, content_type = "application/json"),
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The endpoint as it is now", body = EndpointView),
        (status = 404, description = "No such endpoint for this client", body = super::error::ErrorEnvelope),
        (status = 422, description = "invalid_payload: not https, not a public address, unknown event type", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn update_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>> {
    let id = Uuid::parse_str(&id).map_err(|_| endpoint_not_found())?;
    let patch: EndpointPatch = json_body(body, "endpoint change")?;
    // An unknown endpoint is unknown, whatever the change would have been.
    own_endpoint(&state, &caller, id).await?;
    let url = match &patch.url {
        Some(url) => Some(
            events::check_url(url, state.events().allow_private)
                .await
                .map_err(|e| invalid("url", e.to_string()))?
                .to_string(),
        ),
        None => None,
    };
    let event_types = match patch.events {
        Some(names) => Some(
            events::parse_types(names.iter().flatten().map(String::as_str))
                .map_err(|e| invalid("events", e.to_string()))?,
        ),
        None => None,
    };
    let change = crate::repo::EndpointChange {
        url,
        event_types,
        disabled: patch.disabled,
    };
    let endpoint = state
        .repo()
        .update_endpoint(&caller.client_id, id, &change, chrono::Utc::now())
        .await?
        .ok_or_else(endpoint_not_found)?;
    tracing::info!(endpoint_id = %id, disabled = endpoint.disabled_at.is_some(), "event endpoint changed");
    Ok(Json(view(&endpoint)))
}

/// A new signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RotatedSecret {
    /// `whsec_…`: signs every delivery from now on. Store it now; it is not shown again.
    secret: String,
    /// Until then deliveries are also signed by the secret before (`webhook-signature` lists
    /// both; `X-Webhook-Previous-Signature` carries the old one).
    #[schema(format = DateTime)]
    previous_secret_expires_at: String,
}

/// Replace an endpoint's signing secret; the old one keeps signing for `STOWAGE_EVENT_SECRET_OVERLAP`.
#[utoipa::path(
    post, path = "/event-endpoints/{id}/rotate-secret", tag = "events", operation_id = "rotateEventEndpointSecret",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The new secret, shown only here", body = RotatedSecret),
        (status = 404, description = "No such endpoint for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn rotate_secret(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>> {
    let id = Uuid::parse_str(&id).map_err(|_| endpoint_not_found())?;
    let secret = events::new_secret();
    let overlap =
        chrono::TimeDelta::from_std(state.events().secret_overlap).map_err(ApiError::internal)?;
    let until = chrono::Utc::now() + overlap;
    if !state
        .repo()
        .rotate_secret(&caller.client_id, id, &secret, until)
        .await?
    {
        return Err(endpoint_not_found());
    }
    tracing::info!(endpoint_id = %id, "event endpoint secret rotated");
    Ok(Json(RotatedSecret {
        secret,
        previous_secret_expires_at: api_time(until),
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
    let id = Uuid::parse_str(&id).map_err(|_| endpoint_not_found())?;
    if state
        .repo()
        .remove_endpoint(Some(&caller.client_id), id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(endpoint_not_found())
    }
}

/// What a test delivery got.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TestDelivery {
    /// The endpoint answered a 2xx in time.
    delivered: bool,
    #[schema(required = true)]
    response_status_code: Option<u16>,
    /// Why it was not delivered.
    #[schema(required = true)]
    error_message: Option<String>,
}

/// Send a `ping` event to an endpoint now, and say what it answered.
#[utoipa::path(
    post, path = "/event-endpoints/{id}/test", tag = "events", operation_id = "testEventEndpoint",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "Sent (or tried): the outcome", body = TestDelivery),
        (status = 404, description = "No such endpoint for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn test_endpoint(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TestDelivery>> {
    let id = Uuid::parse_str(&id).map_err(|_| endpoint_not_found())?;
    let endpoint = own_endpoint(&state, &caller, id).await?;
    let ping = events::NewEvent::ping(&caller.client_id, chrono::Utc::now());
    let attempt = state
        .sender()
        .send(
            &endpoint.url,
            &endpoint.signing_secrets(chrono::Utc::now()),
            ping.id,
            &ping.body,
        )
        .await;
    Ok(Json(TestDelivery {
        delivered: attempt.delivered(),
        response_status_code: attempt.status_code,
        error_message: attempt.error,
    }))
}

/// An event as recorded, with what became of it at each endpoint.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EventView {
    /// Also `X-Webhook-Id` of every delivery: receivers de-duplicate by it.
    id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = EventType)]
    event_type: String,
    #[schema(format = DateTime)]
    created_at: String,
    client_id: String,
    /// Byte for byte what was delivered.
    #[schema(value_type = EventData)]
    data: serde_json::Value,
    /// Its delivery to each endpoint subscribed to it.
    deliveries: Vec<DeliveryView>,
}

/// An event as it was delivered (its stored body).
#[derive(Deserialize)]
struct StoredEvent {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    created_at: String,
    client_id: String,
    data: serde_json::Value,
}

/// What an event says: the file as `GET /files/{carv_file_id}` answered when the event happened
/// (absent for a `ping`, whose `data` is `{}`), and, for some types, more.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct EventData {
    file: Option<crate::file_view::FileView>,
    /// `file.erased`: why — `request` or `retention`.
    #[schema(pattern = "^(request|retention)$")]
    reason: Option<String>,
    /// `file.downloaded`: the name of the API key that read the file.
    key_name: Option<String>,
    /// `file.downloaded`: the id of the request that read it.
    request_id: Option<String>,
}

/// The delivery of an event to one endpoint.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DeliveryView {
    endpoint_id: Uuid,
    status: DeliveryStatus,
    attempt_count: i32,
    /// What the endpoint last answered, if it answered.
    #[schema(required = true)]
    response_status_code: Option<i32>,
    /// Why the last attempt did not deliver.
    #[schema(required = true)]
    error_message: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_attempt_at: Option<String>,
    /// When the next attempt is due (pending only).
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    next_attempt_at: Option<String>,
    /// Every attempt, oldest first (`GET /events/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<AttemptView>>,
}

/// One attempt at a delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AttemptView {
    attempt: i32,
    #[schema(format = DateTime)]
    attempted_at: String,
    duration_ms: i64,
    #[schema(required = true)]
    response_status_code: Option<i32>,
    #[schema(required = true)]
    error_message: Option<String>,
}

/// A page of events, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EventPage {
    results: Vec<EventView>,
    /// The path of the next page, or null on the last.
    #[schema(required = true)]
    next: Option<String>,
}

fn delivery_view(delivery: DeliveryRecord, with_attempts: bool) -> DeliveryView {
    DeliveryView {
        endpoint_id: delivery.endpoint_id,
        status: delivery.status,
        attempt_count: delivery.attempt_count,
        response_status_code: delivery.response_status_code,
        error_message: delivery.error_message,
        last_attempt_at: delivery.last_attempt_at.map(api_time),
        next_attempt_at: delivery.next_attempt_at.map(api_time),
        attempts: with_attempts.then(|| {
            delivery
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    attempted_at: api_time(a.attempted_at),
                    duration_ms: a.duration_ms,
                    response_status_code: a.response_status_code,
                    error_message: a.error_message,
                })
                .collect()
        }),
    }
}

fn event_view(event: EventRecord, with_attempts: bool) -> Result<EventView> {
    let stored: StoredEvent = serde_json::from_str(&event.body).map_err(|e| {
        ApiError::internal(format!("event {} has an unreadable body: {e}", event.id))
    })?;
    Ok(EventView {
        id: stored.id,
        event_type: stored.event_type,
        created_at: stored.created_at,
        client_id: stored.client_id,
        data: stored.data,
        deliveries: event
            .deliveries
            .into_iter()
            .map(|d| delivery_view(d, with_attempts))
            .collect(),
    })
}

/// The caller's events, newest first: the audit trail of what happened to its files.
#[utoipa::path(
    get, path = "/events", tag = "events", operation_id = "listEvents",
    params(
        ("type" = Option<EventType>, Query, description = "Only events of this type"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Events per page (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^([0-9a-f]{1,16}[0-9a-f]{32})?$", description = "Where the page starts: from the previous page's `next` (opaque)"),
        ("X-ATS-Client-ID" = String, Header),
    ),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        super::error::ClientFailures,
    )
)]
async fn list_events(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>> {
    let mut event_type = None;
    let page = Page::parse(query.as_deref(), |name, value| {
        if name != "type" {
            return Ok(false);
        }
        event_type = Some(
            value
                .parse::<EventType>()
                .map_err(|e| bad_parameter("type", e.to_string()))?,
        );
        Ok(true)
    })?;
    let mut events = state
        .repo()
        .list_events(&caller.client_id, event_type, page.cursor, page.fetch())
        .await?;
    let next = page.finish("/events", &mut events, |e| (e.created_at, e.id));
    Ok(Json(EventPage {
        results: events
            .into_iter()
            .map(|e| event_view(e, false))
            .collect::<Result<_>>()?,
        next,
    }))
}

fn event_not_found() -> ApiError {
    ApiError::new(ErrorCode::EventNotFound, "Event not found")
}

/// One event, with every delivery and every attempt at it.
#[utoipa::path(
    get, path = "/events/{id}", tag = "events", operation_id = "getEvent",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 200, description = "The event and its delivery log", body = EventView),
        (status = 404, description = "No such event for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn get_event(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EventView>> {
    let id = Uuid::parse_str(&id).map_err(|_| event_not_found())?;
    let event = state
        .repo()
        .get_event(&caller.client_id, id)
        .await?
        .ok_or_else(event_not_found)?;
    Ok(Json(event_view(event, true)?))
}

/// Queue an event again for every endpoint subscribed to it (failed, delivered or pending).
#[utoipa::path(
    post, path = "/events/{id}/redeliver", tag = "events", operation_id = "redeliverEvent",
    params(("id" = String, Path, format = Uuid), ("X-ATS-Client-ID" = String, Header)),
    security(("api_key" = [], "client_id" = [])),
    responses(
        (status = 202, description = "Queued: the event, its deliveries pending", body = EventView),
        (status = 404, description = "No such event for this client", body = super::error::ErrorEnvelope),
        super::error::ClientFailures,
    )
)]
async fn redeliver(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<EventView>)> {
    let id = Uuid::parse_str(&id).map_err(|_| event_not_found())?;
    if !state
        .repo()
        .redeliver(&caller.client_id, id, chrono::Utc::now())
        .await?
    {
        return Err(event_not_found());
    }
    let event = state
        .repo()
        .get_event(&caller.client_id, id)
        .await?
        .ok_or_else(event_not_found)?;
    Ok((StatusCode::ACCEPTED, Json(event_view(event, true)?)))
}
