//! Content detection and deep document checks.
//!
//! Everything here is pure: it looks at bytes handed to it and never touches the network, the
//! database or the clock, so it is easy to unit-test and to fuzz.

mod doc;
mod docx;
#[cfg(test)]
pub(crate) mod fixtures;
mod odt;
mod rtf;

use std::fmt;
use std::io::{Read, Seek};

pub use doc::check_doc;
pub use docx::{DocxLimits, check_docx};
pub use odt::check_odt;
pub use rtf::RtfStream;

/// MIME type reported when nothing recognisable is found.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// How many leading bytes are enough to decide the type by magic numbers.
pub const HEAD_LEN: usize = 8192;

/// A document type Stowage accepts, named by its file extension.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Doc,
    Docx,
    Pdf,
    /// Plain text, UTF-8 only; accepted only when `STOWAGE_ALLOWED_EXTENSIONS` names it.
    Txt,
    /// Rich Text Format; only when `STOWAGE_ALLOWED_EXTENSIONS` names it (then also what a
    /// `.doc` that is really RTF is accepted as).
    Rtf,
    /// OpenDocument text; only when `STOWAGE_ALLOWED_EXTENSIONS` names it.
    Odt,
}

impl DocumentKind {
    /// Every kind Stowage knows how to verify.
    pub const ALL: [DocumentKind; 6] = [
        DocumentKind::Doc,
        DocumentKind::Docx,
        DocumentKind::Pdf,
        DocumentKind::Txt,
        DocumentKind::Rtf,
        DocumentKind::Odt,
    ];

    /// The extension without its dot, lower case.
    pub fn extension(self) -> &'static str {
        match self {
            DocumentKind::Doc => "doc",
            DocumentKind::Docx => "docx",
            DocumentKind::Pdf => "pdf",
            DocumentKind::Txt => "txt",
            DocumentKind::Rtf => "rtf",
            DocumentKind::Odt => "odt",
        }
    }

    /// The content type reported for a file of this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            DocumentKind::Doc => "application/msword",
            DocumentKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocumentKind::Pdf => "application/pdf",
            DocumentKind::Txt => "text/plain",
            DocumentKind::Rtf => "application/rtf",
            DocumentKind::Odt => odt::ODT_MIME,
        }
    }

    /// The kind a stored content type names.
    pub fn from_content_type(content_type: &str) -> Option<DocumentKind> {
        DocumentKind::ALL
            .into_iter()
            .find(|k| k.content_type() == content_type)
    }

    /// Parses an extension given without its dot, in any case.
    pub fn from_extension(ext: &str) -> Option<DocumentKind> {
        DocumentKind::ALL
            .into_iter()
            .find(|k| k.extension().eq_ignore_ascii_case(ext))
    }

    /// Whether the leading-bytes check is all there is, or the whole file must be inspected.
    pub fn needs_deep_check(self) -> bool {
        !matches!(
            self,
            DocumentKind::Pdf | DocumentKind::Txt | DocumentKind::Rtf
        )
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{}", self.extension())
    }
}

/// The extension of a file name, lower case and without its dot; `None` when there is none.
pub fn extension_of(file_name: &str) -> Option<String> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let _ = stem;
    if ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// Why a file was refused after looking at its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentError {
    /// The content is of another type than the extension says.
    Mismatch { detected: String },
    /// The content claims the right type but is damaged or unsafe to keep (zip bomb …).
    Invalid { reason: String },
}

impl ContentError {
    fn mismatch(detected: impl Into<String>) -> Self {
        ContentError::Mismatch {
            detected: detected.into(),
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        ContentError::Invalid {
            reason: reason.into(),
        }
    }
}

/// The MIME type the leading bytes look like, or `application/octet-stream`.
pub fn detect(head: &[u8]) -> &'static str {
    infer::get(head).map_or(OCTET_STREAM, |t| t.mime_type())
}

const PDF_MAGIC: &[u8] = b"%PDF-";
const RTF_MAGIC: &[u8] = b"{\\rtf";

