//! A streaming `multipart/form-data` reader with hard limits.
//!
//! Written here rather than taken from a crate because the limits are the point: a part's
//! header block is at most [`MultipartLimits::max_header_bytes`], a request holds at most
//! [`MultipartLimits::max_parts`] parts, the preamble and any part that is not the file are
//! bounded too, and the whole body is counted against a size limit. A hostile body can
//! therefore never make the reader hold more than a few KiB beyond the chunk in hand. (The
//! multipart crate axum uses buffers a part header until its blank line, however long.)
//!
//! File bytes are handed on as slices of the received chunks, not copied.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use memchr::memmem;

/// Bounds on a multipart body's framing.
#[derive(Clone, Debug)]
pub struct MultipartLimits {
    /// Longest header block of one part, in bytes.
    pub max_header_bytes: usize,
    /// Most parts in one body.
    pub max_parts: usize,
    /// Longest preamble (bytes before the first boundary), and longest part that is skipped.
    pub max_skipped_bytes: usize,
    /// Most bytes the whole body may have.
    pub max_body_bytes: u64,
}

impl Default for MultipartLimits {
    fn default() -> Self {
        MultipartLimits {
            max_header_bytes: 8 * 1024,
            max_parts: 16,
            max_skipped_bytes: 64 * 1024,
            max_body_bytes: u64::MAX,
        }
    }
}

/// Why a body could not be read as multipart.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// The framing is wrong (no boundary, bad header, body ended early …).
    #[error("{0}")]
    Malformed(String),
    /// A limit on the framing was passed.
    #[error("{0}")]
    Limit(String),
    /// The whole body is larger than allowed.
    #[error("request body too large")]
    TooLarge,
    /// Reading the body failed (the client went away, a timeout).
    #[error("{0}")]
    Body(BodyError),
}

/// A failure of the underlying body stream.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client was too slow (idle gap or whole-body deadline).
    #[error("the request body was not received in time")]
    TimedOut,
    /// The body exceeded a limit enforced below this reader.
    #[error("request body too large")]
    TooLarge,
    /// The connection broke.
    #[error("the request body could not be read: {0}")]
    Io(String),
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut params = content_type.split(';');
    let essence = params.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::Malformed(
            "the content type is not multipart/form-data".into(),
        ));
    }
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("boundary") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            // RFC 2046: 1 to 70 characters.
            if value.is_empty() || value.len() > 70 || value.bytes().any(|b| b.is_ascii_control()) {
                return Err(MultipartError::Malformed(
                    "invalid multipart boundary".into(),
                ));
            }
            return Ok(value.to_owned());
        }
    }
    Err(MultipartError::Malformed(
        "multipart/form-data without a boundary".into(),
    ))
}

/// What a part's headers say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// The form field name.
    pub name: String,
    /// The file name, when the part is a file.
    pub file_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Just after a boundary: `--` ends the body, CRLF starts a part.
    Delimiter,
    /// Reading a part's header block.
    Headers,
    /// Inside a part's body.
    Body,
    /// After the closing boundary.
    Done,
}

/// Reads the parts of a multipart body one after the other.
pub struct MultipartReader<S> {
    stream: S,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    buf: BytesMut,
    state: State,
    limits: MultipartLimits,
    parts: usize,
    received: u64,
    skipped: usize,
    ended: bool,
}

