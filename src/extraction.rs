//! Text extraction as the service runs it: never in its own process.
//!
//! Each document is handed to a child process — `stowage extract --kind K`, the same binary —
//! on its stdin; the child lowers its own limits (address space, CPU time, no core dumps)
//! before it reads a byte, and writes the text to stdout. The parent gives it
//! `STOWAGE_TEXT_TIMEOUT` and kills it after that. A parser that panics, loops, recurses or
//! allocates without bound takes only the child with it, and the failure is recorded with its
//! reason.
//!
//! Promoted files get their text from a job (the `jobs` table, run by the worker of every
//! `serve`); with `STOWAGE_MIN_TEXT_CHARS` an upload's text is extracted before its `201`.

use crate::policy::TextPolicy;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::repo::RepoError;
use crate::sniff::DocumentKind;
use crate::store::StoreError;
use crate::text::{self, FailureReason, Text, TextFailure, TextSource};

mod pool;

pub use pool::IdleWorkers;

/// The exit code of a child that judged its document unreadable (its stdout holds the
/// [`TextFailure`] as JSON).
const EXIT_DOCUMENT_FAILED: u8 = 3;
/// The exit code of a child whose text (on stdout) was recognised by OCR, not read from the
/// document.
const EXIT_OCR_TEXT: u8 = 4;
/// How much of a document is read before it waits for an extraction process: a resume whole,
/// so a process is never held while the first bytes of an object cross the network.
pub const READ_AHEAD: u64 = 256 * 1024;

/// How long an extraction waits for one of the replica's extraction processes.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// An upload's check: at most the text time limit, then `Busy`.
    Bounded,
    /// A background job: until one is free.
    Unbounded,
}

/// Why an extraction could not be run at all (as opposed to a document that has no text):
/// the job is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the extractor could not be started ({0}): {1}")]
    Spawn(String, std::io::Error),
    #[error("reading the document: {0}")]
    Input(String),
    #[error("talking to the extractor: {0}")]
    Pipe(std::io::Error),
    /// Every extraction process of this replica stayed busy for the whole wait.
    #[error("every text extraction process is busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Extracts the text of the document `input` yields, in a child process under `policy`.
pub async fn extract_isolated<R>(
    policy: &TextPolicy,
    kind: DocumentKind,
    mut input: R,
    wait: Wait,
) -> Result<Result<Text, TextFailure>, RunError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    // The document's first bytes (most documents whole) are in hand before a process is taken:
    // the processes parse, they do not wait on storage.
    let mut head = Vec::new();
    (&mut input)
        .take(READ_AHEAD)
        .read_to_end(&mut head)
        .await
        .map_err(|e| RunError::Input(e.to_string()))?;
    let mut input = std::io::Cursor::new(head).chain(input);
    // One shared limit of children per replica: an upload waits at most its time limit for a
    // turn, a background job as long as it takes.
    let wait = match wait {
        Wait::Bounded => policy.timeout,
        Wait::Unbounded => Duration::MAX,
    };
    let _permit = match tokio::time::timeout(wait, policy.processes.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(RunError::Busy),
    };
    let mut worker = match policy.idle.take() {
        Some(worker) => worker,
        None => pool::Worker::spawn(policy)?,
    };
    let started = Instant::now();
    let exchanged = tokio::time::timeout(policy.timeout, worker.exchange(kind, &mut input)).await;
    match exchanged {
        Ok(Ok((code, payload))) => {
            let outcome = judge_answer(code, payload);
            // A process that failed on a document is not trusted with the next one; one
            // that has read its share is replaced, giving back what its parsers kept.
            if outcome.is_ok() && worker.served < pool::DOCUMENTS_PER_PROCESS {
                policy.idle.put(worker);
            }
            Ok(outcome)
        }
        Ok(Err(pool::Broken::Input(e))) => Err(RunError::Input(e)),
        Ok(Err(pool::Broken::Died)) => {
            let (status, err) = worker.ended().await.map_err(RunError::Pipe)?;
            Ok(Err(judge_death(policy, status, &err)))
        }
        Err(_) => {
            worker.kill().await;
            tracing::debug!(elapsed = ?started.elapsed(), "text extraction timed out");
            Ok(Err(timed_out(policy)))
        }
    }
}

