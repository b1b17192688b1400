//! `.docx`: a ZIP whose `[Content_Types].xml` declares a WordprocessingML main document, with no
//! macros, and whose size once inflated stays within bounds.

use std::io::{self, Read, Seek};

use super::ContentError;

const MAIN_DOCUMENT: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
const MACRO_ENABLED: &str = "application/vnd.ms-word.document.macroEnabled.12";
const SPREADSHEET_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml";
const SPREADSHEET: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PRESENTATION_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml";
const PRESENTATION: &str =
    "application/vnd.openxmlformats-officedocument.presentationml.presentation";
const CONTENT_TYPES: &str = "[Content_Types].xml";

/// Bounds that keep a hostile archive from costing more than it is worth.
#[derive(Debug, Clone)]
pub struct DocxLimits {
    /// Most entries an archive may hold.
    pub max_entries: usize,
    /// Most bytes all entries may inflate to, together.
    pub max_total_inflated: u64,
    /// Highest inflated/compressed ratio allowed for an entry above `ratio_floor` bytes.
    pub max_ratio: u64,
    /// Entries smaller than this are not held to `max_ratio` (small XML compresses very well).
    pub ratio_floor: u64,
    /// Most bytes `[Content_Types].xml` may have.
    pub max_content_types: u64,
}

impl Default for DocxLimits {
    fn default() -> Self {
        DocxLimits {
            max_entries: 5_000,
            max_total_inflated: 512 * 1024 * 1024,
            max_ratio: 200,
            ratio_floor: 1024 * 1024,
            max_content_types: 1024 * 1024,
        }
    }
}

/// Inspects a whole `.docx`.
pub fn check_docx<R: Read + Seek>(reader: R, limits: &DocxLimits) -> Result<(), ContentError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| ContentError::invalid(format!("the ZIP archive cannot be read ({e})")))?;
    if archive.len() > limits.max_entries {
        return Err(ContentError::invalid(format!(
            "the archive holds {} entries, more than the {} allowed",
            archive.len(),
            limits.max_entries
        )));
    }

    let mut content_types = None;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| ContentError::invalid(format!("an archive entry cannot be read ({e})")))?;
        let name = entry
            .name()
            .map_err(|e| ContentError::invalid(format!("an entry name cannot be read ({e})")))?
            .into_owned();
        if is_macro_part(&name) {
            return Err(ContentError::mismatch(MACRO_ENABLED));
        }
        let declared = entry.size();
        let compressed = entry.compressed_size().max(1);
        if declared > limits.ratio_floor && declared / compressed > limits.max_ratio {
            return Err(ContentError::invalid(format!(
                "entry '{name}' inflates {}-fold, more than the {}-fold allowed",
                declared / compressed,
                limits.max_ratio
            )));
        }
        if total + declared > limits.max_total_inflated {
            return Err(inflated_too_much(limits));
        }
        // Inflate for real: a header can lie about its size, and reading to the end checks the CRC.
        let budget = declared.min(limits.max_total_inflated - total);
        let mut bounded = (&mut entry).take(budget + 1);
        let keep = name == CONTENT_TYPES;
        if keep && declared > limits.max_content_types {
            return Err(ContentError::invalid(format!(
                "{CONTENT_TYPES} is too large"
            )));
        }
        let mut buf = Vec::new();
        let read = if keep {
            bounded.read_to_end(&mut buf).map(|n| n as u64)
        } else {
            io::copy(&mut bounded, &mut io::sink())
        }
        .map_err(|e| ContentError::invalid(format!("entry '{name}' is damaged ({e})")))?;
        if read > declared {
            return Err(ContentError::invalid(format!(
                "entry '{name}' inflates past the size it declares"
            )));
        }
        total += read;
        if keep {
            content_types = Some(buf);
        }
    }

    let content_types = content_types.ok_or_else(|| ContentError::mismatch("application/zip"))?;
    classify(&declared_content_types(&content_types)?)
}

fn inflated_too_much(limits: &DocxLimits) -> ContentError {
    ContentError::invalid(format!(
        "the archive inflates to more than {} bytes",
        limits.max_total_inflated
    ))
}

fn is_macro_part(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with("vbaproject.bin") || lower.ends_with("vbadata.xml")
}

