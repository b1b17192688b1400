//! Test documents built in code, so no binary blobs live in git.
//!
//! Compiled into the library's unit tests and included by path into the integration tests.
#![allow(dead_code)]

use std::io::{Cursor, Write};

/// `_rels/.rels` naming `word/document.xml` as the package's main part.
const WORD_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

const WORD_MAIN: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";

/// A small valid PDF padded with a comment (before its trailer, so that it still ends with
/// `%%EOF`) to exactly `size` bytes (at least its skeleton).
pub fn pdf(size: usize) -> Vec<u8> {
    let head = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n";
    let trailer = b"trailer << /Root 1 0 R >>\n%%EOF\n";
    let mut out = head.to_vec();
    let skeleton = head.len() + trailer.len();
    if size > skeleton + 1 {
        out.push(b'%');
        out.resize(size - trailer.len() - 1, b'x');
        out.push(b'\n');
    }
    out.extend_from_slice(trailer);
    out
}

/// The first bytes of a PNG image.
pub fn png() -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend_from_slice(&[
        0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
    ]);
    out.resize(128, 0);
    out
}

/// A ZIP archive of the given entries, deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        writer.start_file(*name, options).expect("start zip entry");
        writer.write_all(data).expect("write zip entry");
    }
    writer.finish().expect("finish zip").into_inner()
}

/// A `[Content_Types].xml` declaring `main` as the main part's type.
pub fn content_types(main: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="{main}"/>
</Types>"#
    )
}

fn office_zip(main: &str, main_part: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let ct = content_types(main).replace("/word/document.xml", &format!("/{main_part}"));
    let rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="{main_part}"/></Relationships>"#
    );
    let body = b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>Jane Doe</w:t></w:r></w:p></w:body></w:document>";
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        (main_part, body),
    ];
    entries.extend_from_slice(extra);
    zip_of(&entries)
}

/// A minimal valid Word document.
pub fn docx() -> Vec<u8> {
    office_zip(WORD_MAIN, "word/document.xml", &[])
}

/// A macro-enabled Word document (what a renamed `.docm` looks like).
pub fn docm() -> Vec<u8> {
    office_zip(
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        "word/document.xml",
        &[("word/vbaProject.bin", b"\xD0\xCF\x11\xE0 fake vba")],
    )
}

/// A minimal Excel workbook.
pub fn xlsx() -> Vec<u8> {
    office_zip(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "xl/workbook.xml",
        &[],
    )
}

/// A Word document with one entry of `inflated` zero bytes: tiny compressed, huge inflated.
pub fn docx_bomb(inflated: usize) -> Vec<u8> {
    let zeros = vec![0u8; inflated];
    office_zip(
        WORD_MAIN,
        "word/document.xml",
        &[("word/media/bomb.bin", &zeros)],
    )
}

fn ole(streams: &[&str], clsid: Option<&str>) -> Vec<u8> {
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("create cfb");
    if let Some(clsid) = clsid {
        let id = uuid::Uuid::parse_str(clsid).expect("clsid");
        file.set_storage_clsid("/", id).expect("set clsid");
    }
    for name in streams {
        let mut stream = file.create_stream(name).expect("create stream");
        stream.write_all(&[0x42; 4096]).expect("write stream");
    }
    file.flush().expect("flush cfb");
    file.into_inner().into_inner()
}

/// An OLE compound file with a `WordDocument` stream.
pub fn doc() -> Vec<u8> {
    ole(&["/WordDocument", "/1Table"], None)
}

/// An OLE compound file holding an Excel workbook.
pub fn xls() -> Vec<u8> {
    ole(&["/Workbook"], None)
}

/// An OLE compound file marked as a Windows Installer package.
pub fn msi() -> Vec<u8> {
    ole(
        &["/SummaryInformation"],
        Some("000C1084-0000-0000-C000-000000000046"),
    )
}

/// A minimal PowerPoint presentation (OOXML).
pub fn pptx() -> Vec<u8> {
    office_zip(
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        "ppt/presentation.xml",
        &[],
    )
}

/// An OLE compound file holding a PowerPoint presentation.
pub fn ppt() -> Vec<u8> {
    ole(&["/PowerPoint Document"], None)
}

/// A Word document with `n` extra tiny entries (an entry-count bomb).
pub fn docx_with_entries(n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("word/e{i}.xml")).collect();
    let extra: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"<a/>"[..])).collect();
    office_zip(WORD_MAIN, "word/document.xml", &extra)
}

