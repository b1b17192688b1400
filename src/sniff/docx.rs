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

/// Relationship types that name the package's main part (transitional and strict OOXML).
const OFFICE_DOCUMENT_RELS: [&str; 2] = [
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument",
    "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument",
];
const WORD_TEMPLATE_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml";
/// Most bytes all `.rels` parts may have together.
const MAX_RELS_BYTES: u64 = 4 * 1024 * 1024;

/// Inspects a whole `.docx`: the package's main part — the one `_rels/.rels` names as the
/// office document — must be declared WordprocessingML, and nothing in the package may be a
/// VBA project, whatever its name.
pub fn check_docx<R: Read + Seek>(reader: R, limits: &DocxLimits) -> Result<(), ContentError> {
    let mut rels_total: u64 = 0;
    let archive = inflate_entries(
        reader,
        limits,
        |name, declared| {
            if is_macro_part(name) {
                return Err(ContentError::mismatch(MACRO_ENABLED));
            }
            if name == CONTENT_TYPES && declared > limits.max_content_types {
                return Err(ContentError::invalid(format!(
                    "{CONTENT_TYPES} is too large"
                )));
            }
            if name.to_ascii_lowercase().ends_with(".rels") {
                rels_total += declared;
                if rels_total > MAX_RELS_BYTES {
                    return Err(ContentError::invalid(
                        "the relationship parts are too large",
                    ));
                }
            }
            Ok(())
        },
        |name| name == CONTENT_TYPES || name.to_ascii_lowercase().ends_with(".rels"),
    )?;
    let names = archive.names;
    let mut content_types = None;
    let mut rels: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, bytes) in archive.kept {
        if name == CONTENT_TYPES {
            content_types = Some(bytes);
        } else {
            rels.push((name, bytes));
        }
    }

    let content_types = content_types.ok_or_else(|| ContentError::mismatch("application/zip"))?;
    let types = ContentTypes::parse(&content_types)?;
    if types
        .all()
        .any(|t| t.contains("macroenabled") || t.contains("vbaproject"))
    {
        return Err(ContentError::mismatch(MACRO_ENABLED));
    }
    let mut main = None;
    for (name, xml) in &rels {
        for rel in relationships(name, xml)? {
            if rel.kind.to_ascii_lowercase().ends_with("/vbaproject") {
                return Err(ContentError::mismatch(MACRO_ENABLED));
            }
            if name == "_rels/.rels" && OFFICE_DOCUMENT_RELS.contains(&rel.kind.as_str()) {
                if rel.external {
                    return Err(ContentError::invalid(
                        "the main document is outside the package",
                    ));
                }
                main = Some(rel.target);
            }
        }
    }
    let main = main.ok_or_else(|| match types.main_hint() {
        Some(kind) => ContentError::invalid(format!(
            "the package names no main document (_rels/.rels) though it declares {kind}"
        )),
        None => ContentError::mismatch("application/zip"),
    })?;
    let main = part_key(&main);
    if !names.contains(&main) {
        return Err(ContentError::invalid(format!(
            "the main document '/{main}' is missing from the package"
        )));
    }
    classify(types.of(&main).unwrap_or(""))
}

/// An archive every entry of which was inflated within the limits.
pub(super) struct Inflated {
    /// Every entry's part key (`part_key`), in archive order.
    pub(super) names: std::collections::HashSet<String>,
    /// The first entry's name, as written.
    pub(super) first: Option<String>,
    /// The entries `keep` asked for, inflated.
    pub(super) kept: Vec<(String, Vec<u8>)>,
}

/// Most bytes a kept entry may have.
const MAX_KEPT_ENTRY: u64 = 64 * 1024 * 1024;

