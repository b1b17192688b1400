//! Stowage: two-phase staged file uploads on object storage.
//!
//! A client stages a file with `POST /uploads` and gets a `carv_file_id` that expires; a later
//! webhook binds it exactly once and it is promoted to long-term storage. See DESIGN.md.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod cli;
pub mod config;
pub mod domain;
pub mod fault;
pub mod http;
pub mod keys;
pub mod promotion;
pub mod repo;
pub mod report;
pub mod sniff;
pub mod staging;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod webhooks;

use std::future::Future;

pub use http::{AppState, Settings, app};

/// Opens the database and the store a configuration names and bundles them for the handlers.
pub async fn connect(config: &config::Config) -> Result<AppState, StartError> {
    let repo = repo::connect(&config.database_url).await?;
    let store = store::connect(config).await?;
    Ok(AppState::new(repo, store, Settings::from_config(config)))
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;

    // Small answers (a 201 with six fields) must not wait for Nagle and a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
