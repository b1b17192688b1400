//! The [`Sender`]: signs and posts one event to one endpoint. It connects only to addresses the
//! policy allows (checked by its resolver at every connection), follows no redirect, gives up
//! at the policy's timeout and reads no more of an error answer than the log keeps. A leaf:
//! it knows events and the policy, nothing of the database or the application.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::{self, EndpointError};
use crate::policy::EventPolicy;

/// How much of an error response's body is kept for the delivery log.
const ERROR_BODY_BYTES: usize = 256;

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

    /// Posts `body` (an event) to `url`, signed with `secrets` (the endpoint's current secret,
    /// then the previous one while a rotation overlaps).
    pub async fn send(&self, url: &str, secrets: &[&str], event_id: Uuid, body: &str) -> Attempt {
        let started_at = Utc::now();
        let started = Instant::now();
        let (status_code, error) = match self.post(url, secrets, event_id, body).await {
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
        secrets: &[&str],
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
        let mut request = self
            .client()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in
            events::signature_headers(secrets, event_id, timestamp, body.as_bytes())
        {
            request = request.header(name, value);
        }
        let response = request
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
