//! Text for analysis: every promoted file gets its text, extracted in the background by an
//! isolated child process; failures say why; erasure takes the text too.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use stowage::sniff::DocumentKind;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, json_with, resume_webhook};

both_backends!(
    every_format_comes_back_with_its_words,
    documents_without_text_fail_with_their_reason,
    text_is_not_ready_until_extraction_ends,
    a_document_built_to_exhaust_the_parser_fails_while_uploads_go_on,
    erasing_a_file_erases_its_text,
    a_short_cv_is_refused_at_upload_when_asked,
    upload_time_checks_share_one_limit_of_extraction_processes,
    a_scanned_resume_is_read_by_ocr_when_asked,
    a_backlog_larger_than_the_processes_gets_each_file_its_own_text,
);

fn with_txt(config: &mut stowage::config::Config) {
    config.allowed_extensions = BTreeSet::from(DocumentKind::ALL);
}

/// Stages a file and binds it with a webhook for `user_id`; its id.
pub(crate) async fn promote(app: &TestApp, name: &str, bytes: Vec<u8>, user_id: &str) -> String {
    let staged = json_with(app.upload(name, bytes).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    let bound = app
        .post_webhook("candidates", &resume_webhook(user_id, &id))
        .await;
    json_with(bound, 200).await;
    id
}

/// The file record once its text is no longer pending (at most a minute).
pub(crate) async fn settled(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let file = app.get_json(&format!("/files/{id}")).await;
        if file["text"]["status"] != "pending" {
            return file;
        }
        assert!(Instant::now() < deadline, "text still pending: {file}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn text_of(app: &TestApp, id: &str) -> String {
    let response = app
        .acme(Method::GET, &format!("/files/{id}/text"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    response.text().await.unwrap()
}

fn in_order(text: &str, words: &[&str]) {
    let mut from = 0;
    for word in words {
        match text[from..].find(word) {
            Some(at) => from += at + word.len(),
            None => panic!("{word:?} missing or out of order in {text:?}"),
        }
    }
}

async fn every_format_comes_back_with_its_words(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_txt).await;
    let pdf = promote(
        &app,
        "Ada Lovelace.pdf",
        fixtures::text_pdf(&[
            &["Ada Lovelace", "Notes on the Analytical Engine"],
            &["Experience", "Translator of the memoir by Menabrea"],
        ]),
        "u-pdf",
    )
    .await;
    let docx = promote(
        &app,
        "Grace Hopper.docx",
        fixtures::docx_with_table(
            &["Grace Hopper", "Rear admiral, United States Navy"],
            &[&["Language", "Years"], &["COBOL", "1959"]],
            "References on request",
        ),
        "u-docx",
    )
    .await;
    let doc = promote(
        &app,
        "Alan Turing.doc",
        fixtures::doc_with_text("Alan Turing\nComputing machinery and intelligence"),
        "u-doc",
    )
    .await;
    let txt = promote(
        &app,
        "Katherine Johnson.txt",
        "\u{feff}Katherine Johnson\r\nOrbital mechanics, NASA — Hidden Figures\r\n"
            .as_bytes()
            .to_vec(),
        "u-txt",
    )
    .await;

    for id in [&pdf, &docx, &doc, &txt] {
        let file = settled(&app, id).await;
        assert_eq!(file["text"]["status"], "extracted", "{file}");
        assert!(file["text"]["chars"].as_i64().unwrap() > 20, "{file}");
        assert_eq!(file["text"]["error"], Value::Null);
    }
    let text = text_of(&app, &pdf).await;
    in_order(
        &text,
        &[
            "Ada Lovelace",
            "Notes on the Analytical Engine",
            "Experience",
            "memoir by Menabrea",
        ],
    );
    let file = app.get_json(&format!("/files/{pdf}")).await;
    assert_eq!(
        file["text"]["chars"].as_i64().unwrap(),
        text.chars().count() as i64
    );
    in_order(
        &text_of(&app, &docx).await,
        &[
            "Grace Hopper",
            "Rear admiral",
            "Language",
            "Years",
            "COBOL",
            "1959",
            "References on request",
        ],
    );
    in_order(
        &text_of(&app, &doc).await,
        &["Alan Turing", "Computing machinery and intelligence"],
    );
    // Every line ends in a newline, the last one too (as docs/api.md says).
    assert_eq!(
        text_of(&app, &txt).await,
        "Katherine Johnson\nOrbital mechanics, NASA — Hidden Figures\n"
    );
    let staged = app.get_json(&format!("/files/{txt}")).await;
    assert_eq!(staged["content_type"], "text/plain");

    // One event a file, carrying the status.
    let events = app.events_of("file.text_extracted").await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["data"]["file"]["text"]["status"] == "extracted")
    );
    // Each names the webhook that promoted its file, as the file's record does.
    for event in &events {
        let id = event["data"]["file"]["carv_file_id"].as_str().unwrap();
        let webhook = &app.get_json(&format!("/files/{id}")).await["webhook"];
        assert!(
            webhook["user_id"].as_str().unwrap().starts_with("u-"),
            "{webhook}"
        );
        assert_eq!(&event["data"]["file"]["webhook"], webhook, "{event}");
    }

    // Another client sees nothing.
    let other = app
        .globex(Method::GET, &format!("/files/{pdf}/text"))
        .send()
        .await
        .unwrap();
    assert_error(other, 404, "file_not_found").await;
    // Latin-1 is not UTF-8: refused at upload, not stored as mojibake.
    let latin1 = app.upload("cv.txt", b"Jos\xe9 Garc\xeda".to_vec()).await;
    assert_error(latin1, 422, "file_content_invalid").await;
}

async fn documents_without_text_fail_with_their_reason(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let scanned = promote(&app, "scan.pdf", fixtures::scanned_pdf(), "u-1").await;
    let encrypted = promote(&app, "locked.pdf", fixtures::encrypted_pdf(), "u-2").await;
    for (id, reason) in [(&scanned, "no_text_layer"), (&encrypted, "encrypted")] {
        let file = settled(&app, id).await;
        assert_eq!(file["text"]["status"], "failed", "{file}");
        assert_eq!(file["text"]["reason"], reason, "{file}");
        assert_eq!(file["text"]["chars"], Value::Null);
        assert!(
            file["text"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
        let refused = app
            .acme(Method::GET, &format!("/files/{id}/text"))
            .send()
            .await
            .unwrap();
        let body = assert_error(refused, 422, "text_unavailable").await;
        assert_eq!(body["error"]["details"]["reason"], reason);
    }
    let failed = app.events_of("file.text_failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    // The file itself is fine: promoted, downloadable.
    let file = app.get_json(&format!("/files/{encrypted}")).await;
    assert_eq!(file["state"], "promoted");
}

async fn text_is_not_ready_until_extraction_ends(backend: Backend) {
    // An extractor that takes its time: the same binary, two seconds late.
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow-extractor");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_stowage")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let app = TestApp::spawn_with(backend, |c| c.text_extractor = Some(slow.clone())).await;

    let staged = json_with(
        app.upload("cv.pdf", fixtures::text_pdf(&[&["Margaret Hamilton"]]))
            .await,
        201,
    )
    .await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    assert_eq!(staged.get("text"), None);
    let early = app
        .acme(Method::GET, &format!("/files/{id}/text"))
        .send()
        .await
        .unwrap();
    let body = assert_error(early, 409, "text_not_ready").await;
    assert_eq!(body["error"]["details"]["state"], "staged");

    json_with(
        app.post_webhook("candidates", &resume_webhook("u-1", &id))
            .await,
        200,
    )
    .await;
    let file = app.get_json(&format!("/files/{id}")).await;
    assert_eq!(file["text"]["status"], "pending", "{file}");
    let pending = app
        .acme(Method::GET, &format!("/files/{id}/text"))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = pending.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(pending, 409, "text_not_ready").await;

    let file = settled(&app, &id).await;
    assert_eq!(file["text"]["status"], "extracted");
    assert!(text_of(&app, &id).await.contains("Margaret Hamilton"));
}

async fn a_document_built_to_exhaust_the_parser_fails_while_uploads_go_on(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.text_memory_mb = 96;
        c.text_timeout = Duration::from_secs(3);
    })
    .await;
    let started = Instant::now();
    let bomb = promote(&app, "bomb.pdf", fixtures::pdf_bomb(512 << 20), "u-bomb").await;
    // While the child struggles, the service serves.
    for i in 0..3 {
        let staged = app
            .upload(
                &format!("cv-{i}.pdf"),
                fixtures::text_pdf(&[&["Hedy Lamarr"]]),
            )
            .await;
        json_with(staged, 201).await;
    }
    let file = settled(&app, &bomb).await;
    assert_eq!(file["text"]["status"], "failed", "{file}");
    let reason = file["text"]["reason"].as_str().unwrap();
    assert!(
        ["too_large", "timeout", "unreadable"].contains(&reason),
        "{file}"
    );
    // Well within the time limit plus the time to upload and claim it.
    assert!(started.elapsed() < Duration::from_secs(45), "{file}");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

async fn erasing_a_file_erases_its_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = promote(
        &app,
        "cv.docx",
        fixtures::docx_with_table(&["Katherine Johnson"], &[&["Skill", "Orbits"]], "End"),
        "u-1",
    )
    .await;
    assert_eq!(settled(&app, &id).await["text"]["status"], "extracted");
    let erased = app
        .acme(Method::DELETE, &format!("/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 204);
    let gone = app
        .acme(Method::GET, &format!("/files/{id}/text"))
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "file_not_found").await;
    let file = app.get_json(&format!("/files/{id}")).await;
    assert_eq!(file.get("text"), None, "{file}");
    // Nothing of the text is left in the database, nor in the events.
    let all = app.get_json("/events?limit=100").await.to_string();
    assert!(!all.contains("Katherine"), "{all}");
    let rows = match &app
        .state
        .repo()
        .file_text("acme", id.parse().unwrap())
        .await
    {
        Ok(text) => text.clone(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(rows, None);
}

async fn a_short_cv_is_refused_at_upload_when_asked(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.min_text_chars = 50;
        with_txt(c);
    })
    .await;
    let short = app
        .upload("cv.pdf", fixtures::text_pdf(&[&["Ada Lovelace"]]))
        .await;
    let body = assert_error(short, 422, "text_too_short").await;
    assert_eq!(
        body["error"]["message"],
        "CV seems too short. Please upload a complete CV (at least 50 characters)"
    );
    let locked = app.upload("cv.pdf", fixtures::encrypted_pdf()).await;
    let body = assert_error(locked, 422, "text_unreadable").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Could not read file: "), "{message}");
    assert!(message.contains("encrypted"), "{message}");
    let scanned = app.upload("scan.pdf", fixtures::scanned_pdf()).await;
    assert_error(scanned, 422, "text_unreadable").await;

    let long = app
        .upload(
            "cv.txt",
            "Ada Lovelace, mathematician. Wrote the first published algorithm for a machine."
                .as_bytes()
                .to_vec(),
        )
        .await;
    json_with(long, 201).await;
    // Refused uploads leave nothing behind: only the accepted one is stored.
    assert_eq!(app.rows().await, 1);
    assert_eq!(app.objects(stowage::store::Area::Staging).await.len(), 1);
}

/// §10: with `STOWAGE_MIN_TEXT_CHARS` set, concurrent uploads (proxied and direct) never run
/// more extraction children than `STOWAGE_TEXT_CONCURRENCY`; one that cannot get a child within
/// the text time limit is `503` with `Retry-After`, and leaves nothing.
async fn upload_time_checks_share_one_limit_of_extraction_processes(backend: Backend) {
    // An extractor (a wrapper, as a sandbox would be) that notes when two of it run at once;
    // each document takes its time because it is a scan read by OCR (a second or two a page).
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().display().to_string();
    let slow = dir.path().join("slow-extractor");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nmkdir {marks}/running 2>/dev/null || touch {marks}/overlap\nsleep 0.5\n{} \"$@\"\ncode=$?\nrmdir {marks}/running\nexit $code\n",
            env!("CARGO_BIN_EXE_stowage")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let app = TestApp::spawn_with(backend, |c| {
        c.text_extractor = Some(slow.clone());
        c.min_text_chars = 10;
        c.text_concurrency = Some(1);
        c.text_timeout = Duration::from_millis(4_000);
        c.ocr = true;
    })
    .await;
    let cv = scanned_resume(&["Grace Hopper, rear admiral and computer scientist"]);
    let uploads = (0..8).map(|_| {
        let request = app
            .acme(Method::POST, "/uploads")
            .multipart(crate::helpers::file_form(
                "cv.pdf",
                cv.clone(),
                "application/pdf",
            ));
        async move { request.send().await.unwrap() }
    });
    let answers = futures_util::future::join_all(uploads).await;
    let mut staged = 0;
    let mut busy = 0;
    for answer in answers {
        match answer.status().as_u16() {
            201 => staged += 1,
            503 => {
                assert!(answer.headers().contains_key("retry-after"));
                let body = assert_error(answer, 503, "service_unavailable").await;
                assert_eq!(body["error"]["details"]["dependency"], "text extraction");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(staged >= 1 && busy >= 1, "{staged} staged, {busy} busy");
    assert!(
        !dir.path().join("overlap").exists(),
        "two extraction children ran at once"
    );
    assert_eq!(app.rows().await, staged);
    assert_eq!(
        app.objects(stowage::store::Area::Staging).await.len(),
        staged as usize
    );
}

/// A scanned resume: `lines` typeset in a text PDF, its page rendered by poppler's `pdftoppm`
/// at 150 dpi in grey, and the image alone put back in a PDF (no text layer), as a scanner
/// makes it.
fn scanned_resume(lines: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let typeset = dir.path().join("typeset.pdf");
    std::fs::write(&typeset, fixtures::text_pdf(&[lines])).unwrap();
    let rendered = std::process::Command::new("pdftoppm")
        .args(["-gray", "-r", "150", "-singlefile"])
        .arg(&typeset)
        .arg(dir.path().join("page"))
        .status()
        .expect("pdftoppm (poppler-utils) runs");
    assert!(rendered.success());
    let pgm = std::fs::read(dir.path().join("page.pgm")).unwrap();
    // P5 WIDTH HEIGHT 255, one whitespace byte, then the pixels.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while pgm[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !pgm[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8(pgm[start..at].to_vec()).unwrap());
    }
    let (width, height): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let pixels = &pgm[at + 1..];
    assert_eq!(pixels.len(), width * height);
    fixtures::gray_image_pdf(width, height, pixels)
}

async fn a_scanned_resume_is_read_by_ocr_when_asked(backend: Backend) {
    let lines = [
        "Grace Hopper",
        "Rear Admiral, United States Navy",
        "Experience: compilers, COBOL, the Harvard Mark I",
    ];
    let scan = scanned_resume(&lines);
    // Without OCR a scan has no text layer, and says so.
    let app = TestApp::spawn(backend).await;
    let id = promote(&app, "scan.pdf", scan.clone(), "u-1").await;
    let file = settled(&app, &id).await;
    assert_eq!(file["text"]["reason"], "no_text_layer", "{file}");
    assert_eq!(file["text"]["source"], Value::Null, "{file}");

    let app = TestApp::spawn_with(backend, |config| config.ocr = true).await;
    let id = promote(&app, "scan.pdf", scan, "u-1").await;
    let file = settled(&app, &id).await;
    assert_eq!(file["text"]["status"], "extracted", "{file}");
    assert_eq!(file["text"]["source"], "ocr", "{file}");
    let text = text_of(&app, &id).await;
    in_order(
        &text,
        &["Grace Hopper", "United States Navy", "COBOL", "Harvard"],
    );
    assert_eq!(
        file["text"]["chars"].as_i64().unwrap(),
        text.chars().count() as i64
    );
    let extracted = app.events_of("file.text_extracted").await;
    assert_eq!(
        extracted[0]["data"]["file"]["text"]["source"], "ocr",
        "{extracted:?}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("stowage_text_extractions_total{")
                && l.contains(r#"source="ocr""#)
                && l.contains(r#"status="extracted""#)),
        "{metrics}"
    );

    // A PDF with a text layer is read as it is, not by OCR.
    let typeset = fixtures::text_pdf(&[&lines]);
    let id = promote(&app, "typeset.pdf", typeset, "u-2").await;
    let file = settled(&app, &id).await;
    assert_eq!(file["text"]["source"], "document", "{file}");
}

/// More promoted files than extraction processes: jobs read their documents while others parse,
/// and each file still gets its own text, a document longer than what a job reads ahead whole.
async fn a_backlog_larger_than_the_processes_gets_each_file_its_own_text(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        with_txt(c);
        c.text_concurrency = Some(1);
    })
    .await;
    // ~600 KB of text: the first 256 KiB are read ahead, the rest streamed behind them.
    let mut long = String::from("Opening line of Ada Lovelace's notes.\n");
    for n in 0..12_000 {
        long.push_str(&format!("Note {n} on the Analytical Engine.\n"));
    }
    long.push_str("Closing line: the last note.\n");
    let long_id = promote(&app, "notes.txt", long.clone().into_bytes(), "u-long").await;
    let mut short = Vec::new();
    for n in 0..10 {
        let name = format!("Candidate Number{n} Surname{n}");
        let id = promote(
            &app,
            "cv.pdf",
            fixtures::text_pdf(&[&[name.as_str()]]),
            &format!("u-{n}"),
        )
        .await;
        short.push((id, name));
    }

    let file = settled(&app, &long_id).await;
    assert_eq!(file["text"]["status"], "extracted", "{file}");
    let text = text_of(&app, &long_id).await;
    assert!(
        text.starts_with("Opening line of Ada Lovelace's notes."),
        "{}",
        &text[..80]
    );
    assert!(text.contains("Note 11999 on the Analytical Engine."));
    assert!(text.trim_end().ends_with("Closing line: the last note."));
    assert_eq!(text.lines().count(), long.lines().count());
    for (id, name) in &short {
        let file = settled(&app, id).await;
        assert_eq!(file["text"]["status"], "extracted", "{file}");
        let text = text_of(&app, id).await;
        assert!(text.contains(name.as_str()), "{id}: {text}");
        for (_, other) in short.iter().filter(|(other_id, _)| other_id != id) {
            assert!(
                !text.contains(other.as_str()),
                "{id} has {other}'s text: {text}"
            );
        }
    }
}
