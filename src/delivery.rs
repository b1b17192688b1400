//! Delivering events: the [`Sender`] that signs and posts one event to one endpoint, and
//! [`deliver`], one attempt at a leased delivery, recorded. The worker (`src/worker.rs`) leases
//! due deliveries from the database (so with several replicas each is attempted by one of them
//! at a time) and sends up to [`CONCURRENCY`] at once. A worker that dies mid-attempt leaves
//! its lease to run out; another takes the delivery then. Receivers may therefore see an event
//! twice, never zero times.

use std::time::Duration;

use crate::app::App;
use crate::events;
use crate::repo::{AttemptRecord, DueDelivery, RepoError};

/// Deliveries in flight at once, per process. Each endpoint holds at most
/// `STOWAGE_EVENT_ENDPOINT_CONCURRENCY` of them and a client at most
/// `STOWAGE_EVENT_ENDPOINTS_PER_CLIENT` endpoints (4 × 10 by default), so one client's slow
/// endpoints leave slots for everyone else.
pub const CONCURRENCY: usize = 64;
/// How long a claimed delivery is held by its worker: twice the endpoint timeout and a margin,
/// so an attempt (bounded by the timeout) is recorded before another worker may take it.
pub(crate) fn lease(timeout: Duration) -> Duration {
    timeout.saturating_mul(2) + Duration::from_secs(5)
}

/// Attempts one leased delivery and records the outcome.
pub(crate) async fn deliver(app: &App, due: DueDelivery) -> Result<(), RepoError> {
    let secrets: Vec<&str> = std::iter::once(due.secret.as_str())
        .chain(due.previous_secret.as_deref())
        .collect();
    let attempt = app
        .sender()
        .send(&due.url, &secrets, due.event_id, &due.body)
        .await;
    let delivered = attempt.delivered();
    let policy = app.events();
    let number = due.attempt_count.saturating_add(1);
    let (status, retry_in) = events::after_attempt(
        attempt.delivered(),
        u32::try_from(number).unwrap_or(u32::MAX),
        policy.max_attempts,
        policy.retry_base,
        events::jitter(),
    );
    let finished_at = attempt.started_at
        + chrono::TimeDelta::from_std(attempt.duration).unwrap_or(chrono::TimeDelta::zero());
    app.telemetry()
        .event_delivery(status, attempt.duration, due.event_created_at);
    if let Some(error) = &attempt.error {
        tracing::info!(event = %due.event_id, endpoint = %due.endpoint_id, attempt = number,
            status = status.as_str(), %error, "event delivery attempt failed");
    }
    let recorded = app
        .repo()
        .record_attempt(&AttemptRecord {
            event_id: due.event_id,
            endpoint_id: due.endpoint_id,
            attempt: number,
            attempted_at: attempt.started_at,
            duration_ms: i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX),
            response_status_code: attempt.status_code.map(i32::from),
            error_message: attempt.error,
            status,
            next_attempt_at: retry_in.map(|wait| {
                finished_at + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX)
            }),
        })
        .await?;
    if !recorded {
        tracing::debug!(event = %due.event_id, endpoint = %due.endpoint_id,
            "another worker recorded this attempt first");
    }
    // A delivery ended the endpoint's run of failures with its record.
    if delivered {
        return Ok(());
    }
    endpoint_failed(app, &due, finished_at).await
}

/// Keeps the endpoint's run of failures, and disables it once every attempt has failed for
/// `STOWAGE_EVENT_DISABLE_AFTER`.
async fn endpoint_failed(
    app: &App,
    due: &DueDelivery,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), RepoError> {
    let disable_before = app
        .events()
        .disable_after
        .and_then(|after| chrono::TimeDelta::from_std(after).ok())
        .map(|after| at - after);
    if app
        .repo()
        .endpoint_failed(due.endpoint_id, at, disable_before)
        .await?
    {
        app.telemetry().endpoint_disabled();
        tracing::warn!(endpoint = %due.endpoint_id, url = %due.url,
            disable_after = %humantime::format_duration(app.events().disable_after.unwrap_or_default()),
            "event endpoint disabled: every attempt failed for too long; PATCH it with \"disabled\": false to deliver again");
    }
    Ok(())
}

/// Why registering an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Endpoint(#[from] events::EndpointError),
    /// The client has as many endpoints as `STOWAGE_EVENT_ENDPOINTS_PER_CLIENT` allows.
    #[error("A client may register at most {0} event endpoints; remove one first")]
    TooMany(usize),
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
}

/// Registers an endpoint for a client after checking its URL (form and addresses); the
/// record carries the new secret, to be shown once.
pub async fn register_endpoint(
    repo: &dyn crate::repo::Repo,
    client_id: &str,
    url: &str,
    types: Option<Vec<events::EventType>>,
    policy: &crate::policy::EventPolicy,
) -> Result<crate::repo::EndpointRecord, RegisterError> {
    let url = events::check_url(url, policy.allow_private).await?;
    // Each endpoint may hold a few delivery slots: a client's share of them is bounded.
    if repo.list_endpoints(Some(client_id)).await?.len() >= policy.endpoints_per_client {
        return Err(RegisterError::TooMany(policy.endpoints_per_client));
    }
    let endpoint = crate::repo::EndpointRecord {
        id: uuid::Uuid::new_v4(),
        client_id: client_id.to_owned(),
        url: url.to_string(),
        event_types: types,
        secret: events::new_secret(),
        created_at: chrono::Utc::now(),
        previous_secret: None,
        disabled_at: None,
    };
    repo.create_endpoint(&endpoint).await?;
    Ok(endpoint)
}