/// A Word-looking ZIP without `[Content_Types].xml`.
pub fn docx_without_content_types() -> Vec<u8> {
    zip_of(&[("word/document.xml", b"<w:document/>")])
}

/// A Word-looking ZIP whose `[Content_Types].xml` is not XML.
pub fn docx_with_broken_content_types() -> Vec<u8> {
    zip_of(&[
        (
            "[Content_Types].xml",
            b"<Types><Override ContentType=\"x\"</Types",
        ),
        ("word/document.xml", b"<w:document/>"),
    ])
}

/// A workbook whose `[Content_Types].xml` also declares a Word main document for a part that
/// does not exist (the package's real main part is the workbook).
pub fn xlsx_claiming_word() -> Vec<u8> {
    let bytes = xlsx();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("xlsx");
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("entry");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
        let name = entry.name().expect("name").into_owned();
        if name == "[Content_Types].xml" {
            let ct = String::from_utf8(data).expect("utf-8").replace(
                "</Types>",
                &format!(
                    r#"<Override PartName="/word/document.xml" ContentType="{WORD_MAIN}"/></Types>"#
                ),
            );
            data = ct.into_bytes();
        }
        entries.push((name, data));
    }
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    zip_of(&refs)
}

/// A Word document whose main part is declared macro-enabled with a character reference
/// (`macro&#69;nabled`), so a raw comparison does not see it.
pub fn docm_with_escaped_type() -> Vec<u8> {
    office_zip(
        "application/vnd.ms-word.document.macro&#69;nabled.main+xml",
        "word/document.xml",
        &[],
    )
}

/// A Word document carrying a VBA project under an innocent name, declared by its type
/// (written with a character reference) and linked from the document's relationships.
pub fn docx_with_hidden_vba() -> Vec<u8> {
    let ct = content_types(WORD_MAIN).replace(
        "</Types>",
        r#"<Override PartName="/word/macros.bin" ContentType="application/vnd.ms-office.vba&#80;roject"/></Types>"#,
    );
    let doc_rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="macros.bin"/></Relationships>"#;
    zip_of(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", b"<w:document/>"),
        ("word/_rels/document.xml.rels", doc_rels.as_bytes()),
        ("word/macros.bin", b"\xD0\xCF\x11\xE0 fake vba"),
    ])
}

