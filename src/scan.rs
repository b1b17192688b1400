//! Malware scanning with clamd, ClamAV's daemon, over its `INSTREAM` protocol (TCP or a Unix
//! socket): a [`ScanSession`] is fed each chunk of a file while the bytes stream past (the upload
//! pipeline's `StreamChecks`, on both ways in), and [`ScanSession::finish`] asks for the verdict.
//! Every exchange with clamd is bounded by `STOWAGE_CLAMD_TIMEOUT`; what to do when clamd cannot
//! answer (refuse the upload, or stage it marked unscanned) is the pipeline's decision.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens: `tcp://host:port` or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl ClamdAddr {
    /// Parses `STOWAGE_CLAMD`.
    pub fn parse(raw: &str) -> Result<ClamdAddr, String> {
        if let Some(hostport) = raw.strip_prefix("tcp://") {
            let hostport = hostport.trim_end_matches('/');
            match hostport.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(ClamdAddr::Tcp(hostport.to_owned()))
                }
                _ => Err(format!("'{raw}' is not tcp://host:port")),
            }
        } else if let Some(path) = raw.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            if path.starts_with('/') {
                Ok(ClamdAddr::Unix(PathBuf::from(path)))
            } else {
                Err(format!("'{raw}' is not unix:/absolute/path"))
            }
        } else {
            Err(format!("'{raw}' is neither tcp://host:port nor unix:/path"))
        }
    }
}

impl std::fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddr::Tcp(hostport) => write!(f, "tcp://{hostport}"),
            ClamdAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What clamd said about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature that matched.
    Infected(String),
}

/// Why there is no verdict.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// clamd cannot be reached, or broke off.
    #[error("clamd at {0} is unreachable: {1}")]
    Unavailable(String, String),
    /// clamd did not answer within `STOWAGE_CLAMD_TIMEOUT`.
    #[error("clamd did not answer within {0}")]
    TimedOut(String),
    /// clamd answered with an error (for instance a file above its `StreamMaxLength`).
    #[error("clamd refused the scan: {0}")]
    Refused(String),
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Conn for T {}

/// The scanner of one process: where clamd is, and its engine version, asked at most once a
/// minute. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Scanner(std::sync::Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    addr: ClamdAddr,
    timeout: Duration,
    version: Mutex<Option<(Instant, String)>>,
}

