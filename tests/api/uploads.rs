//! `POST /uploads`, `GET /uploads/{id}`, `DELETE /uploads/{id}`.

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use stowage::domain::FileState;
use stowage::store::Area;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, assert_refused, file_form, json_with};

const MAX: usize = 52_428_800;

both_backends!(
    a_pdf_is_staged_with_its_record,
    the_part_content_type_is_ignored,
    a_disallowed_extension_is_refused_with_the_exact_message,
    the_size_limit_is_exact_and_leaves_nothing_behind,
    missing_empty_and_extensionless_files_are_refused,
    word_documents_are_checked_beyond_their_magic_bytes,
    two_file_parts_are_refused,
    client_file_names_are_sanitised_and_never_used_as_keys,
    keys_and_client_ids_are_checked,
    another_clients_file_is_not_found,
    a_staged_file_can_be_discarded,
    a_storage_failure_leaves_no_row,
    a_configured_size_limit_and_ttl_are_honoured,
);

fn parse_time(value: &serde_json::Value) -> DateTime<Utc> {
    let text = value.as_str().expect("a time string");
    assert!(text.ends_with('Z'), "times are UTC with a Z: {text}");
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn a_pdf_is_staged_with_its_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pdf = fixtures::pdf(245_760);
    let before = Utc::now();
    let response = app.upload("resume.pdf", pdf.clone()).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json_with(response, 201).await;
    assert_eq!(
        location,
        format!("/uploads/{}", body["carv_file_id"].as_str().unwrap()),
        "Location names the new record"
    );

    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "carv_file_id",
            "content_type",
            "expires_at",
            "file_name",
            "file_size",
            "uploaded_at"
        ]
    );
    let id = body["carv_file_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(body["file_name"], "resume.pdf");
    assert_eq!(body["content_type"], "application/pdf");
    assert_eq!(body["file_size"], 245_760);
    let uploaded = parse_time(&body["uploaded_at"]);
    let expires = parse_time(&body["expires_at"]);
    assert!((uploaded - before).num_seconds().abs() <= 2);
    assert_eq!((expires - uploaded).num_hours(), 72);

    let record = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(record["state"], "staged");
    for field in sorted {
        assert_eq!(
            record[field], body[field],
            "GET differs from POST in {field}"
        );
    }
    assert_eq!(app.objects(Area::Staging).await, [format!("acme/{id}")]);
    assert_eq!(app.rows_in(FileState::Staged).await, 1);
}

async fn the_part_content_type_is_ignored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let lying = file_form("cv.pdf", fixtures::pdf(4096), "image/png");
    let body = json_with(app.upload_form(lying).await, 201).await;
    assert_eq!(body["content_type"], "application/pdf");

    let png_as_pdf = file_form("cv.pdf", fixtures::png(), "application/pdf");
    let error = assert_error(
        app.upload_form(png_as_pdf).await,
        422,
        "file_content_mismatch",
    )
    .await;
    assert_eq!(
        error["error"]["message"],
        "File content does not match extension '.pdf': detected 'image/png'"
    );
    let text_as_pdf = file_form("cv.pdf", b"just some text".to_vec(), "application/pdf");
    let error = assert_error(
        app.upload_form(text_as_pdf).await,
        422,
        "file_content_mismatch",
    )
    .await;
    assert_eq!(
        error["error"]["message"],
        "File content does not match extension '.pdf': detected 'application/octet-stream'"
    );
    assert_eq!(app.objects(Area::Staging).await.len(), 1);
    assert_eq!(app.rows().await, 1);
}

async fn a_disallowed_extension_is_refused_with_the_exact_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in ["setup.exe", "resume.pdf.exe", "RESUME.EXE"] {
        let error = assert_error(
            app.upload(name, fixtures::pdf(1000)).await,
            422,
            "file_extension_not_allowed",
        )
        .await;
        assert_eq!(
            error["error"]["message"],
            "File extension '.exe' is not allowed. Allowed extensions: .doc, .docx, .pdf"
        );
    }
    app.assert_nothing_stored().await;
}

async fn the_size_limit_is_exact_and_leaves_nothing_behind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json_with(app.upload("big.pdf", fixtures::pdf(MAX)).await, 201).await;
    assert_eq!(body["file_size"], MAX);

    let error = assert_error(
        app.upload("bigger.pdf", fixtures::pdf(MAX + 1)).await,
        422,
        "file_too_large",
    )
    .await;
    assert_eq!(
        error["error"]["message"],
        "File size exceeds maximum of 52428800 bytes (50MB)"
    );
    let id = body["carv_file_id"].as_str().unwrap();
    assert_eq!(app.objects(Area::Staging).await, [format!("acme/{id}")]);
    assert_eq!(
        app.incomplete_uploads().await,
        0,
        "the multipart upload was not aborted"
    );
    assert_eq!(app.rows().await, 1);
    assert_eq!(app.rows_in(FileState::Staged).await, 1);
}

