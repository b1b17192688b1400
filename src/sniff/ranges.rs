//! A `Read + Seek` over a document that is not in hand: it fetches only the blocks the reader
//! asks for, so the deep checks of a directly uploaded file read its ZIP central directory or
//! its OLE directory from object storage, not the whole file.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};

/// Where the bytes come from: `len` bytes at `offset` (fewer only at the end).
pub trait RangeSource {
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// Size of one fetched block.
pub const BLOCK: usize = 64 * 1024;
/// Blocks kept; the oldest goes first.
const KEPT: usize = 16;

/// Reads a document of known length through its [`RangeSource`], block by block.
pub struct RangeReader<S> {
    source: S,
    len: u64,
    pos: u64,
    blocks: VecDeque<(u64, Vec<u8>)>,
    fetched: u64,
}

impl<S: RangeSource> RangeReader<S> {
    pub fn new(source: S, len: u64) -> Self {
        RangeReader {
            source,
            len,
            pos: 0,
            blocks: VecDeque::new(),
            fetched: 0,
        }
    }

    /// How many bytes were fetched from the source so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The bytes at `offset..offset + len` (clamped to the document).
    pub fn range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(len);
        self.by_ref().take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn block(&mut self, start: u64) -> io::Result<&[u8]> {
        if let Some(i) = self.blocks.iter().position(|(s, _)| *s == start) {
            return Ok(&self.blocks[i].1);
        }
        let want = BLOCK.min(usize::try_from(self.len - start).unwrap_or(BLOCK));
        let bytes = self.source.read_at(start, want)?;
        if bytes.len() != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes at {start}, {want} expected", bytes.len()),
            ));
        }
        self.fetched += bytes.len() as u64;
        if self.blocks.len() == KEPT {
            self.blocks.pop_front();
        }
        self.blocks.push_back((start, bytes));
        Ok(&self.blocks.back().map(|(_, b)| b).expect("just pushed")[..])
    }
}

impl<S: RangeSource> Read for RangeReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let start = self.pos - self.pos % BLOCK as u64;
        let at = (self.pos - start) as usize;
        let block = self.block(start)?;
        let n = buf.len().min(block.len() - at);
        buf[..n].copy_from_slice(&block[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: RangeSource> Seek for RangeReader<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// A document in memory as a [`RangeSource`] (tests, fuzzing).
impl RangeSource for &[u8] {
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        Ok(self[start..(start + len).min(self.len())].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what is fetched, to show what a check reads.
    struct Counted<'a>(&'a [u8], Vec<(u64, usize)>);

    impl RangeSource for Counted<'_> {
        fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            self.1.push((offset, len));
            let mut whole = self.0;
            whole.read_at(offset, len)
        }
    }

    #[test]
    fn reads_and_seeks_like_a_cursor() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = RangeReader::new(&data[..], data.len() as u64);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(reader.range(65_530, 20).unwrap(), data[65_530..65_550]);
        assert_eq!(reader.range(299_990, 50).unwrap(), data[299_990..]);
        reader.seek(SeekFrom::End(-3)).unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, data[data.len() - 3..]);
        assert!(reader.seek(SeekFrom::Current(-1_000_000)).is_err());
        assert!(reader.range(400_000, 10).unwrap().is_empty());
    }

    #[test]
    fn fetches_only_the_blocks_it_reads() {
        let data = vec![7u8; 10 * BLOCK];
        let mut reader = RangeReader::new(Counted(&data, Vec::new()), data.len() as u64);
        reader.range(0, 100).unwrap();
        reader.range(10, 100).unwrap();
        reader.range(data.len() as u64 - 22, 22).unwrap();
        assert_eq!(reader.fetched(), 2 * BLOCK as u64);
        assert_eq!(reader.source.1, vec![(0, BLOCK), (9 * BLOCK as u64, BLOCK)]);
    }

    #[test]
    fn a_source_shorter_than_announced_is_an_error() {
        let data = [1u8; 100];
        let mut reader = RangeReader::new(&data[..], 200);
        let mut all = Vec::new();
        assert!(reader.read_to_end(&mut all).is_err());
    }
}