/// A VBA project linked only by relationship, with no telling name or type.
pub fn docx_with_vba_relationship() -> Vec<u8> {
    let doc_rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r" Type="http://schemas.microsoft.com/office/2006/relationships/vba&#80;roject" Target="stuff.dat"/></Relationships>"#;
    zip_of(&[
        ("[Content_Types].xml", content_types(WORD_MAIN).as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", b"<w:document/>"),
        ("word/_rels/document.xml.rels", doc_rels.as_bytes()),
        ("word/stuff.dat", b"\xD0\xCF\x11\xE0 fake vba"),
    ])
}

/// A ZIP holding two `[Content_Types].xml` entries: the first macro-enabled, the last plain
/// (tools that keep the last entry of a name see a clean document).
pub fn docx_with_duplicate_content_types() -> Vec<u8> {
    let macro_ct = content_types("application/vnd.ms-word.document.macroEnabled.main+xml");
    let plain_ct = content_types(WORD_MAIN);
    // The zip writer refuses duplicate names: write a placeholder name of the same length and
    // rename it in the local header and the central directory.
    let mut bytes = zip_of(&[
        ("[Content_Types].xml", macro_ct.as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", b"<w:document/>"),
        ("[Content_Types].xmZ", plain_ct.as_bytes()),
    ]);
    let placeholder = b"[Content_Types].xmZ";
    let mut i = 0;
    while i + placeholder.len() <= bytes.len() {
        if &bytes[i..i + placeholder.len()] == placeholder {
            bytes[i..i + placeholder.len()].copy_from_slice(b"[Content_Types].xml");
        }
        i += 1;
    }
    bytes
}

/// Where things are in the `.doc` fixture: (sector size, file offset of the first FAT sector,
/// file offset of the WordDocument directory entry, the stream's first sector).
fn doc_layout(bytes: &[u8]) -> (usize, usize, usize, usize) {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let sector = 1usize << u16::from_le_bytes([bytes[30], bytes[31]]);
    let fat = (u32_at(76) + 1) * sector;
    let directory = (u32_at(48) + 1) * sector;
    let name: Vec<u8> = "WordDocument"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let entry = (0..sector / 128)
        .map(|i| directory + i * 128)
        .find(|&at| bytes[at..].starts_with(&name))
        .expect("WordDocument entry in the first directory sector");
    (sector, fat, entry, u32_at(entry + 116))
}

/// A `.doc` whose WordDocument stream's sector chain loops back on itself.
pub fn doc_with_word_chain_loop() -> Vec<u8> {
    let mut big = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("create cfb");
    {
        let mut stream = big.create_stream("/WordDocument").expect("stream");
        stream.write_all(&[0x42; 20_000]).expect("write");
    }
    big.flush().expect("flush");
    let mut bytes = big.into_inner().into_inner();
    let (_, fat, _, start) = doc_layout(&bytes);
    let link = fat + 4 * (start + 2);
    bytes[link..link + 4].copy_from_slice(&(start as u32).to_le_bytes());
    bytes
}

/// A `.doc` whose WordDocument stream declares 2^60 bytes.
pub fn doc_with_huge_word_stream() -> Vec<u8> {
    let mut bytes = doc();
    let (_, _, entry, _) = doc_layout(&bytes);
    bytes[entry + 120..entry + 128].copy_from_slice(&(1u64 << 60).to_le_bytes());
    bytes
}

/// A `.doc` whose header claims 0x7fffffff FAT sectors.
pub fn doc_with_huge_fat_claim() -> Vec<u8> {
    let mut bytes = doc();
    bytes[44..48].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    bytes
}

/// A PDF whose pages show `pages` (each a list of lines) in Helvetica, with a correct
/// cross-reference table.
pub fn text_pdf(pages: &[&[&str]]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 4 + 2 * i).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec());
    for (i, lines) in pages.iter().enumerate() {
        let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
        for line in *lines {
            let escaped = line
                .replace('\\', "\\\\")
                .replace('(', "\\(")
                .replace(')', "\\)");
            content.push_str(&format!("({escaped}) Tj T*\n"));
        }
        content.push_str("ET");
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                page_ids[i] + 1
            )
            .into_bytes(),
        );
        objects.push(stream_object("", content.as_bytes()));
    }
    pdf_of(&objects, "")
}

/// One piece of text placed on a page: where its baseline starts, its size in points, and the
/// text itself (any Unicode of the Basic Multilingual Plane).
pub struct Placed<'a> {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub text: &'a str,
}

/// A one-page PDF that draws each piece where it says, as a table or a form lays out its cells:
/// one text object per piece, no space characters between them. The font is a CID font whose
/// glyph numbers are the characters' code points, with a ToUnicode map saying so (no font
/// program is embedded); characters below U+3000 are half an em wide, the rest one em.
pub fn placed_pdf(pieces: &[Placed<'_>]) -> Vec<u8> {
    let mut content = String::new();
    for piece in pieces {
        let hex: String = piece
            .text
            .encode_utf16()
            .map(|u| format!("{u:04X}"))
            .collect();
        content.push_str(&format!(
            "BT /F1 {} Tf {} {} Td <{hex}> Tj ET\n",
            piece.size, piece.x, piece.y
        ));
    }
    // A bfrange may only vary its last byte: one range per high byte, at most 100 per block.
    let ranges: Vec<String> = (0x00..0xD8u32)
        .map(|hi| format!("<{hi:02X}00> <{hi:02X}FF> <{hi:02X}00>"))
        .collect();
    let blocks: String = ranges
        .chunks(100)
        .map(|chunk| {
            format!(
                "{} beginbfrange\n{}\nendbfrange\n",
                chunk.len(),
                chunk.join("\n")
            )
        })
        .collect();
    let cmap = format!(
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def /CMapType 2 def\n\
         1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
         {blocks}endcmap CMapName currentdict /CMap defineresource pop end end"
    );
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
           /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_vec(),
        stream_object("", content.as_bytes()),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /Placed /Encoding /Identity-H \
           /DescendantFonts [6 0 R] /ToUnicode 7 0 R >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Placed \
           /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
           /DW 1000 /W [0 12287 500] /CIDToGIDMap /Identity >>"
            .to_vec(),
        stream_object("", cmap.as_bytes()),
    ];
    pdf_of(&objects, "")
}

