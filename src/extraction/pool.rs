//! Long-lived extraction processes: `stowage extract --serve`, each reading documents one after
//! another, kept between extractions by the replica that started them.
//!
//! A document goes to a process as a request — its kind (one length byte and the extension) and
//! its bytes in chunks (a 4-byte big-endian length before each, a zero length after the last) —
//! and comes back as an answer: a code (0 the document's text, 4 OCR's text, 3 a failure as
//! JSON), an 8-byte big-endian length and the bytes. A process that fails on a document, dies,
//! overruns its time or has read [`DOCUMENTS_PER_PROCESS`] documents is not used again; a fresh
//! one takes its place at the next extraction. The limits are the one-shot child's: the
//! address space once for the process, CPU time per document (the soft limit moved up before
//! each), the wall clock by the parent.

use std::io::{Read, Write};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use crate::policy::TextPolicy;
use crate::sniff::DocumentKind;

use super::RunError;

/// Documents one process reads before it is replaced.
pub const DOCUMENTS_PER_PROCESS: u32 = 100;

/// glibc's allocator in a process that parses one document after another: allocations under
/// 32 MiB come from the heap and up to 32 MiB of freed heap is kept for the next document,
/// instead of each document's buffers being mapped, faulted in and unmapped again (a two-page
/// resume: 315 → 39 page faults and 3.2 → 2.5 ms of CPU; bench/notes.md). A larger heap is
/// given back when freed; the address-space limit bounds it all; other C libraries ignore it.
const MALLOC_TUNABLES: &str = "glibc.malloc.trim_threshold=33554432:\
                               glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=8388608";

/// How much of a dead process's stderr is kept to explain its death.
const STDERR_BYTES: u64 = 4096;

/// The longest chunk of a request.
const CHUNK: usize = 64 * 1024;

/// The replica's idle extraction processes, waiting for their next document.
#[derive(Default)]
pub struct IdleWorkers(std::sync::Mutex<Vec<Worker>>);

impl std::fmt::Debug for IdleWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.0.lock().map_or(0, |w| w.len());
        write!(f, "IdleWorkers({idle})")
    }
}

impl IdleWorkers {
    /// An idle process, if there is one.
    pub(super) fn take(&self) -> Option<Worker> {
        self.0.lock().ok()?.pop()
    }

    /// Keeps a process that answered for the next extraction.
    pub(super) fn put(&self, worker: Worker) {
        if let Ok(mut idle) = self.0.lock() {
            idle.push(worker);
        }
    }
}

/// One extraction process and its pipes.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
    /// Documents it has answered.
    pub(super) served: u32,
}

/// Why an exchange ended without an answer.
pub(super) enum Broken {
    /// The process stopped reading or answering: it died (its exit says why).
    Died,
    /// The document could not be read from its source.
    Input(String),
}

