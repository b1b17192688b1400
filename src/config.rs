//! Typed configuration: command-line flags, each also read from its `STOWAGE_*` variable.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::sniff::DocumentKind;

/// Everything the service and the commands need to know about their surroundings.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address the HTTP service listens on.
    #[arg(
        long,
        env = "STOWAGE_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,

    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "STOWAGE_DATABASE_URL",
        default_value = "sqlite://stowage-data/stowage.db",
        global = true
    )]
    pub database_url: String,

    /// Object storage: `fs:DIR` for a local directory, or `s3`.
    #[arg(
        long,
        env = "STOWAGE_STORAGE",
        default_value = "fs:stowage-data/objects",
        global = true
    )]
    pub storage: String,

    /// S3 endpoint URL; unset means AWS.
    #[arg(long, env = "STOWAGE_S3_ENDPOINT", value_parser = endpoint_url, global = true)]
    pub s3_endpoint: Option<String>,

    /// The S3 endpoint as clients reach it: presigned download URLs are made for this host
    /// (e.g. `http://localhost:4566` when Stowage itself reaches `http://localstack:4566`);
    /// unset means the S3 endpoint.
    #[arg(long, env = "STOWAGE_S3_PUBLIC_ENDPOINT", value_parser = endpoint_url, global = true)]
    pub s3_public_endpoint: Option<String>,

    /// S3 region.
    #[arg(
        long,
        env = "STOWAGE_S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub s3_region: String,

    /// Path-style S3 addressing (LocalStack, moto, MinIO).
    #[arg(
        long,
        env = "STOWAGE_S3_FORCE_PATH_STYLE",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub s3_force_path_style: bool,

    /// Longest one S3 call may take in all, retries included; a stalled storage endpoint
    /// fails the request (503) instead of hanging it.
    #[arg(long, env = "STOWAGE_S3_OPERATION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub s3_operation_timeout: Duration,

    /// Longest one attempt of an S3 call may take before it is retried.
    #[arg(long, env = "STOWAGE_S3_ATTEMPT_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub s3_attempt_timeout: Duration,

    /// Bucket (or directory) for staged files.
    #[arg(
        long,
        env = "STOWAGE_STAGING_BUCKET",
        default_value = "stowage-staging",
        global = true
    )]
    pub staging_bucket: String,

    /// Bucket (or directory) for promoted files.
    #[arg(
        long,
        env = "STOWAGE_FILES_BUCKET",
        default_value = "stowage-files",
        global = true
    )]
    pub files_bucket: String,

    /// How long a staged file waits for a webhook (humantime: `90s`, `15m`, `3d`).
    #[arg(long, env = "STOWAGE_UPLOAD_TTL", default_value = "72h", value_parser = humantime::parse_duration, global = true)]
    pub upload_ttl: Duration,

    /// How long a direct upload's URL (`POST /uploads/direct`) accepts the file's bytes.
    #[arg(long, env = "STOWAGE_DIRECT_UPLOAD_WINDOW", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub direct_upload_window: Duration,

    /// Browser origins allowed to call the API (CORS), comma separated, e.g.
    /// `https://ats.example.com`; empty: none.
    #[arg(
        long,
        env = "STOWAGE_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = cors_origin,
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// The address clients reach Stowage on (`https://uploads.example.com`), for the direct
    /// upload URLs Stowage signs itself on the local store; unset: the request's `Host`.
    #[arg(long, env = "STOWAGE_PUBLIC_URL", value_parser = endpoint_url, global = true)]
    pub public_url: Option<String>,

    /// Largest accepted file, in bytes.
    #[arg(
        long,
        env = "STOWAGE_MAX_UPLOAD_BYTES",
        default_value_t = 52_428_800,
        global = true
    )]
    pub max_upload_bytes: u64,

    /// Accepted file extensions, comma separated: any of doc, docx, pdf, txt, rtf, odt.
    #[arg(
        long,
        env = "STOWAGE_ALLOWED_EXTENSIONS",
        default_value = "pdf,doc,docx",
        value_parser = parse_extensions,
        global = true
    )]
    pub allowed_extensions: BTreeSet<DocumentKind>,

    /// Sweep schedule, cron with seconds.
    #[arg(
        long,
        env = "STOWAGE_SWEEP_SCHEDULE",
        default_value = "0 * * * * *",
        global = true
    )]
    pub sweep_schedule: String,

    /// Longest one maintenance pass may run; a pass cut off is recorded as failed and the next
    /// tick starts afresh (every step is safe to interrupt).
    #[arg(long, env = "STOWAGE_SWEEP_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub sweep_timeout: Duration,

    /// How long expired and discarded tombstones, and events with their delivery logs, are kept.
    #[arg(long, env = "STOWAGE_TOMBSTONE_RETENTION", default_value = "30d", value_parser = humantime::parse_duration, global = true)]
    pub tombstone_retention: Duration,

    /// How long the proof of an erasure (its `file.erased` event, which holds nothing
    /// personal) is kept: it outlives the tombstone.
    #[arg(long, env = "STOWAGE_ERASURE_LOG_RETENTION", default_value = "3years", value_parser = humantime::parse_duration, global = true)]
    pub erasure_log_retention: Duration,

    /// Everything one replica opens to PostgreSQL at once: both pools and the key-change
    /// listeners (at least 3). N replicas need N times this below PostgreSQL's
    /// `max_connections`.
    #[arg(long, env = "STOWAGE_DATABASE_MAX_CONNECTIONS", default_value = "10", value_parser = clap::value_parser!(u32).range(3..=1000), global = true)]
    pub database_max_connections: u32,

    /// How long `serve` keeps retrying an unreachable database or storage service at start-up
    /// before it gives up and exits.
    #[arg(long, env = "STOWAGE_STARTUP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub startup_timeout: Duration,

    /// Longest a client may take to send a request's headers (slow-loris protection).
    #[arg(long, env = "STOWAGE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub header_read_timeout: Duration,

    /// How long an upload may go without receiving a byte before the sweeper treats it as
    /// dead, and how old an unreferenced staging object must be before it is deleted.
    #[arg(long, env = "STOWAGE_RECEIVING_GRACE", default_value = "1h", value_parser = humantime::parse_duration, global = true)]
    pub receiving_grace: Duration,

    /// Requests per minute allowed per API key (0: unlimited).
    #[arg(
        long,
        env = "STOWAGE_RATE_LIMIT",
        default_value_t = 6000,
        global = true
    )]
    pub rate_limit: u64,

    /// Uploads in progress allowed per API key at once (0: unlimited).
    #[arg(
        long,
        env = "STOWAGE_MAX_CONCURRENT_UPLOADS",
        default_value_t = 64,
        global = true
    )]
    pub max_concurrent_uploads: usize,

    /// Directory for temporary files of uploads in flight (unnamed: nothing stays after a
    /// crash); default: the system's temporary directory.
    #[arg(long, env = "STOWAGE_SPILL_DIR", global = true)]
    pub spill_dir: Option<PathBuf>,

    /// Most bytes of temporary files held at once by uploads in flight; past it uploads get 503.
    #[arg(
        long,
        env = "STOWAGE_SPILL_LIMIT",
        default_value_t = 2 * 1024 * 1024 * 1024,
        global = true
    )]
    pub spill_limit: u64,

    /// Log format.
    #[arg(long, env = "STOWAGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Bearer token required by `/metrics` and `/ops/storage`; unset leaves them open.
    #[arg(long, env = "STOWAGE_OPS_TOKEN", global = true, hide_env_values = true)]
    pub ops_token: Option<String>,

    /// Longest pause allowed while a client sends a request body (slow clients are cut off).
    #[arg(long, env = "STOWAGE_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub body_idle_timeout: Duration,

    /// Longest a client may take to send a whole request body, however steadily it trickles
    /// (a 50 MB upload must average about 85 KB/s at the default).
    #[arg(long, env = "STOWAGE_BODY_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub body_timeout: Duration,

    /// Allow event endpoints on `http://` and on private, loopback or link-local addresses
    /// (internal networks, tests); otherwise only `https://` to public addresses.
    #[arg(
        long,
        env = "STOWAGE_EVENTS_ALLOW_PRIVATE",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub events_allow_private: bool,

    /// How long an event endpoint has to answer a delivery with a 2xx before the attempt counts
    /// as failed.
    #[arg(long, env = "STOWAGE_EVENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub event_timeout: Duration,

    /// The wait before an event's first retry; each later retry waits twice as long (with jitter).
    #[arg(long, env = "STOWAGE_EVENT_RETRY_BASE", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub event_retry_base: Duration,

    /// Attempts at delivering an event to an endpoint before the delivery is marked failed.
    #[arg(long, env = "STOWAGE_EVENT_MAX_ATTEMPTS", default_value = "12", value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub event_max_attempts: u32,

    /// Deliveries to one endpoint in flight at once (per replica): a slow endpoint delays only
    /// itself.
    #[arg(long, env = "STOWAGE_EVENT_ENDPOINT_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub event_endpoint_concurrency: u32,

    /// Event endpoints one client may register.
    #[arg(
        long,
        env = "STOWAGE_EVENT_ENDPOINTS_PER_CLIENT",
        default_value = "10",
        global = true
    )]
    pub event_endpoints_per_client: usize,

    /// clamd to scan every upload with (`tcp://host:port` or `unix:/path`); unset: no scanning.
    #[arg(long, env = "STOWAGE_CLAMD", value_parser = parse_clamd, global = true)]
    pub clamd: Option<crate::scan::ClamdAddr>,

    /// Longest one exchange with clamd may take (connecting, sending a chunk, the verdict).
    #[arg(long, env = "STOWAGE_CLAMD_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub clamd_timeout: Duration,

    /// Stage files clamd could not scan (unreachable, too slow), marked `"scan": {"status":
    /// "skipped"}`, instead of refusing them with 503.
    #[arg(
        long,
        env = "STOWAGE_CLAMD_FAIL_OPEN",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub clamd_fail_open: bool,

    /// After `POST /event-endpoints/{id}/rotate-secret`, how long deliveries are signed by the
    /// old secret too, so receivers can switch without losing one.
    #[arg(long, env = "STOWAGE_EVENT_SECRET_OVERLAP", default_value = "24h", value_parser = humantime::parse_duration, global = true)]
    pub event_secret_overlap: Duration,

    /// An endpoint failing every attempt for this long is disabled (a metric and a log line
    /// say so); `0s`: never.
    #[arg(long, env = "STOWAGE_EVENT_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration, global = true)]
    pub event_disable_after: Duration,

    /// Erase promoted files this long after their promotion (unset: kept until erased on
    /// request). The sweeper erases them in batches, with `"reason": "retention"` on the event.
    #[arg(long, env = "STOWAGE_FILE_RETENTION", value_parser = parse_retention, global = true)]
    pub file_retention: Option<Duration>,

    /// Server-side encryption S3 applies to every object Stowage writes (single PUT, multipart,
    /// copy): `AES256` or `aws:kms`. Unset: the bucket's default.
    #[arg(long, env = "STOWAGE_S3_SSE", value_parser = parse_sse, global = true)]
    pub s3_sse: Option<SseAlgorithm>,

    /// The KMS key for `STOWAGE_S3_SSE=aws:kms` (unset: the account's default S3 key).
    #[arg(long, env = "STOWAGE_S3_SSE_KMS_KEY_ID", global = true)]
    pub s3_sse_kms_key_id: Option<String>,

    /// Longest one document's text extraction may take before it is stopped and recorded as
    /// failed (`timeout`).
    #[arg(long, env = "STOWAGE_TEXT_TIMEOUT", default_value = "30s", value_parser = parse_text_timeout, global = true)]
    pub text_timeout: Duration,

    /// Most memory (address space) one extraction may use, in MiB; past it the extraction
    /// fails (`too_large`) and the service goes on.
    #[arg(long, env = "STOWAGE_TEXT_MEMORY_MB", default_value = "1024", value_parser = clap::value_parser!(u64).range(64..=65536), global = true)]
    pub text_memory_mb: u64,

    /// Extraction processes at once per replica, upload-time checks and background extraction
    /// together (default: the number of cores, at most 4); an upload that cannot get one within
    /// `STOWAGE_TEXT_TIMEOUT` is answered `503` with `Retry-After`.
    #[arg(long, env = "STOWAGE_TEXT_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub text_concurrency: Option<u32>,

    /// Refuse uploads with fewer characters of text than this (`422`), extracting the text
    /// before the `201`. `0` (the default): no check at upload.
    #[arg(
        long,
        env = "STOWAGE_MIN_TEXT_CHARS",
        default_value = "0",
        global = true
    )]
    pub min_text_chars: u64,

    /// The program run as the extraction processes, `PROGRAM extract --serve …` (unset: this
    /// `stowage` binary itself); a wrapper (a sandbox) ends by running `stowage extract "$@"`.
    #[arg(long, env = "STOWAGE_TEXT_EXTRACTOR", global = true)]
    pub text_extractor: Option<PathBuf>,

    /// Read scanned PDFs (no text layer) by OCR: pages rendered by poppler's `pdftoppm` and
    /// read by Tesseract inside the extraction child, with its limits; the text record says
    /// `"source": "ocr"`. Needs `pdftoppm` and `tesseract` on `PATH` (checked at start).
    #[arg(
        long,
        env = "STOWAGE_OCR",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub ocr: bool,

    /// The languages OCR recognises, as Tesseract names them, `+`-separated (`eng`,
    /// `eng+deu`); each needs its package (`tesseract-ocr-deu`).
    #[arg(long, env = "STOWAGE_OCR_LANGUAGES", default_value = "eng", value_parser = parse_ocr_languages, global = true)]
    pub ocr_languages: String,
}