/// What a file really is when that differs, acceptably, from the kind its name claims: Word
/// saves RTF under `.doc`, so a `.doc` that begins `{\rtf` is RTF (accepted as such only where
/// RTF is allowed).
pub fn actual_kind(claimed: DocumentKind, head: &[u8]) -> DocumentKind {
    if claimed == DocumentKind::Doc && head.starts_with(RTF_MAGIC) {
        DocumentKind::Rtf
    } else {
        claimed
    }
}
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Checks the leading bytes of a file against the kind its extension claims.
///
/// This is all the checking a PDF gets; `.doc` and `.docx` go on to [`check_doc`] and
/// [`check_docx`] once the whole file has been received.
pub fn check_head(kind: DocumentKind, head: &[u8]) -> Result<(), ContentError> {
    let detected = detect(head);
    let ok = match kind {
        DocumentKind::Pdf => head.starts_with(PDF_MAGIC),
        // infer reads the first local headers of a ZIP; if those already show a workbook or a
        // presentation, say so now. A plain "application/zip" is decided by the deep check.
        DocumentKind::Docx => {
            head.starts_with(ZIP_MAGIC) && matches!(detected, "application/zip" | OCTET_STREAM)
                || detected == DocumentKind::Docx.content_type()
        }
        DocumentKind::Doc => head.starts_with(OLE_MAGIC),
        // Whether every byte is UTF-8 is decided as the bytes arrive (`Utf8Stream`); here only
        // a recognisable binary type is refused.
        DocumentKind::Txt => detected == OCTET_STREAM || detected.starts_with("text/"),
        DocumentKind::Rtf => head.starts_with(RTF_MAGIC),
        // The `mimetype` entry is judged by the deep check.
        DocumentKind::Odt => {
            head.starts_with(ZIP_MAGIC)
                && matches!(detected, "application/zip" | OCTET_STREAM | odt::ODT_MIME)
        }
    };
    if ok {
        return Ok(());
    }
    // The right magic, in the wrong place (a byte order mark or other bytes before it):
    // "detected 'application/pdf'" would contradict itself, so say what is wrong instead.
    if kind == DocumentKind::Pdf
        && let Some(at) = memchr::memmem::find(&head[..head.len().min(1024)], PDF_MAGIC)
    {
        let what = if head.starts_with(b"\xEF\xBB\xBF") {
            "a byte order mark".to_owned()
        } else {
            format!("{at} other bytes")
        };
        return Err(ContentError::invalid(format!(
            "it must begin with %PDF-, but {what} come first"
        )));
    }
    Err(ContentError::mismatch(detected))
}

/// How many trailing bytes of a PDF are kept to look for its `%%EOF` marker (room for
/// generous padding after it).
pub const TAIL_LEN: usize = 64 * 1024;

/// Most bytes allowed after the last `%%EOF` once trailing whitespace and NULs are set aside.
const EOF_SLACK: usize = 1024;

/// Checks the last [`TAIL_LEN`] bytes of a PDF: a complete PDF ends with an `%%EOF` marker
/// (padding after it is fine); a file cut off in transfer has lost it.
pub fn check_pdf_tail(tail: &[u8]) -> Result<(), ContentError> {
    let end = tail
        .iter()
        .rposition(|b| !matches!(b, b'\0' | b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'))
        .map_or(0, |i| i + 1);
    let body = &tail[..end];
    let window = &body[body.len().saturating_sub(EOF_SLACK + 5)..];
    if memchr::memmem::rfind(window, b"%%EOF").is_none() {
        return Err(ContentError::invalid(
            "it has no %%EOF marker at its end (the file is incomplete, perhaps cut off in transfer)",
        ));
    }
    Ok(())
}

/// A PDF's end, chunk by chunk: keeps the last chunks of the stream, at least [`TAIL_LEN`]
/// bytes of them (not copied), and checks them at the end ([`check_pdf_tail`]).
#[derive(Default)]
pub struct PdfTail {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    len: usize,
}

impl PdfTail {
    pub fn feed(&mut self, chunk: &bytes::Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk.clone());
        while let Some(front) = self.chunks.front() {
            if self.len - front.len() < TAIL_LEN {
                break;
            }
            self.len -= front.len();
            self.chunks.pop_front();
        }
    }

    /// The last [`TAIL_LEN`] bytes (all of them when fewer), copied once.
    fn bytes(&self) -> Vec<u8> {
        let mut skip = self.len.saturating_sub(TAIL_LEN);
        let mut tail = Vec::with_capacity(self.len - skip);
        for chunk in &self.chunks {
            let from = skip.min(chunk.len());
            skip -= from;
            tail.extend_from_slice(&chunk[from..]);
        }
        tail
    }

    /// Whether the stream ended as a complete PDF ends.
    pub fn finish(self) -> Result<(), ContentError> {
        check_pdf_tail(&self.bytes())
    }
}

/// Checks, chunk by chunk, that a stream is UTF-8 text: valid sequences (one may straddle two
/// chunks) and no NUL byte, which no text file holds.
#[derive(Default)]
pub struct Utf8Stream {
    /// The start of a sequence the last chunk ended in.
    carry: Vec<u8>,
    /// Bytes judged so far.
    offset: u64,
}

impl Utf8Stream {
    fn not_text(at: u64, why: &str) -> ContentError {
        ContentError::invalid(format!("it is not UTF-8 text ({why} at byte {at})"))
    }

    /// Judges the next chunk.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ContentError> {
        if let Some(&lead) = self.carry.first() {
            let width = match lead {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let need = width - self.carry.len();
            if chunk.len() < need {
                self.carry.extend_from_slice(chunk);
                return Ok(());
            }
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&chunk[..need]);
            if std::str::from_utf8(&joined).is_err() {
                return Err(Self::not_text(self.offset, "an invalid sequence"));
            }
            self.offset += joined.len() as u64;
            chunk = &chunk[need..];
        }
        if let Some(at) = memchr::memchr(0, chunk) {
            return Err(Self::not_text(self.offset + at as u64, "a NUL byte"));
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => self.offset += chunk.len() as u64,
            Err(e) if e.error_len().is_none() => {
                self.carry = chunk[e.valid_up_to()..].to_vec();
                self.offset += e.valid_up_to() as u64;
            }
            Err(e) => {
                return Err(Self::not_text(
                    self.offset + e.valid_up_to() as u64,
                    "an invalid sequence",
                ));
            }
        }
        Ok(())
    }

    /// Judges the end: the stream must not stop inside a character.
    pub fn finish(self) -> Result<(), ContentError> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(Self::not_text(self.offset, "a character cut off"))
        }
    }
}