async fn missing_empty_and_extensionless_files_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other_part = Form::new().text("note", "no file here");
    assert_error(app.upload_form(other_part).await, 422, "file_missing").await;

    let not_multipart = app
        .acme(Method::POST, "/uploads")
        .form(&[("file", "resume.pdf")])
        .send()
        .await
        .unwrap();
    assert_error(not_multipart, 422, "file_missing").await;

    let empty = assert_error(app.upload("empty.pdf", Vec::new()).await, 422, "file_empty").await;
    assert_eq!(empty["error"]["message"], "File is empty");

    let no_ext = assert_error(
        app.upload("resume", fixtures::pdf(100)).await,
        422,
        "file_name_invalid",
    )
    .await;
    assert!(
        no_ext["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no extension")
    );

    let nameless = Form::new().part("file", Part::bytes(fixtures::pdf(100)));
    assert_error(app.upload_form(nameless).await, 422, "file_name_invalid").await;
    app.assert_nothing_stored().await;
}

async fn word_documents_are_checked_beyond_their_magic_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let docx = json_with(app.upload("cv.docx", fixtures::docx()).await, 201).await;
    assert_eq!(
        docx["content_type"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let doc = json_with(app.upload("cv.doc", fixtures::doc()).await, 201).await;
    assert_eq!(doc["content_type"], "application/msword");

    let refused = [
        (
            "macro.docx",
            fixtures::docm(),
            "file_content_mismatch",
            "File content does not match extension '.docx': detected 'application/vnd.ms-word.document.macroEnabled.12'",
        ),
        (
            "sheet.docx",
            fixtures::xlsx(),
            "file_content_mismatch",
            "File content does not match extension '.docx': detected 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'",
        ),
        (
            "sheet.doc",
            fixtures::xls(),
            "file_content_mismatch",
            "File content does not match extension '.doc': detected 'application/vnd.ms-excel'",
        ),
        (
            "setup.doc",
            fixtures::msi(),
            "file_content_mismatch",
            "File content does not match extension '.doc': detected 'application/x-msi'",
        ),
        (
            "cv.doc",
            fixtures::pdf(3000),
            "file_content_mismatch",
            "File content does not match extension '.doc': detected 'application/pdf'",
        ),
    ];
    for (name, bytes, code, message) in refused {
        let error = assert_error(app.upload(name, bytes).await, 422, code).await;
        assert_eq!(error["error"]["message"], message, "for {name}");
    }
    let bomb = assert_error(
        app.upload("bomb.docx", fixtures::docx_bomb(40 * 1024 * 1024))
            .await,
        422,
        "file_content_invalid",
    )
    .await;
    assert!(
        bomb["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("File content is not a valid .docx document")
    );

    let mut truncated = fixtures::docx();
    truncated.truncate(truncated.len() - 30);
    assert_error(
        app.upload("cut.docx", truncated).await,
        422,
        "file_content_invalid",
    )
    .await;

    assert_eq!(
        app.objects(Area::Staging).await.len(),
        2,
        "only the two good documents are kept"
    );
    assert_eq!(app.rows().await, 2);
    assert_eq!(app.incomplete_uploads().await, 0);
}

async fn two_file_parts_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let form = file_form("a.pdf", fixtures::pdf(5000), "application/pdf")
        .part("file", Part::bytes(fixtures::pdf(5000)).file_name("b.pdf"));
    assert_error(app.upload_form(form).await, 422, "multiple_files").await;
    app.assert_nothing_stored().await;

    let extra_fields = Form::new()
        .text("candidate", "jane")
        .part("file", Part::bytes(fixtures::pdf(5000)).file_name("a.pdf"))
        .text("after", "x");
    json_with(app.upload_form(extra_fields).await, 201).await;
}

async fn client_file_names_are_sanitised_and_never_used_as_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nul = app.upload("pass\u{0}wd.pdf", fixtures::pdf(500)).await;
    assert!(
        nul.status().is_client_error(),
        "a NUL in a part header: {}",
        nul.status()
    );
    app.assert_nothing_stored().await;

    let body = json_with(
        app.upload("../../etc/passwd.pdf", fixtures::pdf(500)).await,
        201,
    )
    .await;
    assert_eq!(body["file_name"], "passwd.pdf");
    let id = body["carv_file_id"].as_str().unwrap();
    assert_eq!(app.objects(Area::Staging).await, [format!("acme/{id}")]);
    let body = json_with(
        app.upload("C:\\Users\\jane\\cv.pdf", fixtures::pdf(500))
            .await,
        201,
    )
    .await;
    assert_eq!(body["file_name"], "cv.pdf");
}

