//! The policies a configuration sets, by the part of Stowage that follows each: uploads, HTTP
//! clients, the sweeper, event delivery, text extraction. A leaf: plain values read from
//! [`Config`], held by the application and handed to whoever follows them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::sniff::{DocumentKind, DocxLimits};

/// What an upload must be to be staged, and how long it stays staged.
#[derive(Clone, Debug)]
pub struct UploadPolicy {
    /// How long a staged file can be bound before it expires.
    pub ttl: Duration,
    pub max_bytes: u64,
    pub allowed_extensions: BTreeSet<DocumentKind>,
    pub docx_limits: DocxLimits,
    /// How often an upload in progress records that it is alive: well inside the sweeper's
    /// grace period, so a slow but live upload is never taken for a dead one.
    pub heartbeat: Duration,
    /// How long a direct upload's URL accepts the bytes.
    pub direct_window: Duration,
    /// `STOWAGE_PUBLIC_URL`.
    pub public_url: Option<String>,
}

/// Limits on HTTP clients: slow bodies and headers, request rates, operator access.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub ops_token: Option<String>,
    /// `STOWAGE_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    pub body_idle_timeout: Duration,
    pub body_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Requests per key per minute (0: unlimited).
    pub rate_limit: u64,
    /// Uploads in progress per key (0: unlimited).
    pub max_concurrent_uploads: usize,
}

/// What the sweeper waits for before it cleans up, and how long a pass may take.
#[derive(Clone, Debug)]
pub struct SweepPolicy {
    /// A `receiving` upload silent this long is dead; an object with no row this old is an orphan.
    pub receiving_grace: Duration,
    /// How long tombstones (and refused webhooks, and sweep records) are kept.
    pub tombstone_retention: Duration,
    /// How long `file.erased` events are kept.
    pub erasure_log_retention: Duration,
    /// Longest one pass may run before it is cut off and recorded as failed.
    pub timeout: Duration,
    /// Promoted files older than this are erased (`None`: kept).
    pub file_retention: Option<Duration>,
    /// How long a write already under way when its file was erased may still land (the store's
    /// operation timeout): the sweeper deletes such a file's objects again after it.
    pub erasure_settle: Duration,
    /// Batches a pass expires at once: each holds a database connection while it marks its
    /// rows, so at most a third of the replica's connections (1 to 4).
    pub expiry_workers: usize,
    /// Expired files one worker claims, and whose keys go in one DeleteObjects call, at a time
    /// ([`crate::sweeper::EXPIRY_BATCH`]; smaller only in tests).
    pub expiry_batch: i64,
}

/// Where events may be delivered.
#[derive(Clone, Debug)]
pub struct EventPolicy {
    /// Endpoints on `http://` and private addresses are allowed (internal networks, tests).
    pub allow_private: bool,
    /// How long an endpoint has to answer.
    pub timeout: Duration,
    /// The wait before the first retry; doubled for each later one.
    pub retry_base: Duration,
    /// Attempts before a delivery fails.
    pub max_attempts: u32,
    /// Deliveries to one endpoint in flight at once.
    pub endpoint_concurrency: u32,
    /// Endpoints one client may register.
    pub endpoints_per_client: usize,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap: Duration,
    /// An endpoint failing every attempt this long is disabled; `None`: never.
    pub disable_after: Option<Duration>,
}

/// Every policy, by role.
#[derive(Clone, Debug)]
pub struct Policies {
    pub uploads: UploadPolicy,
    pub http: HttpLimits,
    pub sweep: SweepPolicy,
    pub events: EventPolicy,
    pub text: TextPolicy,
    pub scan: ScanPolicy,
}

/// Malware scanning: where clamd is, how long it may take, and what happens without it.
#[derive(Clone, Debug)]
pub struct ScanPolicy {
    /// `STOWAGE_CLAMD`; `None`: files are not scanned.
    pub clamd: Option<crate::scan::ClamdAddr>,
    pub timeout: Duration,
    /// Stage an unscanned file (marked `skipped`) rather than refuse it.
    pub fail_open: bool,
}