impl Worker {
    /// Starts `PROGRAM extract --serve` with the policy's limits and an empty environment.
    pub(super) fn spawn(policy: &TextPolicy) -> Result<Worker, RunError> {
        let cpu_seconds = policy.timeout.as_secs().saturating_add(2);
        let mut command = tokio::process::Command::new(&policy.extractor);
        command
            .arg("extract")
            .arg("--serve")
            .arg("--text-memory-mb")
            .arg((policy.memory_bytes / (1024 * 1024)).to_string())
            .arg("--cpu-seconds")
            .arg(cpu_seconds.to_string())
            .arg("--seconds")
            .arg(policy.timeout.as_secs_f64().to_string());
        if let Some(ocr) = &policy.ocr {
            command.arg("--ocr").args(ocr.child_args());
        }
        let mut child = command
            // The parsers need nothing from the service's environment (credentials among it).
            .env_clear()
            .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RunError::Spawn(policy.extractor.display().to_string(), e))?;
        Ok(Worker {
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: child.stdout.take().expect("stdout is piped"),
            stderr: child.stderr.take().expect("stderr is piped"),
            child,
            served: 0,
        })
    }

    /// Sends one document and reads its answer: the code and the bytes.
    pub(super) async fn exchange<R>(
        &mut self,
        kind: DocumentKind,
        input: &mut R,
    ) -> Result<(u8, Vec<u8>), Broken>
    where
        R: AsyncRead + Unpin,
    {
        let extension = kind.extension().as_bytes();
        let mut head = vec![extension.len() as u8];
        head.extend_from_slice(extension);
        self.stdin
            .write_all(&head)
            .await
            .map_err(|_| Broken::Died)?;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = input
                .read(&mut buffer)
                .await
                .map_err(|e| Broken::Input(e.to_string()))?;
            self.stdin
                .write_all(&(n as u32).to_be_bytes())
                .await
                .map_err(|_| Broken::Died)?;
            if n == 0 {
                break;
            }
            self.stdin
                .write_all(&buffer[..n])
                .await
                .map_err(|_| Broken::Died)?;
        }
        self.stdin.flush().await.map_err(|_| Broken::Died)?;
        let code = self.stdout.read_u8().await.map_err(|_| Broken::Died)?;
        let len = self.stdout.read_u64().await.map_err(|_| Broken::Died)?;
        let limit = (crate::text::MAX_TEXT_BYTES + 64 * 1024) as u64;
        if len > limit {
            // More than is ever kept: the answer is not read; a failure, so the process is not
            // used again.
            return Ok((
                super::EXIT_DOCUMENT_FAILED,
                serde_json::to_vec(&crate::text::TextFailure::new(
                    crate::text::FailureReason::TooLarge,
                    "the document holds more text than is kept",
                ))
                .expect("a failure serializes"),
            ));
        }
        let mut payload = vec![0u8; len as usize];
        self.stdout
            .read_exact(&mut payload)
            .await
            .map_err(|_| Broken::Died)?;
        self.served += 1;
        Ok((code, payload))
    }

    /// How a process that stopped answering ended: its exit and the start of its stderr.
    pub(super) async fn ended(mut self) -> std::io::Result<(std::process::ExitStatus, Vec<u8>)> {
        drop(self.stdin);
        let mut err = Vec::new();
        let stderr = (&mut self.stderr).take(STDERR_BYTES);
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_all(stderr, &mut err),
        );
        let _ = read.await;
        let status = match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.child.wait(),
        )
        .await
        {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await?
            }
        };
        Ok((status, err))
    }

    /// Stops a process that overran its time.
    pub(super) async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn read_all<R: AsyncRead + Unpin>(mut from: R, into: &mut Vec<u8>) {
    let _ = from.read_to_end(into).await;
}

/// In the process: the next request, or `None` when stdin closed between requests.
pub fn read_request(from: &mut impl Read) -> std::io::Result<Option<(DocumentKind, Vec<u8>)>> {
    let mut len = [0u8; 1];
    if from.read(&mut len)? == 0 {
        return Ok(None);
    }
    let mut extension = vec![0u8; usize::from(len[0])];
    from.read_exact(&mut extension)?;
    let kind = std::str::from_utf8(&extension)
        .ok()
        .and_then(DocumentKind::from_extension)
        .ok_or_else(|| std::io::Error::other("a request for an unknown kind"))?;
    let mut bytes = Vec::new();
    loop {
        let mut len = [0u8; 4];
        from.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Ok(Some((kind, bytes)));
        }
        let start = bytes.len();
        bytes.resize(start + len, 0);
        from.read_exact(&mut bytes[start..])?;
    }
}

/// In the process: one answer.
pub fn write_answer(to: &mut impl Write, code: u8, payload: &[u8]) -> std::io::Result<()> {
    to.write_all(&[code])?;
    to.write_all(&(payload.len() as u64).to_be_bytes())?;
    to.write_all(payload)
}

/// In the process: the CPU seconds it has used (user and system, every thread), from
/// `/proc/self/stat` (in clock ticks, 100 a second on Linux).
pub fn cpu_seconds_used() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3, so utime and stime (fields 14 and 15) are the 12th and 13th there.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks.div_ceil(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_an_answer_read_back_as_written() {
        let mut wire = vec![3u8];
        wire.extend_from_slice(b"pdf");
        for chunk in [&b"%PDF-1.4 "[..], &b"and the rest"[..]] {
            wire.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            wire.extend_from_slice(chunk);
        }
        wire.extend_from_slice(&0u32.to_be_bytes());
        let mut reader = &wire[..];
        let (kind, bytes) = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(kind, DocumentKind::Pdf);
        assert_eq!(bytes, b"%PDF-1.4 and the rest");
        assert!(read_request(&mut reader).unwrap().is_none(), "stdin closed");

        let mut answer = Vec::new();
        write_answer(&mut answer, 4, b"text").unwrap();
        assert_eq!(answer[0], 4);
        assert_eq!(&answer[1..9], &4u64.to_be_bytes());
        assert_eq!(&answer[9..], b"text");
    }

    #[test]
    fn the_process_knows_its_cpu_time() {
        assert!(cpu_seconds_used().is_some());
    }
}
