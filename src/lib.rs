//! Stowage: two-phase staged file uploads on object storage.
//!
//! A client stages a file with `POST /uploads` and gets a `carv_file_id` that expires; a later
//! webhook binds it exactly once and it is promoted to long-term storage. `docs/design.md` maps
//! the modules and says where each rule lives.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod direct;
pub mod domain;
pub mod erasure;
pub mod event_model;
pub mod events;
pub mod extraction;
pub mod fault;
pub mod file_view;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod ocr;
pub mod policy;
pub mod promotion;
pub mod repo;
pub mod report;
pub mod rescan;
pub mod scan;
pub mod sender;
pub mod sniff;
pub mod spill;
pub mod staging;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod text;
pub mod upload_tokens;
pub mod webhooks;
pub mod worker;

use std::future::Future;

pub use app::{App, StartError};
pub use http::app;
pub use policy::Policies;

/// Opens the database and the store a configuration names and bundles them as an [`App`].
pub async fn connect(config: &config::Config) -> Result<App, StartError> {
    App::connect(config).await
}

/// The most a connection reads from its socket at once (hyper's read buffer; the limit on a
/// request's head is hyper's own, unchanged). hyper's default, ~400 KiB, is what each
/// connection's buffer grows to while a fast client sends a body, and the chunks it hands over
/// keep that buffer alive until they are copied into the multipart reader: 16 uploads at once
/// held ~6 MiB in these buffers alone (bench/notes.md). A 64 KiB read costs a few more system
/// calls per megabyte.
pub const CONNECTION_READ_BUFFER: usize = 64 * 1024;

/// Serves the API on `listener` and runs background work (the [`worker`]: event deliveries, text extraction) until `shutdown`
/// completes, then stops accepting and lets in-flight requests and deliveries finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = state.http().header_read_timeout;
    let worker = worker::start(state.clone());
    let app = app(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(CONNECTION_READ_BUFFER);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers (a 201 with six fields) must not wait for Nagle and a delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::join!(
        graceful.shutdown(),
        worker.stop(std::time::Duration::from_secs(10))
    );
    Ok(())
}
