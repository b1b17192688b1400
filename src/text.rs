//! A document's text, for search and analysis: extraction by kind and the normalisation every
//! kind shares.
//!
//! Everything here is pure — bytes in, text or a [`TextFailure`] out — so it is unit-tested and
//! fuzzed directly. It is never called on a hostile document inside the service: the service
//! runs it in a child process with a time and memory limit (`src/extraction.rs`).

use std::fmt;

use crate::sniff::DocumentKind;

mod cells;

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

/// Where a document's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// The document's own text (a PDF's text layer, a Word document's paragraphs…).
    Document,
    /// Recognised by OCR from the images of a PDF's pages (`STOWAGE_OCR`).
    Ocr,
}

impl TextSource {
    /// The stored and reported name.
    pub fn as_str(self) -> &'static str {
        match self {
            TextSource::Document => "document",
            TextSource::Ocr => "ocr",
        }
    }
}

impl std::str::FromStr for TextSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [TextSource::Document, TextSource::Ocr]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown text source {s:?}"))
    }
}

/// A document's text and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub body: String,
    pub source: TextSource,
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
        DocumentKind::Rtf => rtf(&bytes)?,
        DocumentKind::Odt => odt(bytes)?,
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
        let page_text = doc.extract_text(page).map_err(|e| pdf_failure(&e))?;
        // The reader caches the page's pieces: asking again costs a copy, not a second parse.
        let spans = doc.extract_spans(page).unwrap_or_default();
        let pieces: Vec<cells::Piece<'_>> = spans
            .iter()
            .map(|span| cells::Piece {
                text: &span.text,
                left: span.bbox.x,
                right: span.bbox.x + span.bbox.width,
                bottom: span.bbox.y,
                top: span.bbox.y + span.bbox.height,
                size: span.font_size,
            })
            .collect();
        text.push_str(&cells::separate(&page_text, &pieces));
        if text.len() > MAX_TEXT_BYTES * 2 {
            break;
        }
    }
    Ok(text)
}

/// RTF destinations whose text is not the document's (fonts, colours, styles, metadata,
/// pictures, embedded objects, field instructions, revision tables…).
const RTF_SKIPPED: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"object",
    b"objdata",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"generator",
    b"xmlnstbl",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"pgdsctbl",
    b"fldinst",
    b"filetbl",
    b"revtbl",
    b"shppict",
    b"nonshppict",
    b"mmathPr",
    b"docvar",
    b"wgrffmtfilter",
    b"bkmkstart",
    b"bkmkend",
    b"pntext",
    b"pntxta",
    b"pntxtb",
    b"falt",
    b"panose",
    b"sp",
    b"shprslt",
];

/// Ignorable destinations (`{\*\word …}`) whose text is the document's: a shape's instructions
/// hold its text box (`\shptxt`; its property groups `\sp` are skipped), and some writers star
/// footnotes.
const RTF_KEPT: &[&[u8]] = &[b"shpinst", b"footnote"];

/// Windows-1252, the code page nearly every RTF file declares, for `\'hh` escapes and raw
/// bytes above 127.
fn cp1252(byte: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match byte {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(byte - 0x80)])).unwrap_or(' '),
        _ => char::from(byte),
    }
}

