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
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::repo::RepoError;
use crate::sniff::DocumentKind;
use crate::store::StoreError;
use crate::text::{self, FailureReason, Text, TextFailure, TextSource};

/// The exit code of a child that judged its document unreadable (its stdout holds the
/// [`TextFailure`] as JSON).
const EXIT_DOCUMENT_FAILED: u8 = 3;
/// The exit code of a child whose text (on stdout) was recognised by OCR, not read from the
/// document.
const EXIT_OCR_TEXT: u8 = 4;
/// How much of a child's stderr is kept to explain a crash.
const STDERR_BYTES: u64 = 4096;
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
    let cpu_seconds = policy.timeout.as_secs().saturating_add(2);
    let mut command = tokio::process::Command::new(&policy.extractor);
    command
        .arg("extract")
        .arg("--kind")
        .arg(kind.extension())
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
        // The parser needs nothing from the service's environment (credentials among it).
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Spawn(policy.extractor.display().to_string(), e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let feed = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buffer).await {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) => return Err(e.to_string()),
            };
            // A child that stopped reading (it refused the document, or died) is judged by
            // its exit, not by the broken pipe.
            if stdin.write_all(&buffer[..n]).await.is_err() {
                return Ok(());
            }
        }
    });
    let limit = (text::MAX_TEXT_BYTES + 64 * 1024) as u64;
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(limit);
        let mut stderr = stderr.take(STDERR_BYTES);
        let (read_out, read_err) =
            tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err),);
        read_out.map_err(RunError::Pipe)?;
        read_err.map_err(RunError::Pipe)?;
        let status = child.wait().await.map_err(RunError::Pipe)?;
        Ok::<_, RunError>((status, out, err))
    };
    let started = Instant::now();
    let finished = tokio::time::timeout(policy.timeout, run).await;
    let fed = async {
        match feed.await {
            Ok(Err(e)) => Err(RunError::Input(e)),
            _ => Ok(()),
        }
    };
    let (status, out, err) = match finished {
        Ok(done) => {
            let done = done?;
            fed.await?;
            done
        }
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            tracing::debug!(elapsed = ?started.elapsed(), "text extraction timed out");
            return Ok(Err(timed_out(policy)));
        }
    };
    Ok(judge(policy, status, out, &err))
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

/// What a finished child's exit, stdout and stderr mean.
fn judge(
    policy: &TextPolicy,
    status: std::process::ExitStatus,
    out: Vec<u8>,
    err: &[u8],
) -> Result<Text, TextFailure> {
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
        return Err(out_of_memory());
    }
    let source = match status.code() {
        Some(code) if code == i32::from(EXIT_OCR_TEXT) => TextSource::Ocr,
        _ => TextSource::Document,
    };
    match (status.code(), status.signal()) {
        (Some(code), _) if code == 0 || code == i32::from(EXIT_OCR_TEXT) => {
            match String::from_utf8(out) {
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
        (Some(code), _) if code == i32::from(EXIT_DOCUMENT_FAILED) => serde_json::from_slice(&out)
            .map_or_else(
                |_| {
                    Err(TextFailure::new(
                        FailureReason::Unreadable,
                        "the extractor gave no reason",
                    ))
                },
                Err,
            ),
        (Some(101), _) => {
            tracing::warn!(stderr = %stderr.trim(), "a text parser panicked");
            Err(TextFailure::new(
                FailureReason::Unreadable,
                "the document could not be parsed (the parser failed on it)",
            ))
        }
        // SIGXCPU, or SIGKILL past the hard CPU limit: the time limit, counted in CPU time.
        (_, Some(24 | 9)) => Err(timed_out(policy)),
        (_, Some(6)) if stderr.contains("alloc") => Err(out_of_memory()),
        (code, signal) => {
            tracing::warn!(?code, ?signal, stderr = %stderr.trim(), "a text parser crashed");
            Err(TextFailure::new(
                FailureReason::Unreadable,
                "the document could not be parsed (the parser crashed on it)",
            ))
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

    use rlimit::Resource;

    let started = Instant::now();
    let memory = memory_mb.saturating_mul(1024 * 1024);
    let cpu = cpu_seconds;
    let limits = [
        (Resource::AS, memory, memory),
        (Resource::CPU, cpu, cpu.saturating_add(1)),
        (Resource::CORE, 0, 0),
    ];
    for (resource, soft, hard) in limits {
        if let Err(e) = rlimit::setrlimit(resource, soft, hard) {
            eprintln!("stowage extract: cannot set {resource:?}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("stowage extract: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    // A scanned PDF is read again by OCR: keep its bytes only when OCR may need them.
    let scanned = (kind == DocumentKind::Pdf && ocr.is_some()).then(|| bytes.clone());
    let outcome = match (text::extract(kind, bytes), ocr, scanned) {
        (Err(failure), Some(ocr), Some(pdf)) if failure.reason == FailureReason::NoTextLayer => {
            let deadline = started + Duration::from_secs_f64(seconds.max(0.0));
            crate::ocr::read_pages(&ocr, &pdf, deadline)
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
    };
    let mut stdout = std::io::stdout().lock();
    let (written, code) = match outcome {
        Ok(Text {
            body,
            source: TextSource::Document,
        }) => (stdout.write_all(body.as_bytes()), ExitCode::SUCCESS),
        Ok(Text {
            body,
            source: TextSource::Ocr,
        }) => (
            stdout.write_all(body.as_bytes()),
            ExitCode::from(EXIT_OCR_TEXT),
        ),
        Err(failure) => (
            serde_json::to_writer(&mut stdout, &failure).map_err(std::io::Error::other),
            ExitCode::from(EXIT_DOCUMENT_FAILED),
        ),
    };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("stowage extract: writing stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