fn parse_ocr_languages(raw: &str) -> Result<String, String> {
    if crate::ocr::valid_languages(raw) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "'{raw}' is not a Tesseract language list (names such as eng or chi_sim, joined by +)"
        ))
    }
}

fn parse_text_timeout(raw: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if timeout < Duration::from_millis(100) {
        return Err("a text timeout under 100ms would stop every extraction".into());
    }
    Ok(timeout)
}

/// Server-side encryption algorithms S3 offers for objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseAlgorithm {
    /// S3-managed keys (`AES256`).
    Aes256,
    /// AWS KMS keys (`aws:kms`).
    AwsKms,
}

impl SseAlgorithm {
    /// The name S3 uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SseAlgorithm::Aes256 => "AES256",
            SseAlgorithm::AwsKms => "aws:kms",
        }
    }
}

/// Encryption at rest as configured: an algorithm and, for KMS, perhaps a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sse {
    pub algorithm: SseAlgorithm,
    pub kms_key_id: Option<String>,
}

fn parse_sse(raw: &str) -> Result<SseAlgorithm, String> {
    match raw.trim() {
        "AES256" | "aes256" => Ok(SseAlgorithm::Aes256),
        "aws:kms" | "AWS:KMS" => Ok(SseAlgorithm::AwsKms),
        other => Err(format!("'{other}' is not AES256 or aws:kms")),
    }
}

