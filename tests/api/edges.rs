//! Edges where the service once did the wrong thing quietly: a client hanging up mid-webhook,
//! a file whose size the row does not know, and the test harness's own clean-up.

use std::time::Duration;

use stowage::domain::{FileState, WebhookStatus};
use stowage::store::Area;
use uuid::Uuid;

use crate::both_backends;
use crate::crash::serve_process;
use crate::fixtures;
use crate::hardening::Reaper;
use crate::helpers::{Backend, TestApp, json_with};

both_backends!(a_client_hanging_up_mid_webhook_still_gets_it_processed);

/// The client gives up while its webhook is being processed (files bound and promoted, the
/// answer not yet stored): the webhook still ends `processed` with its answer stored, and a
/// retry is answered from it.
async fn a_client_hanging_up_mid_webhook_still_gets_it_processed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (child, base) = serve_process(
        &app,
        &[
            ("STOWAGE_FAULT_PAUSE", "webhook.before_result=2s"),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let _child = Reaper(child);
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(4_000)).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    let webhook = crate::helpers::resume_webhook("u", &id);
    let send = || {
        app.http
            .post(format!("{base}/webhooks/candidates"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .json(&webhook)
    };
    let gave_up = send().timeout(Duration::from_millis(600)).send().await;
    assert!(gave_up.is_err(), "the client was meant to give up first");

    let file_id = Uuid::parse_str(&id).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let webhook_row = loop {
        let file = app.state.repo().get_file("acme", file_id).await.unwrap();
        let row = match file.and_then(|f| f.webhook_id) {
            Some(webhook_id) => app
                .state
                .repo()
                .get_webhook("acme", webhook_id)
                .await
                .unwrap(),
            None => None,
        };
        if let Some(row) = row.filter(|w| w.status == WebhookStatus::Processed) {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook was left unfinished after its client hung up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stored: serde_json::Value =
        serde_json::from_str(webhook_row.result.as_deref().expect("a stored answer")).unwrap();
    // What is kept of the answer names the files, nothing of their content.
    assert_eq!(stored["files"]["resume"], id.as_str(), "{stored}");

    let retry = send().send().await.unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry = json_with(retry, 200).await;
    assert_eq!(retry["webhook_id"], webhook_row.id.to_string().as_str());
    assert_eq!(retry["files"]["resume"]["state"], "promoted");
}

/// A bound file whose row lost its size is measured before it is copied, not taken for an
/// empty file: one larger than a single copy allows stays bound (and is reported so) instead
/// of being half-copied. The object is sparse: it takes no disk space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_unknown_size_is_measured_before_promotion() {
    let app = TestApp::spawn(Backend::SqliteFs).await;
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(4_000)).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();

    let pool = sqlx::SqlitePool::connect(&app.config.database_url)
        .await
        .unwrap();
    sqlx::query("UPDATE files SET file_size = NULL WHERE id = $1")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let root = app.config.storage.strip_prefix("fs:").unwrap();
    let object = std::path::Path::new(root)
        .join(&app.config.staging_bucket)
        .join("acme")
        .join(&id);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&object)
        .unwrap()
        .set_len(6 * 1024 * 1024 * 1024)
        .unwrap();

    let webhook = crate::helpers::resume_webhook("u", &id);
    let answer = json_with(app.post_webhook("candidates", &webhook).await, 200).await;
    assert_eq!(answer["files"]["resume"]["state"], "bound", "{answer}");
    assert_eq!(app.rows_in(FileState::Bound).await, 1);
    assert_eq!(app.objects(Area::Files).await, Vec::<String>::new());
}

/// Each test's PostgreSQL database is dropped when the test ends, so a run does not pile up
/// hundreds of databases in the shared server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_database_is_dropped_when_its_test_ends() {
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let name = app
        .config
        .database_url
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let admin = std::env::var("STOWAGE_TEST_PG_URL").unwrap();
    let exists = |name: String| {
        let admin = admin.clone();
        async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            let (found,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            found
        }
    };
    assert!(exists(name.clone()).await);
    drop(app);
    assert!(!exists(name).await, "the test database outlived its test");
}
