//! A document's text, for search and analysis: extraction by kind and the normalisation every
//! kind shares.
//!
//! Everything here is pure — bytes in, text or a [`TextFailure`] out — so it is unit-tested and
//! fuzzed directly. It is never called on a hostile document inside the service: the service
//! runs it in a child process with a time and memory limit (`src/extraction.rs`).

use std::fmt;

use crate::sniff::DocumentKind;

/// The most text kept for one document (UTF-8 bytes); a document with more fails as too large.
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Why a document has no text, as recorded on the file (`text.reason`) and answered by
/// `GET /files/{id}/text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Password-protected: the text cannot be read without the password.
    Encrypted,
    /// A PDF whose pages carry no text (a scan, or text drawn as images).
    NoTextLayer,
    /// Damaged, or not what its type says, or the parser gave up on it.
    Unreadable,
    /// Extraction took longer than `STOWAGE_TEXT_TIMEOUT`.
    Timeout,
    /// Extraction needed more memory than it may use, or produced more text than is kept.
    TooLarge,
}

impl FailureReason {
    /// Every reason, for parsing stored values.
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Encrypted,
        FailureReason::NoTextLayer,
        FailureReason::Unreadable,
        FailureReason::Timeout,
        FailureReason::TooLarge,
    ];

    /// The stored and reported name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Encrypted => "encrypted",
            FailureReason::NoTextLayer => "no_text_layer",
            FailureReason::Unreadable => "unreadable",
            FailureReason::Timeout => "timeout",
            FailureReason::TooLarge => "too_large",
        }
    }
}

impl std::str::FromStr for FailureReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown text failure reason {s:?}"))
    }
}

/// A document whose text could not be had: the reason, and a sentence saying what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TextFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl TextFailure {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        TextFailure {
            reason,
            message: message.into(),
        }
    }

    fn encrypted(what: &str) -> Self {
        TextFailure::new(
            FailureReason::Encrypted,
            format!("the {what} is encrypted (password-protected)"),
        )
    }

    fn unreadable(what: &str, why: impl fmt::Display) -> Self {
        TextFailure::new(
            FailureReason::Unreadable,
            format!("the {what} cannot be read: {why}"),
        )
    }
}

impl fmt::Display for TextFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Extracts and normalises the text of a document of a known kind.
pub fn extract(kind: DocumentKind, bytes: Vec<u8>) -> Result<String, TextFailure> {
    let raw = match kind {
        DocumentKind::Pdf => pdf(bytes)?,
        DocumentKind::Docx | DocumentKind::Doc => office(kind, bytes)?,
        DocumentKind::Txt => plain(bytes)?,
    };
    let text = normalize(&raw);
    if text.len() > MAX_TEXT_BYTES {
        return Err(TextFailure::new(
            FailureReason::TooLarge,
            format!(
                "the document holds more than {} MiB of text",
                MAX_TEXT_BYTES / (1024 * 1024)
            ),
        ));
    }
    if kind == DocumentKind::Pdf && !text.chars().any(char::is_alphanumeric) {
        return Err(TextFailure::new(
            FailureReason::NoTextLayer,
            "the PDF has no text layer (its pages are images, such as a scan); text is not \
             recognised from images",
        ));
    }
    Ok(text)
}

fn pdf(bytes: Vec<u8>) -> Result<String, TextFailure> {
    let doc = pdf_oxide::PdfDocument::from_bytes(bytes).map_err(|e| pdf_failure(&e))?;
    if doc.is_encrypted() {
        // Many PDFs are encrypted with an empty user password (only an owner password, to
        // restrict printing or copying): they open without asking, and so does their text.
        match doc.authenticate(b"") {
            Ok(true) => {}
            Ok(false) => return Err(TextFailure::encrypted("PDF")),
            Err(e) => return Err(pdf_failure(&e)),
        }
    }
    let pages = doc.page_count().map_err(|e| pdf_failure(&e))?;
    let mut text = String::new();
    for page in 0..pages {
        if page > 0 {
            text.push_str("\n\n");
        }
        text.push_str(&doc.extract_text(page).map_err(|e| pdf_failure(&e))?);
        if text.len() > MAX_TEXT_BYTES * 2 {
            break;
        }
    }
    Ok(text)
}

