//! Content detection and deep document checks.
//!
//! Everything here is pure: it looks at bytes handed to it and never touches the network, the
//! database or the clock, so it is easy to unit-test and to fuzz.

mod doc;
mod docx;
#[cfg(test)]
pub(crate) mod fixtures;

use std::fmt;
use std::io::{Read, Seek};

pub use doc::check_doc;
pub use docx::{DocxLimits, check_docx};

/// MIME type reported when nothing recognisable is found.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// How many leading bytes are enough to decide the type by magic numbers.
pub const HEAD_LEN: usize = 8192;

/// A document type Stowage accepts, named by its file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocumentKind {
    Doc,
    Docx,
    Pdf,
}

impl DocumentKind {
    /// Every kind Stowage knows how to verify.
    pub const ALL: [DocumentKind; 3] = [DocumentKind::Doc, DocumentKind::Docx, DocumentKind::Pdf];

    /// The extension without its dot, lower case.
    pub fn extension(self) -> &'static str {
        match self {
            DocumentKind::Doc => "doc",
            DocumentKind::Docx => "docx",
            DocumentKind::Pdf => "pdf",
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
        }
    }

    /// Parses an extension given without its dot, in any case.
    pub fn from_extension(ext: &str) -> Option<DocumentKind> {
        DocumentKind::ALL
            .into_iter()
            .find(|k| k.extension().eq_ignore_ascii_case(ext))
    }

    /// Whether the leading-bytes check is all there is, or the whole file must be inspected.
    pub fn needs_deep_check(self) -> bool {
        !matches!(self, DocumentKind::Pdf)
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
    };
    if ok {
        Ok(())
    } else {
        Err(ContentError::mismatch(detected))
    }
}

/// How many trailing bytes of a PDF are kept to look for a ZIP end record (the record is 22
/// bytes plus a comment of up to 65,535).
pub const TAIL_LEN: usize = 22 + 65_535;

const ZIP_END_OF_CENTRAL_DIRECTORY: &[u8] = b"PK\x05\x06";

/// Checks the last [`TAIL_LEN`] bytes of a PDF: a PDF that ends in a ZIP end-of-central-directory
/// record is also a ZIP archive (a polyglot) and opens as one in archive tools.
pub fn check_pdf_tail(tail: &[u8]) -> Result<(), ContentError> {
    if tail
        .windows(ZIP_END_OF_CENTRAL_DIRECTORY.len())
        .any(|w| w == ZIP_END_OF_CENTRAL_DIRECTORY)
    {
        return Err(ContentError::invalid(
            "it is also a ZIP archive (PDF/ZIP polyglot)",
        ));
    }
    Ok(())
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_pdf_that_is_also_a_zip_is_refused() {
        assert_eq!(check_pdf_tail(&fixtures::pdf(5000)), Ok(()));
        let mut polyglot = fixtures::pdf(5000);
        polyglot.extend_from_slice(&fixtures::docx());
        assert!(matches!(
            check_pdf_tail(&polyglot),
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