impl Policies {
    /// The policies a configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        Policies {
            uploads: UploadPolicy {
                ttl: config.upload_ttl,
                max_bytes: config.max_upload_bytes,
                allowed_extensions: config.allowed_extensions.clone(),
                docx_limits: DocxLimits::default(),
                heartbeat: (config.receiving_grace / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(60)),
                direct_window: config.direct_upload_window,
                public_url: config.public_url.clone(),
            },
            http: HttpLimits {
                ops_token: config.ops_token.clone(),
                cors_origins: config.cors_origins.clone(),
                body_idle_timeout: config.body_idle_timeout,
                body_timeout: config.body_timeout,
                header_read_timeout: config.header_read_timeout,
                rate_limit: config.rate_limit,
                max_concurrent_uploads: config.max_concurrent_uploads,
            },
            sweep: SweepPolicy {
                receiving_grace: config.receiving_grace,
                tombstone_retention: config.tombstone_retention,
                erasure_log_retention: config.erasure_log_retention,
                timeout: config.sweep_timeout,
                file_retention: config.file_retention,
                erasure_settle: config.s3_operation_timeout,
                expiry_workers: (config.database_max_connections / 3).clamp(1, 4) as usize,
                expiry_batch: crate::sweeper::EXPIRY_BATCH,
            },
            events: EventPolicy {
                allow_private: config.events_allow_private,
                timeout: config.event_timeout,
                retry_base: config.event_retry_base,
                max_attempts: config.event_max_attempts,
                endpoint_concurrency: config.event_endpoint_concurrency,
                endpoints_per_client: config.event_endpoints_per_client,
                secret_overlap: config.event_secret_overlap,
                disable_after: Some(config.event_disable_after).filter(|d| !d.is_zero()),
            },
            text: TextPolicy::from_config(config),
            scan: ScanPolicy {
                clamd: config.clamd.clone(),
                timeout: config.clamd_timeout,
                fail_open: config.clamd_fail_open,
            },
        }
    }
}

/// Text jobs in flight per extraction process (see [`TextPolicy::job_slots`]).
pub const JOBS_PER_PROCESS: usize = 8;

/// How extractions run.
#[derive(Clone, Debug)]
pub struct TextPolicy {
    pub timeout: Duration,
    pub memory_bytes: u64,
    /// Uploads with less text are refused (`None`: no check at upload).
    pub min_chars: Option<u64>,
    /// The program run as `PROGRAM extract`.
    pub extractor: PathBuf,
    /// Extraction processes at once in this replica, shared by upload-time checks and
    /// background jobs.
    pub concurrency: usize,
    /// One permit per extraction process that may run now.
    pub(crate) processes: std::sync::Arc<tokio::sync::Semaphore>,
    /// OCR for scanned PDFs (`STOWAGE_OCR`), run by the extraction child.
    pub ocr: Option<crate::ocr::Ocr>,
    /// The replica's extraction processes waiting for their next document.
    pub(crate) idle: std::sync::Arc<crate::extraction::IdleWorkers>,
}

impl TextPolicy {
    /// The policy a configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        let concurrency = config.text_concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4)),
            |n| n as usize,
        );
        TextPolicy {
            concurrency,
            processes: std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency)),
            idle: std::sync::Arc::default(),
            timeout: config.text_timeout,
            memory_bytes: config.text_memory_mb.saturating_mul(1024 * 1024),
            min_chars: (config.min_text_chars > 0).then_some(config.min_text_chars),
            ocr: config
                .ocr
                .then(|| crate::ocr::Ocr::locate(&config.ocr_languages)),
            extractor: config.text_extractor.clone().unwrap_or_else(|| {
                std::env::current_exe().unwrap_or_else(|_| PathBuf::from("stowage"))
            }),
        }
    }

    /// Text jobs one worker runs at once: [`JOBS_PER_PROCESS`] per extraction process, so
    /// reading the next documents and recording the last texts overlap the parsing (a job
    /// holds a process only while it parses, `extraction::READ_AHEAD`).
    pub fn job_slots(&self) -> usize {
        self.concurrency.saturating_mul(JOBS_PER_PROCESS)
    }

    /// How long a worker holds a job: its turn behind the jobs ahead of it, the extraction's
    /// time limit, reading the document, and a margin, so a live worker records its job before
    /// another may take it.
    pub fn lease(&self) -> Duration {
        let turns = u32::try_from(JOBS_PER_PROCESS).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(turns + 1) + Duration::from_secs(60)
    }
}