fn parse_retention(raw: &str) -> Result<Duration, String> {
    let retention = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if retention.is_zero() {
        return Err(
            "a retention of zero would erase files as they are promoted; unset it to keep files"
                .into(),
        );
    }
    Ok(retention)
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where objects are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// A local directory holding the two areas.
    Fs(PathBuf),
    /// S3 or an S3-compatible server.
    S3,
}

impl Config {
    /// Parses `--storage`.
    pub fn storage_kind(&self) -> Result<StorageKind, String> {
        if self.storage == "s3" {
            return Ok(StorageKind::S3);
        }
        match self.storage.strip_prefix("fs:") {
            Some(dir) if !dir.is_empty() => Ok(StorageKind::Fs(PathBuf::from(dir))),
            _ => Err(format!(
                "STOWAGE_STORAGE must be 'fs:DIR' or 's3', not '{}'",
                self.storage
            )),
        }
    }

    /// Encryption at rest as configured, checked: a KMS key only with `aws:kms`, and only on S3.
    pub fn sse(&self) -> Result<Option<Sse>, String> {
        match (self.s3_sse, &self.s3_sse_kms_key_id) {
            (None, None) => Ok(None),
            (None, Some(_)) | (Some(SseAlgorithm::Aes256), Some(_)) => {
                Err("STOWAGE_S3_SSE_KMS_KEY_ID needs STOWAGE_S3_SSE=aws:kms".into())
            }
            (Some(algorithm), kms_key_id) => {
                if self.storage != "s3" {
                    return Err(format!(
                        "STOWAGE_S3_SSE applies to the S3 store; STOWAGE_STORAGE is '{}'",
                        self.storage
                    ));
                }
                Ok(Some(Sse {
                    algorithm,
                    kms_key_id: kms_key_id.clone(),
                }))
            }
        }
    }

