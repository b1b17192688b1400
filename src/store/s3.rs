//! The S3 store: any S3-compatible endpoint through aws-sdk-s3.
//!
//! Objects up to one part (8 MiB) go up with a single PutObject; larger ones as a multipart
//! upload that is aborted on any error.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CompletedMultipartUpload, CompletedPart, CorsConfiguration, CorsRule,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, ObjectIdentifier,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    Area, DeleteFailure, DirectPut, IncompleteUpload, ObjectInfo, ObjectWriter, PART_SIZE, Result,
    Store, StoreError,
};
use crate::config::{Config, Sse};
use crate::spill::{Spill, SpillFile};

/// Most keys S3 accepts in one DeleteObjects call.
const DELETE_BATCH: usize = 1000;

/// Objects in two S3 buckets.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    /// Signs download URLs for the endpoint clients reach (`STOWAGE_S3_PUBLIC_ENDPOINT`).
    presigner: Client,
    staging: String,
    files: String,
    region: String,
    spill: Spill,
    /// Server-side encryption asked of every write (`STOWAGE_S3_SSE`).
    sse: Option<Sse>,
}

/// The encryption headers of a write: the algorithm, and the KMS key if one is named.
fn sse_headers(
    sse: Option<&Sse>,
) -> (
    Option<aws_sdk_s3::types::ServerSideEncryption>,
    Option<String>,
) {
    match sse {
        None => (None, None),
        Some(sse) => (
            Some(aws_sdk_s3::types::ServerSideEncryption::from(
                sse.algorithm.as_str(),
            )),
            sse.kms_key_id.clone(),
        ),
    }
}

fn sdk_err<E>(context: &str, err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // One line an operator can read: the service's error code, or the innermost cause
    // ("Connection refused", a timeout), not the SDK's whole debug chain.
    let text = match &err {
        SdkError::ServiceError(service) => format!(
            "{context}: {} (HTTP {})",
            service.err().code().unwrap_or("error"),
            service.raw().status().as_u16()
        ),
        _ => {
            let mut cause: &dyn std::error::Error = &err;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("{context}: {cause}")
        }
    };
    match &err {
        // No answer, or the connection broke while reading one: the server is unreachable.
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(text)
        }
        SdkError::ServiceError(service) if service.raw().status().is_server_error() => {
            StoreError::Unavailable(text)
        }
        SdkError::ServiceError(service) => match service.err().code() {
            Some("NoSuchKey" | "NoSuchBucket" | "NotFound" | "NoSuchUpload") => {
                StoreError::NotFound(text)
            }
            _ => StoreError::Other(text),
        },
        _ => StoreError::Other(text),
    }
}

impl S3Store {
    /// Builds a client from the configuration and the standard AWS credential chain.
    pub async fn connect(config: &Config, spill: Spill, sse: Option<Sse>) -> Self {
        use aws_smithy_http_client::tls;

        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(config.s3_attempt_timeout)
            .operation_timeout(config.s3_operation_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(config.s3_region.clone()))
            .http_client(http)
            .timeout_config(timeouts);
        if let Some(endpoint) = &config.s3_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.s3_force_path_style)
            // Checksums are computed by Stowage itself (SHA-256 while streaming); asking the SDK
            // for more only costs time and trips some S3-compatible servers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        // Presigning is local computation: the same credentials, signed for the public host.
        let presigner = match &config.s3_public_endpoint {
            Some(public) => Client::from_conf(s3_config.to_builder().endpoint_url(public).build()),
            None => Client::from_conf(s3_config.clone()),
        };
        S3Store {
            presigner,
            client: Client::from_conf(s3_config),
            staging: config.staging_bucket.clone(),
            files: config.files_bucket.clone(),
            region: config.s3_region.clone(),
            spill,
            sse,
        }
    }

    fn bucket(&self, area: Area) -> &str {
        match area {
            Area::Staging => &self.staging,
            Area::Files => &self.files,
        }
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let mut request = self.client.create_bucket().bucket(bucket);
        if self.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err().code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_err("create bucket", e)),
        }
    }

    async fn put_lifecycle(&self, upload_ttl: Duration) -> Result<()> {
        // Whole days past the TTL, plus one: a backstop for the sweeper, never ahead of it.
        let ttl_days = upload_ttl.as_secs().div_ceil(86_400) as i32;
        let rule = LifecycleRule::builder()
            .id("stowage-staging-backstop")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .expiration(LifecycleExpiration::builder().days(ttl_days + 1).build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Other(format!("lifecycle rule: {e}")))?;
        let lifecycle = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| StoreError::Other(format!("lifecycle configuration: {e}")))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.staging)
            .lifecycle_configuration(lifecycle)
            .send()
            .await
            .map_err(|e| sdk_err("put lifecycle", e))?;
        Ok(())
    }
}