/// What an answer's code and bytes mean: 0 the document's text, 4 OCR's, 3 a failure.
fn judge_answer(code: u8, payload: Vec<u8>) -> Result<Text, TextFailure> {
    match code {
        0 | EXIT_OCR_TEXT => {
            let source = if code == 0 {
                TextSource::Document
            } else {
                TextSource::Ocr
            };
            match String::from_utf8(payload) {
                Ok(body) if body.len() <= text::MAX_TEXT_BYTES => Ok(Text { body, source }),
                Ok(_) => Err(TextFailure::new(
                    FailureReason::TooLarge,
                    "the document holds more text than is kept",
                )),
                Err(_) => Err(TextFailure::new(
                    FailureReason::Unreadable,
                    "the extractor's output was not UTF-8",
                )),
            }
        }
        EXIT_DOCUMENT_FAILED => serde_json::from_slice(&payload).map_or_else(
            |_| {
                Err(TextFailure::new(
                    FailureReason::Unreadable,
                    "the extractor gave no reason",
                ))
            },
            Err,
        ),
        _ => Err(TextFailure::new(
            FailureReason::Unreadable,
            "the extractor answered what it cannot mean",
        )),
    }
}

/// The failure of an extraction stopped at its time limit.
fn timed_out(policy: &TextPolicy) -> TextFailure {
    TextFailure::new(
        FailureReason::Timeout,
        format!(
            "extraction took longer than {}",
            humantime::format_duration(policy.timeout)
        ),
    )
}

/// What the death of an extraction process in the middle of a document means, from its exit
/// and its stderr.
fn judge_death(policy: &TextPolicy, status: std::process::ExitStatus, err: &[u8]) -> TextFailure {
    use std::os::unix::process::ExitStatusExt;

    let stderr = String::from_utf8_lossy(err);
    let out_of_memory = || {
        TextFailure::new(
            FailureReason::TooLarge,
            format!(
                "extraction needed more than {} MiB of memory",
                policy.memory_bytes / (1024 * 1024)
            ),
        )
    };
    if stderr.contains("memory allocation") || stderr.contains("capacity overflow") {
        return out_of_memory();
    }
    match (status.code(), status.signal()) {
        (Some(101), _) => {
            tracing::warn!(stderr = %stderr.trim(), "a text parser panicked");
            TextFailure::new(
                FailureReason::Unreadable,
                "the document could not be parsed (the parser failed on it)",
            )
        }
        // SIGXCPU, or SIGKILL past the hard CPU limit: the time limit, counted in CPU time.
        (_, Some(24 | 9)) => timed_out(policy),
        (_, Some(6)) if stderr.contains("alloc") => out_of_memory(),
        (Some(0), _) => TextFailure::new(
            FailureReason::Unreadable,
            "the extractor stopped without answering",
        ),
        (code, signal) => {
            tracing::warn!(?code, ?signal, stderr = %stderr.trim(), "a text parser crashed");
            TextFailure::new(
                FailureReason::Unreadable,
                "the document could not be parsed (the parser crashed on it)",
            )
        }
    }
}

