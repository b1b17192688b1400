//! RTF and OpenDocument text, opt-in through `STOWAGE_ALLOWED_EXTENSIONS`: detected by content
//! (an RTF file named `.doc` is RTF), refused with embedded objects or macros, and their text
//! extracted once promoted.

use std::collections::BTreeSet;

use stowage::sniff::DocumentKind;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, json_with};
use crate::text::{promote, settled, text_of};

both_backends!(
    rtf_and_odt_are_accepted_when_allowed_checked_and_read,
    without_opting_in_they_are_refused,
);

const ODT: &str = "application/vnd.oasis.opendocument.text";

fn with_formats(config: &mut stowage::config::Config) {
    config.allowed_extensions = BTreeSet::from([
        DocumentKind::Pdf,
        DocumentKind::Doc,
        DocumentKind::Docx,
        DocumentKind::Rtf,
        DocumentKind::Odt,
    ]);
}

async fn rtf_and_odt_are_accepted_when_allowed_checked_and_read(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_formats).await;
    for (name, bytes, content_type) in [
        ("cv.rtf", fixtures::rtf("Jane Doe"), "application/rtf"),
        // Word saves RTF under .doc: the answer says what it is.
        ("cv.doc", fixtures::rtf("Jane Doe"), "application/rtf"),
        ("cv.odt", fixtures::odt("Jane Doe"), ODT),
    ] {
        let staged = json_with(app.upload(name, bytes).await, 201).await;
        assert_eq!(staged["content_type"], content_type, "{name}: {staged}");
    }

    // Embedded objects and macros are refused, as are archives that are not text documents.
    let embedded = br"{\rtf1\ansi Jane{\object\objemb{\*\objdata 0105000002000000}}\par}".to_vec();
    assert_error(
        app.upload("cv.rtf", embedded).await,
        422,
        "file_content_invalid",
    )
    .await;
    let macros = fixtures::odt_of(&[
        ("mimetype", ODT.as_bytes()),
        ("content.xml", b"<x/>"),
        ("Basic/Standard/Module1.xml", b"<m/>"),
    ]);
    assert_error(
        app.upload("cv.odt", macros).await,
        422,
        "file_content_mismatch",
    )
    .await;
    let sheet = fixtures::odt_of(&[
        (
            "mimetype",
            b"application/vnd.oasis.opendocument.spreadsheet",
        ),
        ("content.xml", b"<x/>"),
    ]);
    assert_error(
        app.upload("cv.odt", sheet).await,
        422,
        "file_content_mismatch",
    )
    .await;
    assert_error(
        app.upload("cv.odt", fixtures::docx()).await,
        422,
        "file_content_mismatch",
    )
    .await;
    assert_error(
        app.upload("cv.rtf", fixtures::pdf(2_000)).await,
        422,
        "file_content_mismatch",
    )
    .await;

    // Their text, once promoted.
    for (name, bytes, expected) in [
        (
            "resume.rtf",
            fixtures::rtf("Ada Lovelace"),
            "Ada Lovelace\nCafé €uro Rust\n",
        ),
        (
            "resume.odt",
            fixtures::odt("Grace Hopper"),
            "Grace Hopper\nSenior engineer Acme\n2019 – 2024\nSkill Years\nRust 6\n",
        ),
    ] {
        let id = promote(&app, name, bytes, "u-formats").await;
        let file = settled(&app, &id).await;
        assert_eq!(file["text"]["status"], "extracted", "{name}: {file}");
        assert_eq!(text_of(&app, &id).await, expected, "{name}");
    }
}

async fn without_opting_in_they_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_error(
        app.upload("cv.rtf", fixtures::rtf("Jane Doe")).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    assert_error(
        app.upload("cv.odt", fixtures::odt("Jane Doe")).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    // An RTF file named .doc is not a Word document.
    assert_error(
        app.upload("cv.doc", fixtures::rtf("Jane Doe")).await,
        422,
        "file_content_mismatch",
    )
    .await;
    app.assert_nothing_stored().await;
}