fn pdf_failure(error: &pdf_oxide::Error) -> TextFailure {
    failure_of("PDF", error.to_string())
}

/// A parser's error as a failure: one that mentions encryption or a password is `encrypted`.
fn failure_of(what: &str, message: String) -> TextFailure {
    let lower = message.to_ascii_lowercase();
    if lower.contains("encrypt") || lower.contains("password") {
        TextFailure::encrypted(what)
    } else {
        TextFailure::unreadable(what, message)
    }
}

fn office(kind: DocumentKind, bytes: Vec<u8>) -> Result<String, TextFailure> {
    let what = "Word document";
    let format = match kind {
        DocumentKind::Doc => office_oxide::DocumentFormat::Doc,
        _ => office_oxide::DocumentFormat::Docx,
    };
    let doc = office_oxide::Document::from_reader(std::io::Cursor::new(bytes), format)
        .map_err(|e| failure_of(what, e.to_string()))?;
    Ok(doc.plain_text())
}

fn plain(bytes: Vec<u8>) -> Result<String, TextFailure> {
    let text = String::from_utf8(bytes)
        .map_err(|e| TextFailure::unreadable("text file", format!("it is not UTF-8 ({e})")))?;
    // A byte order mark goes with the other invisible characters, in `normalize`.
    Ok(text)
}

/// The typographic ligatures a PDF may carry as single characters, spelled out.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{fb00}' => "ff",
        '\u{fb01}' => "fi",
        '\u{fb02}' => "fl",
        '\u{fb03}' => "ffi",
        '\u{fb04}' => "ffl",
        '\u{fb05}' | '\u{fb06}' => "st",
        _ => return None,
    })
}

