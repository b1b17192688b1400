//! Hostile input: a corpus built here (no binary blobs in git), each case answered with the right
//! 4xx and the error envelope, nothing stored, never a 500.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use stowage::store::Area;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, file_form, json_with};

both_backends!(
    a_hostile_corpus_is_refused_without_trace,
    a_slow_client_is_cut_off_and_cleaned_up
);

pub(crate) enum Send {
    /// A multipart upload with one `file` part.
    Upload(String, Vec<u8>),
    /// A raw body to POST /uploads with a content type.
    Raw(&'static str, Vec<u8>),
    /// A JSON-ish body to POST /webhooks/candidates.
    Webhook(Vec<u8>),
    /// A GET.
    Get(&'static str),
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn corpus() -> Vec<(&'static str, Send, u16, &'static str)> {
    use Send::*;
    let pdf = fixtures::pdf(5_000);
    let up = |name: &str, bytes: Vec<u8>| Upload(name.to_owned(), bytes);
    let mismatch = "file_content_mismatch";
    let invalid = "file_content_invalid";
    let mut polyglot = fixtures::pdf(3_000);
    polyglot.extend_from_slice(&fixtures::docx());
    let mut pdf_then_zip_as_docx = fixtures::pdf(100);
    pdf_then_zip_as_docx.extend_from_slice(&fixtures::docx());
    let mut buried_polyglot = fixtures::pdf(100);
    buried_polyglot.extend_from_slice(&fixtures::docx());
    buried_polyglot.extend_from_slice(b"\n%");
    buried_polyglot.extend(std::iter::repeat_n(b'x', 200 * 1024));
    buried_polyglot.extend_from_slice(b"\n%%EOF\n");
    // An archive the last 64 KiB cannot show: its end record's comment fills them.
    let mut commented_polyglot = fixtures::pdf(5_000);
    commented_polyglot.extend(fixtures::with_zip_comment(
        fixtures::docx(),
        65_535,
        b"\n%%EOF\n",
    ));
    // An archive just past the first 8 KiB, then 70,000 bytes before the end.
    let mut zip_after_the_head = fixtures::pdf(9 * 1024);
    zip_after_the_head.extend_from_slice(&fixtures::docx());
    zip_after_the_head.extend(std::iter::repeat_n(b'x', 70_000));
    zip_after_the_head.extend_from_slice(b"\n%%EOF\n");
    // An archive in the middle of a 1.2 MB PDF (inside its padding comment).
    let mut zip_in_the_middle = fixtures::pdf(1_200_000);
    let docx = fixtures::docx();
    zip_in_the_middle.splice(600_000..600_000 + docx.len(), docx);
    let mut cut_pdf = fixtures::pdf(40_000);
    cut_pdf.truncate(30_000);
    let mut truncated_docx = fixtures::docx();
    truncated_docx.truncate(truncated_docx.len() / 2);
    let mut truncated_doc = fixtures::doc();
    truncated_doc.truncate(700);
    let two_parts = concat(&[
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n",
        &pdf,
        b"\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.pdf\"\r\n\r\n",
        &pdf,
        b"\r\n--b--\r\n",
    ]);
    let unterminated = concat(&[
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n",
        &pdf,
    ]);
    let mut endless_header =
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
    endless_header.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    let mut many_parts = Vec::new();
    for i in 0..100 {
        many_parts.extend_from_slice(
            format!("--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n").as_bytes(),
        );
    }
    many_parts.extend_from_slice(b"--b--\r\n");
    let nul_name = concat(&[
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\0.pdf\"\r\n\r\n",
        &pdf,
        b"\r\n--b--\r\n",
    ]);
    let wrong_field = concat(&[
        b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.pdf\"\r\n\r\n",
        &pdf,
        b"\r\n--b--\r\n",
    ]);
    let deep_json = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes();
    let big_json =
        json!({ "client_id": "acme", "user_id": "u", "data": { "x": "y".repeat(1_100_000) } })
            .to_string()
            .into_bytes();
    vec![
        // Content that is not what its name says.
        ("png as pdf", up("cv.pdf", fixtures::png()), 422, mismatch),
        ("jpeg as pdf", up("cv.pdf", b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01".repeat(20)), 422, mismatch),
        ("gif as pdf", up("cv.pdf", b"GIF89a\x01\x00\x01\x00\x00\x00\x00".repeat(20)), 422, mismatch),
        ("html as pdf", up("cv.pdf", b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec()), 422, mismatch),
        ("svg as pdf", up("cv.pdf", b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec()), 422, mismatch),
        ("exe as pdf", up("cv.pdf", concat(&[b"MZ\x90\x00\x03\x00\x00\x00", &[0u8; 120], b"PE\0\0"])), 422, mismatch),
        ("elf as pdf", up("cv.pdf", concat(&[b"\x7fELF\x02\x01\x01\x00", &[0u8; 120]])), 422, mismatch),
        ("docx as pdf", up("cv.pdf", fixtures::docx()), 422, mismatch),
        ("pdf/zip polyglot as pdf", up("cv.pdf", polyglot), 422, invalid),
        ("pdf/zip polyglot as docx", up("cv.docx", pdf_then_zip_as_docx), 422, mismatch),
        ("space before %PDF", up("cv.pdf", concat(&[b" ", &pdf])), 422, invalid),
        ("BOM before %PDF", up("cv.pdf", concat(&[b"\xEF\xBB\xBF", &pdf])), 422, invalid),
        ("pdf/zip polyglot, archive buried under 200 KiB of comment", up("cv.pdf", buried_polyglot), 422, invalid),
        ("pdf cut off in transfer (no %%EOF)", up("cv.pdf", cut_pdf), 422, invalid),
        ("pdf/zip polyglot, end record with a 65,535-byte comment", up("cv.pdf", commented_polyglot), 422, invalid),
        ("pdf/zip polyglot, archive after a 9 KiB head and 70,000 bytes before the end", up("cv.pdf", zip_after_the_head), 422, invalid),
        ("pdf/zip polyglot, archive in the middle of 1.2 MB", up("cv.pdf", zip_in_the_middle), 422, invalid),
        ("%PDF without dash", up("cv.pdf", b"%PDF".to_vec()), 422, mismatch),
        ("one byte", up("cv.pdf", b"%".to_vec()), 422, mismatch),
        ("NUL bytes", up("cv.pdf", vec![0; 4096]), 422, mismatch),
        ("plain text", up("cv.pdf", b"Jane Doe, Software Engineer".to_vec()), 422, mismatch),
        ("empty pdf", up("cv.pdf", Vec::new()), 422, "file_empty"),
        ("empty docx", up("cv.docx", Vec::new()), 422, "file_empty"),
        // Office documents that are something else.
        ("docm as docx", up("cv.docx", fixtures::docm()), 422, mismatch),
        ("xlsx declaring a missing word part", up("cv.docx", fixtures::xlsx_claiming_word()), 422, mismatch),
        ("docm with a character-referenced type", up("cv.docx", fixtures::docm_with_escaped_type()), 422, mismatch),
        ("vba project under another name", up("cv.docx", fixtures::docx_with_hidden_vba()), 422, mismatch),
        ("vba project by relationship only", up("cv.docx", fixtures::docx_with_vba_relationship()), 422, mismatch),
        ("two [Content_Types].xml entries", up("cv.docx", fixtures::docx_with_duplicate_content_types()), 422, invalid),
        ("xlsx as docx", up("cv.docx", fixtures::xlsx()), 422, mismatch),
        ("pptx as docx", up("cv.docx", fixtures::pptx()), 422, mismatch),
        ("zip bomb by ratio", up("cv.docx", fixtures::docx_bomb(64 * 1024 * 1024)), 422, invalid),
        ("zip bomb by entries", up("cv.docx", fixtures::docx_with_entries(6_000)), 422, invalid),
        ("truncated docx", up("cv.docx", truncated_docx), 422, invalid),
        ("docx part declaring 4,000 bytes, inflating to 32 MiB", up("cv.docx", fixtures::docx_lying_about_its_size(4_000, 32 << 20)), 422, invalid),
        ("docx part with a wrong CRC-32", up("cv.docx", fixtures::docx_with_bad_crc()), 422, invalid),
        ("docx part with a damaged deflate stream", up("cv.docx", fixtures::docx_with_damaged_deflate()), 422, invalid),
        ("docx without content types", up("cv.docx", fixtures::docx_without_content_types()), 422, mismatch),
        ("docx with broken content types", up("cv.docx", fixtures::docx_with_broken_content_types()), 422, invalid),
        ("plain zip as docx", up("cv.docx", fixtures::zip_of(&[("a.txt", b"hi")])), 422, mismatch),
        ("empty zip as docx", up("cv.docx", concat(&[b"PK\x05\x06", &[0u8; 18]])), 422, mismatch),
        ("pdf as docx", up("cv.docx", pdf.clone()), 422, mismatch),
        ("xls as doc", up("cv.doc", fixtures::xls()), 422, mismatch),
        ("msi as doc", up("cv.doc", fixtures::msi()), 422, mismatch),
        ("ppt as doc", up("cv.doc", fixtures::ppt()), 422, mismatch),
        ("docx as doc", up("cv.doc", fixtures::docx()), 422, mismatch),
        ("truncated doc", up("cv.doc", truncated_doc), 422, invalid),
        ("OLE header only", up("cv.doc", fixtures::doc()[..512].to_vec()), 422, invalid),
        ("doc whose WordDocument chain loops", up("cv.doc", fixtures::doc_with_word_chain_loop()), 422, invalid),
        ("doc whose WordDocument declares 2^60 bytes", up("cv.doc", fixtures::doc_with_huge_word_stream()), 422, invalid),
        ("doc header claiming 0x7fffffff FAT sectors", up("cv.doc", fixtures::doc_with_huge_fat_claim()), 422, invalid),
        // Names.
        ("double extension", up("resume.pdf.exe", pdf.clone()), 422, "file_extension_not_allowed"),
        ("html name", up("cv.html", pdf.clone()), 422, "file_extension_not_allowed"),
        ("svg name", up("cv.svg", pdf.clone()), 422, "file_extension_not_allowed"),
        ("docm name", up("cv.docm", fixtures::docm()), 422, "file_extension_not_allowed"),
        ("dot name", up("cv.dot", fixtures::doc()), 422, "file_extension_not_allowed"),
        ("path traversal, no extension", up("../../etc/passwd", pdf.clone()), 422, "file_name_invalid"),
        ("windows traversal", up("..\\..\\boot.ini", pdf.clone()), 422, "file_extension_not_allowed"),
        ("dot file", up(".pdf", pdf.clone()), 422, "file_name_invalid"),
        ("trailing dot", up("cv.", pdf.clone()), 422, "file_name_invalid"),
        ("no name", up("", pdf.clone()), 422, "file_name_invalid"),
        // Multipart framing.
        ("two file parts", Raw("multipart/form-data; boundary=b", two_parts), 422, "multiple_files"),
        ("part header without end", Raw("multipart/form-data; boundary=b", endless_header), 400, "malformed_multipart"),
        ("a hundred parts", Raw("multipart/form-data; boundary=b", many_parts), 400, "malformed_multipart"),
        ("missing boundary", Raw("multipart/form-data", pdf.clone()), 400, "malformed_multipart"),
        ("unterminated multipart", Raw("multipart/form-data; boundary=b", unterminated), 400, "malformed_multipart"),
        ("NUL in a part header", Raw("multipart/form-data; boundary=b", nul_name), 400, "malformed_multipart"),
        ("wrong part name", Raw("multipart/form-data; boundary=b", wrong_field), 422, "file_missing"),
        ("json instead of multipart", Raw("application/json", b"{\"file\":\"x\"}".to_vec()), 422, "file_missing"),
        ("no body at all", Raw("text/plain", Vec::new()), 422, "file_missing"),
        ("50 MB + 1 byte", up("big.pdf", fixtures::pdf(52_428_801)), 422, "file_too_large"),
        // Webhooks.
        ("malformed json", Webhook(b"{\"client_id\": ".to_vec()), 400, "invalid_json"),
        ("json array", Webhook(b"[1, 2, 3]".to_vec()), 422, "invalid_payload"),
        ("deeply nested json", Webhook(deep_json), 400, "invalid_json"),
        ("oversized json", Webhook(big_json), 413, "payload_too_large"),
        ("files as a string", Webhook(br#"{"client_id":"acme","user_id":"u","files":"x"}"#.to_vec()), 422, "invalid_payload"),
        ("client id as a number", Webhook(br#"{"client_id":7,"user_id":"u"}"#.to_vec()), 422, "invalid_payload"),
        ("non-uuid file id", Webhook(br#"{"client_id":"acme","user_id":"u","files":{"resume":{"carv_file_id":"1 OR 1=1"}}}"#.to_vec()), 422, "file_not_found"),
        ("unknown slot", Webhook(br#"{"client_id":"acme","user_id":"u","files":{"photo":{"carv_file_id":"x"}}}"#.to_vec()), 422, "invalid_payload"),
        // Ids in paths.
        ("sql in a path id", Get("/uploads/1%27%20OR%201%3D1"), 404, "file_not_found"),
        ("NUL in a path id", Get("/files/%00"), 404, "file_not_found"),
        ("traversal in a path id", Get("/files/..%2F..%2Fetc%2Fpasswd/content"), 404, "file_not_found"),
        ("short uuid", Get("/uploads/1234-5678"), 404, "file_not_found"),
    ]
}

async fn a_hostile_corpus_is_refused_without_trace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = corpus();
    assert!(cases.len() >= 50, "the corpus has {} cases", cases.len());
    for (label, send, status, code) in cases {
        let request =
            match send {
                Send::Upload(name, bytes) => app
                    .acme(Method::POST, "/uploads")
                    .multipart(file_form(&name, bytes, "application/octet-stream")),
                Send::Raw(content_type, body) => app
                    .acme(Method::POST, "/uploads")
                    .header("content-type", content_type)
                    .body(body),
                Send::Webhook(body) => app
                    .acme(Method::POST, "/webhooks/candidates")
                    .header("content-type", "application/json")
                    .body(body),
                Send::Get(path) => app.acme(Method::GET, path),
            };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(
            !response.status().is_server_error(),
            "{label}: {}",
            response.status()
        );
        let body = assert_error(response, status, code).await;
        assert!(body["error"]["message"].as_str().is_some(), "{label}");
    }
    app.assert_nothing_stored().await;
    assert!(app.objects(Area::Files).await.is_empty());
}

async fn a_slow_client_is_cut_off_and_cleaned_up(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.body_idle_timeout = Duration::from_millis(500)
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let head =
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.pdf\"\r\n\r\n"
            .to_vec();
    tx.send(Ok(head)).await.unwrap();
    tx.send(Ok(fixtures::pdf(20_000))).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }));
    let started = std::time::Instant::now();
    let response = app
        .acme(Method::POST, "/uploads")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await;
    // The server gives up on the silent client: an error answer or a closed connection.
    if let Ok(response) = response {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(tx);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if app.rows().await == 0 && app.objects(Area::Staging).await.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow upload left something behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    json_with(app.upload("cv.pdf", fixtures::pdf(1_000)).await, 201).await;
}