    /// A configuration with every default, as `stowage serve` would run with no flags and no
    /// `STOWAGE_*` variables: the process environment is not read.
    pub fn defaults() -> Config {
        use clap::{CommandFactory, FromArgMatches, Parser};

        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let command = Only::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.get_matches_from(["stowage"]);
        Only::from_arg_matches(&matches)
            .expect("the defaults parse")
            .config
    }
}

/// An S3 endpoint: an `http://` or `https://` URL with a host, without a trailing slash.
fn endpoint_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
        .ok_or("an S3 endpoint is an http:// or https:// URL, e.g. http://localhost:4566")?;
    if rest.is_empty() || rest.starts_with(['/', ':']) || rest.contains(char::is_whitespace) {
        return Err("the URL has no host".into());
    }
    Ok(raw.to_owned())
}

/// One exact browser origin, `scheme://host[:port]` as browsers send it: no path, query or
/// credentials; `*` and `null` are refused (a wildcard or the opaque origin would let any page
/// call the API with a key it holds).
fn cors_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    // An empty list (`STOWAGE_CORS_ORIGINS=`) names no origin.
    if raw.is_empty() {
        return Ok(String::new());
    }
    if raw == "*" || raw.eq_ignore_ascii_case("null") {
        return Err(format!(
            "'{raw}' is not allowed: name each origin exactly, e.g. https://ats.example.com"
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|_| format!("'{raw}' is not an origin like https://ats.example.com"))?;
    let exact = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !raw.trim_end_matches('/').contains("/./")
        && raw.matches('/').count() <= 3;
    if !exact {
        return Err(format!(
            "'{raw}' is not an origin: scheme://host[:port] only (no path, query or credentials)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn parse_clamd(raw: &str) -> Result<crate::scan::ClamdAddr, String> {
    crate::scan::ClamdAddr::parse(raw)
}

fn parse_extensions(raw: &str) -> Result<BTreeSet<DocumentKind>, String> {
    let kinds: Result<BTreeSet<_>, String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|ext| {
            let ext = ext.trim_start_matches('.');
            DocumentKind::from_extension(ext).ok_or_else(|| {
                format!("'{ext}' is not a type Stowage can check (pdf, doc, docx, txt, rtf, odt)")
            })
        })
        .collect();
    let kinds = kinds?;
    if kinds.is_empty() {
        return Err("at least one extension must be allowed".into());
    }
    Ok(kinds)
}

#[cfg(test)]
mod cors_tests {
    use super::cors_origin;

    #[test]
    fn origins_are_exact() {
        assert_eq!(
            cors_origin("https://ats.example.com").unwrap(),
            "https://ats.example.com"
        );
        assert_eq!(
            cors_origin("https://ats.example.com/").unwrap(),
            "https://ats.example.com"
        );
        assert_eq!(
            cors_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            cors_origin("HTTPS://ATS.example.com:443").unwrap(),
            "https://ats.example.com"
        );
        for bad in [
            "*",
            "null",
            "https://ats.example.com/app",
            "https://ats.example.com?x=1",
            "https://u:p@ats.example.com",
            "ftp://ats.example.com",
            "ats.example.com",
        ] {
            assert!(cors_origin(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, SseAlgorithm};

    #[test]
    fn the_help_names_every_extension_stowage_accepts() {
        use clap::{CommandFactory, Parser};

        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let command = Only::command();
        let help = command
            .get_arguments()
            .find(|arg| arg.get_id() == "allowed_extensions")
            .and_then(|arg| arg.get_help())
            .expect("the option is documented")
            .to_string();
        for kind in crate::sniff::DocumentKind::ALL {
            assert!(
                help.contains(kind.extension()),
                "{kind:?} missing from: {help}"
            );
        }
    }

    #[test]
    fn encryption_at_rest_is_checked_before_anything_is_written() {
        let mut config = Config::defaults();
        assert_eq!(config.sse(), Ok(None));
        config.s3_sse = Some(SseAlgorithm::Aes256);
        assert!(
            config.sse().unwrap_err().contains("S3 store"),
            "not on a directory"
        );
        config.storage = "s3".into();
        assert_eq!(
            config.sse().unwrap().unwrap().algorithm,
            SseAlgorithm::Aes256
        );
        config.s3_sse_kms_key_id = Some("alias/k".into());
        assert!(
            config.sse().unwrap_err().contains("aws:kms"),
            "a key needs aws:kms"
        );
        config.s3_sse = Some(SseAlgorithm::AwsKms);
        assert_eq!(
            config.sse().unwrap().unwrap().kms_key_id.as_deref(),
            Some("alias/k")
        );
        assert_eq!(super::parse_sse("aws:kms"), Ok(SseAlgorithm::AwsKms));
        assert!(super::parse_sse("rot13").is_err());
        assert!(
            super::parse_retention("0s").is_err(),
            "zero would erase on promotion"
        );
    }

    /// Set in the child process the test below starts.
    const CHILD: &str = "STOWAGE_TEST_DEFAULTS_CHILD";

    #[test]
    fn defaults_do_not_read_the_environment() {
        if std::env::var_os(CHILD).is_some() {
            let config = Config::defaults();
            assert_eq!(config.listen, "127.0.0.1:8080");
            assert_eq!(config.database_url, "sqlite://stowage-data/stowage.db");
            assert_eq!(config.upload_ttl, std::time::Duration::from_secs(72 * 3600));
            return;
        }
        // The environment can only be set safely for a new process: run this test again in
        // one, with `STOWAGE_*` variables that must not leak into the defaults.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "config::tests::defaults_do_not_read_the_environment",
                "--exact",
                "--quiet",
            ])
            .env(CHILD, "1")
            .env("STOWAGE_LISTEN", "0.0.0.0:1")
            .env("STOWAGE_DATABASE_URL", "postgres://elsewhere/stowage")
            .env("STOWAGE_UPLOAD_TTL", "1s")
            .status()
            .unwrap();
        assert!(status.success(), "the defaults read STOWAGE_* variables");
    }
}
