//! Direct uploads: the bytes go straight to storage (a presigned PUT on S3, a URL Stowage signs
//! itself on the local store); completing checks them as `POST /uploads` would, and whatever is
//! refused or never completed leaves nothing behind.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stowage::domain::FileState;
use stowage::store::Area;

use crate::both_backends;
use crate::fixtures;
use crate::hardening::{Reaper, at, sleep_until};
use crate::helpers::{Backend, TestApp, assert_error, json_with, resume_webhook, streamed_body};

both_backends!(
    pdf_docx_and_doc_go_straight_to_storage_and_bind_like_any_other,
    a_disguised_file_is_refused_as_post_uploads_refuses_it_and_deleted,
    bytes_that_are_not_the_declared_ones_are_never_staged,
    a_direct_upload_never_completed_is_aborted,
    declarations_are_checked_before_any_url_is_given,
    every_hostile_file_gets_the_same_answer_on_both_paths,
    completing_after_the_window_is_not_found_and_stages_nothing,
    a_completion_racing_the_abort_never_stages_a_file_without_bytes,
    a_still_signed_url_cannot_bring_erased_bytes_back,
);

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `POST /uploads/direct` as acme; the response.
async fn open(app: &TestApp, name: &str, size: usize, sha256: &str) -> reqwest::Response {
    app.acme(Method::POST, "/uploads/direct")
        .json(&json!({"file_name": name, "file_size": size, "sha256": sha256}))
        .send()
        .await
        .expect("open request")
}

/// Sends `bytes` as the answer to `POST /uploads/direct` says: its URL, its headers, no API key.
pub(crate) async fn put(app: &TestApp, opened: &Value, bytes: Vec<u8>) -> reqwest::Response {
    let upload = &opened["upload"];
    assert_eq!(upload["method"], "PUT");
    let mut request = app
        .http
        .put(upload["url"].as_str().expect("upload url"))
        .body(bytes);
    for (name, value) in upload["headers"].as_object().expect("headers") {
        // The client's own length header goes with the body it really sends.
        if !name.eq_ignore_ascii_case("content-length") {
            request = request.header(name, value.as_str().expect("header value"));
        }
    }
    request.send().await.expect("PUT request")
}

async fn complete(app: &TestApp, id: &str) -> reqwest::Response {
    app.acme(Method::POST, &format!("/uploads/{id}/complete"))
        .send()
        .await
        .expect("complete request")
}

async fn pdf_docx_and_doc_go_straight_to_storage_and_bind_like_any_other(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let files = [
        (
            "resume.pdf",
            fixtures::text_pdf(&[&["Ada Lovelace", "Analyst"]]),
            "application/pdf",
        ),
        (
            "resume.docx",
            fixtures::docx_with_table(
                &["Grace Hopper"],
                &[&["Skill", "Years"], &["COBOL", "30"]],
                "References",
            ),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "resume.doc",
            fixtures::doc_with_text("Grace Hopper compiler"),
            "application/msword",
        ),
        // Past 1 MiB completion reads ranges (head, tail) rather than the whole object.
        ("portfolio.pdf", fixtures::pdf(3 << 20), "application/pdf"),
    ];
    let mut ids = Vec::new();
    for (name, bytes, content_type) in files {
        let size = bytes.len();
        let opened = json_with(open(&app, name, size, &sha256_hex(&bytes)).await, 201).await;
        assert_eq!(opened["file_name"], name);
        assert_eq!(opened["file_size"], size);
        assert!(opened["expires_at"].is_string() && opened["upload"]["expires_at"].is_string());
        if let Backend::PostgresS3 = backend {
            // The presigned PUT binds the SHA-256: S3 refuses other bytes.
            let headers = &opened["upload"]["headers"];
            let b64 = aws_smithy_types::base64::encode(Sha256::digest(&bytes));
            assert_eq!(headers["x-amz-checksum-sha256"], b64.as_str(), "{headers}");
        }
        let id = opened["carv_file_id"].as_str().unwrap().to_owned();
        // Before the bytes arrive there is nothing to complete.
        assert_error(complete(&app, &id).await, 409, "upload_not_received").await;
        let sent = put(&app, &opened, bytes.clone()).await;
        assert!(
            sent.status().is_success(),
            "{name}: PUT answered {}",
            sent.status()
        );
        let staged = json_with(complete(&app, &id).await, 201).await;
        assert_eq!(staged["carv_file_id"], id.as_str());
        assert_eq!(staged["content_type"], content_type);
        assert_eq!(staged["file_size"], size);
        assert!(staged["expires_at"].is_string());
        // Completing again answers the same.
        let again = json_with(complete(&app, &id).await, 201).await;
        assert_eq!(again, staged);
        if let Backend::SqliteFs = backend {
            // Stowage's own URL takes nothing over a checked file.
            let late = put(&app, &opened, bytes.clone()).await;
            assert_error(late, 409, "upload_closed").await;
        }
        // Another client sees nothing.
        let other = app
            .globex(Method::POST, &format!("/uploads/{id}/complete"))
            .send()
            .await
            .unwrap();
        assert_error(other, 404, "file_not_found").await;
        ids.push(id);
    }
    assert_eq!(app.rows_in(FileState::Staged).await, 4);
    // A directly uploaded file binds and promotes like any other.
    let bound = app
        .post_webhook("candidates", &resume_webhook("u-direct", &ids[0]))
        .await;
    json_with(bound, 200).await;
    let promoted = app.objects(Area::Files).await;
    assert_eq!(promoted, vec![format!("acme/{}", ids[0])]);
    let record = app.get_json(&format!("/files/{}", ids[0])).await;
    assert_eq!(record["state"], "promoted");
}