/// Reads a ZIP package the way every ZIP-based format is checked (`.docx`, `.odt`): no two
/// entries of one name (from the central directory itself), at most `max_entries`, every entry
/// inflated for real (a header can lie about its size; reading to the end checks the CRC)
/// within the ratio and total limits. `check` sees each entry's name and declared size before
/// it is inflated; the entries `keep` names are returned inflated.
pub(super) fn inflate_entries<R: Read + Seek>(
    mut reader: R,
    limits: &DocxLimits,
    mut check: impl FnMut(&str, u64) -> Result<(), ContentError>,
    keep: impl Fn(&str) -> bool,
) -> Result<Inflated, ContentError> {
    // Duplicates first, from the central directory itself: the ZIP reader keeps one entry of
    // each name, so it cannot show them.
    let listed = central_directory_names(&mut reader, limits)?;
    let mut seen = std::collections::HashSet::new();
    for name in &listed {
        let name = String::from_utf8_lossy(name);
        if !seen.insert(part_key(&name)) {
            return Err(ContentError::invalid(format!(
                "the archive holds two entries named '{name}'"
            )));
        }
    }
    reader
        .seek(io::SeekFrom::Start(0))
        .map_err(|e| ContentError::invalid(format!("the archive cannot be read ({e})")))?;
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| ContentError::invalid(format!("the ZIP archive cannot be read ({e})")))?;
    if archive.len() > limits.max_entries {
        return Err(ContentError::invalid(format!(
            "the archive holds {} entries, more than the {} allowed",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut inflated = Inflated {
        names: std::collections::HashSet::new(),
        first: None,
        kept: Vec::new(),
    };
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| ContentError::invalid(format!("an archive entry cannot be read ({e})")))?;
        let name = entry
            .name()
            .map_err(|e| ContentError::invalid(format!("an entry name cannot be read ({e})")))?
            .into_owned();
        // Part names are case-insensitive; two entries of one name make the package ambiguous
        // (tools disagree on which one counts).
        if !inflated.names.insert(part_key(&name)) {
            return Err(ContentError::invalid(format!(
                "the archive holds two entries named '{name}'"
            )));
        }
        if index == 0 {
            inflated.first = Some(name.clone());
        }
        let declared = entry.size();
        check(&name, declared)?;
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
        let budget = declared.min(limits.max_total_inflated - total);
        let mut bounded = (&mut entry).take(budget + 1);
        let wanted = keep(&name);
        if wanted && declared > MAX_KEPT_ENTRY {
            return Err(ContentError::invalid(format!(
                "entry '{name}' is too large"
            )));
        }
        let mut buf = Vec::new();
        let read = if wanted {
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
        if wanted {
            inflated.kept.push((name, buf));
        }
    }
    Ok(inflated)
}

/// Most bytes a central directory may have.
const MAX_CENTRAL_DIRECTORY: u64 = 32 * 1024 * 1024;

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The raw name of every entry in the central directory, duplicates included.
fn central_directory_names<R: Read + Seek>(
    reader: &mut R,
    limits: &DocxLimits,
) -> Result<Vec<Vec<u8>>, ContentError> {
    let unreadable =
        |why: &str| ContentError::invalid(format!("the ZIP archive cannot be read ({why})"));
    let io_err = |e: io::Error| unreadable(&e.to_string());
    let len = reader.seek(io::SeekFrom::End(0)).map_err(io_err)?;
    let tail_len = len.min(22 + 65_535);
    reader
        .seek(io::SeekFrom::Start(len - tail_len))
        .map_err(io_err)?;
    let mut tail = vec![0; tail_len as usize];
    reader.read_exact(&mut tail).map_err(io_err)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| unreadable("no end of central directory"))?;
    let eocd_at = len - tail_len + eocd as u64;
    let mut entries = le16(&tail, eocd + 10);
    let mut size = le32(&tail, eocd + 12);
    // The directory ends where the end record starts (this holds even with bytes before the
    // archive, unlike its recorded offset).
    let mut directory_end = eocd_at;
    if entries == 0xFFFF || size == 0xFFFF_FFFF || le32(&tail, eocd + 16) == 0xFFFF_FFFF {
        // ZIP64: the real figures are in the ZIP64 end record the locator points at.
        let locator = eocd
            .checked_sub(20)
            .filter(|&l| tail[l..].starts_with(b"PK\x06\x07"))
            .ok_or_else(|| unreadable("a ZIP64 archive without its locator"))?;
        directory_end = le64(&tail, locator + 8);
        reader
            .seek(io::SeekFrom::Start(directory_end))
            .map_err(io_err)?;
        let mut record = [0u8; 56];
        reader.read_exact(&mut record).map_err(io_err)?;
        if !record.starts_with(b"PK\x06\x06") {
            return Err(unreadable("a damaged ZIP64 end record"));
        }
        entries = le64(&record, 32);
        size = le64(&record, 40);
    }
    if entries > limits.max_entries as u64 {
        return Err(ContentError::invalid(format!(
            "the archive holds {entries} entries, more than the {} allowed",
            limits.max_entries
        )));
    }
    if size > MAX_CENTRAL_DIRECTORY || size > directory_end {
        return Err(unreadable("the central directory is too large"));
    }
    reader
        .seek(io::SeekFrom::Start(directory_end - size))
        .map_err(io_err)?;
    let mut directory = vec![0; size as usize];
    reader.read_exact(&mut directory).map_err(io_err)?;
    let mut names = Vec::new();
    let mut at = 0;
    while names.len() < entries as usize {
        let header = directory
            .get(at..at + 46)
            .filter(|h| h.starts_with(b"PK\x01\x02"))
            .ok_or_else(|| unreadable("a damaged central directory"))?;
        let (name_len, extra_len, comment_len) = (
            le16(header, 28) as usize,
            le16(header, 30) as usize,
            le16(header, 32) as usize,
        );
        let name = directory
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| unreadable("a damaged central directory"))?;
        names.push(name.to_vec());
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(names)
}

/// A part name as compared: no leading slash, lower case.
fn part_key(name: &str) -> String {
    name.trim_start_matches('/').to_ascii_lowercase()
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

/// `[Content_Types].xml`: types by extension and by part, lower case, entities decoded.
struct ContentTypes {
    defaults: Vec<(String, String)>,
    overrides: Vec<(String, String)>,
}

impl ContentTypes {
    fn parse(xml: &[u8]) -> Result<Self, ContentError> {
        let mut types = ContentTypes {
            defaults: Vec::new(),
            overrides: Vec::new(),
        };
        for_each_element(xml, CONTENT_TYPES, |local, attrs| {
            let is_default = local == "Default";
            if !is_default && local != "Override" {
                return;
            }
            let content_type = attr(attrs, "ContentType").to_ascii_lowercase();
            if is_default {
                let ext = attr(attrs, "Extension").to_ascii_lowercase();
                types.defaults.push((ext, content_type));
            } else {
                let part = part_key(attr(attrs, "PartName"));
                types.overrides.push((part, content_type));
            }
        })?;
        Ok(types)
    }

    fn all(&self) -> impl Iterator<Item = &str> {
        self.defaults
            .iter()
            .chain(&self.overrides)
            .map(|(_, t)| t.as_str())
    }

    /// The declared type of a part (by override, else by its extension).
    fn of(&self, part: &str) -> Option<&str> {
        if let Some((_, t)) = self.overrides.iter().rev().find(|(p, _)| p == part) {
            return Some(t);
        }
        let ext = part.rsplit_once('.').map(|(_, e)| e)?;
        self.defaults
            .iter()
            .rev()
            .find(|(e, _)| e == ext)
            .map(|(_, t)| t.as_str())
    }

    /// A main-document type declared anywhere, for a clearer message.
    fn main_hint(&self) -> Option<&str> {
        self.all().find(|t| {
            t.eq_ignore_ascii_case(MAIN_DOCUMENT)
                || t.eq_ignore_ascii_case(SPREADSHEET_MAIN)
                || t.eq_ignore_ascii_case(PRESENTATION_MAIN)
        })
    }
}

/// One `<Relationship>` of a `.rels` part.
struct Relationship {
    kind: String,
    /// The target as a part name from the package root.
    target: String,
    external: bool,
}

/// The relationships of the `.rels` part `name`, targets resolved against its source part.
fn relationships(name: &str, xml: &[u8]) -> Result<Vec<Relationship>, ContentError> {
    // `word/_rels/document.xml.rels` describes `word/document.xml`: targets are relative to `word/`.
    let base = name
        .rsplit_once("_rels/")
        .map_or("", |(dir, _)| dir)
        .to_owned();
    let mut out = Vec::new();
    for_each_element(xml, name, |local, attrs| {
        if local != "Relationship" {
            return;
        }
        out.push(Relationship {
            kind: attr(attrs, "Type").to_owned(),
            target: resolve(&base, attr(attrs, "Target")),
            external: attr(attrs, "TargetMode").eq_ignore_ascii_case("external"),
        });
    })?;
    Ok(out)
}

/// A relationship target as a part name: absolute targets from the root, others from `base`,
/// with `.` and `..` segments applied.
fn resolve(base: &str, target: &str) -> String {
    let joined = if let Some(absolute) = target.strip_prefix('/') {
        absolute.to_owned()
    } else {
        format!("{base}{target}")
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments.join("/")
}

/// An attribute's value among those `for_each_element` hands over; empty when absent.
fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Calls `visit` with the local name and the decoded attributes (local names) of every element.
fn for_each_element(
    xml: &[u8],
    part: &str,
    mut visit: impl FnMut(&str, &[(String, String)]),
) -> Result<(), ContentError> {
    use quick_xml::events::Event;

    let broken = |e: &dyn std::fmt::Display| {
        ContentError::invalid(format!("{part} is not well-formed XML ({e})"))
    };
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let local = e.local_name().as_ref().to_owned();
                let mut attrs = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| broken(&e))?;
                    let key = attr.key.local_name().as_ref().to_owned();
                    // Character references (`macro&#69;nabled`) are decoded before anything is
                    // compared.
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| broken(&e))?
                        .into_owned();
                    attrs.push((key, value));
                }
                visit(&local, &attrs);
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(broken(&e)),
        }
        buf.clear();
    }
}