impl<S> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin + Send,
{
    /// A reader of `stream`, a body framed by `boundary`.
    pub fn new(stream: S, boundary: &str, limits: MultipartLimits) -> Self {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        let finder = memmem::Finder::new(&delimiter).into_owned();
        // The first boundary has no CRLF before it: pretend it had, so one search finds all.
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"\r\n");
        MultipartReader {
            stream,
            delimiter,
            finder,
            buf,
            state: State::Preamble,
            limits,
            parts: 0,
            received: 0,
            skipped: 0,
            ended: false,
        }
    }

    /// The next chunk of the body, counted against the limit; `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        if self.ended {
            return Ok(None);
        }
        match self.stream.next().await {
            None => {
                self.ended = true;
                Ok(None)
            }
            Some(Err(BodyError::TooLarge)) => Err(MultipartError::TooLarge),
            Some(Err(e)) => Err(MultipartError::Body(e)),
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.limits.max_body_bytes {
                    return Err(MultipartError::TooLarge);
                }
                Ok(Some(chunk))
            }
        }
    }

    /// Pulls the next chunk of the body into the buffer; `false` at its end.
    async fn fill(&mut self) -> Result<bool, MultipartError> {
        match self.next_chunk().await? {
            None => Ok(false),
            Some(chunk) => {
                if self.buf.is_empty() {
                    // Keep the chunk's own allocation when nobody else holds it.
                    self.buf = chunk
                        .try_into_mut()
                        .unwrap_or_else(|c| BytesMut::from(&c[..]));
                } else {
                    self.buf.extend_from_slice(&chunk);
                }
                Ok(true)
            }
        }
    }

    fn unexpected_end(&self) -> MultipartError {
        MultipartError::Malformed(match self.state {
            State::Preamble => "no multipart boundary found in the body".into(),
            State::Headers => "the body ended inside a part's headers".into(),
            _ => "the body ended before the closing boundary".into(),
        })
    }

    /// How many trailing bytes of the buffer could be the start of a delimiter.
    fn partial_delimiter(&self) -> usize {
        partial_delimiter(&self.delimiter, &self.buf)
    }

    /// Moves to the next part and returns what its headers say; `None` after the last part.
    /// Whatever is left of the current part is skipped (within the skipped-bytes limit).
    pub async fn next_part(&mut self) -> Result<Option<PartInfo>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble | State::Body => {
                    // Discard the preamble, or what is left of the current part.
                    while let Some(chunk) = self.body_chunk().await? {
                        self.skipped += chunk.len();
                        if self.skipped > self.limits.max_skipped_bytes {
                            return Err(MultipartError::Limit(
                                "a part other than the file, or the preamble, is too large".into(),
                            ));
                        }
                    }
                }
                State::Delimiter => {
                    while self.buf.len() < 2 {
                        if !self.fill().await? {
                            return Err(self.unexpected_end());
                        }
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Done;
                        self.buf.clear();
                        return Ok(None);
                    }
                    // Transport padding (spaces, tabs) may follow a boundary before its CRLF.
                    let padding = self
                        .buf
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    if padding == self.buf.len() {
                        if padding > 64 || !self.fill().await? {
                            return Err(MultipartError::Malformed(
                                "a boundary line is not terminated".into(),
                            ));
                        }
                        continue;
                    }
                    while self.buf.len() < padding + 2 {
                        if !self.fill().await? {
                            return Err(self.unexpected_end());
                        }
                    }
                    if &self.buf[padding..padding + 2] != b"\r\n" {
                        return Err(MultipartError::Malformed(
                            "a boundary is followed by neither CRLF nor --".into(),
                        ));
                    }
                    let _ = self.buf.split_to(padding + 2);
                    self.parts += 1;
                    if self.parts > self.limits.max_parts {
                        return Err(MultipartError::Limit(format!(
                            "more than {} parts",
                            self.limits.max_parts
                        )));
                    }
                    self.state = State::Headers;
                }
                State::Headers => {
                    let info = self.read_headers().await?;
                    self.state = State::Body;
                    self.skipped = 0;
                    return Ok(Some(info));
                }
            }
        }
    }

    async fn read_headers(&mut self) -> Result<PartInfo, MultipartError> {
        let end = loop {
            // An empty header block is just the blank line.
            if self.buf.starts_with(b"\r\n") {
                break 0;
            }
            if let Some(i) = memmem::find(&self.buf, b"\r\n\r\n") {
                if i + 2 > self.limits.max_header_bytes {
                    return Err(self.header_limit());
                }
                break i + 2;
            }
            if self.buf.len() > self.limits.max_header_bytes {
                return Err(self.header_limit());
            }
            if !self.fill().await? {
                return Err(self.unexpected_end());
            }
        };
        let block = self.buf.split_to(end);
        let _ = self.buf.split_to(2);
        parse_headers(&block)
    }

    fn header_limit(&self) -> MultipartError {
        MultipartError::Limit(format!(
            "a part's headers are longer than {} bytes",
            self.limits.max_header_bytes
        ))
    }

    /// The next piece of the current part's body; `None` at its end. A chunk of the request
    /// body that holds no (start of a) delimiter is handed on as it came, not copied.
    pub async fn body_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        if !matches!(self.state, State::Body | State::Preamble) {
            return Ok(None);
        }
        loop {
            if self.buf.is_empty() {
                let Some(chunk) = self.next_chunk().await? else {
                    return Err(self.unexpected_end());
                };
                if chunk.is_empty() {
                    continue;
                }
                if self.finder.find(&chunk).is_none()
                    && partial_delimiter(&self.delimiter, &chunk) == 0
                {
                    return Ok(Some(chunk));
                }
                self.buf.extend_from_slice(&chunk);
            }
            if let Some(i) = self.finder.find(&self.buf) {
                let data = self.buf.split_to(i).freeze();
                let _ = self.buf.split_to(self.delimiter.len());
                self.state = State::Delimiter;
                return Ok((!data.is_empty()).then_some(data));
            }
            let hold = self.partial_delimiter();
            if self.buf.len() > hold {
                let data = self.buf.split_to(self.buf.len() - hold).freeze();
                return Ok(Some(data));
            }
            if !self.fill().await? {
                return Err(self.unexpected_end());
            }
        }
    }

    /// Reads and discards the rest of the body, stopping at the first error; used after a
    /// refusal so that a client still sending reads the answer rather than a broken pipe.
    pub async fn drain(&mut self) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.buf.clear();
        while let Some(Ok(chunk)) = self.stream.next().await {
            self.received += chunk.len() as u64;
            if self.received > self.limits.max_body_bytes {
                break;
            }
        }
    }
}

