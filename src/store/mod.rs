//! The `Store` trait: where file bytes live. Two areas — staging (files waiting for a webhook)
//! and files (long-term) — on S3 or on a local directory.

mod fs;
mod s3;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::{Config, StorageKind};
use crate::spill::Spill;

pub use fs::FsStore;
pub use s3::S3Store;

/// Size of one multipart part, and the largest file sent as a single PUT.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// The two storage areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// Files waiting for a webhook.
    Staging,
    /// Promoted files, kept long-term.
    Files,
}

/// What a browser on an allowed origin (`STOWAGE_CORS_ORIGINS`) sends straight to an area's
/// bucket: a direct upload's `PUT` (with the headers the presigned URL binds) to staging, a
/// download's `GET` from long-term storage. `stowage storage init --cors` applies it on S3;
/// docs/api.md shows it as JSON.
#[derive(Clone, Copy, Debug)]
pub struct BrowserRule {
    pub methods: &'static [&'static str],
    pub headers: &'static [&'static str],
    pub expose: &'static [&'static str],
}

/// How long a browser may cache a preflight's answer, in seconds.
pub const BROWSER_RULE_MAX_AGE: i32 = 600;

impl Area {
    /// The bucket CORS rule browsers need for this area.
    pub fn browser_rule(self) -> BrowserRule {
        match self {
            Area::Staging => BrowserRule {
                methods: &["PUT"],
                headers: &[
                    "content-type",
                    "x-amz-checksum-sha256",
                    "x-amz-sdk-checksum-algorithm",
                    "x-amz-server-side-encryption",
                    "x-amz-server-side-encryption-aws-kms-key-id",
                ],
                expose: &["ETag"],
            },
            Area::Files => BrowserRule {
                methods: &["GET", "HEAD"],
                headers: &[],
                expose: &["Content-Disposition", "Content-Length", "Content-Type"],
            },
        }
    }

    /// The area's rule for these origins, in the JSON `aws s3api put-bucket-cors` takes.
    pub fn browser_rule_json(self, origins: &[String]) -> serde_json::Value {
        let rule = self.browser_rule();
        let mut json = serde_json::json!({
            "AllowedOrigins": origins,
            "AllowedMethods": rule.methods,
            "ExposeHeaders": rule.expose,
            "MaxAgeSeconds": BROWSER_RULE_MAX_AGE,
        });
        if !rule.headers.is_empty() {
            json["AllowedHeaders"] = serde_json::json!(rule.headers);
        }
        serde_json::json!({ "CORSRules": [json] })
    }
}

/// What can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage service cannot be reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The object or bucket does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Another write of the same key is under way.
    #[error("busy: {0}")]
    Busy(String),
    /// Temporary disk space for the write ran out.
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
    /// Any other storage failure.
    #[error("storage error: {0}")]
    Other(String),
}

/// Result alias for the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An object found by listing an area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// A write that was started and neither finished nor aborted (a multipart upload on S3, a
/// `.part` file on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncompleteUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// A key that could not be deleted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteFailure {
    pub key: String,
    pub reason: String,
}

/// An object's bytes, read as they arrive: the chunks the store hands over, not copied again.
/// Asked again after its end, it answers the end again.
pub type ObjectStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object's bytes as a reader (for a child process's pipe).
pub type ObjectReader = tokio_util::io::StreamReader<ObjectStream, Bytes>;

/// How much of a file on disk is read at a time when it is streamed.
pub(crate) const FILE_READ_CHUNK: usize = 256 * 1024;

/// What a signed download on Stowage itself allows (the local store's "presigned" GET): one
/// object, until `expires`, served with these headers.
#[derive(Clone, Copy, Debug)]
pub struct SignedGet<'a> {
    pub key: &'a str,
    /// Unix seconds.
    pub expires: i64,
    pub content_disposition: &'a str,
    pub content_type: &'a str,
}

/// Where a client sends a file's bytes itself: a URL and the headers to send with the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What a signed PUT on Stowage itself allows (the local store's "presigned" URL).
#[derive(Clone, Copy, Debug)]
pub struct SignedPut<'a> {
    pub key: &'a str,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: &'a str,
    /// Unix seconds.
    pub expires: i64,
}

/// Streams one object into the staging area. Nothing is visible under the key until `finish`
/// succeeds; `abort` (or a failed `finish`) leaves nothing behind.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends a chunk.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// The multipart upload in use, once one has been started.
    fn multipart_upload_id(&self) -> Option<&str>;
    /// Makes the object visible.
    async fn finish(self: Box<Self>) -> Result<()>;
    /// Throws away everything written so far.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Where file bytes live.