/// A PDF from its objects (numbered from 1), with `trailer_extra` in its trailer.
fn pdf_of(objects: &[Vec<u8>], trailer_extra: &str) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R {trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A scanned page: one PDF page that only draws an image (no text layer).
pub fn scanned_pdf() -> Vec<u8> {
    image_pdf(64, 64, "", &[0x80u8; 64 * 64], "468 0 0 648 72 72")
}

/// A stream object: `dict`'s entries with the body's length, and the body.
fn stream_object(dict: &str, body: &[u8]) -> Vec<u8> {
    let mut object = format!("<< {dict} /Length {} >>\nstream\n", body.len()).into_bytes();
    object.extend_from_slice(body);
    object.extend_from_slice(b"\nendstream");
    object
}

/// A one-page PDF (US Letter) that only draws a grey image, `data` (8 bits a pixel, after
/// `filter`), placed by the matrix `placement`.
fn image_pdf(width: usize, height: usize, filter: &str, data: &[u8], placement: &str) -> Vec<u8> {
    let image = stream_object(
        &format!(
            "/Type /XObject /Subtype /Image /Width {width} /Height {height} \
             /ColorSpace /DeviceGray /BitsPerComponent 8 {filter}"
        ),
        data,
    );
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
           /Resources << /XObject << /Im1 4 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        image,
        stream_object("", format!("q {placement} cm /Im1 Do Q").as_bytes()),
    ];
    pdf_of(&objects, "")
}

/// A one-page form: `label` drawn in Helvetica at (72, 700), and a filled text field whose box
/// starts at `field_x` (its value drawn 2 points inside it by its appearance stream).
pub fn form_pdf(label: &str, field_x: f32, value: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 700 Td ({label}) Tj ET");
    let appearance = format!("/Tx BMC BT /F1 12 Tf 2 4 Td ({value}) Tj ET EMC");
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [5 0 R] /DA (/F1 12 Tf 0 g) \
           /DR << /Font << /F1 4 0 R >> >> >> >>"
            .to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
           /Resources << /Font << /F1 4 0 R >> >> /Contents 6 0 R /Annots [5 0 R] >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        format!(
            "<< /Type /Annot /Subtype /Widget /FT /Tx /T (field) /V ({value}) /F 4 \
             /Rect [{field_x} 696 {} 716] /P 3 0 R /DA (/F1 12 Tf 0 g) /AP << /N 7 0 R >> >>",
            field_x + 200.0
        )
        .into_bytes(),
        stream_object("", content.as_bytes()),
        stream_object(
            "/Type /XObject /Subtype /Form /BBox [0 0 200 20] /Resources << /Font << /F1 4 0 R >> >>",
            appearance.as_bytes(),
        ),
    ];
    pdf_of(&objects, "")
}

/// A scanned page: one PDF page showing a `width` × `height` grey image (8 bits a pixel, rows
/// top to bottom, as a PGM file holds them) over the whole of a US Letter page.
pub fn gray_image_pdf(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(pixels).unwrap();
    let compressed = encoder.finish().unwrap();
    image_pdf(
        width,
        height,
        "/Filter /FlateDecode",
        &compressed,
        "612 0 0 792 0 0",
    )
}

/// A PDF protected by a user password (the standard security handler, RC4): it cannot be
/// opened, nor its text read, without the password.
pub fn encrypted_pdf() -> Vec<u8> {
    let content = "0123456789abcdef0123456789abcdef";
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream_object("", content.as_bytes()),
        format!(
            "<< /Filter /Standard /V 1 /R 2 /P -44 /O <{}> /U <{}> >>",
            "6a".repeat(32),
            "c3".repeat(32)
        )
        .into_bytes(),
    ];
    pdf_of(
        &objects,
        "/Encrypt 5 0 R /ID [<0123456789abcdef0123456789abcdef><0123456789abcdef0123456789abcdef>]",
    )
}