/// Finds a ZIP archive inside a stream, wherever it sits, chunk by chunk: an end-of-central-
/// directory record, or a local file header together with a central directory entry, each
/// with plausible fields (so that the four signature bytes turning up by chance in compressed
/// data are not enough). A PDF holding one is a PDF/ZIP polyglot: archive tools open it.
#[derive(Default)]
pub struct ArchiveScanner {
    /// Bytes whose positions were not examined yet (too close to the end of what was seen).
    carry: Vec<u8>,
    local_header: bool,
    central_header: bool,
    end_record: bool,
}

/// Bytes a signature needs after it to be judged.
const SCAN_WINDOW: usize = 64;
const ZIP_METHODS: [u64; 8] = [0, 8, 9, 12, 14, 93, 95, 98];

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn printable(name: &[u8]) -> bool {
    name.iter().all(|&c| c >= 0x20 && c != 0x7f)
}

impl ArchiveScanner {
    /// Looks at the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.carry.is_empty() {
            let mut joined = std::mem::take(&mut self.carry);
            let carried = joined.len();
            joined.extend_from_slice(&chunk[..chunk.len().min(SCAN_WINDOW)]);
            let judged = self.scan(&joined, carried);
            if chunk.len() < SCAN_WINDOW {
                self.carry = joined[judged..].to_vec();
                return;
            }
        }
        let judged = self.scan(chunk, chunk.len());
        self.carry = chunk[judged..].to_vec();
    }

    /// Judges signatures starting before `limit` that have a full window after them; returns
    /// the first position not judged.
    fn scan(&mut self, bytes: &[u8], limit: usize) -> usize {
        let judged = limit.min(bytes.len().saturating_sub(SCAN_WINDOW - 1));
        for at in memchr::memmem::find_iter(&bytes[..(judged + 3).min(bytes.len())], b"PK") {
            if at < judged {
                self.judge(&bytes[at..]);
            }
        }
        judged
    }

    fn judge(&mut self, b: &[u8]) {
        if b.len() < 22 {
            return;
        }
        match &b[2..4] {
            [3, 4] if b.len() >= 30 => {
                let name_len = u16_at(b, 26) as usize;
                let shown = &b[30..b.len().min(30 + name_len)];
                if u16_at(b, 4) <= 63
                    && ZIP_METHODS.contains(&u16_at(b, 8))
                    && (1..=1024).contains(&name_len)
                    && printable(shown)
                {
                    self.local_header = true;
                }
            }
            [1, 2] if b.len() >= 46 => {
                let name_len = u16_at(b, 28) as usize;
                let shown = &b[46..b.len().min(46 + name_len)];
                if u16_at(b, 6) <= 63
                    && ZIP_METHODS.contains(&u16_at(b, 10))
                    && (1..=1024).contains(&name_len)
                    && u16_at(b, 34) == 0
                    && printable(shown)
                {
                    self.central_header = true;
                }
            }
            [5, 6] if u16_at(b, 4) == 0 && u16_at(b, 6) == 0 && u16_at(b, 8) == u16_at(b, 10) => {
                self.end_record = true;
            }
            _ => {}
        }
    }

    /// The verdict once the whole stream has been seen.
    pub fn finish(mut self) -> Result<(), ContentError> {
        let rest = std::mem::take(&mut self.carry);
        for at in memchr::memmem::find_iter(&rest, b"PK") {
            self.judge(&rest[at..]);
        }
        if self.end_record || (self.local_header && self.central_header) {
            return Err(ContentError::invalid(
                "it is also a ZIP archive (PDF/ZIP polyglot)",
            ));
        }
        Ok(())
    }
}