/// Every `ContentType` attribute of the `Default` and `Override` elements.
fn declared_content_types(xml: &[u8]) -> Result<Vec<String>, ContentError> {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut types = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let local = e.local_name();
                if local.as_ref() == "Override" || local.as_ref() == "Default" {
                    for attr in e.attributes().flatten() {
                        if attr.key.local_name().as_ref() == "ContentType" {
                            types.push(attr.value.into_owned());
                        }
                    }
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(ContentError::invalid(format!(
                    "{CONTENT_TYPES} is not well-formed XML ({e})"
                )));
            }
        }
        buf.clear();
    }
    Ok(types)
}

fn classify(types: &[String]) -> Result<(), ContentError> {
    let has = |wanted: &str| types.iter().any(|t| t.eq_ignore_ascii_case(wanted));
    let lower: Vec<String> = types.iter().map(|t| t.to_ascii_lowercase()).collect();
    if lower
        .iter()
        .any(|t| t.contains("macroenabled") || t.contains("vbaproject"))
    {
        return Err(ContentError::mismatch(MACRO_ENABLED));
    }
    if has(MAIN_DOCUMENT) {
        return Ok(());
    }
    if has(SPREADSHEET_MAIN) {
        return Err(ContentError::mismatch(SPREADSHEET));
    }
    if has(PRESENTATION_MAIN) {
        return Err(ContentError::mismatch(PRESENTATION));
    }
    Err(ContentError::mismatch("application/zip"))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::sniff::fixtures;

    fn check(bytes: Vec<u8>) -> Result<(), ContentError> {
        check_docx(Cursor::new(bytes), &DocxLimits::default())
    }

    #[test]
    fn a_word_document_passes() {
        assert_eq!(check(fixtures::docx()), Ok(()));
    }

    #[test]
    fn a_renamed_docm_is_refused_as_macro_enabled() {
        assert_eq!(
            check(fixtures::docm()),
            Err(ContentError::mismatch(MACRO_ENABLED))
        );
    }

    #[test]
    fn a_vba_project_is_refused_even_without_the_content_type() {
        let bytes = fixtures::zip_of(&[
            (
                "[Content_Types].xml",
                fixtures::content_types(MAIN_DOCUMENT).as_bytes(),
            ),
            ("word/document.xml", b"<w:document/>"),
            ("word/vbaProject.bin", b"\x00\x01"),
        ]);
        assert_eq!(check(bytes), Err(ContentError::mismatch(MACRO_ENABLED)));
    }

    #[test]
    fn a_workbook_is_reported_as_one() {
        assert_eq!(
            check(fixtures::xlsx()),
            Err(ContentError::mismatch(SPREADSHEET))
        );
    }

    #[test]
    fn a_plain_zip_is_reported_as_zip() {
        let bytes = fixtures::zip_of(&[("hello.txt", b"hi")]);
        assert_eq!(check(bytes), Err(ContentError::mismatch("application/zip")));
    }

    #[test]
    fn too_many_entries_is_refused() {
        let names: Vec<String> = (0..40).map(|i| format!("word/part{i}.xml")).collect();
        let mut entries: Vec<(&str, &[u8])> =
            names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let ct = fixtures::content_types(MAIN_DOCUMENT);
        entries.push(("[Content_Types].xml", ct.as_bytes()));
        let limits = DocxLimits {
            max_entries: 10,
            ..DocxLimits::default()
        };
        let err = check_docx(Cursor::new(fixtures::zip_of(&entries)), &limits).unwrap_err();
        assert!(matches!(err, ContentError::Invalid { ref reason } if reason.contains("entries")));
    }

    #[test]
    fn a_zip_bomb_is_refused_by_ratio() {
        let err = check(fixtures::docx_bomb(8 * 1024 * 1024)).unwrap_err();
        assert!(matches!(err, ContentError::Invalid { ref reason } if reason.contains("fold")));
    }

    #[test]
    fn a_zip_bomb_is_refused_by_total_size() {
        let limits = DocxLimits {
            max_total_inflated: 1024 * 1024,
            max_ratio: u64::MAX,
            ..DocxLimits::default()
        };
        let err =
            check_docx(Cursor::new(fixtures::docx_bomb(4 * 1024 * 1024)), &limits).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("inflates to more"))
        );
    }

    #[test]
    fn a_truncated_archive_is_invalid() {
        let mut bytes = fixtures::docx();
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(check(bytes), Err(ContentError::Invalid { .. })));
    }
}