/// The child: `stowage extract --kind K`. Lowers its own limits, reads the document from
/// stdin, writes its text to stdout (exit 0; exit 4 when OCR read it) or the failure as JSON
/// (exit 3). `seconds` is its wall-clock time: OCR's programs are stopped past it.
pub fn child_main(
    kind: DocumentKind,
    memory_mb: u64,
    cpu_seconds: u64,
    seconds: f64,
    ocr: Option<crate::ocr::Ocr>,
) -> ExitCode {
    use std::io::{Read, Write};

    let started = Instant::now();
    if let Err(e) = lower_limits(memory_mb, cpu_seconds, cpu_seconds.saturating_add(1)) {
        eprintln!("stowage extract: {e}");
        return ExitCode::FAILURE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("stowage extract: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let (code, payload) = answer(outcome_of(kind, bytes, ocr.as_ref(), started, seconds));
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&payload).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::from(code),
        Err(e) => {
            eprintln!("stowage extract: writing stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pooled child: `stowage extract --serve`. Lowers its limits once, then reads documents
/// one after another from stdin and answers each on stdout (see [`pool`] for the framing),
/// until stdin closes. Each document gets `cpu_seconds` of CPU time of its own (the soft limit
/// is moved up before each) and `seconds` of wall-clock time for OCR.
pub fn child_serve(
    memory_mb: u64,
    cpu_seconds: u64,
    seconds: f64,
    ocr: Option<crate::ocr::Ocr>,
) -> ExitCode {
    use std::io::Write;

    let hard = cpu_seconds.saturating_mul(u64::from(pool::DOCUMENTS_PER_PROCESS) + 1);
    if let Err(e) = lower_limits(memory_mb, cpu_seconds, hard) {
        eprintln!("stowage extract: {e}");
        return ExitCode::FAILURE;
    }
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for served in 0u64.. {
        let (kind, bytes) = match pool::read_request(&mut stdin) {
            Ok(Some(request)) => request,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stowage extract: reading a request: {e}");
                return ExitCode::FAILURE;
            }
        };
        let started = Instant::now();
        // This document's CPU time: what the process has used so far, and its own budget.
        let used = pool::cpu_seconds_used().unwrap_or(served.saturating_mul(cpu_seconds));
        let soft = used.saturating_add(cpu_seconds).min(hard);
        if let Err(e) = rlimit::setrlimit(rlimit::Resource::CPU, soft, hard) {
            eprintln!("stowage extract: cannot set the CPU limit: {e}");
            return ExitCode::FAILURE;
        }
        let (code, payload) = answer(outcome_of(kind, bytes, ocr.as_ref(), started, seconds));
        if let Err(e) =
            pool::write_answer(&mut stdout, code, &payload).and_then(|()| stdout.flush())
        {
            eprintln!("stowage extract: writing an answer: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Address space, CPU time (soft and hard) and no core dumps, before a byte is read.
fn lower_limits(memory_mb: u64, cpu_soft: u64, cpu_hard: u64) -> Result<(), String> {
    use rlimit::Resource;

    let memory = memory_mb.saturating_mul(1024 * 1024);
    let limits = [
        (Resource::AS, memory, memory),
        (Resource::CPU, cpu_soft, cpu_hard),
        (Resource::CORE, 0, 0),
    ];
    for (resource, soft, hard) in limits {
        rlimit::setrlimit(resource, soft, hard)
            .map_err(|e| format!("cannot set {resource:?}: {e}"))?;
    }
    Ok(())
}

/// A document's text, or why it has none: read by its kind's extractor, and by OCR when it is
/// a PDF without a text layer and OCR is on.
fn outcome_of(
    kind: DocumentKind,
    bytes: Vec<u8>,
    ocr: Option<&crate::ocr::Ocr>,
    started: Instant,
    seconds: f64,
) -> Result<Text, TextFailure> {
    // A scanned PDF is read again by OCR: keep its bytes only when OCR may need them.
    let scanned = (kind == DocumentKind::Pdf && ocr.is_some()).then(|| bytes.clone());
    match (text::extract(kind, bytes), ocr, scanned) {
        (Err(failure), Some(ocr), Some(pdf)) if failure.reason == FailureReason::NoTextLayer => {
            let deadline = started + Duration::from_secs_f64(seconds.max(0.0));
            crate::ocr::read_pages(ocr, &pdf, deadline)
                .map(|raw| text::normalize(&raw))
                .map(|body| Text {
                    body,
                    source: TextSource::Ocr,
                })
        }
        (outcome, _, _) => outcome.map(|body| Text {
            body,
            source: TextSource::Document,
        }),
    }
}

/// An outcome as the child answers it: its code (0 text, 4 OCR's text, 3 a failure as JSON)
/// and its bytes.
fn answer(outcome: Result<Text, TextFailure>) -> (u8, Vec<u8>) {
    match outcome {
        Ok(Text {
            body,
            source: TextSource::Document,
        }) => (0, body.into_bytes()),
        Ok(Text {
            body,
            source: TextSource::Ocr,
        }) => (EXIT_OCR_TEXT, body.into_bytes()),
        Err(failure) => (
            EXIT_DOCUMENT_FAILED,
            serde_json::to_vec(&failure).expect("a failure serializes"),
        ),
    }
}
