//! Outages: the S3 server, then PostgreSQL, become unreachable under a running service. Requests
//! fail fast with 503 and the envelope, /readyz names what is down, nothing is left half-written
//! after a sweep, and service resumes by itself when they return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, file_form, json_with};

/// A TCP proxy on 127.0.0.1 that can cut every connection and refuse new ones, or stall them
/// (a black hole: connections accepted, bytes never delivered), then recover.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Copies one direction of a link, holding every byte back while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    pub async fn to(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, stall, tasks) = (up.clone(), stalled.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused: the dependency is down
                    continue;
                }
                let upstream = upstream.clone();
                let stall = stall.clone();
                tasks.lock().await.push(tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, stall.clone()),
                            pump(server_read, client_write, stall),
                        );
                    }
                }));
            }
        });
        Proxy {
            port,
            up,
            stalled,
            links,
        }
    }

    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// Connections stay open (new ones are accepted) but nothing gets through either way.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

pub fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    rest.split('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_fail_fast_and_service_resumes() {
    let app =
        TestApp::spawn_with(Backend::PostgresS3, |c| c.receiving_grace = Duration::ZERO).await;
    let s3 = Proxy::to(host_port(app.config.s3_endpoint.as_deref().unwrap())).await;
    let pg = Proxy::to(host_port(&app.config.database_url)).await;
    let mut config = app.config.clone();
    config.s3_endpoint = Some(format!("http://127.0.0.1:{}", s3.port));
    config.database_url = app.config.database_url.replace(
        &host_port(&app.config.database_url),
        &format!("127.0.0.1:{}", pg.port),
    );
    let through = stowage::connect(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(stowage::serve(listener, through, std::future::pending()));
    let upload = |size: usize| {
        app.http
            .post(format!("{base}/uploads"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .multipart(file_form("cv.pdf", fixtures::pdf(size), "application/pdf"))
            .send()
    };
    let ready = || app.http.get(format!("{base}/readyz")).send();
    json_with(upload(2_000).await.unwrap(), 201).await;

    // Object storage goes away.
    s3.cut().await;
    for size in [2_000, 12 * 1024 * 1024] {
        let started = Instant::now();
        let body = assert_error(upload(size).await.unwrap(), 503, "service_unavailable").await;
        assert_eq!(body["error"]["details"]["dependency"], "object storage");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fails fast: {:?}",
            started.elapsed()
        );
    }
    let status = json_with(ready().await.unwrap(), 503).await;
    assert_eq!(status["checks"]["database"], "ok");
    assert!(
        status["checks"]["staging_bucket"]
            .as_str()
            .unwrap()
            .starts_with("unavailable")
    );
    s3.restore();
    json_with(upload(2_000).await.unwrap(), 201).await;

    // Then the database.
    pg.cut().await;
    let started = Instant::now();
    let response = app
        .http
        .get(format!("{base}/uploads/{}", uuid::Uuid::new_v4()))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 503, "service_unavailable").await;
    assert_eq!(body["error"]["details"]["dependency"], "database");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast: {:?}",
        started.elapsed()
    );
    let status = json_with(ready().await.unwrap(), 503).await;
    assert!(
        status["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("unavailable")
    );
    assert_eq!(status["checks"]["staging_bucket"], "ok");
    pg.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = upload(2_000).await.unwrap();
        if response.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service did not resume: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json_with(ready().await.unwrap(), 200).await;

    // Whatever the outages interrupted is cleaned by the next pass.
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(app.rows_in(stowage::domain::FileState::Receiving).await, 0);
    assert_eq!(app.incomplete_uploads().await, 0);
    let staged = app.rows_in(stowage::domain::FileState::Staged).await;
    assert_eq!(
        app.objects(stowage::store::Area::Staging).await.len() as i64,
        staged
    );
}
