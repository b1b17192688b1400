//! `.rtf`: Rich Text Format — text that begins `{\rtf` — with no embedded objects (`\object`,
//! `\objdata`: OLE objects, the way RTF files carry exploits). Read as a stream: only a control
//! word straddling two chunks is carried over.

use super::ContentError;

/// The control words that embed an object.
const EMBEDDING: [&[u8]; 4] = [b"object", b"objdata", b"objemb", b"objlink"];

/// Looks through an RTF stream for embedded objects.
#[derive(Default)]
pub struct RtfStream {
    /// The end of the last chunk, which may hold the start of a control word.
    carry: Vec<u8>,
}

impl RtfStream {
    /// Judges the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ContentError> {
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(chunk);
        let mut at = 0;
        while let Some(found) = memchr::memchr(b'\\', &joined[at..]) {
            let start = at + found + 1;
            let end = joined[start..]
                .iter()
                .position(|b| !b.is_ascii_alphabetic())
                .map(|n| start + n);
            let Some(end) = end else {
                // The word may go on in the next chunk.
                self.carry = joined[at + found..].to_vec();
                return Ok(());
            };
            let word = &joined[start..end];
            if EMBEDDING.contains(&word) {
                return Err(ContentError::invalid("it embeds objects"));
            }
            at = end.max(start);
        }
        Ok(())
    }

    /// Judges the end.
    pub fn finish(self) -> Result<(), ContentError> {
        if EMBEDDING.iter().any(|w| self.carry.get(1..) == Some(*w)) {
            return Err(ContentError::invalid("it embeds objects"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], chunk: usize) -> Result<(), ContentError> {
        let mut stream = RtfStream::default();
        for piece in bytes.chunks(chunk) {
            stream.feed(piece)?;
        }
        stream.finish()
    }

    #[test]
    fn embedded_objects_are_found_however_the_stream_is_cut() {
        let clean = br"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Jane Doe\par Objective: build\par}";
        let embedded = br"{\rtf1\ansi Jane{\object\objemb{\*\objdata 0105000002000000}}\par}";
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(check(clean, chunk), Ok(()), "chunk {chunk}");
            assert!(check(embedded, chunk).is_err(), "chunk {chunk}");
        }
        // A word that only begins like one is fine.
        assert_eq!(check(br"{\rtf1 \objectives text}", 3), Ok(()));
        assert!(check(br"{\rtf1 x\objdata", 5).is_err());
    }
}
