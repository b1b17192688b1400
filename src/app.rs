//! The running application: its database, object store, temporary space, telemetry and
//! policies, each policy grouped by the part of Stowage that follows it. The HTTP layer, the
//! sweeper and the commands all hold an [`App`]; nothing here knows about HTTP requests.

use std::sync::Arc;

use crate::config::Config;
use crate::policy::{EventPolicy, HttpLimits, Policies, SweepPolicy, TextPolicy, UploadPolicy};
use crate::repo::Repo;
use crate::spill::Spill;
use crate::store::Store;
use crate::telemetry::Telemetry;

struct Shared {
    repo: Arc<dyn Repo>,
    store: Arc<dyn Store>,
    spill: Spill,
    telemetry: Telemetry,
    sender: crate::sender::Sender,
    scanner: Option<crate::scan::Scanner>,
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
            sender: crate::sender::Sender::new(policies.events.clone()),
            scanner: policies
                .scan
                .clamd
                .clone()
                .map(|addr| crate::scan::Scanner::new(addr, policies.scan.timeout)),
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
    pub fn sender(&self) -> &crate::sender::Sender {
        &self.0.sender
    }

    /// How text is extracted.
    pub fn text(&self) -> &TextPolicy {
        &self.0.policies.text
    }

    /// clamd, when uploads are scanned (`STOWAGE_CLAMD`).
    pub fn scanner(&self) -> Option<&crate::scan::Scanner> {
        self.0.scanner.as_ref()
    }

    /// What happens to uploads clamd cannot scan.
    pub fn scan(&self) -> &crate::policy::ScanPolicy {
        &self.0.policies.scan
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