impl std::ops::Deref for Scanner {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The engine and signature version a verdict came from (`ClamAV 1.4.3`, `27400/Tue …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    pub engine: String,
    pub signatures: Option<String>,
}

impl Scanner {
    pub fn new(addr: ClamdAddr, timeout: Duration) -> Scanner {
        Scanner(std::sync::Arc::new(Inner {
            addr,
            timeout,
            version: Mutex::new(None),
        }))
    }

    /// Where clamd is.
    pub fn addr(&self) -> &ClamdAddr {
        &self.addr
    }

    fn timed_out(&self) -> ScanError {
        ScanError::TimedOut(humantime::format_duration(self.timeout).to_string())
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> ScanError {
        ScanError::Unavailable(self.addr.to_string(), e.to_string())
    }

    async fn connect(&self) -> Result<Box<dyn Conn>, ScanError> {
        let connect = async {
            Ok::<Box<dyn Conn>, std::io::Error>(match &self.addr {
                ClamdAddr::Tcp(hostport) => {
                    Box::new(tokio::net::TcpStream::connect(hostport).await?)
                }
                ClamdAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.unavailable(e))
    }

    /// Sends one `z`-command and reads its whole answer.
    async fn command(&self, command: &[u8]) -> Result<String, ScanError> {
        let mut conn = self.connect().await?;
        let exchange = async {
            conn.write_all(command).await?;
            read_reply(&mut conn).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.unavailable(e))
    }

    /// `PING`: whether clamd answers (readiness).
    pub async fn ping(&self) -> Result<(), ScanError> {
        match self.command(b"zPING\0").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::Refused(other.to_owned())),
        }
    }

    /// The engine and signature versions (`VERSION`), cached for a minute.
    pub async fn engine(&self) -> Result<Engine, ScanError> {
        let cached = self
            .version
            .lock()
            .expect("version lock")
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(60))
            .map(|(_, v)| v.clone());
        let version = match cached {
            Some(version) => version,
            None => {
                let version = self.command(b"zVERSION\0").await?;
                *self.version.lock().expect("version lock") =
                    Some((Instant::now(), version.clone()));
                version
            }
        };
        let (engine, signatures) = match version.split_once('/') {
            Some((engine, signatures)) => (engine.to_owned(), Some(signatures.to_owned())),
            None => (version, None),
        };
        Ok(Engine { engine, signatures })
    }

    /// A scan to feed a file to, chunk by chunk.
    pub fn session(&self) -> ScanSession {
        ScanSession {
            scanner: self.clone(),
            conn: None,
            failed: None,
            started: Instant::now(),
        }
    }
}

/// Reads a `z`-command's answer: up to its terminating NUL (or the end of the stream).
async fn read_reply(conn: &mut Box<dyn Conn>) -> std::io::Result<String> {
    let mut reply = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let n = conn.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..n]);
        if reply.last() == Some(&0) || reply.len() > 4096 {
            break;
        }
    }
    while reply.last() == Some(&0) {
        reply.pop();
    }
    Ok(String::from_utf8_lossy(&reply).trim().to_owned())
}

/// What an `INSTREAM` answer means: `stream: OK`, `stream: <signature> FOUND`, or an error.
pub fn parse_verdict(reply: &str) -> Result<Verdict, ScanError> {
    let body = reply.strip_prefix("stream:").unwrap_or(reply).trim();
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(signature) = body.strip_suffix("FOUND") {
        Ok(Verdict::Infected(signature.trim().to_owned()))
    } else {
        Err(ScanError::Refused(body.to_owned()))
    }
}

/// One file being scanned: connected at its first chunk, fed as the bytes arrive.
pub struct ScanSession {
    scanner: Scanner,
    conn: Option<Box<dyn Conn>>,
    /// The first failure; after it nothing more is sent.
    failed: Option<ScanError>,
    started: Instant,
}

/// The largest chunk clamd is sent at once.
const CHUNK: usize = 256 * 1024;

impl ScanSession {
    /// Sends the next bytes of the file. A failure is kept for [`ScanSession::finish`] to
    /// report; the upload itself goes on meanwhile.
    pub async fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if let Err(e) = self.send(bytes).await {
            self.failed = Some(e);
            self.conn = None;
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.conn.is_none() {
            let mut conn = self.scanner.connect().await?;
            self.write(&mut conn, b"zINSTREAM\0").await?;
            self.conn = Some(conn);
        }
        let mut conn = self.conn.take().expect("connected");
        for part in bytes.chunks(CHUNK) {
            let len = u32::try_from(part.len()).expect("a chunk is small");
            self.write(&mut conn, &len.to_be_bytes()).await?;
            self.write(&mut conn, part).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    async fn write(&self, conn: &mut Box<dyn Conn>, bytes: &[u8]) -> Result<(), ScanError> {
        tokio::time::timeout(self.scanner.timeout, conn.write_all(bytes))
            .await
            .map_err(|_| self.scanner.timed_out())?
            // clamd closes the stream when it refuses one (a file above its StreamMaxLength):
            // its answer, if it left one, says why.
            .map_err(|e| self.scanner.unavailable(e))
    }

    /// Ends the stream and waits (at most `STOWAGE_CLAMD_TIMEOUT`) for the verdict, with the
    /// engine that gave it and how long the scan took.
    pub async fn finish(mut self) -> (Result<(Verdict, Engine), ScanError>, Duration) {
        let outcome = self.verdict().await;
        (outcome, self.started.elapsed())
    }

    async fn verdict(&mut self) -> Result<(Verdict, Engine), ScanError> {
        if let Some(failed) = self.failed.take() {
            return Err(failed);
        }
        if self.conn.is_none() {
            // An empty file: nothing was sent yet.
            let mut conn = self.scanner.connect().await?;
            self.write(&mut conn, b"zINSTREAM\0").await?;
            self.conn = Some(conn);
        }
        let mut conn = self.conn.take().expect("connected");
        self.write(&mut conn, &0u32.to_be_bytes()).await?;
        let reply = tokio::time::timeout(self.scanner.timeout, read_reply(&mut conn))
            .await
            .map_err(|_| self.scanner.timed_out())?
            .map_err(|e| self.scanner.unavailable(e))?;
        let verdict = parse_verdict(&reply)?;
        let engine = self.scanner.engine().await?;
        Ok((verdict, engine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            ClamdAddr::parse("tcp://127.0.0.1:3310"),
            Ok(ClamdAddr::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            ClamdAddr::parse("unix:/run/clamav/clamd.ctl"),
            Ok(ClamdAddr::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert!(ClamdAddr::parse("tcp://nohost").is_err());
        assert!(ClamdAddr::parse("unix:relative").is_err());
        assert!(ClamdAddr::parse("127.0.0.1:3310").is_err());
    }

    #[test]
    fn verdicts_parse() {
        assert_eq!(parse_verdict("stream: OK"), Ok(Verdict::Clean));
        assert_eq!(
            parse_verdict("stream: Eicar-Signature FOUND"),
            Ok(Verdict::Infected("Eicar-Signature".into()))
        );
        assert!(matches!(
            parse_verdict("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::Refused(_))
        ));
    }
}