#[async_trait]
pub trait Store: Send + Sync {
    /// A short description for logs (`s3 stowage-staging/stowage-files`, `fs ./dir`).
    fn describe(&self) -> String;
    /// Creates both areas (buckets or directories) and, on S3, the staging lifecycle rule.
    async fn init(&self, upload_ttl: Duration) -> Result<()>;
    /// Lets browsers on these origins reach the areas directly ([`Area::browser_rule`]): the
    /// buckets' CORS configuration on S3, replaced whole; nothing on the local directory,
    /// whose URLs Stowage serves itself under `STOWAGE_CORS_ORIGINS`.
    async fn allow_browsers(&self, origins: &[String]) -> Result<()>;
    /// Whether an area is reachable.
    async fn check(&self, area: Area) -> Result<()>;
    /// Starts writing an object into the staging area.
    async fn begin_staging(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;
    /// Aborts what an interrupted write left under a staging key: the given multipart upload,
    /// or, without an id, every incomplete upload of that key.
    async fn abort_incomplete(&self, key: &str, upload_id: Option<&str>) -> Result<()>;
    /// Deletes objects; a missing object is not a failure. Returns the keys that failed.
    async fn delete(&self, area: Area, keys: &[String]) -> Result<Vec<DeleteFailure>>;
    /// The size of an object, or `None` if there is no such object.
    async fn size(&self, area: Area, key: &str) -> Result<Option<u64>>;
    /// Whether an object exists.
    async fn exists(&self, area: Area, key: &str) -> Result<bool> {
        Ok(self.size(area, key).await?.is_some())
    }
    /// Every object in an area.
    async fn list(&self, area: Area) -> Result<Vec<ObjectInfo>>;
    /// Writes into the staging area that were never finished nor aborted.
    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>>;
    /// Moves an object from the staging area to the files area under the same key (server-side
    /// copy, then delete). Idempotent: promoting an already promoted key succeeds.
    async fn promote(&self, key: &str) -> Result<()>;
    /// Reads an object from its start (for text extraction).
    async fn open(&self, area: Area, key: &str) -> Result<ObjectReader> {
        match self.read(area, key).await? {
            Some((stream, _)) => Ok(tokio_util::io::StreamReader::new(stream)),
            None => Err(StoreError::NotFound(format!("no object {key}"))),
        }
    }
    /// An object's bytes as they arrive and its size, in one request; `None`: no such object.
    async fn read(&self, area: Area, key: &str) -> Result<Option<(ObjectStream, u64)>>;
    /// A URL a client PUTs exactly `size` bytes with this SHA-256 (hex) to, under `key` in the
    /// staging area, for `ttl`. A store that cannot presign signs a URL on Stowage itself,
    /// under `base_url`.
    async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        ttl: Duration,
        base_url: &str,
    ) -> Result<DirectPut>;
    /// Whether a signed PUT on Stowage is genuine (stores that presign never sign one).
    fn verify_signed_put(&self, _put: &SignedPut<'_>, _signature: &str) -> bool {
        false
    }
    /// A URL a client fetches a promoted file from with a plain GET, for `ttl`, served with
    /// this `Content-Disposition` and `Content-Type`. A store that cannot presign signs a URL on
    /// Stowage itself, under `base_url`.
    async fn download_url(
        &self,
        key: &str,
        content_disposition: &str,
        content_type: &str,
        ttl: Duration,
        base_url: &str,
    ) -> Result<String>;
    /// Whether a signed download on Stowage is genuine (stores that presign never sign one).
    fn verify_signed_get(&self, _get: &SignedGet<'_>, _signature: &str) -> bool {
        false
    }
}

/// Builds the store the configuration names; S3 writers spill parts into `spill`.
pub async fn connect(config: &Config, spill: &Spill) -> Result<Arc<dyn Store>> {
    // Checked first: encryption asked of a store that cannot give it is an error, not a no-op.
    let sse = config.sse().map_err(StoreError::Other)?;
    match config.storage_kind().map_err(StoreError::Other)? {
        StorageKind::Fs(root) => Ok(Arc::new(FsStore::new(
            root,
            &config.staging_bucket,
            &config.files_bucket,
        )?)),
        StorageKind::S3 => Ok(Arc::new(S3Store::connect(config, spill.clone(), sse).await)),
    }
}
