//! `.odt`: an OpenDocument text package — a ZIP whose first entry, `mimetype`, says
//! `application/vnd.oasis.opendocument.text` — with its `content.xml`, no macros or scripts
//! (`Basic/`, `Scripts/`) and no embedded objects, within the same bomb limits as `.docx`.

use std::io::{Read, Seek};

use super::ContentError;
use super::docx::{DocxLimits, inflate_entries};

pub const ODT_MIME: &str = "application/vnd.oasis.opendocument.text";
const MACRO_ENABLED: &str = "application/vnd.oasis.opendocument.text (with macros)";

/// Inspects a whole `.odt`.
pub fn check_odt<R: Read + Seek>(reader: R, limits: &DocxLimits) -> Result<(), ContentError> {
    let archive = inflate_entries(
        reader,
        limits,
        |name, _| {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("basic/") || lower.starts_with("scripts/") {
                return Err(ContentError::mismatch(MACRO_ENABLED));
            }
            // OLE objects and other documents embedded in the text.
            if lower.starts_with("object ") || lower.starts_with("objectreplacements/") {
                return Err(ContentError::invalid("it embeds objects"));
            }
            Ok(())
        },
        |name| name == "mimetype",
    )?;
    if archive.first.as_deref() != Some("mimetype") {
        return Err(ContentError::mismatch("application/zip"));
    }
    let mimetype = archive
        .kept
        .iter()
        .find(|(name, _)| name == "mimetype")
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).trim().to_owned())
        .unwrap_or_default();
    if mimetype != ODT_MIME {
        let detected = if mimetype.starts_with("application/") {
            mimetype
        } else {
            "application/zip".to_owned()
        };
        return Err(ContentError::mismatch(detected));
    }
    if !archive.names.contains("content.xml") {
        return Err(ContentError::invalid("content.xml is missing"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::fixtures;

    fn check(bytes: Vec<u8>) -> Result<(), ContentError> {
        check_odt(std::io::Cursor::new(bytes), &DocxLimits::default())
    }

    #[test]
    fn a_text_document_passes_and_others_do_not() {
        assert_eq!(check(fixtures::odt("Jane Doe")), Ok(()));
        assert!(matches!(
            check(fixtures::odt_of(&[("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"), ("content.xml", b"<x/>")])),
            Err(ContentError::Mismatch { detected }) if detected.ends_with("spreadsheet")
        ));
        assert!(matches!(
            check(fixtures::odt_of(&[
                ("content.xml", b"<x/>"),
                ("mimetype", ODT_MIME.as_bytes())
            ])),
            Err(ContentError::Mismatch { .. })
        ));
        assert!(matches!(
            check(fixtures::odt_of(&[
                ("mimetype", ODT_MIME.as_bytes()),
                ("content.xml", b"<x/>"),
                ("Basic/Standard/Module1.xml", b"<m/>")
            ])),
            Err(ContentError::Mismatch { .. })
        ));
        assert!(matches!(
            check(fixtures::odt_of(&[
                ("mimetype", ODT_MIME.as_bytes()),
                ("content.xml", b"<x/>"),
                ("Object 1/content.xml", b"<o/>")
            ])),
            Err(ContentError::Invalid { .. })
        ));
        assert!(matches!(
            check(fixtures::odt_of(&[("mimetype", ODT_MIME.as_bytes())])),
            Err(ContentError::Invalid { .. })
        ));
    }
}