/// Runs the deep check for kinds that need one; a no-op for the others.
pub fn check_whole<R: Read + Seek>(
    kind: DocumentKind,
    reader: R,
    limits: &DocxLimits,
) -> Result<(), ContentError> {
    match kind {
        DocumentKind::Pdf => Ok(()),
        DocumentKind::Docx => check_docx(reader, limits),
        DocumentKind::Doc => check_doc(reader),
        DocumentKind::Odt => check_odt(reader, limits),
        DocumentKind::Txt | DocumentKind::Rtf => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pdf_tail_is_the_streams_last_bytes_whatever_the_chunks() {
        let stream: Vec<u8> = (0..3 * TAIL_LEN + 17).map(|i| (i % 251) as u8).collect();
        for cut in [1, 7, 4096, TAIL_LEN - 1, TAIL_LEN, TAIL_LEN + 3, 200 * 1024] {
            let mut tail = PdfTail::default();
            for chunk in stream.chunks(cut) {
                tail.feed(&bytes::Bytes::copy_from_slice(chunk));
            }
            assert_eq!(
                tail.bytes(),
                &stream[stream.len() - TAIL_LEN..],
                "chunks of {cut}"
            );
        }
        let mut short = PdfTail::default();
        short.feed(&bytes::Bytes::from_static(b"%PDF-1.7"));
        short.feed(&bytes::Bytes::from_static(b" %%EOF"));
        assert_eq!(short.bytes(), b"%PDF-1.7 %%EOF");
        assert_eq!(short.finish(), Ok(()));
    }

    fn utf8(bytes: &[u8], chunk: usize) -> Result<(), ContentError> {
        let mut stream = Utf8Stream::default();
        for piece in bytes.chunks(chunk) {
            stream.feed(piece)?;
        }
        stream.finish()
    }

    #[test]
    fn utf8_text_passes_however_it_is_cut() {
        let text = "Zoë Ångström — 履歴書 🎓 résumé\n".repeat(20);
        for chunk in 1..9 {
            assert_eq!(utf8(text.as_bytes(), chunk), Ok(()), "chunks of {chunk}");
        }
    }

    #[test]
    fn latin1_nul_and_a_cut_character_are_not_text() {
        for chunk in [1, 2, 3, 64] {
            assert!(utf8(b"Jos\xe9 Garc\xeda", chunk).is_err());
            assert!(utf8(b"plain\0binary", chunk).is_err());
            assert!(utf8("cut é".as_bytes().split_last().unwrap().1, chunk).is_err());
        }
        let err = utf8(b"abc\xff", 64).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("byte 3")),
            "{err:?}"
        );
    }

    #[test]
    fn a_pdf_named_txt_is_reported_as_pdf() {
        assert_eq!(
            check_head(DocumentKind::Txt, &fixtures::pdf(100)),
            Err(ContentError::mismatch("application/pdf"))
        );
        assert_eq!(check_head(DocumentKind::Txt, b"Ada Lovelace\n"), Ok(()));
    }

    #[test]
    fn extension_is_the_last_dotted_part_lower_cased() {
        assert_eq!(extension_of("resume.PDF").as_deref(), Some("pdf"));
        assert_eq!(extension_of("resume.pdf.exe").as_deref(), Some("exe"));
        assert_eq!(extension_of("resume"), None);
        assert_eq!(extension_of("resume."), None);
    }

    #[test]
    fn pdf_needs_the_pdf_header() {
        assert_eq!(check_head(DocumentKind::Pdf, &fixtures::pdf(100)), Ok(()));
        assert_eq!(
            check_head(DocumentKind::Pdf, &fixtures::png()),
            Err(ContentError::mismatch("image/png"))
        );
        assert_eq!(
            check_head(DocumentKind::Pdf, b"hello, plain text"),
            Err(ContentError::mismatch(OCTET_STREAM))
        );
    }

    #[test]
    fn a_pdf_with_bytes_before_its_header_is_called_invalid_not_a_pdf_mismatch() {
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(&fixtures::pdf(200));
        let err = check_head(DocumentKind::Pdf, &bom).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("byte order mark")),
            "{err:?}"
        );
    }

    #[test]
    fn a_pdf_renamed_docx_is_reported_as_pdf() {
        assert_eq!(
            check_head(DocumentKind::Docx, &fixtures::pdf(100)),
            Err(ContentError::mismatch("application/pdf"))
        );
    }

    #[test]
    fn docx_head_accepts_a_zip_and_refuses_an_image() {
        assert_eq!(check_head(DocumentKind::Docx, &fixtures::docx()), Ok(()));
        assert_eq!(
            check_head(DocumentKind::Docx, &fixtures::png()),
            Err(ContentError::mismatch("image/png"))
        );
    }

    #[test]
    fn doc_head_needs_an_ole_header() {
        assert_eq!(check_head(DocumentKind::Doc, &fixtures::doc()), Ok(()));
        assert!(check_head(DocumentKind::Doc, &fixtures::docx()).is_err());
    }

    fn scan(bytes: &[u8], chunk: usize) -> Result<(), ContentError> {
        let mut scanner = ArchiveScanner::default();
        for piece in bytes.chunks(chunk) {
            scanner.feed(piece);
        }
        scanner.finish()
    }

    #[test]
    fn a_pdf_that_is_also_a_zip_is_refused_wherever_the_archive_sits() {
        let pdf = fixtures::pdf(5000);
        let mut at_end = pdf.clone();
        at_end.extend_from_slice(&fixtures::docx());
        // The archive, then 200 KiB of PDF comment: no longer in any tail.
        let mut buried = fixtures::pdf(100);
        buried.extend_from_slice(&fixtures::docx());
        buried.extend_from_slice(b"\n%");
        buried.extend(std::iter::repeat_n(b'x', 200 * 1024));
        buried.extend_from_slice(b"\n%%EOF\n");
        for chunk in [1, 7, 63, 64, 65, 4096, usize::MAX] {
            assert_eq!(scan(&pdf, chunk), Ok(()), "chunk {chunk}");
            for polyglot in [&at_end, &buried] {
                assert!(
                    matches!(scan(polyglot, chunk), Err(ContentError::Invalid { .. })),
                    "chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn stray_signature_bytes_are_not_an_archive() {
        // "PK\x03\x04" and "PK\x01\x02" with implausible fields, as compressed data can hold.
        let mut pdf = fixtures::pdf(1000);
        pdf.extend_from_slice(b"PK\x03\x04\xff\xff\xff\xff\xff\xff\x00\x00");
        pdf.extend(std::iter::repeat_n(0xAB, 100));
        pdf.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x63\x00");
        pdf.extend(std::iter::repeat_n(0xCD, 100));
        assert_eq!(scan(&pdf, 4096), Ok(()));
    }

    #[test]
    fn a_pdf_needs_its_eof_marker() {
        let pdf = fixtures::pdf(5000);
        assert_eq!(check_pdf_tail(&pdf), Ok(()));
        let mut padded = pdf.clone();
        padded.extend(std::iter::repeat_n(0u8, 20_000));
        assert_eq!(check_pdf_tail(&padded), Ok(()), "trailing padding is fine");
        let mut cut = fixtures::pdf(100);
        cut.truncate(cut.len() - 8);
        assert!(matches!(
            check_pdf_tail(&cut),
            Err(ContentError::Invalid { .. })
        ));
    }

    #[test]
    fn kinds_parse_from_extensions_in_any_case() {
        assert_eq!(
            DocumentKind::from_extension("DOCX"),
            Some(DocumentKind::Docx)
        );
        assert_eq!(DocumentKind::from_extension("exe"), None);
    }
}