/// Text as consumers want it whatever the format: ligatures spelled out, words hyphenated
/// across a line break joined, soft hyphens and control characters gone, line ends `\n`,
/// spaces within a line and blank lines collapsed, no spaces at the ends of lines, every line
/// (the last one too) ended by `\n`.
pub fn normalize(raw: &str) -> String {
    let mut spelled = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\r' => {}
            '\u{0b}' | '\u{0c}' | '\u{2028}' | '\u{2029}' => spelled.push('\n'),
            '\t' | '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{3000}' => {
                spelled.push(' ')
            }
            '\u{ad}' | '\u{200b}' | '\u{feff}' => {}
            '\u{2010}' | '\u{2011}' => spelled.push('-'),
            c if c.is_control() && c != '\n' => {}
            c => match ligature(c) {
                Some(letters) => spelled.push_str(letters),
                None => spelled.push(c),
            },
        }
    }
    let lines: Vec<String> = spelled
        .split('\n')
        .map(|line| {
            line.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut out = String::with_capacity(spelled.len());
    let mut blank_run = 0;
    let mut joined_to_next = false;
    for (i, line) in lines.iter().enumerate() {
        let line = line.as_str();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() && !joined_to_next {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        joined_to_next = false;
        // "exam-" at a line's end followed by "ple" at the next one's start: one word broken
        // by the typesetter. A capital or a digit after the break keeps the hyphen
        // ("Jean-\nPierre", "2019-\n2021").
        let next_starts_lower = lines
            .get(i + 1)
            .and_then(|next| next.chars().next())
            .is_some_and(char::is_lowercase);
        if let Some(stem) = line.strip_suffix('-')
            && next_starts_lower
            && stem.chars().last().is_some_and(char::is_lowercase)
        {
            out.push_str(stem);
            joined_to_next = true;
        } else {
            out.push_str(line);
        }
    }
    // Every line ends in `\n`, the last one too (as `pdftotext` and text files have it).
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// How many characters of text a document holds: what `text.chars` reports.
pub fn char_count(text: &str) -> i64 {
    i64::try_from(text.chars().count()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ligatures_are_spelled_out_and_broken_words_joined() {
        assert_eq!(
            normalize("The e\u{fb03}cient pro\u{fb01}le of an exam-\nple, and Jean-\nPierre"),
            "The efficient profile of an example, and Jean-\nPierre\n"
        );
    }

    #[test]
    fn whitespace_and_control_characters_are_tidied() {
        assert_eq!(
            normalize("  Name:\u{a0}\u{a0}Ada \r\n\r\n\r\n\r\nSkills\tRust\u{0}\u{7}\u{0c}Next"),
            "Name: Ada\n\nSkills Rust\nNext\n"
        );
        assert_eq!(normalize("soft\u{ad}hyphen"), "softhyphen\n");
        assert_eq!(normalize(" \n\t\n"), "", "nothing to say needs no line");
    }

    #[test]
    fn utf8_text_comes_back_without_its_byte_order_mark() {
        let text = extract(
            DocumentKind::Txt,
            "\u{feff}Grace Hopper\r\nCOBOL".as_bytes().to_vec(),
        );
        assert_eq!(text.as_deref(), Ok("Grace Hopper\nCOBOL\n"));
        let latin1 = extract(DocumentKind::Txt, b"Jos\xe9".to_vec()).unwrap_err();
        assert_eq!(latin1.reason, FailureReason::Unreadable);
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        for kind in DocumentKind::ALL {
            if kind == DocumentKind::Txt {
                continue;
            }
            let failure = extract(kind, b"not a document at all".to_vec()).unwrap_err();
            assert_eq!(
                failure.reason,
                FailureReason::Unreadable,
                "{kind}: {failure}"
            );
        }
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in FailureReason::ALL {
            assert_eq!(reason.as_str().parse::<FailureReason>(), Ok(reason));
        }
    }
}

#[cfg(test)]
mod documents {
    use super::*;
    use crate::sniff::fixtures;

    #[test]
    fn a_pdf_gives_every_page_in_order() {
        let pdf = fixtures::text_pdf(&[
            &["Ada Lovelace", "Analyst of engines"],
            &["Experience: the Difference Engine"],
        ]);
        let text = extract(DocumentKind::Pdf, pdf).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text:?}"))
        };
        assert!(at("Ada Lovelace") < at("Analyst of engines"));
        assert!(at("Analyst of engines") < at("Difference Engine"));
    }

    #[test]
    fn a_scanned_pdf_has_no_text_layer() {
        let failure = extract(DocumentKind::Pdf, fixtures::scanned_pdf()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::NoTextLayer, "{failure}");
    }

    #[test]
    fn a_pdf_encrypted_with_an_empty_user_password_gives_its_text() {
        // Made by pypdf (`encrypt(user_password="", owner_password=…)`), content streams
        // compressed: exported resumes that restrict printing or copying look like this.
        for bytes in [
            &include_bytes!("../tests/fixtures/empty-password-aes256.pdf")[..],
            &include_bytes!("../tests/fixtures/empty-password-rc4-128.pdf")[..],
        ] {
            let text = extract(DocumentKind::Pdf, bytes.to_vec()).expect("its text");
            assert!(text.contains("Senior engineer at Acme"), "{text}");
        }
    }

    #[test]
    fn an_encrypted_pdf_says_so() {
        let failure = extract(DocumentKind::Pdf, fixtures::encrypted_pdf()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Encrypted, "{failure}");
    }

    #[test]
    fn a_docx_gives_paragraphs_and_tables_in_document_order() {
        let docx = fixtures::docx_with_table(
            &["Grace Hopper", "Rear admiral"],
            &[&["Skill", "Years"], &["COBOL", "40"]],
            "References on request",
        );
        let text = extract(DocumentKind::Docx, docx).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text:?}"))
        };
        assert!(at("Grace Hopper") < at("Rear admiral"));
        assert!(at("Rear admiral") < at("Skill"));
        assert!(at("Skill") < at("Years") && at("Years") < at("COBOL") && at("COBOL") < at("40"));
        assert!(at("40") < at("References on request"));
    }

    #[test]
    fn a_doc_gives_its_text() {
        let doc = fixtures::doc_with_text("Alan Turing\nComputing machinery and intelligence");
        let text = extract(DocumentKind::Doc, doc).unwrap();
        assert!(text.contains("Alan Turing"), "{text:?}");
        assert!(
            text.contains("Computing machinery and intelligence"),
            "{text:?}"
        );
    }
}
