//! `.doc`: an OLE compound file holding a `WordDocument` stream (not a workbook, a presentation or
//! an installer package that happens to share the container format).

use std::io::{Read, Seek};

use super::{ContentError, OCTET_STREAM};

const MSI_CLSID: &str = "000c1084-0000-0000-c000-000000000046";

/// Inspects a whole `.doc`.
pub fn check_doc<R: Read + Seek>(reader: R) -> Result<(), ContentError> {
    let file = cfb::CompoundFile::open(reader)
        .map_err(|e| ContentError::invalid(format!("the compound file cannot be read ({e})")))?;
    if file.is_stream("/WordDocument") {
        return Ok(());
    }
    let detected = if file.is_stream("/Workbook") || file.is_stream("/Book") {
        "application/vnd.ms-excel"
    } else if file.is_stream("/PowerPoint Document") {
        "application/vnd.ms-powerpoint"
    } else if file
        .root_entry()
        .clsid()
        .to_string()
        .eq_ignore_ascii_case(MSI_CLSID)
    {
        "application/x-msi"
    } else {
        OCTET_STREAM
    };
    Err(ContentError::mismatch(detected))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::sniff::fixtures;

    #[test]
    fn a_word_document_passes() {
        assert_eq!(check_doc(Cursor::new(fixtures::doc())), Ok(()));
    }

    #[test]
    fn a_workbook_renamed_doc_is_refused() {
        assert_eq!(
            check_doc(Cursor::new(fixtures::xls())),
            Err(ContentError::mismatch("application/vnd.ms-excel"))
        );
    }

    #[test]
    fn an_installer_renamed_doc_is_refused() {
        assert_eq!(
            check_doc(Cursor::new(fixtures::msi())),
            Err(ContentError::mismatch("application/x-msi"))
        );
    }

    #[test]
    fn garbage_after_the_ole_magic_is_invalid() {
        let mut bytes = fixtures::doc();
        bytes.truncate(600);
        assert!(matches!(
            check_doc(Cursor::new(bytes)),
            Err(ContentError::Invalid { .. })
        ));
    }
}
