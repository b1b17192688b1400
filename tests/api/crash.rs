//! Crashes: a `stowage serve` process killed (`STOWAGE_FAULT` aborts it like `kill -9`) at each
//! step of an upload and of a promotion; then a sweep and recovery pass, after which nothing is
//! orphaned, no row points at a missing object, and every bound file is promoted.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use stowage::store::Area;

use crate::fixtures;
use crate::helpers::{Backend, TestApp, file_form, json_with};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

/// Starts `stowage serve` on the test app's database and buckets, armed to abort at `fault`.
async fn crashing_server(app: &TestApp, fault: &str) -> (std::process::Child, String) {
    serve_process(
        app,
        &[
            ("STOWAGE_FAULT", fault),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await
}

/// The `stowage` binary, set to the test app's database and buckets.
pub fn stowage_on(app: &TestApp) -> Command {
    let c = &app.config;
    let mut cmd = Command::new(BIN);
    cmd.env("STOWAGE_DATABASE_URL", &c.database_url)
        .env("STOWAGE_STORAGE", &c.storage)
        .env("STOWAGE_STAGING_BUCKET", &c.staging_bucket)
        .env("STOWAGE_FILES_BUCKET", &c.files_bucket)
        .env(
            "STOWAGE_S3_FORCE_PATH_STYLE",
            c.s3_force_path_style.to_string(),
        );
    if let Some(endpoint) = &c.s3_endpoint {
        cmd.env("STOWAGE_S3_ENDPOINT", endpoint);
    }
    cmd
}

/// Starts a `stowage serve` process on the test app's database and buckets, with extra
/// environment; returns it and its base URL once it listens.
pub async fn serve_process(app: &TestApp, envs: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = stowage_on(app);
    cmd.arg("serve")
        .envs(envs.iter().copied())
        .env("STOWAGE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start stowage serve");
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            if let Some(url) = line.unwrap().strip_prefix("stowage listening on ") {
                return url.to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .unwrap();
    (child, base)
}

async fn wait_for_exit(child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the process was meant to crash");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the armed process did not crash"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After a pass: every row matches storage and every object has its row.
pub async fn assert_consistent(app: &TestApp) {
    const ROWS: &str = "SELECT state, staging_key, promoted_key FROM files";
    let url = &app.config.database_url;
    let rows: Vec<(String, String, Option<String>)> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap()
    };
    let staging: HashSet<String> = app.objects(Area::Staging).await.into_iter().collect();
    let files: HashSet<String> = app.objects(Area::Files).await.into_iter().collect();
    let mut wanted_staging = HashSet::new();
    let mut wanted_files = HashSet::new();
    for (state, staging_key, promoted_key) in &rows {
        match state.as_str() {
            "staged" => {
                assert!(
                    staging.contains(staging_key),
                    "a staged row without its object"
                );
                wanted_staging.insert(staging_key.clone());
            }
            "promoted" => {
                let key = promoted_key.as_ref().expect("promoted rows have a key");
                assert!(files.contains(key), "a promoted row without its object");
                wanted_files.insert(key.clone());
            }
            "expired" | "discarded" | "erased" => {}
            other => panic!("a row left {other} after the pass"),
        }
    }
    assert_eq!(
        staging, wanted_staging,
        "orphan objects in the staging bucket"
    );
    assert_eq!(files, wanted_files, "orphan objects in the files bucket");
    assert_eq!(
        app.incomplete_uploads().await,
        0,
        "incomplete multipart uploads left"
    );
}

async fn crash_during_upload(backend: Backend, fault: &str, size: usize) {
    let app = TestApp::spawn_with(backend, |c| c.receiving_grace = Duration::ZERO).await;
    let (mut child, base) = crashing_server(&app, fault).await;
    let sent = app
        .http
        .post(format!("{base}/uploads"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .multipart(file_form("cv.pdf", fixtures::pdf(size), "application/pdf"))
        .send()
        .await;
    assert!(sent.is_err(), "the server died mid-request: {sent:?}");
    wait_for_exit(&mut child).await;

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_consistent(&app).await;
    assert_eq!(app.rows().await, 0, "the dead upload's row is gone");
}

async fn crash_during_promotion(backend: Backend, fault: &str) {
    let app = TestApp::spawn_with(backend, |c| c.receiving_grace = Duration::ZERO).await;
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(9_000)).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    let (mut child, base) = crashing_server(&app, fault).await;
    let webhook = crate::helpers::resume_webhook("u", &id);
    let sent = app
        .http
        .post(format!("{base}/webhooks/candidates"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .json(&webhook)
        .send()
        .await;
    assert!(sent.is_err(), "the server died mid-request: {sent:?}");
    wait_for_exit(&mut child).await;

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(run.promoted, 1, "recovery promoted the bound file");
    assert_consistent(&app).await;
    let file = json_with(
        app.acme(reqwest::Method::GET, &format!("/files/{id}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(file["state"], "promoted");
    // The retried webhook gets the original answer, not file_already_consumed.
    let retry = app
        .acme(reqwest::Method::POST, "/webhooks/candidates")
        .json(&webhook)
        .send()
        .await
        .unwrap();
    let retry = json_with(retry, 200).await;
    assert_eq!(retry["files"]["resume"]["state"], "promoted");
}

// Every point on both backend pairs, except those only S3 has (multipart uploads, a copy
// between buckets).
crate::both_backends!(
    killed_before_the_first_byte_is_stored,
    killed_after_the_object_is_stored_before_the_row_is_staged,
    killed_after_binding,
    killed_after_the_staged_copy_is_deleted,
);

async fn killed_before_the_first_byte_is_stored(backend: Backend) {
    crash_during_upload(backend, "upload.before_store", 5_000).await;
}

async fn killed_after_the_object_is_stored_before_the_row_is_staged(backend: Backend) {
    crash_during_upload(backend, "upload.after_store", 5_000).await;
}

async fn killed_after_binding(backend: Backend) {
    crash_during_promotion(backend, "promote.after_bind").await;
}

async fn killed_after_the_staged_copy_is_deleted(backend: Backend) {
    crash_during_promotion(backend, "promote.after_delete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_a_multipart_upload() {
    crash_during_upload(
        Backend::PostgresS3,
        "upload.mid_multipart",
        20 * 1024 * 1024,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_copy() {
    crash_during_promotion(Backend::PostgresS3, "promote.after_copy").await;
}