fn classify(main_type: &str) -> Result<(), ContentError> {
    let is = |wanted: &str| main_type.eq_ignore_ascii_case(wanted);
    if main_type.contains("macroenabled") {
        return Err(ContentError::mismatch(MACRO_ENABLED));
    }
    if is(MAIN_DOCUMENT) {
        return Ok(());
    }
    if is(WORD_TEMPLATE_MAIN) {
        return Err(ContentError::mismatch(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
        ));
    }
    if is(SPREADSHEET_MAIN) {
        return Err(ContentError::mismatch(SPREADSHEET));
    }
    if is(PRESENTATION_MAIN) {
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

    #[test]
    fn a_workbook_claiming_a_missing_word_part_is_a_workbook() {
        assert_eq!(
            check(fixtures::xlsx_claiming_word()),
            Err(ContentError::mismatch(SPREADSHEET))
        );
    }

    #[test]
    fn character_references_do_not_hide_macros() {
        assert_eq!(
            check(fixtures::docm_with_escaped_type()),
            Err(ContentError::mismatch(MACRO_ENABLED))
        );
        assert_eq!(
            check(fixtures::docx_with_hidden_vba()),
            Err(ContentError::mismatch(MACRO_ENABLED))
        );
        assert_eq!(
            check(fixtures::docx_with_vba_relationship()),
            Err(ContentError::mismatch(MACRO_ENABLED))
        );
    }

    #[test]
    fn duplicate_entry_names_are_refused() {
        let err = check(fixtures::docx_with_duplicate_content_types()).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("two entries")),
            "{err:?}"
        );
    }

    #[test]
    fn relationship_targets_resolve_from_their_source() {
        assert_eq!(resolve("", "word/document.xml"), "word/document.xml");
        assert_eq!(
            resolve("word/", "../customXml/item.xml"),
            "customXml/item.xml"
        );
        assert_eq!(
            resolve("word/", "/word/./document.xml"),
            "word/document.xml"
        );
    }
}
