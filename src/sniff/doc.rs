//! `.doc`: an OLE compound file holding a `WordDocument` stream (not a workbook, a presentation or
//! an installer package that happens to share the container format).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

use super::{ContentError, OCTET_STREAM};

const MSI_CLSID: &str = "000c1084-0000-0000-c000-000000000046";

/// Inspects a whole `.doc`: a sound OLE header, a `WordDocument` stream whose sector chain has
/// no loop, stays inside the file and matches the size it declares.
pub fn check_doc<R: Read + Seek>(mut reader: R) -> Result<(), ContentError> {
    let header = Header::read(&mut reader)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| invalid(&e.to_string()))?;
    let file = cfb::CompoundFile::open(reader)
        .map_err(|e| ContentError::invalid(format!("the compound file cannot be read ({e})")))?;
    if file.is_stream("/WordDocument") {
        let mut reader = file.into_inner();
        return header.check_word_stream(&mut reader);
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

fn invalid(why: &str) -> ContentError {
    ContentError::invalid(format!("the compound file is damaged ({why})"))
}

const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
const FREE: u32 = 0xFFFF_FFFF;
const HEADER_DIFAT: usize = 109;

/// What the 512-byte OLE header says, checked against the file's length.
struct Header {
    sector: u64,
    /// Sectors in the file after the header.
    sectors: u32,
    fat_sectors: u32,
    first_directory: u32,
    first_mini_fat: u32,
    mini_fat_sectors: u32,
    mini_cutoff: u64,
    first_difat: u32,
    difat_sectors: u32,
    difat: Vec<u32>,
    v3: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    fn read<R: Read + Seek>(reader: &mut R) -> Result<Self, ContentError> {
        let len = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| invalid(&e.to_string()))?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| invalid(&e.to_string()))?;
        let mut b = [0u8; 512];
        reader
            .read_exact(&mut b)
            .map_err(|_| invalid("the header is incomplete"))?;
        let major = u16::from_le_bytes([b[26], b[27]]);
        let shift = u16::from_le_bytes([b[30], b[31]]);
        let sector = match (major, shift) {
            (3, 9) => 512u64,
            (4, 12) => 4096,
            _ => return Err(invalid("unknown version or sector size")),
        };
        let sectors = u32::try_from(len.saturating_sub(sector).div_ceil(sector))
            .map_err(|_| invalid("too large"))?;
        let header = Header {
            sector,
            sectors,
            fat_sectors: u32_at(&b, 44),
            first_directory: u32_at(&b, 48),
            mini_cutoff: u64::from(u32_at(&b, 56)),
            first_mini_fat: u32_at(&b, 60),
            mini_fat_sectors: u32_at(&b, 64),
            first_difat: u32_at(&b, 68),
            difat_sectors: u32_at(&b, 72),
            difat: (0..HEADER_DIFAT).map(|i| u32_at(&b, 76 + 4 * i)).collect(),
            v3: major == 3,
        };
        for (what, claimed) in [
            ("FAT", header.fat_sectors),
            ("DIFAT", header.difat_sectors),
            ("mini FAT", header.mini_fat_sectors),
        ] {
            if claimed > header.sectors {
                return Err(invalid(&format!(
                    "the header claims {claimed} {what} sectors in a file of {} sectors",
                    header.sectors
                )));
            }
        }
        if header.mini_cutoff != 4096 {
            return Err(invalid("the mini stream cutoff is not 4096"));
        }
        Ok(header)
    }

    fn read_sector<R: Read + Seek>(
        &self,
        reader: &mut R,
        id: u32,
    ) -> Result<Vec<u8>, ContentError> {
        if id >= self.sectors {
            return Err(invalid(&format!("sector {id} is past the end of the file")));
        }
        reader
            .seek(SeekFrom::Start((u64::from(id) + 1) * self.sector))
            .map_err(|e| invalid(&e.to_string()))?;
        let mut buf = vec![0; self.sector as usize];
        // The last sector may be short; what is missing reads as zeros.
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(invalid(&e.to_string())),
            }
        }
        Ok(buf)
    }

    /// The FAT, as far as it covers the file's sectors.
    fn fat<R: Read + Seek>(&self, reader: &mut R) -> Result<Vec<u32>, ContentError> {
        let per_sector = (self.sector / 4) as usize;
        let mut ids: Vec<u32> = self
            .difat
            .iter()
            .copied()
            .take(self.fat_sectors as usize)
            .collect();
        let mut next = self.first_difat;
        let mut seen = HashSet::new();
        while ids.len() < self.fat_sectors as usize && next != END_OF_CHAIN && next != FREE {
            if !seen.insert(next) {
                return Err(invalid("the DIFAT chain loops"));
            }
            let sector = self.read_sector(reader, next)?;
            ids.extend((0..per_sector - 1).map(|i| u32_at(&sector, 4 * i)));
            next = u32_at(&sector, 4 * (per_sector - 1));
        }
        ids.truncate(self.fat_sectors as usize);
        let needed = (self.sectors as usize).div_ceil(per_sector);
        let mut fat = Vec::with_capacity(self.sectors as usize);
        for &id in ids.iter().take(needed) {
            let sector = self.read_sector(reader, id)?;
            fat.extend((0..per_sector).map(|i| u32_at(&sector, 4 * i)));
        }
        fat.truncate(self.sectors as usize);
        Ok(fat)
    }

    /// Checks the `WordDocument` stream's chain against its declared size.
    fn check_word_stream<R: Read + Seek>(&self, reader: &mut R) -> Result<(), ContentError> {
        let fat = self.fat(reader)?;
        let directory = chain(&fat, self.first_directory, "directory")?;
        let mut entries = Vec::new();
        for id in directory {
            let sector = self.read_sector(reader, id)?;
            entries.extend(sector.chunks(128).map(<[u8]>::to_vec));
        }
        let word = find_word_document(&entries)?;
        let start = u32_at(word, 116);
        let mut size = u64::from(u32_at(word, 120)) | (u64::from(u32_at(word, 124)) << 32);
        if self.v3 {
            size &= 0xFFFF_FFFF;
        }
        let file_len = (u64::from(self.sectors) + 1) * self.sector;
        if size > file_len {
            return Err(invalid(&format!(
                "the WordDocument stream declares {size} bytes in a file of {file_len}"
            )));
        }
        let (links, unit) = if size < self.mini_cutoff {
            let mini_fat_ids = chain(&fat, self.first_mini_fat, "mini FAT")?;
            let mut mini_fat = Vec::new();
            for id in mini_fat_ids
                .into_iter()
                .take(self.mini_fat_sectors as usize)
            {
                let sector = self.read_sector(reader, id)?;
                mini_fat.extend(sector.chunks(4).map(|c| u32_at(c, 0)));
            }
            (chain(&mini_fat, start, "WordDocument")?, 64)
        } else {
            (chain(&fat, start, "WordDocument")?, self.sector)
        };
        if (links.len() as u64) < size.div_ceil(unit) {
            return Err(invalid(
                "the WordDocument stream's sectors are fewer than its size needs",
            ));
        }
        Ok(())
    }
}