/// A PDF whose one content stream inflates to `inflated` bytes of text operators: built to
/// exhaust a parser's memory.
pub fn pdf_bomb(inflated: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let line = b"(aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa) Tj T*\n";
    let chunk = line.repeat(1 << 14);
    let mut written = 0;
    encoder
        .write_all(b"BT /F1 12 Tf 72 720 Td 14 TL\n")
        .expect("deflate");
    while written < inflated {
        encoder.write_all(&chunk).expect("deflate");
        written += chunk.len();
    }
    encoder.write_all(b"ET").expect("deflate");
    let compressed = encoder.finish().expect("deflate");
    let mut stream = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        compressed.len()
    )
    .into_bytes();
    stream.extend_from_slice(&compressed);
    stream.extend_from_slice(b"\nendstream");
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
           /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        stream,
    ];
    pdf_of(&objects, "")
}

/// A `.docx` with `paragraphs`, then a table of `rows`, then a closing paragraph.
pub fn docx_with_table(paragraphs: &[&str], rows: &[&[&str]], closing: &str) -> Vec<u8> {
    fn paragraph(text: &str) -> String {
        format!(r#"<w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
    }
    let mut body = String::new();
    for text in paragraphs {
        body.push_str(&paragraph(text));
    }
    body.push_str("<w:tbl>");
    for row in rows {
        body.push_str("<w:tr>");
        for cell in *row {
            body.push_str(&format!("<w:tc>{}</w:tc>", paragraph(cell)));
        }
        body.push_str("</w:tr>");
    }
    body.push_str("</w:tbl>");
    body.push_str(&paragraph(closing));
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    zip_of(&[
        ("[Content_Types].xml", content_types(WORD_MAIN).as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ])
}

/// A Word 97 `.doc` holding `text` (one paragraph per line): a FIB, a one-piece table of
/// 8-bit text, and the table stream.
pub fn doc_with_text(text: &str) -> Vec<u8> {
    const TEXT_AT: usize = 0x800;
    let mut chars: Vec<u8> = text
        .replace('\n', "\r")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    chars.push(b'\r');
    let mut word = vec![0u8; TEXT_AT];
    word[0..2].copy_from_slice(&0xA5ECu16.to_le_bytes());
    word[2..4].copy_from_slice(&0x00C1u16.to_le_bytes());
    // fWhichTblStm: the table stream is 1Table.
    word[0x0A..0x0C].copy_from_slice(&0x0200u16.to_le_bytes());
    word[0x4C..0x50].copy_from_slice(&(chars.len() as u32).to_le_bytes());
    let clx_len: u32 = 1 + 4 + 16;
    word[0x01A2..0x01A6].copy_from_slice(&0u32.to_le_bytes());
    word[0x01A6..0x01AA].copy_from_slice(&clx_len.to_le_bytes());
    word.extend_from_slice(&chars);
    let mut table = vec![0x02];
    table.extend_from_slice(&16u32.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&(chars.len() as u32).to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    // fCompressed: 8-bit characters at fc / 2.
    table.extend_from_slice(&(((TEXT_AT as u32) * 2) | 0x4000_0000).to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("create cfb");
    for (name, data) in [("/WordDocument", &word), ("/1Table", &table)] {
        let mut stream = file.create_stream(name).expect("create stream");
        stream.write_all(data).expect("write stream");
    }
    file.flush().expect("flush cfb");
    file.into_inner().into_inner()
}

/// Rewrites the fields of the entry `name` in a ZIP's local header and central directory
/// (`crc`, and the inflated size it declares), as a hostile archiver would.
fn patch_zip_entry(zip: &mut [u8], name: &str, crc: Option<u32>, inflated: Option<u32>) {
    let le16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let mut at = 0;
    while at + 46 <= zip.len() {
        let (header, name_at, crc_at, size_at) = match &zip[at..at + 4] {
            b"PK\x03\x04" => (true, at + 30, at + 14, at + 22),
            b"PK\x01\x02" => (false, at + 46, at + 16, at + 24),
            _ => {
                at += 1;
                continue;
            }
        };
        let len = le16(zip, if header { at + 26 } else { at + 28 });
        if zip.get(name_at..name_at + len) == Some(name.as_bytes()) {
            if let Some(crc) = crc {
                zip[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
            }
            if let Some(size) = inflated {
                zip[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
            }
        }
        at += 4;
    }
}

/// A Word document whose `word/document.xml` declares `declared` bytes but inflates to
/// `inflated`: a bomb that lies about its size in both headers.
pub fn docx_lying_about_its_size(declared: u32, inflated: usize) -> Vec<u8> {
    let mut body = b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>".to_vec();
    body.resize(inflated, b' ');
    let ct = content_types(WORD_MAIN);
    let mut zip = zip_of(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", &body),
    ]);
    patch_zip_entry(&mut zip, "word/document.xml", None, Some(declared));
    zip
}

/// A Word document whose `word/document.xml` carries a wrong CRC-32.
pub fn docx_with_bad_crc() -> Vec<u8> {
    let mut zip = docx();
    patch_zip_entry(&mut zip, "word/document.xml", Some(0xDEAD_BEEF), None);
    zip
}

/// A Word document whose `word/document.xml` deflate stream is damaged half-way.
pub fn docx_with_damaged_deflate() -> Vec<u8> {
    let body = "<w:p><w:r><w:t>Jane Doe, analyst</w:t></w:r></w:p>".repeat(400);
    let ct = content_types(WORD_MAIN);
    let mut zip = zip_of(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", WORD_RELS.as_bytes()),
        ("word/document.xml", body.as_bytes()),
    ]);
    let name = b"word/document.xml";
    let header = zip
        .windows(name.len())
        .position(|w| w == name)
        .expect("the entry's local header");
    // Inside the compressed data, a little after its start.
    for b in &mut zip[header + name.len() + 8..header + name.len() + 24] {
        *b = 0xFF;
    }
    zip
}

/// A ZIP's end-of-central-directory record given a comment of `len` bytes ending in `ending`.
pub fn with_zip_comment(mut zip: Vec<u8>, len: u16, ending: &[u8]) -> Vec<u8> {
    let eocd = zip
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("an end record");
    zip.truncate(eocd + 22);
    zip[eocd + 20..eocd + 22].copy_from_slice(&len.to_le_bytes());
    let mut comment = vec![b' '; len as usize - ending.len()];
    comment.extend_from_slice(ending);
    zip.extend_from_slice(&comment);
    zip
}

/// The EICAR anti-virus test file: harmless, and detected by every scanner as if it were not.
pub fn eicar() -> Vec<u8> {
    // Assembled, so that no scanner of this repository's own files trips over it.
    let mut bytes = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$".to_vec();
    bytes.extend_from_slice(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    bytes
}

/// A valid PDF carrying the EICAR test file in a comment after its header.
pub fn pdf_with_eicar() -> Vec<u8> {
    let pdf = text_pdf(&[&["Jane Doe", "Engineer"]]);
    let header_end = pdf.iter().position(|b| *b == b'\n').expect("a header line") + 1;
    let mut bytes = pdf[..header_end].to_vec();
    bytes.push(b'%');
    bytes.extend_from_slice(&eicar());
    bytes.push(b'\n');
    bytes.extend_from_slice(&pdf[header_end..]);
    bytes
}

/// A valid Word document carrying the EICAR test file as an extra part.
pub fn docx_with_eicar() -> Vec<u8> {
    let eicar = eicar();
    office_zip(
        WORD_MAIN,
        "word/document.xml",
        &[("word/media/readme.txt", &eicar)],
    )
}

/// An OpenDocument text package of these entries, in order (`mimetype` should come first).
pub fn odt_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_of(entries)
}

/// A minimal OpenDocument text whose one paragraph is `text`.
pub fn odt(text: &str) -> Vec<u8> {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.2"><office:body><office:text><text:h text:outline-level="1">{text}</text:h><text:p>Senior<text:s text:c="2"/>engineer<text:tab/>Acme<text:line-break/>2019 – 2024</text:p><table:table><table:table-row><table:table-cell><text:p>Skill</text:p></table:table-cell><table:table-cell><text:p>Years</text:p></table:table-cell></table:table-row><table:table-row><table:table-cell><text:p>Rust</text:p></table:table-cell><table:table-cell><text:p>6</text:p></table:table-cell></table:table-row></table:table></office:text></office:body></office:document-content>"#
    );
    odt_of(&[
        ("mimetype", b"application/vnd.oasis.opendocument.text"),
        ("content.xml", content.as_bytes()),
        ("META-INF/manifest.xml", b"<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\"/>"),
    ])
}

/// A minimal RTF resume.
pub fn rtf(text: &str) -> Vec<u8> {
    format!(
        "{{\\rtf1\\ansi\\deff0{{\\fonttbl{{\\f0 Arial;}}}}{{\\info{{\\author Someone}}}}\\f0\\fs24 {text}\\par Caf\\'e9 \\u8364?uro\\tab Rust\\par}}"
    )
    .into_bytes()
}
