//! The running application: its database, object store, temporary space, telemetry and
//! policies, each policy grouped by the part of Stowage that follows it. The HTTP layer, the
//! sweeper and the commands all hold an [`App`]; nothing here knows about HTTP requests.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::repo::Repo;
use crate::sniff::{DocumentKind, DocxLimits};
use crate::spill::Spill;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What an upload must be to be staged, and how long it stays staged.
#[derive(Clone, Debug)]
pub struct UploadPolicy {
    /// How long a staged file can be bound before it expires.
    pub ttl: Duration,
    pub max_bytes: u64,
    pub allowed_extensions: BTreeSet<DocumentKind>,
    pub docx_limits: DocxLimits,
    /// How often an upload in progress records that it is alive: well inside the sweeper's
    /// grace period, so a slow but live upload is never taken for a dead one.
    pub heartbeat: Duration,
    /// How long a direct upload's URL accepts the bytes.
    pub direct_window: Duration,
    /// `STOWAGE_PUBLIC_URL`.
    pub public_url: Option<String>,
}

/// Limits on HTTP clients: slow bodies and headers, request rates, operator access.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub ops_token: Option<String>,
    /// `STOWAGE_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    pub body_idle_timeout: Duration,
    pub body_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Requests per key per minute (0: unlimited).
    pub rate_limit: u64,
    /// Uploads in progress per key (0: unlimited).
    pub max_concurrent_uploads: usize,
}

/// What the sweeper waits for before it cleans up, and how long a pass may take.
#[derive(Clone, Debug)]
pub struct SweepPolicy {
    /// A `receiving` upload silent this long is dead; an object with no row this old is an orphan.
    pub receiving_grace: Duration,
    /// How long tombstones (and refused webhooks, and sweep records) are kept.
    pub tombstone_retention: Duration,
    /// How long `file.erased` events are kept.
    pub erasure_log_retention: Duration,
    /// Longest one pass may run before it is cut off and recorded as failed.
    pub timeout: Duration,
    /// Promoted files older than this are erased (`None`: kept).
    pub file_retention: Option<Duration>,
    /// How long a write already under way when its file was erased may still land (the store's
    /// operation timeout): the sweeper deletes such a file's objects again after it.
    pub erasure_settle: Duration,
}

/// Where events may be delivered.
#[derive(Clone, Debug)]
pub struct EventPolicy {
    /// Endpoints on `http://` and private addresses are allowed (internal networks, tests).
    pub allow_private: bool,
    /// How long an endpoint has to answer.
    pub timeout: Duration,
    /// The wait before the first retry; doubled for each later one.
    pub retry_base: Duration,
    /// Attempts before a delivery fails.
    pub max_attempts: u32,
    /// Deliveries to one endpoint in flight at once.
    pub endpoint_concurrency: u32,
    /// Endpoints one client may register.
    pub endpoints_per_client: usize,
}

/// Every policy, by role.
#[derive(Clone, Debug)]
pub struct Policies {
    pub uploads: UploadPolicy,
    pub http: HttpLimits,
    pub sweep: SweepPolicy,
    pub events: EventPolicy,
    pub text: crate::extraction::TextPolicy,
}

impl Policies {
    /// The policies a configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        Policies {
            uploads: UploadPolicy {
                ttl: config.upload_ttl,
                max_bytes: config.max_upload_bytes,
                allowed_extensions: config.allowed_extensions.clone(),
                docx_limits: DocxLimits::default(),
                heartbeat: (config.receiving_grace / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(60)),
                direct_window: config.direct_upload_window,
                public_url: config.public_url.clone(),
            },
            http: HttpLimits {
                ops_token: config.ops_token.clone(),
                cors_origins: config.cors_origins.clone(),
                body_idle_timeout: config.body_idle_timeout,
                body_timeout: config.body_timeout,
                header_read_timeout: config.header_read_timeout,
                rate_limit: config.rate_limit,
                max_concurrent_uploads: config.max_concurrent_uploads,
            },
            sweep: SweepPolicy {
                receiving_grace: config.receiving_grace,
                tombstone_retention: config.tombstone_retention,
                erasure_log_retention: config.erasure_log_retention,
                timeout: config.sweep_timeout,
                file_retention: config.file_retention,
                erasure_settle: config.s3_operation_timeout,
            },
            events: EventPolicy {
                allow_private: config.events_allow_private,
                timeout: config.event_timeout,
                retry_base: config.event_retry_base,
                max_attempts: config.event_max_attempts,
                endpoint_concurrency: config.event_endpoint_concurrency,
                endpoints_per_client: config.event_endpoints_per_client,
            },
            text: crate::extraction::TextPolicy::from_config(config),
        }
    }
}

struct Shared {
    repo: Arc<dyn Repo>,
    store: Arc<dyn Store>,
    spill: Spill,
    telemetry: Telemetry,
    sender: crate::delivery::Sender,
    policies: Policies,
}

/// The parts of a running service, cheap to clone and shared by every task.
#[derive(Clone)]
pub struct App(Arc<Shared>);

impl App {
    /// Bundles the parts of a running service. `spill` is the temporary space uploads in
    /// flight use (the same one the S3 store's writers were given).
    pub fn new(
        repo: Arc<dyn Repo>,
        store: Arc<dyn Store>,
        spill: Spill,
        policies: Policies,
    ) -> Self {
        App(Arc::new(Shared {
            repo,
            store,
            spill,
            telemetry: Telemetry::new(),
            sender: crate::delivery::Sender::new(policies.events.clone()),
            policies,
        }))
    }

    /// Opens the database and the store a configuration names.
    pub async fn connect(config: &Config) -> Result<App, StartError> {
        let repo =
            crate::repo::connect(&config.database_url, config.database_max_connections).await?;
        Ok(App::with_repo(repo, config).await?)
    }

    /// Opens the store a configuration names and bundles it with an open database.
    pub async fn with_repo(
        repo: Arc<dyn Repo>,
        config: &Config,
    ) -> Result<App, crate::store::StoreError> {
        let spill = Spill::from_config(config);
        let store = crate::store::connect(config, &spill).await?;
        Ok(App::new(repo, store, spill, Policies::from_config(config)))
    }

    /// The database.
    pub fn repo(&self) -> &dyn Repo {
        self.0.repo.as_ref()
    }

    /// The object store.
    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    /// Temporary disk space for uploads in flight.
    pub fn spill(&self) -> &Spill {
        &self.0.spill
    }

    /// This instance's metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.0.telemetry
    }

    /// What uploads must be.
    pub fn uploads(&self) -> &UploadPolicy {
        &self.0.policies.uploads
    }

    /// Limits on HTTP clients.
    pub fn http(&self) -> &HttpLimits {
        &self.0.policies.http
    }

    /// Where events may be delivered.
    pub fn events(&self) -> &EventPolicy {
        &self.0.policies.events
    }

    /// Signs and posts events to endpoints.
    pub fn sender(&self) -> &crate::delivery::Sender {
        &self.0.sender
    }

    /// How text is extracted.
    pub fn text(&self) -> &crate::extraction::TextPolicy {
        &self.0.policies.text
    }

    /// The sweeper's policy.
    pub fn sweep(&self) -> &SweepPolicy {
        &self.0.policies.sweep
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