/// Bytes of a part kept in memory before the rest of the part is spilled to a temporary file;
/// this, not the file size, bounds an upload's memory.
const MEMORY_PER_PART: usize = 1024 * 1024;
/// Parts of one upload sent to S3 at the same time, while the next part is being received.
const PARTS_IN_FLIGHT: usize = 2;
/// Read size when sending a spilled part.
const SPILL_READ_BUFFER: usize = 256 * 1024;

/// One part being collected: in memory up to [`MEMORY_PER_PART`] (the received chunks
/// themselves, not copied), then in an unnamed spill file.
#[derive(Default)]
struct PartBuffer {
    memory: Vec<Bytes>,
    spill: Option<(SpillFile, tokio::fs::File)>,
    len: usize,
}

fn io_err(context: &str, e: std::io::Error) -> StoreError {
    StoreError::Other(format!("{context}: {e}"))
}

/// A request body made of the received chunks themselves, sent without joining them; it can be
/// replayed for a retry.
fn chunked_body(chunks: Vec<Bytes>) -> ByteStream {
    let chunks = std::sync::Arc::new(chunks);
    ByteStream::new(aws_smithy_types::body::SdkBody::retryable(move || {
        aws_smithy_types::body::SdkBody::from_body_1_x(Chunks(chunks.iter().cloned().collect()))
    }))
}

/// The frames of [`chunked_body`].
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// A request body read from the start of a spill file; it can be replayed for a retry (each
/// replay rewinds a new handle on the same file).
fn file_body(file: &SpillFile, len: u64) -> Result<ByteStream> {
    let handle = std::sync::Arc::new(file.try_clone()?);
    Ok(ByteStream::new(aws_smithy_types::body::SdkBody::retryable(
        move || {
            let reader = handle
                .try_clone()
                .and_then(|mut f| {
                    use std::io::Seek;
                    f.seek(std::io::SeekFrom::Start(0))?;
                    Ok(f)
                })
                .map(tokio::fs::File::from_std);
            aws_smithy_types::body::SdkBody::from_body_1_x(FileBody {
                stream: reader
                    .map(|f| tokio_util::io::ReaderStream::with_capacity(f, SPILL_READ_BUFFER)),
                remaining: len,
            })
        },
    )))
}