/// The sectors of a chain, in order; a loop or a link outside the table is an error.
fn chain(table: &[u32], start: u32, what: &str) -> Result<Vec<u32>, ContentError> {
    let mut out = Vec::new();
    let mut seen = vec![false; table.len()];
    let mut next = start;
    while next != END_OF_CHAIN {
        let index = next as usize;
        if index >= table.len() {
            return Err(invalid(&format!("the {what} chain leaves the file")));
        }
        if std::mem::replace(&mut seen[index], true) {
            return Err(invalid(&format!("the {what} chain loops")));
        }
        out.push(next);
        next = table[index];
    }
    Ok(out)
}

/// The `WordDocument` stream entry among the root storage's children (a red-black tree walked
/// with a visited set, so a looping tree ends).
fn find_word_document(entries: &[Vec<u8>]) -> Result<&[u8], ContentError> {
    let root = entries.first().ok_or_else(|| invalid("no directory"))?;
    let mut pending = vec![u32_at(root, 76)];
    let mut seen = HashSet::new();
    while let Some(id) = pending.pop() {
        if id == FREE {
            continue;
        }
        let entry = entries
            .get(id as usize)
            .filter(|e| e.len() == 128)
            .ok_or_else(|| invalid("a directory link leaves the directory"))?;
        if !seen.insert(id) {
            return Err(invalid("the directory tree loops"));
        }
        let name_len = (u16::from_le_bytes([entry[64], entry[65]]) as usize).min(64);
        let name: Vec<u16> = entry[..name_len.saturating_sub(2)]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        if entry[66] == 2 && String::from_utf16_lossy(&name) == "WordDocument" {
            return Ok(entry);
        }
        pending.push(u32_at(entry, 68));
        pending.push(u32_at(entry, 72));
    }
    Err(invalid("no WordDocument stream in the root storage"))
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

    #[test]
    fn a_looping_word_stream_is_refused() {
        let err = check_doc(Cursor::new(fixtures::doc_with_word_chain_loop())).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("loops")),
            "{err:?}"
        );
    }

    #[test]
    fn a_word_stream_larger_than_the_file_is_refused() {
        let err = check_doc(Cursor::new(fixtures::doc_with_huge_word_stream())).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("declares")),
            "{err:?}"
        );
    }

    #[test]
    fn a_header_claiming_too_many_fat_sectors_is_refused() {
        let err = check_doc(Cursor::new(fixtures::doc_with_huge_fat_claim())).unwrap_err();
        assert!(
            matches!(err, ContentError::Invalid { ref reason } if reason.contains("FAT sectors")),
            "{err:?}"
        );
    }
}
