//! Abuse limits: per-key request rate and uploads in progress.

use std::time::Duration;

use reqwest::Method;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, json_with};

both_backends!(
    a_key_revoked_elsewhere_stops_working_at_once,
    client_requests_carry_rate_limit_headers_and_get_429_past_the_limit,
    uploads_in_progress_are_capped_per_key,
);

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn client_requests_carry_rate_limit_headers_and_get_429_past_the_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit = 5).await;
    let path = format!("/uploads/{}", uuid::Uuid::new_v4());
    // Someone who knows acme's key id but not its secret cannot spend acme's allowance.
    let (key_id, _) = app.acme_key.rsplit_once('_').unwrap();
    let forged = format!("{key_id}_{}", "0".repeat(64));
    for _ in 0..10 {
        let response = app
            .http
            .get(app.url(&path))
            .header("X-API-Key", &forged)
            .header("X-ATS-Client-ID", "acme")
            .send()
            .await
            .unwrap();
        assert!(response.headers().get("x-ratelimit-remaining").is_none());
        assert_error(response, 401, "unauthorized").await;
    }
    for expected in (0..5).rev() {
        let response = app.acme(Method::GET, &path).send().await.unwrap();
        assert_eq!(header(&response, "x-ratelimit-limit"), Some(5));
        assert_eq!(header(&response, "x-ratelimit-remaining"), Some(expected));
        let reset = header(&response, "x-ratelimit-reset").unwrap();
        assert!((1..=60).contains(&reset), "reset in seconds: {reset}");
        assert_eq!(response.status(), 404);
    }
    let limited = app.acme(Method::GET, &path).send().await.unwrap();
    assert_eq!(header(&limited, "x-ratelimit-remaining"), Some(0));
    // 5 a minute come back one every 12 s, not all at once at a window's edge.
    let retry_after = header(&limited, "retry-after").unwrap();
    assert!((1..=12).contains(&retry_after), "retry after {retry_after}");
    assert_error(limited, 429, "rate_limited").await;

    let other_key = app.globex(Method::GET, &path).send().await.unwrap();
    assert_eq!(other_key.status(), 404, "keys are limited apart");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(
        health.headers().get("x-ratelimit-limit").is_none(),
        "operations endpoints are not"
    );
}

async fn uploads_in_progress_are_capped_per_key(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_concurrent_uploads = 1).await;
    // An upload that sends its head and then waits.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let boundary = "slow-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    tx.send(Ok(head.into_bytes())).await.unwrap();
    tx.send(Ok(fixtures::pdf(20_000))).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let slow = app
        .acme(Method::POST, "/uploads")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send();
    let slow = tokio::spawn(slow);
    // Wait until the slow upload holds its slot (its row is being received).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.rows_in(stowage::domain::FileState::Receiving).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_error(
        app.upload("cv.pdf", fixtures::pdf(1_000)).await,
        429,
        "too_many_uploads",
    )
    .await;
    let other = app
        .globex(Method::POST, "/uploads")
        .multipart(crate::helpers::file_form(
            "cv.pdf",
            fixtures::pdf(1_000),
            "application/pdf",
        ))
        .send()
        .await
        .unwrap();
    json_with(other, 201).await;

    tx.send(Ok(format!("\r\n--{boundary}--\r\n").into_bytes()))
        .await
        .unwrap();
    drop(tx);
    json_with(slow.await.unwrap().unwrap(), 201).await;
    json_with(app.upload("cv.pdf", fixtures::pdf(1_000)).await, 201).await;
}

/// A receiver as a stream of body chunks.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Keys are cached on PostgreSQL (no database round trip per request); a revocation made by
/// another process — the CLI, another replica — empties every replica's cache as it commits.
async fn a_key_revoked_elsewhere_stops_working_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    if let Backend::PostgresS3 = backend {
        let started = std::time::Instant::now();
        while !app.state.repo().keys_cached() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "keys are never cached"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        assert!(
            !app.state.repo().keys_cached(),
            "SQLite has no change signal to cache by"
        );
    }
    let elsewhere = stowage::repo::connect(
        &app.config.database_url,
        app.config.database_max_connections,
    )
    .await
    .unwrap();
    let key = stowage::accounts::add_client(elsewhere.as_ref(), "initech", "initech-key", None)
        .await
        .unwrap()
        .api_key
        .unwrap();
    let list = || {
        app.http
            .get(app.url("/files"))
            .header("X-API-Key", &key)
            .header("X-ATS-Client-ID", "initech")
            .send()
    };
    for _ in 0..3 {
        assert_eq!(list().await.unwrap().status(), 200);
    }
    // Another client id the key was never granted stays forbidden, cached or not.
    let other = app
        .http
        .get(app.url("/files"))
        .header("X-API-Key", &key)
        .header("X-ATS-Client-ID", "acme")
        .send()
        .await
        .unwrap();
    assert_error(other, 403, "forbidden").await;
    assert!(elsewhere.revoke_key("initech-key").await.unwrap());
    assert_error(list().await.unwrap(), 401, "unauthorized").await;
    // Acme's key, cached too, still works.
    assert_eq!(
        app.acme(Method::GET, "/files")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