/// The frames of [`file_body`].
struct FileBody {
    stream: std::io::Result<tokio_util::io::ReaderStream<tokio::fs::File>>,
    remaining: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        use futures_util::Stream;
        let this = &mut *self;
        let stream = match this.stream.as_mut() {
            Ok(stream) => stream,
            Err(e) => {
                let e = std::io::Error::new(e.kind(), e.to_string());
                return std::task::Poll::Ready(Some(Err(e)));
            }
        };
        match std::pin::Pin::new(stream).poll_next(cx) {
            std::task::Poll::Ready(Some(Ok(bytes))) => {
                this.remaining = this.remaining.saturating_sub(bytes.len() as u64);
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            std::task::Poll::Ready(Some(Err(e))) => std::task::Poll::Ready(Some(Err(e))),
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

impl PartBuffer {
    async fn push(&mut self, data: Bytes, spill: &Spill) -> Result<()> {
        use tokio::io::AsyncWriteExt;

        self.len += data.len();
        if self.spill.is_none() && self.len <= MEMORY_PER_PART {
            self.memory.push(data);
            return Ok(());
        }
        if self.spill.is_none() {
            let mut spilled = spill.file()?;
            let mut file = tokio::fs::File::from_std(spilled.try_clone()?);
            for chunk in std::mem::take(&mut self.memory) {
                spilled.reserve(chunk.len())?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_err("spill", e))?;
            }
            self.spill = Some((spilled, file));
        }
        let (spilled, file) = self.spill.as_mut().expect("spill set above");
        spilled.reserve(data.len())?;
        file.write_all(&data).await.map_err(|e| io_err("spill", e))
    }

    /// The part as a request body, and the spill file to keep until the request is done.
    async fn into_body(self) -> Result<(ByteStream, i64, Option<SpillFile>)> {
        use tokio::io::AsyncWriteExt;

        let len = self.len as i64;
        match self.spill {
            None => Ok((chunked_body(self.memory), len, None)),
            Some((spilled, mut file)) => {
                file.flush().await.map_err(|e| io_err("spill", e))?;
                drop(file);
                let body = file_body(&spilled, self.len as u64)?;
                Ok((body, len, Some(spilled)))
            }
        }
    }
}

/// Streams one object into S3: a single PutObject up to one part, else a multipart upload whose
/// parts are sent (two at a time) while the next one is received.
struct S3Writer {
    client: Client,
    spill: Spill,
    bucket: String,
    key: String,
    current: PartBuffer,
    upload_id: Option<String>,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<CompletedPart>>>,
    done: Vec<CompletedPart>,
    next_part: i32,
    written: u64,
    sse: Option<Sse>,
}

impl S3Writer {
    fn new(client: Client, spill: Spill, bucket: String, key: String, sse: Option<Sse>) -> Self {
        S3Writer {
            client,
            spill,
            bucket,
            key,
            sse,
            current: PartBuffer::default(),
            upload_id: None,
            in_flight: Default::default(),
            done: Vec::new(),
            next_part: 1,
            written: 0,
        }
    }

    /// Sends the collected part in the background; waits while too many are in flight.
    async fn send_part(&mut self) -> Result<()> {
        if self.upload_id.is_none() {
            let (algorithm, kms_key) = sse_headers(self.sse.as_ref());
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_server_side_encryption(algorithm)
                .set_ssekms_key_id(kms_key)
                .send()
                .await
                .map_err(|e| sdk_err("create multipart upload", e))?;
            let id = created
                .upload_id()
                .ok_or_else(|| StoreError::Other("multipart upload without an id".into()))?;
            self.upload_id = Some(id.to_owned());
        }
        let part = std::mem::take(&mut self.current);
        let (body, length, temp) = part.into_body().await?;
        let part_number = self.next_part;
        self.next_part += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.clone().expect("set above"))
            .part_number(part_number)
            .content_length(length)
            .body(body);
        self.in_flight.push_back(tokio::spawn(async move {
            let uploaded = request
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| sdk_err("upload part", e));
            drop(temp);
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(uploaded?.e_tag().map(str::to_owned))
                .build())
        }));
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.await_oldest().await?;
        }
        Ok(())
    }

    async fn await_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle
                .await
                .map_err(|e| StoreError::Other(format!("upload part task: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<()> {
        if self.upload_id.is_none() {
            let (body, length, temp) = std::mem::take(&mut self.current).into_body().await?;
            let (algorithm, kms_key) = sse_headers(self.sse.as_ref());
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_server_side_encryption(algorithm)
                .set_ssekms_key_id(kms_key)
                .content_length(length)
                .body(body)
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| sdk_err("put object", e))?;
            drop(temp);
            return Ok(());
        }
        if self.current.len > 0 {
            self.send_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.as_deref().expect("multipart started"))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            // A 200 whose body the SDK cannot read (some S3-compatible servers name the root
            // element differently; S3 itself may put an error in a 200): believe what is stored.
            Err(e) if e.raw_response().is_some_and(|r| r.status().is_success()) => {
                let stored = self
                    .client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .send()
                    .await;
                match stored {
                    Ok(head) if head.content_length() == Some(self.written as i64) => Ok(()),
                    _ => Err(sdk_err("complete multipart upload", e)),
                }
            }
            Err(e) => Err(sdk_err("complete multipart upload", e)),
        }
    }

    async fn abort_inner(&mut self) -> Result<()> {
        self.current = PartBuffer::default();
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_err("abort multipart upload", e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.written += chunk.len() as u64;
        let mut data = chunk;
        while !data.is_empty() {
            // A full part is only sent once more data arrives, so a file of exactly one part
            // still goes up as a single PUT.
            if self.current.len == PART_SIZE {
                self.send_part().await?;
            }
            let take = (PART_SIZE - self.current.len).min(data.len());
            self.current.push(data.split_to(take), &self.spill).await?;
        }
        Ok(())
    }

    fn multipart_upload_id(&self) -> Option<&str> {
        self.upload_id.as_deref()
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        match self.finish_inner().await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(abort) = self.abort_inner().await {
                    tracing::warn!(key = %self.key, error = %abort, "abort after a failed finish");
                }
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_inner().await
    }
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        format!("s3 {} / {}", self.staging, self.files)
    }

    async fn init(&self, upload_ttl: Duration) -> Result<()> {
        self.create_bucket(&self.staging).await?;
        self.create_bucket(&self.files).await?;
        self.put_lifecycle(upload_ttl).await
    }

    async fn allow_browsers(&self, origins: &[String]) -> Result<()> {
        for area in [Area::Staging, Area::Files] {
            let rule = area.browser_rule();
            let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
            let cors = CorsRule::builder()
                .set_allowed_origins(Some(origins.to_vec()))
                .set_allowed_methods(Some(strings(rule.methods)))
                .set_allowed_headers((!rule.headers.is_empty()).then(|| strings(rule.headers)))
                .set_expose_headers(Some(strings(rule.expose)))
                .max_age_seconds(super::BROWSER_RULE_MAX_AGE)
                .build()
                .map_err(|e| StoreError::Other(format!("CORS rule: {e}")))?;
            let configuration = CorsConfiguration::builder()
                .cors_rules(cors)
                .build()
                .map_err(|e| StoreError::Other(format!("CORS configuration: {e}")))?;
            self.client
                .put_bucket_cors()
                .bucket(self.bucket(area))
                .cors_configuration(configuration)
                .send()
                .await
                .map_err(|e| sdk_err("put bucket CORS", e))?;
        }
        Ok(())
    }

    async fn check(&self, area: Area) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(self.bucket(area))
            .send()
            .await
            .map_err(|e| sdk_err("head bucket", e))?;
        Ok(())
    }

    async fn begin_staging(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Writer::new(
            self.client.clone(),
            self.spill.clone(),
            self.staging.clone(),
            key.to_owned(),
            self.sse.clone(),
        )))
    }

    async fn abort_incomplete(&self, key: &str, upload_id: Option<&str>) -> Result<()> {
        let ids = match upload_id {
            Some(id) => vec![id.to_owned()],
            None => self
                .client
                .list_multipart_uploads()
                .bucket(&self.staging)
                .prefix(key)
                .send()
                .await
                .map_err(|e| sdk_err("list multipart uploads", e))?
                .uploads()
                .iter()
                .filter(|u| u.key() == Some(key))
                .filter_map(|u| u.upload_id().map(str::to_owned))
                .collect(),
        };
        for id in ids {
            match self
                .client
                .abort_multipart_upload()
                .bucket(&self.staging)
                .key(key)
                .upload_id(id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) => match sdk_err("abort multipart upload", e) {
                    StoreError::NotFound(_) => {}
                    other => return Err(other),
                },
            }
        }
        Ok(())
    }

    async fn delete(&self, area: Area, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Other(format!("delete request: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Other(format!("delete request: {e}")))?;
            let output = self
                .client
                .delete_objects()
                .bucket(self.bucket(area))
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk_err("delete objects", e))?;
            for error in output.errors() {
                if error.code() == Some("NoSuchKey") {
                    continue;
                }
                failures.push(DeleteFailure {
                    key: error.key().unwrap_or_default().to_owned(),
                    reason: format!(
                        "{}: {}",
                        error.code().unwrap_or("error"),
                        error.message().unwrap_or("")
                    ),
                });
            }
        }
        Ok(failures)
    }

    async fn size(&self, area: Area, key: &str) -> Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(self.bucket(area))
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(sdk_err("head object", e)),
        }
    }

    async fn list(&self, area: Area) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(self.bucket(area))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_err("list objects", e))?;
            for object in page.contents() {
                out.push(ObjectInfo {
                    key: object.key().unwrap_or_default().to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>> {
        let mut out = Vec::new();
        let mut key_marker = None;
        let mut upload_marker = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.staging)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send()
                .await
                .map_err(|e| sdk_err("list multipart uploads", e))?;
            for upload in page.uploads() {
                out.push(IncompleteUpload {
                    key: upload.key().unwrap_or_default().to_owned(),
                    upload_id: upload.upload_id().unwrap_or_default().to_owned(),
                    initiated: upload
                        .initiated()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && upload_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn promote(&self, key: &str) -> Result<()> {
        let (algorithm, kms_key) = sse_headers(self.sse.as_ref());
        let copied = self
            .client
            .copy_object()
            .bucket(&self.files)
            .key(key)
            .set_server_side_encryption(algorithm)
            .set_ssekms_key_id(kms_key)
            .copy_source(format!("{}/{}", self.staging, key))
            .send()
            .await;
        if let Err(e) = copied {
            match sdk_err("copy object", e) {
                // An earlier attempt copied and deleted it already.
                StoreError::NotFound(_) if self.exists(Area::Files, key).await? => {}
                other => return Err(other),
            }
        }
        crate::fault::point("promote.after_copy");
        let failures = self.delete(Area::Staging, &[key.to_owned()]).await?;
        match failures.first() {
            None => Ok(()),
            Some(failure) => Err(StoreError::Other(format!(
                "delete staged copy of {key}: {}",
                failure.reason
            ))),
        }
    }

    async fn read(&self, area: Area, key: &str) -> Result<Option<(super::ObjectStream, u64)>> {
        let got = self
            .client
            .get_object()
            .bucket(self.bucket(area))
            .key(key)
            .send()
            .await;
        let object = match got {
            Ok(object) => object,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => return Ok(None),
            Err(e) => return Err(sdk_err("get object", e)),
        };
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        // The body's chunks as the connection hands them over (no reader copying them again).
        let chunks = futures_util::stream::unfold(object.body, |mut body| async move {
            let chunk = body.next().await?;
            Some((chunk.map_err(std::io::Error::other), body))
        });
        // Fused: a reader may ask again after the end.
        Ok(Some((
            Box::pin(futures_util::StreamExt::fuse(chunks)),
            size,
        )))
    }
    async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        ttl: Duration,
        _base_url: &str,
    ) -> Result<DirectPut> {
        let raw = hex::decode(sha256).map_err(|e| StoreError::Other(format!("sha256: {e}")))?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Other(format!("presigning: {e}")))?;
        let (algorithm, kms_key) = sse_headers(self.sse.as_ref());
        let request = self
            .presigner
            .put_object()
            .bucket(&self.staging)
            .key(key)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_sha256(aws_smithy_types::base64::encode(raw))
            .set_server_side_encryption(algorithm)
            .set_ssekms_key_id(kms_key)
            .presigned(config)
            .await
            .map_err(|e| sdk_err("presign put object", e))?;
        Ok(DirectPut {
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        })
    }

    async fn download_url(
        &self,
        key: &str,
        content_disposition: &str,
        content_type: &str,
        ttl: Duration,
        _base_url: &str,
    ) -> Result<String> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Other(format!("presigning: {e}")))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.files)
            .key(key)
            .response_content_disposition(content_disposition)
            .response_content_type(content_type)
            .presigned(config)
            .await
            .map_err(|e| sdk_err("presign get object", e))?;
        Ok(request.uri().to_owned())
    }
}