async fn a_disguised_file_is_refused_as_post_uploads_refuses_it_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A PDF named .docx: POST /uploads refuses it; so does completing it.
    let bytes = fixtures::text_pdf(&[&["not a word document"]]);
    let proxied = assert_error(
        app.upload("cv.docx", bytes.clone()).await,
        422,
        "file_content_mismatch",
    )
    .await;
    let opened = json_with(
        open(&app, "cv.docx", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(&app, &opened, bytes).await.status().is_success());
    let refused = assert_error(complete(&app, &id).await, 422, "file_content_mismatch").await;
    assert_eq!(refused["error"]["message"], proxied["error"]["message"]);
    assert_eq!(
        app.objects(Area::Staging).await,
        Vec::<String>::new(),
        "the refused object is deleted"
    );
    // What is recorded is the answer (code, message, details), not an internal type.
    let recorded: Value = serde_json::from_str(&stored_refusal(&app, &id).await).unwrap();
    assert_eq!(recorded["code"], "file_content_mismatch", "{recorded}");
    assert_eq!(recorded["message"], refused["error"]["message"]);
    // Completing again answers the same refusal.
    let again = assert_error(complete(&app, &id).await, 422, "file_content_mismatch").await;
    assert_eq!(again["error"]["message"], refused["error"]["message"]);
    assert_eq!(app.rows_in(FileState::Staged).await, 0);
    // Refused is finished, as a refused POST /uploads is: no record left `receiving` with
    // nothing in it, in no listing.
    let record = app.acme(Method::GET, &format!("/uploads/{id}"));
    crate::helpers::assert_refused(record, 404, "file_not_found").await;
    let file = app.acme(Method::GET, &format!("/files/{id}"));
    crate::helpers::assert_refused(file, 404, "file_not_found").await;
    let listed = app.get_json("/files?limit=100").await;
    assert!(
        !listed.to_string().contains(&id),
        "a refused upload is listed: {listed}"
    );
    // Every other refusal of the content checks, read by ranges from storage, answers as
    // POST /uploads answers the same bytes.
    let mut truncated_pdf = fixtures::pdf(20_000);
    truncated_pdf.truncate(15_000);
    // The same refusals past 1 MiB, where completion reads ranges of the object.
    let mut large_truncated_pdf = fixtures::pdf(3 << 20);
    large_truncated_pdf.truncate(2 << 20);
    let cases = [
        ("cv.doc", fixtures::xls()),
        ("cv.doc", fixtures::docx()),
        ("cv.doc", fixtures::doc_with_word_chain_loop()),
        ("cv.doc", fixtures::doc_with_huge_word_stream()),
        ("cv.docx", fixtures::docm()),
        ("cv.docx", fixtures::docx_with_hidden_vba()),
        ("cv.docx", fixtures::xlsx_claiming_word()),
        ("cv.docx", fixtures::docx_with_duplicate_content_types()),
        ("cv.docx", fixtures::docx_bomb(8 << 20)),
        ("cv.pdf", fixtures::png()),
        ("cv.pdf", truncated_pdf),
        ("cv.pdf", large_truncated_pdf),
        ("cv.docx", fixtures::pdf(2 << 20)),
    ];
    for (name, bytes) in cases {
        let proxied = app.upload(name, bytes.clone()).await;
        assert_eq!(proxied.status(), 422, "{name}");
        let proxied: Value = proxied.json().await.unwrap();
        let opened = json_with(
            open(&app, name, bytes.len(), &sha256_hex(&bytes)).await,
            201,
        )
        .await;
        let id = opened["carv_file_id"].as_str().unwrap().to_owned();
        assert!(put(&app, &opened, bytes).await.status().is_success());
        let direct = complete(&app, &id).await;
        assert_eq!(direct.status(), 422, "{name}: {proxied}");
        let direct: Value = direct.json().await.unwrap();
        assert_eq!(direct["error"]["code"], proxied["error"]["code"], "{name}");
        assert_eq!(
            direct["error"]["message"], proxied["error"]["message"],
            "{name}"
        );
    }
    assert_eq!(app.objects(Area::Staging).await, Vec::<String>::new());
    assert_eq!(app.rows_in(FileState::Staged).await, 0);
}