async fn keys_and_client_ids_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let form = || file_form("cv.pdf", fixtures::pdf(100), "application/pdf");
    let post = |key: Option<&str>, client: Option<&str>| {
        let mut request = app.http.post(app.url("/uploads")).multipart(form());
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(client) = client {
            request = request.header("X-ATS-Client-ID", client);
        }
        request.send()
    };
    assert_error(post(None, Some("acme")).await.unwrap(), 401, "unauthorized").await;
    assert_error(
        post(Some("not-a-key"), Some("acme")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let forged = format!("{}0", &app.acme_key[..app.acme_key.len() - 1]);
    let forged = if forged == app.acme_key {
        format!("{}1", &app.acme_key[..app.acme_key.len() - 1])
    } else {
        forged
    };
    assert_error(
        post(Some(&forged), Some("acme")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(Some(&app.acme_key), None).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert_error(
        post(Some(&app.acme_key), Some("globex")).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_error(
        post(Some(&app.acme_key), Some("nobody")).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    json_with(post(Some(&app.acme_key), Some("acme")).await.unwrap(), 201).await;

    stowage::accounts::revoke_key(app.state.repo(), "acme-key")
        .await
        .unwrap();
    assert_error(
        post(Some(&app.acme_key), Some("acme")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    json_with(
        post(Some(&app.globex_key), Some("globex")).await.unwrap(),
        201,
    )
    .await;
}

async fn another_clients_file_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json_with(app.upload("cv.pdf", fixtures::pdf(100)).await, 201).await;
    let path = format!("/uploads/{}", body["carv_file_id"].as_str().unwrap());
    let unknown = format!("/uploads/{}", uuid::Uuid::new_v4());

    let theirs = assert_refused(app.globex(Method::GET, &path), 404, "file_not_found").await;
    let missing = assert_refused(app.globex(Method::GET, &unknown), 404, "file_not_found").await;
    assert_eq!(
        theirs["error"]["message"], missing["error"]["message"],
        "no difference to probe"
    );
    assert_refused(app.globex(Method::DELETE, &path), 404, "file_not_found").await;
    assert_refused(
        app.acme(Method::GET, "/uploads/not-a-uuid"),
        404,
        "file_not_found",
    )
    .await;

    let record = json_with(app.acme(Method::GET, &path).send().await.unwrap(), 200).await;
    assert_eq!(record["state"], "staged", "the owner still has it");
}

async fn a_staged_file_can_be_discarded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json_with(app.upload("cv.pdf", fixtures::pdf(100)).await, 201).await;
    let path = format!("/uploads/{}", body["carv_file_id"].as_str().unwrap());

    let deleted = app.acme(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        app.objects(Area::Staging).await.is_empty(),
        "object deleted"
    );
    let record = json_with(app.acme(Method::GET, &path).send().await.unwrap(), 200).await;
    assert_eq!(record["state"], "discarded");
    assert_eq!(app.rows_in(FileState::Discarded).await, 1, "tombstone kept");

    let again = app.acme(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(again.status(), 204, "discarding twice is harmless");
    let unknown = format!("/uploads/{}", uuid::Uuid::new_v4());
    assert_refused(app.acme(Method::DELETE, &unknown), 404, "file_not_found").await;
}

async fn a_storage_failure_leaves_no_row(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Take the staging area away from under the running service.
    match backend {
        Backend::SqliteFs => {
            let root = app.config.storage.strip_prefix("fs:").unwrap().to_owned();
            let staging = std::path::Path::new(&root).join(&app.config.staging_bucket);
            std::fs::remove_dir_all(&staging).unwrap();
            std::fs::write(&staging, b"not a directory").unwrap();
        }
        Backend::PostgresS3 => {
            let mut config = app.config.clone();
            config.staging_bucket = format!("{}-missing", config.staging_bucket);
            let other = stowage::connect(&config).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/uploads", listener.local_addr().unwrap());
            tokio::spawn(stowage::serve(listener, other, std::future::pending()));
            for size in [1000, 20 * 1024 * 1024] {
                let response = app
                    .http
                    .post(&url)
                    .header("X-API-Key", &app.acme_key)
                    .header("X-ATS-Client-ID", "acme")
                    .multipart(file_form("cv.pdf", fixtures::pdf(size), "application/pdf"))
                    .send()
                    .await
                    .unwrap();
                let body = assert_error(response, 500, "internal_error").await;
                assert_eq!(
                    body["error"]["message"], "Internal server error",
                    "no internals leak"
                );
            }
            assert_eq!(app.rows().await, 0);
            return;
        }
    }
    let response = app.upload("cv.pdf", fixtures::pdf(1000)).await;
    assert!(
        response.status().is_server_error(),
        "got {}",
        response.status()
    );
    assert_eq!(app.rows().await, 0);
}

async fn a_configured_size_limit_and_ttl_are_honoured(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_upload_bytes = 1_572_864;
        c.upload_ttl = std::time::Duration::from_secs(90);
        c.allowed_extensions = [stowage::sniff::DocumentKind::Pdf].into_iter().collect();
    })
    .await;
    let error = assert_error(
        app.upload("cv.pdf", fixtures::pdf(1_572_865)).await,
        422,
        "file_too_large",
    )
    .await;
    assert_eq!(
        error["error"]["message"],
        "File size exceeds maximum of 1572864 bytes (1.5MB)"
    );
    let error = assert_error(
        app.upload("cv.docx", fixtures::docx()).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    assert_eq!(
        error["error"]["message"],
        "File extension '.docx' is not allowed. Allowed extensions: .pdf"
    );
    let body = json_with(app.upload("cv.pdf", fixtures::pdf(1_572_864)).await, 201).await;
    let ttl = parse_time(&body["expires_at"]) - parse_time(&body["uploaded_at"]);
    assert_eq!(ttl.num_seconds(), 90);
}