/// The text of an RTF document: groups and control words read, destinations that are not
/// text skipped, `\uN` and `\'hh` decoded, paragraphs and table rows as lines, cells and tabs
/// as tabs.
fn rtf(bytes: &[u8]) -> Result<String, TextFailure> {
    if !bytes.starts_with(b"{\\rtf") {
        return Err(TextFailure::unreadable(
            "RTF",
            "it does not begin with {\\rtf",
        ));
    }
    let mut out = String::new();
    // Per group: whether its text is skipped, and how many fallback characters follow `\u`.
    let mut stack: Vec<(bool, usize)> = Vec::new();
    let (mut skip, mut uc) = (false, 1usize);
    // After `\*`: the destination is skipped unless its word is one of `RTF_KEPT`.
    let mut starred = false;
    // Fallback characters still to drop after a `\u`.
    let mut fallback = 0usize;
    let emit = |out: &mut String, skip: bool, fallback: &mut usize, c: char| {
        if *fallback > 0 {
            *fallback -= 1;
        } else if !skip {
            out.push(c);
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                if stack.len() > 10_000 {
                    return Err(TextFailure::unreadable("RTF", "its groups nest too deep"));
                }
                stack.push((skip, uc));
                i += 1;
            }
            b'}' => {
                if let Some((s, u)) = stack.pop() {
                    (skip, uc) = (s, u);
                }
                fallback = 0;
                i += 1;
            }
            b'\\' => {
                i += 1;
                let Some(&c) = bytes.get(i) else { break };
                if c.is_ascii_alphabetic() {
                    let start = i;
                    while i < bytes.len() && bytes[i].is_ascii_alphabetic() && i - start < 32 {
                        i += 1;
                    }
                    let word = &bytes[start..i];
                    let negative = bytes.get(i) == Some(&b'-');
                    if negative {
                        i += 1;
                    }
                    let digits = i;
                    while i < bytes.len() && bytes[i].is_ascii_digit() && i - digits < 10 {
                        i += 1;
                    }
                    let param: Option<i64> = std::str::from_utf8(&bytes[digits..i])
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .map(|n: i64| if negative { -n } else { n });
                    if bytes.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if std::mem::take(&mut starred) && !RTF_KEPT.contains(&word) {
                        skip = true;
                    }
                    match word {
                        b"par" | b"line" | b"row" | b"sect" | b"page" => {
                            emit(&mut out, skip, &mut fallback, '\n')
                        }
                        b"tab" | b"cell" | b"nestcell" => emit(&mut out, skip, &mut fallback, '\t'),
                        b"nestrow" => emit(&mut out, skip, &mut fallback, '\n'),
                        b"emdash" => emit(&mut out, skip, &mut fallback, '—'),
                        b"endash" => emit(&mut out, skip, &mut fallback, '–'),
                        b"bullet" => emit(&mut out, skip, &mut fallback, '•'),
                        b"lquote" => emit(&mut out, skip, &mut fallback, '‘'),
                        b"rquote" => emit(&mut out, skip, &mut fallback, '’'),
                        b"ldblquote" => emit(&mut out, skip, &mut fallback, '“'),
                        b"rdblquote" => emit(&mut out, skip, &mut fallback, '”'),
                        b"uc" => uc = param.unwrap_or(1).clamp(0, 10) as usize,
                        b"u" => {
                            let n = param.unwrap_or(0);
                            let n = if n < 0 { n + 65_536 } else { n };
                            let c = u32::try_from(n)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            fallback = 0;
                            emit(&mut out, skip, &mut fallback, c);
                            fallback = uc;
                        }
                        w if RTF_SKIPPED.contains(&w) => skip = true,
                        _ => {}
                    }
                } else {
                    i += 1;
                    match c {
                        b'\'' => {
                            let hex = bytes
                                .get(i..i + 2)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                emit(&mut out, skip, &mut fallback, cp1252(byte));
                                i += 2;
                            }
                        }
                        // An ignorable destination: skipped unless its word is understood.
                        b'*' => starred = true,
                        b'~' => emit(&mut out, skip, &mut fallback, '\u{a0}'),
                        b'_' => emit(&mut out, skip, &mut fallback, '-'),
                        b'\\' | b'{' | b'}' => emit(&mut out, skip, &mut fallback, char::from(c)),
                        b'\n' | b'\r' => emit(&mut out, skip, &mut fallback, '\n'),
                        _ => {}
                    }
                }
            }
            b'\r' | b'\n' => i += 1,
            byte => {
                emit(&mut out, skip, &mut fallback, cp1252(byte));
                i += 1;
            }
        }
        if out.len() > MAX_TEXT_BYTES * 2 {
            break;
        }
    }
    Ok(out)
}