async fn bytes_that_are_not_the_declared_ones_are_never_staged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bytes = fixtures::text_pdf(&[&["Ada Lovelace"]]);
    // Fewer bytes than declared.
    let short = bytes[..bytes.len() - 10].to_vec();
    let opened = json_with(
        open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    let sent = put(&app, &opened, short).await;
    if sent.status().is_success() {
        // A store that took them: completing finds out and deletes them.
        let refused = assert_error(complete(&app, &id).await, 422, "file_size_mismatch").await;
        assert_eq!(
            refused["error"]["details"]["received"],
            (bytes.len() - 10).to_string()
        );
    } else {
        assert_error(complete(&app, &id).await, 409, "upload_not_received").await;
    }
    assert_eq!(app.objects(Area::Staging).await, Vec::<String>::new());
    // Other bytes of the declared size.
    let mut other = bytes.clone();
    let at = other.len() / 2;
    other[at] ^= 0x20;
    let opened = json_with(
        open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    let sent = put(&app, &opened, other).await;
    if sent.status().is_success() {
        assert_error(complete(&app, &id).await, 422, "file_checksum_mismatch").await;
        assert_error(complete(&app, &id).await, 422, "file_checksum_mismatch").await;
    } else {
        assert_error(complete(&app, &id).await, 409, "upload_not_received").await;
    }
    assert_eq!(app.objects(Area::Staging).await, Vec::<String>::new());
    assert_eq!(app.incomplete_uploads().await, 0);
    assert_eq!(app.rows_in(FileState::Staged).await, 0);
    if let Backend::SqliteFs = backend {
        // Stowage's own signed URL: altered, or pointed at another file, it is refused.
        let mut opened = json_with(
            open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
            201,
        )
        .await;
        let url = opened["upload"]["url"].as_str().unwrap().to_owned();
        let last = url.chars().last().unwrap();
        let flipped = if last == '0' { '1' } else { '0' };
        let forged = format!("{}{flipped}", &url[..url.len() - 1]);
        let other_file = url.replace(
            opened["carv_file_id"].as_str().unwrap(),
            &uuid::Uuid::new_v4().to_string(),
        );
        for url in [forged, other_file] {
            opened["upload"]["url"] = Value::String(url);
            assert_error(put(&app, &opened, bytes.clone()).await, 403, "forbidden").await;
        }
        assert_eq!(app.objects(Area::Staging).await, Vec::<String>::new());
    }
}

async fn a_direct_upload_never_completed_is_aborted(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.direct_upload_window = Duration::from_secs(1);
        c.receiving_grace = Duration::ZERO;
    })
    .await;
    let bytes = fixtures::text_pdf(&[&["Ada Lovelace"]]);
    let opened = json_with(
        open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    assert!(put(&app, &opened, bytes).await.status().is_success());
    assert_eq!(app.objects(Area::Staging).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.receiving_aborted, 1, "{run:?}");
    app.assert_nothing_stored().await;
    let id = opened["carv_file_id"].as_str().unwrap();
    assert_error(complete(&app, id).await, 404, "file_not_found").await;
}

