//! Delivering events: the [`Sender`] that signs and posts one event to one endpoint, and
//! [`deliver`], one attempt at a leased delivery, recorded. The worker (`src/worker.rs`) leases
//! due deliveries from the database (so with several replicas each is attempted by one of them
//! at a time) and sends up to [`CONCURRENCY`] at once. A worker that dies mid-attempt leaves
//! its lease to run out; another takes the delivery then. Receivers may therefore see an event
//! twice, never zero times.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::app::{App, EventPolicy};
use crate::events::{self, EndpointError};
use crate::repo::{AttemptRecord, DueDelivery, RepoError};

/// Deliveries in flight at once, per process. Each endpoint holds at most
/// `STOWAGE_EVENT_ENDPOINT_CONCURRENCY` of them and a client at most
/// `STOWAGE_EVENT_ENDPOINTS_PER_CLIENT` endpoints (4 × 10 by default), so one client's slow
/// endpoints leave slots for everyone else.
pub const CONCURRENCY: usize = 64;
/// How much of an error response's body is kept for the delivery log.
const ERROR_BODY_BYTES: usize = 256;
/// How long a claimed delivery is held by its worker: twice the endpoint timeout and a margin,
/// so an attempt (bounded by the timeout) is recorded before another worker may take it.
pub(crate) fn lease(timeout: Duration) -> Duration {
    timeout.saturating_mul(2) + Duration::from_secs(5)
}

/// What one attempt to deliver got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The endpoint's answer, if one came in time.
    pub status_code: Option<u16>,
    /// Why it is not delivered (`None`: delivered).
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
}

impl Attempt {
    /// Whether the endpoint took the event: a 2xx in time.
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// Signs and posts events. It connects only to addresses the policy allows, checked at every
/// connection (not only when an endpoint is registered: DNS can change), and follows no
/// redirect.
pub struct Sender {
    policy: EventPolicy,
    client: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.policy)
            .finish()
    }
}

/// A resolver that refuses names with a non-public address (unless private targets are
/// allowed): the check happens on the addresses the connection will use.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((host.as_str(), 0)),
            )
            .await
            .map_err(|_| EndpointError::Unresolvable(host.clone()))??
            .collect();
            let addresses: Vec<IpAddr> = found.iter().map(SocketAddr::ip).collect();
            events::check_addresses(&host, &addresses, allow_private)?;
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

impl Sender {
    /// A sender following `policy` (the HTTP client is built at first use). Makes ring the
    /// process's default TLS provider if none is set, so any other rustls client in the
    /// process (reqwest's, in an embedding program or a test) has one too.
    pub fn new(policy: EventPolicy) -> Sender {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Sender {
            policy,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "reading the system's CA certificates");
            }
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::warn!("no CA certificates found: https event deliveries will fail");
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .dns_resolver(Arc::new(GuardedResolver {
                    allow_private: self.policy.allow_private,
                }))
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.policy.timeout)
                .connect_timeout(self.policy.timeout)
                .user_agent(concat!("Stowage/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the event HTTP client builds")
        })
    }

    /// Posts `body` (an event) to `url`, signed with `secret`.
    pub async fn send(&self, url: &str, secret: &str, event_id: Uuid, body: &str) -> Attempt {
        let started_at = Utc::now();
        let started = Instant::now();
        let (status_code, error) = match self.post(url, secret, event_id, body).await {
            Ok(status) => (Some(status), None),
            Err((status, error)) => (status, Some(error)),
        };
        Attempt {
            status_code,
            error,
            started_at,
            duration: started.elapsed(),
        }
    }

    async fn post(
        &self,
        url: &str,
        secret: &str,
        event_id: Uuid,
        body: &str,
    ) -> Result<u16, (Option<u16>, String)> {
        let allow_private = self.policy.allow_private;
        let url = events::parse_url(url, allow_private).map_err(|e| (None, e.to_string()))?;
        // A literal address never reaches the resolver: it is checked here.
        if let Some(address) = events::literal_address(&url) {
            let host = url.host_str().unwrap_or_default();
            events::check_addresses(host, &[address], allow_private)
                .map_err(|e| (None, e.to_string()))?;
        }
        let timestamp = Utc::now().timestamp();
        let signature = events::sign(secret, timestamp, body.as_bytes());
        let response = self
            .client()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Webhook-Id", event_id.to_string())
            .header("X-Webhook-Timestamp", timestamp.to_string())
            .header("X-Webhook-Signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| (None, self.describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            // The body is not wanted: it is never read.
            return Ok(status.as_u16());
        }
        let excerpt = excerpt(response).await;
        let mut error = format!("the endpoint answered {status}");
        if status.is_redirection() {
            error.push_str(" (redirects are not followed)");
        }
        if !excerpt.is_empty() {
            error.push_str(": ");
            error.push_str(&excerpt);
        }
        Err((Some(status.as_u16()), error))
    }

    /// A transport error, its causes included (reqwest's own message says little).
    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!(
                "no answer within {}",
                humantime::format_duration(self.policy.timeout)
            );
        }
        let mut text = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(error);
        while let Some(e) = cause {
            let part = e.to_string();
            if !text.contains(&part) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&part);
            }
            cause = e.source();
        }
        text
    }
}

/// The start of an error response's body, as text: enough to say why, and no more is read.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(ERROR_BODY_BYTES);
    String::from_utf8_lossy(&kept)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Attempts one leased delivery and records the outcome.
pub(crate) async fn deliver(app: &App, due: DueDelivery) -> Result<(), RepoError> {
    let attempt = app
        .sender()
        .send(&due.url, &due.secret, due.event_id, &due.body)
        .await;
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
    Ok(())
}