/// How many trailing bytes of `bytes` could be the start of `delimiter`.
fn partial_delimiter(delimiter: &[u8], bytes: &[u8]) -> usize {
    let start = bytes.len().saturating_sub(delimiter.len() - 1);
    (start..bytes.len())
        .find(|&i| delimiter.starts_with(&bytes[i..]))
        .map_or(0, |i| bytes.len() - i)
}

/// Parses a part's header block (lines ending in CRLF).
fn parse_headers(block: &[u8]) -> Result<PartInfo, MultipartError> {
    let malformed = |why: &str| MultipartError::Malformed(why.to_owned());
    let mut disposition = None;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Err(malformed("a part header holds a control character"));
        }
        let line =
            std::str::from_utf8(line).map_err(|_| malformed("a part header is not UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a part header has no colon"))?;
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim().to_owned());
        }
    }
    let disposition =
        disposition.ok_or_else(|| malformed("a part has no Content-Disposition header"))?;
    parse_disposition(&disposition)
}

/// `form-data; name="file"; filename="cv.pdf"` (and `filename*=UTF-8''…`).
fn parse_disposition(value: &str) -> Result<PartInfo, MultipartError> {
    let malformed = |why: &str| MultipartError::Malformed(why.to_owned());
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed("a part is not form-data"));
    }
    let mut name = None;
    let mut file_name = None;
    let mut file_name_ext = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| malformed("a Content-Disposition parameter has no value"))?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    other => out.push(other),
                }
            }
            let end = end.ok_or_else(|| malformed("an unterminated quoted string"))?;
            (out, &quoted[end..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "name" => name = Some(value),
            "filename" => file_name = Some(value),
            "filename*" => file_name_ext = decode_ext_value(&value),
            _ => {}
        }
        rest = remaining;
    }
    Ok(PartInfo {
        name: name.ok_or_else(|| malformed("a part has no name"))?,
        file_name: file_name_ext.or(file_name),
    })
}