async fn declarations_are_checked_before_any_url_is_given(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sha = sha256_hex(b"x");
    let refused = assert_error(
        open(&app, "cv.exe", 10, &sha).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    let proxied = assert_error(
        app.upload("cv.exe", b"MZ".to_vec()).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    assert_eq!(refused["error"]["message"], proxied["error"]["message"]);
    assert_error(open(&app, "cv", 10, &sha).await, 422, "file_name_invalid").await;
    assert_error(open(&app, "cv.pdf", 0, &sha).await, 422, "file_empty").await;
    let too_large = assert_error(
        open(&app, "cv.pdf", 52_428_801, &sha).await,
        422,
        "file_too_large",
    )
    .await;
    assert_eq!(
        too_large["error"]["message"],
        "File size exceeds maximum of 52428800 bytes (50MB)"
    );
    assert_error(
        open(&app, "cv.pdf", 10, "not-a-sha").await,
        422,
        "invalid_payload",
    )
    .await;
    let no_size = app
        .acme(Method::POST, "/uploads/direct")
        .json(&json!({"file_name": "cv.pdf", "sha256": sha}))
        .send()
        .await
        .unwrap();
    assert_error(no_size, 422, "invalid_payload").await;
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_allowed_origins_may_call_the_api() {
    let app = TestApp::spawn_with(Backend::SqliteFs, |c| {
        c.cors_origins = vec!["https://ats.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/uploads/direct"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "x-api-key,x-ats-client-id,content-type,x-request-id",
            )
            .send()
    };
    let allowed = preflight("https://ats.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://ats.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PUT"),
        "{methods}"
    );
    // A page may send its own request id (to find its calls in the logs).
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("x-request-id"), "{headers}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // An ordinary call from the allowed origin carries the header too.
    let listed = app
        .acme(Method::GET, "/files")
        .header("Origin", "https://ats.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://ats.example.com"
    );
}

/// A direct upload of `cv.pdf` opened and its bytes sent: its id and the opening's answer.
async fn opened_and_sent(app: &TestApp, bytes: Vec<u8>) -> (String, Value) {
    let opened = json_with(
        open(app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(app, &opened, bytes).await.status().is_success());
    (id, opened)
}

/// The refusal recorded for a direct upload, as the database holds it.
async fn stored_refusal(app: &TestApp, id: &str) -> String {
    const SQL: &str = "SELECT refusal FROM direct_uploads WHERE CAST(file_id AS TEXT) = $1";
    let url = &app.config.database_url;
    let (refusal,): (Option<String>,) = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(SQL).bind(id).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(SQL).bind(id).fetch_one(&pool).await.unwrap()
    };
    refusal.expect("a recorded refusal")
}

/// `(status, code)` of an error answer, or of a success.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

/// The differential test of the direct path: every file of the hostile corpus (and a valid
/// one of each kind) is sent through `POST /uploads` and as a direct upload; both must answer
/// with the same status and code, and nothing refused may stay in storage.
async fn every_hostile_file_gets_the_same_answer_on_both_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut files: Vec<(String, String, Vec<u8>)> = crate::hostile::corpus()
        .into_iter()
        .filter_map(|(label, send, _, _)| match send {
            crate::hostile::Send::Upload(name, bytes) => Some((label.to_owned(), name, bytes)),
            _ => None,
        })
        .collect();
    files.push(("a valid pdf".into(), "cv.pdf".into(), fixtures::pdf(4_000)));
    files.push(("a valid docx".into(), "cv.docx".into(), fixtures::docx()));
    assert!(files.len() >= 50, "{} files", files.len());
    for (label, name, bytes) in files {
        let proxied = outcome(app.upload(&name, bytes.clone()).await).await;
        let opened = open(&app, &name, bytes.len(), &sha256_hex(&bytes)).await;
        let direct = if opened.status() == 201 {
            let opened: Value = opened.json().await.unwrap();
            let sent = put(&app, &opened, bytes).await;
            assert!(sent.status().is_success(), "{label}: PUT {}", sent.status());
            outcome(complete(&app, opened["carv_file_id"].as_str().unwrap()).await).await
        } else {
            outcome(opened).await
        };
        assert_eq!(direct, proxied, "{label}: direct path vs POST /uploads");
    }
    // Only the two valid files are staged, once by each path.
    assert_eq!(app.rows_in(FileState::Staged).await, 4);
    assert_eq!(app.objects(Area::Staging).await.len(), 4);
    assert_eq!(app.incomplete_uploads().await, 0);
}

/// The window is part of the contract: completing 20 ms after `upload.expires_at` finds
/// nothing to complete, a webhook cannot bind the file, and the sweep leaves nothing.
async fn completing_after_the_window_is_not_found_and_stages_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.direct_upload_window = Duration::from_secs(2);
        c.receiving_grace = Duration::from_secs(1);
    })
    .await;
    let (id, opened) = opened_and_sent(&app, fixtures::text_pdf(&[&["Ada Lovelace"]])).await;
    sleep_until(at(&opened["upload"]["expires_at"]) + chrono::TimeDelta::milliseconds(20)).await;
    assert_error(complete(&app, &id).await, 404, "file_not_found").await;
    assert_eq!(app.rows_in(FileState::Staged).await, 0);
    let bound = app
        .post_webhook("candidates", &resume_webhook("u", &id))
        .await;
    let refused = assert_error(bound, 422, "file_not_found").await;
    assert!(
        refused["error"]["details"]["files.resume"].is_string(),
        "{refused}"
    );
    sleep_until(at(&opened["expires_at"]) + chrono::TimeDelta::milliseconds(100)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.receiving_aborted, 1, "{run:?}");
    app.assert_nothing_stored().await;
    assert_error(complete(&app, &id).await, 404, "file_not_found").await;
}