/// Most bytes of `content.xml` read.
const MAX_ODT_CONTENT: u64 = 64 * 1024 * 1024;

/// The text of an OpenDocument text: `content.xml`'s paragraphs and headings as lines, table
/// cells separated by tabs and rows by lines, `text:s`, `text:tab` and `text:line-break`
/// honoured; annotations and tracked deletions left out.
fn odt(bytes: Vec<u8>) -> Result<String, TextFailure> {
    use std::io::Read;
    let unreadable = |why: &dyn fmt::Display| TextFailure::unreadable("ODT", why);
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| unreadable(&e))?;
    let mut entry = archive.by_name("content.xml").map_err(|e| unreadable(&e))?;
    let mut xml = Vec::new();
    (&mut entry)
        .take(MAX_ODT_CONTENT)
        .read_to_end(&mut xml)
        .map_err(|e| unreadable(&e))?;
    drop(entry);

    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml.as_slice());
    let mut buf = Vec::new();
    let mut out = String::new();
    // Inside elements whose text is not the document's (annotations, deleted changes).
    let mut hidden = 0usize;
    // Inside table cells a paragraph ends with a space: a row is one line.
    let mut cells = 0usize;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| unreadable(&e))?;
        match event {
            Event::Start(e) => match e.name().as_ref() {
                // Not the document's text: comments, deleted changes, note numbers, alt text.
                "office:annotation"
                | "text:tracked-changes"
                | "text:note-citation"
                | "svg:title"
                | "svg:desc" => hidden += 1,
                _ if hidden > 0 => {}
                "table:table-cell" | "table:covered-table-cell" => cells += 1,
                "text:tab" => out.push('\t'),
                "text:line-break" => out.push('\n'),
                _ => {}
            },
            Event::Empty(e) if hidden == 0 => match e.name().as_ref() {
                "text:s" => {
                    let count = e
                        .try_get_attribute("text:c")
                        .ok()
                        .flatten()
                        .and_then(|a| a.value.trim().parse::<usize>().ok())
                        .unwrap_or(1)
                        .min(1000);
                    out.extend(std::iter::repeat_n(' ', count));
                }
                "text:tab" => out.push('\t'),
                "text:line-break" => out.push('\n'),
                "text:p" | "text:h" => out.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.name().as_ref() {
                "office:annotation"
                | "text:tracked-changes"
                | "text:note-citation"
                | "svg:title"
                | "svg:desc" => hidden = hidden.saturating_sub(1),
                _ if hidden > 0 => {}
                "text:p" | "text:h" => out.push(if cells > 0 { ' ' } else { '\n' }),
                "table:table-cell" | "table:covered-table-cell" => {
                    cells = cells.saturating_sub(1);
                    out.push('\t');
                }
                "table:table-row" => out.push('\n'),
                _ => {}
            },
            Event::Text(t) if hidden == 0 => out.push_str(&t.xml10_content()),
            Event::CData(t) if hidden == 0 => out.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if hidden == 0 => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else {
                    out.push(match r.into_inner().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => ' ',
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
        if out.len() > MAX_TEXT_BYTES * 2 {
            break;
        }
    }
    Ok(out)
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
    fn rtf_gives_its_text_without_its_tables_of_fonts_and_metadata() {
        let text = extract(DocumentKind::Rtf, crate::sniff::fixtures::rtf("Jane Doe")).unwrap();
        assert_eq!(text, "Jane Doe\nCafé €uro Rust\n");
        let table = br"{\rtf1\ansi{\*\generator Writer;}\trowd\cellx100\cellx200 Skill\cell Years\cell\row Rust\cell 6\cell\row}";
        let text = extract(DocumentKind::Rtf, table.to_vec()).unwrap();
        assert_eq!(text, "Skill Years\nRust 6\n");
        // A text box's text (in the shape's instructions, not its properties or fallback), a
        // starred footnote, and a list label.
        let shapes = br"{\rtf1{\shp{\*\shpinst{\sp{\sn wzName}{\sv Shape1}}{\shptxt Boxed\par}}{\shprslt Fallback}}{\listtext 1.\tab}Body{\*\footnote Noted}\par}";
        let text = extract(DocumentKind::Rtf, shapes.to_vec()).unwrap();
        assert_eq!(text, "Boxed\n1. BodyNoted\n");
        // \uc2: two fallback bytes after each \u.
        let wide = br"{\rtf1\uc2 \u26085\'93\'fa\u26412\'96\'7b}";
        assert_eq!(extract(DocumentKind::Rtf, wide.to_vec()).unwrap(), "日本\n");
    }

    #[test]
    fn every_cut_of_an_rtf_or_odt_document_answers_without_panicking() {
        let rtf = crate::sniff::fixtures::rtf("Jane Doe");
        for end in 0..rtf.len() {
            let _ = extract(DocumentKind::Rtf, rtf[..end].to_vec());
        }
        // Unbalanced groups, a \u at the end, a stray \' escape.
        for hostile in [
            &br"{\rtf1 }}}}{{{ \u"[..],
            br"{\rtf1 \'",
            br"{\rtf1 \u-99999999999 x",
        ] {
            let _ = extract(DocumentKind::Rtf, hostile.to_vec());
        }
        let odt = crate::sniff::fixtures::odt("Jane Doe");
        for end in (0..odt.len()).step_by(7) {
            let _ = extract(DocumentKind::Odt, odt[..end].to_vec());
        }
    }

    #[test]
    fn odt_gives_its_paragraphs_and_table_cells() {
        let text = extract(DocumentKind::Odt, crate::sniff::fixtures::odt("Jane Doe")).unwrap();
        assert_eq!(
            text,
            "Jane Doe\nSenior engineer Acme\n2019 – 2024\nSkill Years\nRust 6\n"
        );
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
    fn table_cells_and_form_fields_drawn_apart_stay_apart() {
        // A row of a price table in Chinese (codes, a quantity in a larger font, a product
        // name) and a radio button's caption drawn over its group's name, as real PDFs from
        // public test corpora draw them: one text object per cell, no space characters.
        use crate::sniff::fixtures::{Placed, placed_pdf};
        let at = |x, y, size, text| Placed { x, y, size, text };
        let pdf = placed_pdf(&[
            at(70.47, 685.35, 9.1, "商品编码"),
            at(115.67, 682.98, 12.0, "数量"),
            at(195.91, 685.35, 9.1, "商品名称"),
            at(342.14, 684.23, 9.1, "334010052"),
            at(397.12, 682.98, 12.0, "2.18"),
            at(424.88, 682.98, 9.1, "华联绿豆"),
            at(82.8, 518.8, 12.0, "RdoGrp1"),
            at(99.9, 515.0, 9.0, "Rdo1"),
        ]);
        let text = extract(DocumentKind::Pdf, pdf).unwrap();
        let words: Vec<&str> = text.split_whitespace().collect();
        for cell in [
            "商品编码",
            "数量",
            "商品名称",
            "334010052",
            "2.18",
            "华联绿豆",
            "RdoGrp1",
            "Rdo1",
        ] {
            assert!(words.contains(&cell), "{cell} is not a word of {text:?}");
        }
    }

    #[test]
    fn a_filled_form_field_stays_apart_from_its_label() {
        // The field's box right after its label, or overlapping it: its value (drawn by the
        // field's appearance) is a word of its own, after the label.
        for field_x in [98.0, 104.0] {
            let pdf = crate::sniff::fixtures::form_pdf("Name:", field_x, "Ada Lovelace");
            let text = extract(DocumentKind::Pdf, pdf).unwrap();
            assert_eq!(text, "Name: Ada Lovelace\n", "field at {field_x}");
        }
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