/// RFC 8187 `UTF-8''percent%20encoded`.
fn decode_ext_value(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let encoded = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        chunks: Vec<&[u8]>,
        limits: MultipartLimits,
    ) -> MultipartReader<impl Stream<Item = Result<Bytes, BodyError>> + Unpin + Send> {
        let chunks: Vec<Result<Bytes, BodyError>> = chunks
            .into_iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        MultipartReader::new(futures_util::stream::iter(chunks), "b", limits)
    }

    async fn read_all(
        r: &mut MultipartReader<impl Stream<Item = Result<Bytes, BodyError>> + Unpin + Send>,
    ) -> Result<Vec<(PartInfo, Vec<u8>)>, MultipartError> {
        let mut out = Vec::new();
        while let Some(info) = r.next_part().await? {
            let mut data = Vec::new();
            while let Some(chunk) = r.body_chunk().await? {
                data.extend_from_slice(&chunk);
            }
            out.push((info, data));
        }
        Ok(out)
    }

    const BODY: &[u8] = b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cv.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 \r\n--not the boundary\r\n--b--\r\nepilogue";

    #[tokio::test]
    async fn parts_are_read_whole_however_the_body_is_cut() {
        for size in [1, 2, 3, 5, 7, 64, BODY.len()] {
            let mut r = reader(BODY.chunks(size).collect(), MultipartLimits::default());
            let parts = read_all(&mut r).await.unwrap();
            assert_eq!(parts.len(), 2, "chunk size {size}");
            assert_eq!(parts[0].0.name, "note");
            assert_eq!(parts[0].1, b"hi");
            assert_eq!(parts[1].0.file_name.as_deref(), Some("cv.pdf"));
            assert_eq!(parts[1].1, b"%PDF-1.4 \r\n--not the boundary");
        }
    }

    #[tokio::test]
    async fn a_body_chunk_without_a_delimiter_is_handed_on_uncopied() {
        let head = Bytes::from_static(
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cv.pdf\"\r\n\r\n%PDF",
        );
        let middle = Bytes::from(vec![b'x'; 64 * 1024]);
        let tail = Bytes::from_static(b"%%EOF\r\n--b--\r\n");
        let stream = futures_util::stream::iter(vec![Ok(head), Ok(middle.clone()), Ok(tail)]);
        let mut r = MultipartReader::new(stream, "b", MultipartLimits::default());
        r.next_part().await.unwrap().unwrap();
        let mut data = Vec::new();
        let mut shared = false;
        while let Some(chunk) = r.body_chunk().await.unwrap() {
            shared |= chunk.as_ptr() == middle.as_ptr() && chunk.len() == middle.len();
            data.extend_from_slice(&chunk);
        }
        assert!(shared, "the middle chunk was copied");
        assert_eq!(data.len(), 4 + 64 * 1024 + 5);
        assert!(r.next_part().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_header_block_without_end_is_cut_off_at_the_limit() {
        let mut body =
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
        body.extend(std::iter::repeat_n(b'a', 100_000));
        let limits = MultipartLimits {
            max_header_bytes: 1024,
            ..MultipartLimits::default()
        };
        let mut r = reader(body.chunks(4096).collect(), limits);
        assert!(matches!(r.next_part().await, Err(MultipartError::Limit(_))));
        // The reader never held much more than the limit plus one chunk.
        assert!(r.buf.len() < 1024 + 4096);
    }

    #[tokio::test]
    async fn too_many_parts_are_refused() {
        let mut body = Vec::new();
        for _ in 0..20 {
            body.extend_from_slice(
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n",
            );
        }
        body.extend_from_slice(b"--b--\r\n");
        let mut r = reader(vec![&body], MultipartLimits::default());
        assert!(matches!(
            read_all(&mut r).await,
            Err(MultipartError::Limit(_))
        ));
    }

    #[tokio::test]
    async fn a_large_skipped_part_is_refused() {
        let mut body = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'y', 200_000));
        body.extend_from_slice(b"\r\n--b--\r\n");
        let mut r = reader(body.chunks(8192).collect(), MultipartLimits::default());
        assert!(r.next_part().await.unwrap().is_some());
        assert!(matches!(r.next_part().await, Err(MultipartError::Limit(_))));
    }

    #[tokio::test]
    async fn malformed_bodies_are_reported() {
        for body in [
            &b"no boundary at all"[..],
            b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated",
            b"--b\r\nContent-Disposition: form-data; name=\"a\0\"\r\n\r\nx\r\n--b--",
            b"--b\r\nX-Other: 1\r\n\r\nx\r\n--b--",
            b"--bX\r\n",
        ] {
            let mut r = reader(vec![body], MultipartLimits::default());
            assert!(
                matches!(read_all(&mut r).await, Err(MultipartError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[tokio::test]
    async fn the_body_size_limit_holds() {
        let limits = MultipartLimits {
            max_body_bytes: 100,
            ..MultipartLimits::default()
        };
        let body = vec![b'x'; 1000];
        let mut r = reader(body.chunks(10).collect(), limits);
        assert!(matches!(r.next_part().await, Err(MultipartError::TooLarge)));
    }

    #[test]
    fn boundaries_and_dispositions_parse() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary("application/json").is_err());
        let info = parse_disposition("form-data; name=\"file\"; filename=\"a\\\"b.pdf\"").unwrap();
        assert_eq!(info.file_name.as_deref(), Some("a\"b.pdf"));
        let info = parse_disposition(
            "form-data; name=file; filename=x.pdf; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        )
        .unwrap();
        assert_eq!(info.name, "file");
        assert_eq!(info.file_name.as_deref(), Some("résumé.pdf"));
    }
}