/// Completion and the sweeper's abort race, each held at a pause point: a completion that read
/// the object before the window closed waits before staging it (`complete.before_staged`)
/// while a sweep deletes the dead row and waits before deleting the object
/// (`abort.after_row`). The completion must answer `404` — never `201` for a file whose bytes
/// are about to go — and afterwards nothing is left.
async fn a_completion_racing_the_abort_never_stages_a_file_without_bytes(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.direct_upload_window = Duration::from_secs(2);
        c.receiving_grace = Duration::ZERO;
    })
    .await;
    let (child, base) = crate::crash::serve_process(
        &app,
        &[
            ("STOWAGE_FAULT_PAUSE", "complete.before_staged=6s"),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let _server = Reaper(child);
    let (id, opened) = opened_and_sent(&app, fixtures::text_pdf(&[&["Ada Lovelace"]])).await;
    let window_end = at(&opened["upload"]["expires_at"]);
    sleep_until(window_end - chrono::TimeDelta::milliseconds(800)).await;
    let completing = tokio::spawn(
        app.http
            .post(format!("{base}/uploads/{id}/complete"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .send(),
    );
    // The completion holds the checked file; the window closes; a sweep takes the row.
    sleep_until(window_end + chrono::TimeDelta::milliseconds(300)).await;
    let mut sweep = crate::crash::stowage_on(&app);
    sweep
        .arg("sweep")
        .env("STOWAGE_RECEIVING_GRACE", "0s")
        .env("STOWAGE_FAULT_PAUSE", "abort.after_row=8s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let sweeping = tokio::task::spawn_blocking(move || sweep.status().expect("stowage sweep"));
    let answer = completing.await.unwrap().unwrap();
    assert_error(answer, 404, "file_not_found").await;
    assert!(sweeping.await.unwrap().success());
    assert_eq!(app.rows_in(FileState::Staged).await, 0);
    app.assert_nothing_stored().await;
    let bound = app
        .post_webhook("candidates", &resume_webhook("u", &id))
        .await;
    assert_error(bound, 422, "file_not_found").await;
}

/// A direct upload completed, then erased (or discarded) while its URL is still signed: the
/// directory store refuses the URL at once; on S3 the bytes may land again, and the sweep after
/// the window deletes them. Completing it again is `404`, as a webhook naming it is told.
async fn a_still_signed_url_cannot_bring_erased_bytes_back(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.direct_upload_window = Duration::from_secs(2);
        c.receiving_grace = Duration::from_secs(1);
    })
    .await;
    let bytes = fixtures::text_pdf(&[&["Ada Lovelace"]]);
    let mut openings = Vec::new();
    for _ in 0..2 {
        let opened = json_with(
            open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
            201,
        )
        .await;
        assert!(
            put(&app, &opened, bytes.clone())
                .await
                .status()
                .is_success()
        );
        let id = opened["carv_file_id"].as_str().unwrap().to_owned();
        json_with(complete(&app, &id).await, 201).await;
        openings.push((id, opened));
    }
    let (erased, discarded) = (&openings[0], &openings[1]);
    let gone = app
        .acme(Method::DELETE, &format!("/files/{}", erased.0))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let gone = app
        .acme(Method::DELETE, &format!("/uploads/{}", discarded.0))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    for (id, opened) in [erased, discarded] {
        assert_error(complete(&app, id).await, 404, "file_not_found").await;
        let again = put(&app, opened, bytes.clone()).await;
        match backend {
            Backend::SqliteFs => assert_error(again, 409, "upload_closed").await,
            // The presigned URL is S3's to honour until it expires.
            Backend::PostgresS3 => Value::Null,
        };
    }
    sleep_until(at(&erased.1["expires_at"]) + chrono::TimeDelta::milliseconds(100)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{run:?}");
    assert_eq!(
        app.objects(Area::Staging).await,
        Vec::<String>::new(),
        "bytes came back through a signed URL"
    );
    for (id, _) in [erased, discarded] {
        assert_error(complete(&app, id).await, 404, "file_not_found").await;
    }
}

/// The directory store's signed URL takes one PUT at a time (a second is `409`), and a `.part`
/// file a crash left under the key does not block the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_put_at_a_time_and_a_crash_left_part_does_not_block() {
    let app = TestApp::spawn(Backend::SqliteFs).await;
    let bytes = fixtures::text_pdf(&[&["Ada Lovelace"]]);
    let opened = json_with(
        open(&app, "cv.pdf", bytes.len(), &sha256_hex(&bytes)).await,
        201,
    )
    .await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    // What a crash mid-PUT leaves: a partial `.part` beside the key.
    let stowage::config::StorageKind::Fs(root) = app.config.storage_kind().unwrap() else {
        panic!("the directory store")
    };
    let part = root
        .join(&app.config.staging_bucket)
        .join("acme")
        .join(format!("{id}.part"));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, b"%PDF-1.4 half of it").unwrap();

    let (tx, body) = streamed_body();
    let url = opened["upload"]["url"].as_str().unwrap().to_owned();
    let first = tokio::spawn(
        app.http
            .put(&url)
            .header("content-length", bytes.len())
            .body(body)
            .send(),
    );
    tx.send(Ok(bytes[..100].to_vec())).await.unwrap();
    // The first PUT holds the key until its body ends: its 100 bytes are in the `.part`.
    for _ in 0..500 {
        if std::fs::metadata(&part).is_ok_and(|m| m.len() == 100) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        100,
        "the first PUT began"
    );
    let second = put(&app, &opened, bytes.clone()).await;
    assert_error(second, 409, "upload_in_progress").await;
    tx.send(Ok(bytes[100..].to_vec())).await.unwrap();
    drop(tx);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    json_with(complete(&app, &id).await, 201).await;
    assert!(!part.exists(), "the .part file was left");
}
