//! Load generator for Stowage: drives the same workload against S3 directly, against Stowage,
//! and against a peer upload server (tus), with N concurrent clients, and prints one JSON object
//! per run (throughput, latency percentiles, optional peak RSS of a process).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client as S3;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Stowage load generator")]
struct Cli {
    /// S3 endpoint (direct workloads and setup).
    #[arg(
        long,
        env = "BENCH_S3_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    s3_endpoint: String,
    /// Bucket standing for Stowage's staging bucket in direct workloads.
    #[arg(long, env = "BENCH_DIRECT_STAGING", default_value = "direct-staging")]
    direct_staging: String,
    /// Bucket standing for Stowage's long-term bucket in direct workloads.
    #[arg(long, env = "BENCH_DIRECT_FILES", default_value = "direct-files")]
    direct_files: String,
    /// Stowage's base URL; several, comma-separated, for replicas behind one database (each
    /// request goes to the next, round robin).
    #[arg(
        long,
        env = "BENCH_STOWAGE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    stowage_url: String,
    /// Stowage API key.
    #[arg(long, env = "BENCH_API_KEY", default_value = "")]
    api_key: String,
    /// Stowage client id.
    #[arg(long, env = "BENCH_CLIENT_ID", default_value = "bench")]
    client_id: String,
    /// The peer's tus endpoint.
    #[arg(
        long,
        env = "BENCH_PEER_URL",
        default_value = "http://127.0.0.1:1080/files"
    )]
    peer_url: String,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The base URL of the replica the next request goes to.
    fn stowage(&self) -> &str {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let replicas = self.stowage_url.split(',').count();
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % replicas;
        self.stowage_url
            .split(',')
            .nth(i)
            .unwrap_or(&self.stowage_url)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    Direct,
    Stowage,
    Peer,
    /// A presigned PUT binding length and SHA-256, made by the load generator: the limit of
    /// the direct path.
    Presigned,
    /// Stowage's direct path: `POST /uploads/direct`, the PUT it hands out, `complete`.
    StowageDirect,
}

#[derive(Subcommand)]
enum Command {
    /// Uploads of one size: PutObject, POST /uploads, or tus creation-with-upload.
    Upload {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        count: usize,
        /// Sample this process's resident memory while the run lasts.
        #[arg(long)]
        rss_pid: Option<u32>,
        /// Account CPU time of these process trees: NAME=PID,NAME=PID.
        #[arg(long, value_delimiter = ',')]
        cpu: Vec<String>,
    },
    /// Bind + promote one file per request: webhooks through Stowage, or CopyObject + DeleteObject.
    Webhook {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        count: usize,
        /// Account CPU time of these process trees (measured part only): NAME=PID,NAME=PID.
        #[arg(long, value_delimiter = ',')]
        cpu: Vec<String>,
        /// A query counting the work the webhooks left behind (texts to extract), asked on one
        /// psql session (`$STOWAGE_DATABASE_URL`): CPU is counted until it answers 0, so each
        /// webhook's figure includes what it caused.
        #[arg(long)]
        cpu_until_sql: Option<String>,
    },
    /// Erase promoted files, one request each: `DELETE /files/{id}`, or DeleteObject of the
    /// long-term object (staged and promoted first, not measured).
    Erase {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        count: usize,
        /// Account CPU time of these process trees (the erasures only): NAME=PID,NAME=PID.
        #[arg(long, value_delimiter = ',')]
        cpu: Vec<String>,
        /// A query counting the work the promotions left (texts to extract), asked on one psql
        /// session: the erasures start once it answers 0.
        #[arg(long)]
        settle_sql: Option<String>,
    },
    /// Puts `count` small objects directly under a prefix (to delete later with `delete-direct`).
    FillDirect {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Deletes everything under a prefix with DeleteObjects, 1000 keys a call, `concurrency`
    /// calls at a time.
    DeleteDirect {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Account CPU time of these process trees (the deletions only): NAME=PID,NAME=PID.
        #[arg(long, value_delimiter = ',')]
        cpu: Vec<String>,
    },
    /// Creates buckets (already existing ones are fine).
    MakeBuckets { names: Vec<String> },
    /// CPU ticks (1/100 s) of each process tree named by its root PID, children that ended
    /// included, as a JSON array in the order given.
    CpuTicks { pids: Vec<u32> },
    /// With an event endpoint registered on a receiver this process runs on 127.0.0.1: uploads,
    /// then webhooks, through Stowage (as `upload` and `webhook`), then waits until every event
    /// (one per upload, two per webhook) has arrived. Needs STOWAGE_EVENTS_ALLOW_PRIVATE=true.
    Events {
        #[arg(long)]
        size: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        uploads: usize,
        #[arg(long)]
        webhooks: usize,
        /// Account CPU time of these process trees: NAME=PID,NAME=PID.
        #[arg(long, value_delimiter = ',')]
        cpu: Vec<String>,
        /// As `webhook --cpu-until-sql`: the webhooks' CPU counted until the query answers 0.
        #[arg(long)]
        cpu_until_sql: Option<String>,
    },
    /// Waits until a query (asked on one psql session, `$STOWAGE_DATABASE_URL`, every 20 ms)
    /// answers 0, at most `timeout` seconds; prints what it last answered and the seconds waited.
    WaitZero {
        #[arg(long)]
        sql: String,
        /// A statement run on the same session first, inside the seconds counted (the release
        /// of a held backlog: no process or connection started inside the measured time).
        #[arg(long)]
        first: Option<String>,
        #[arg(long, default_value = "300")]
        timeout: f64,
    },
}

/// A body that passes Stowage's PDF check (a header, and `%%EOF` at the end), of exactly `size`
/// bytes.
fn pdf(size: usize) -> Bytes {
    const TAIL: &[u8] = b"\n%%EOF\n";
    let mut body = b"%PDF-1.4\n%bench\n".to_vec();
    body.resize(size.max(body.len() + TAIL.len()) - TAIL.len(), b'x');
    body.extend_from_slice(TAIL);
    Bytes::from(body)
}

async fn s3_client(endpoint: &str) -> S3 {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(http)
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    S3::from_conf(config)
}

/// Samples VmRSS of a process until stopped; returns the peak in bytes.
fn sample_rss(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(status) = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await
                && let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    })
}

/// One psql session asked the same count again and again: a poll costs a query. (A `psql` per
/// poll cost ~30 ms of CPU and a PostgreSQL backend's start, ~6 ms more, on the cores the
/// measured work shares: bench/notes.md.)
struct Counter {
    child: std::process::Child,
    ask: std::process::ChildStdin,
    answers: std::io::BufReader<std::process::ChildStdout>,
    sql: String,
}

impl Counter {
    fn start(sql: &str) -> Counter {
        use std::process::Stdio;
        let url = std::env::var("STOWAGE_DATABASE_URL").expect("STOWAGE_DATABASE_URL");
        let mut child = std::process::Command::new("psql")
            // A failing query ends the session (its answers then read as none) instead of
            // leaving the reader waiting for a line that never comes.
            .args(["-tAqX", "-v", "ON_ERROR_STOP=1", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start psql");
        let ask = child.stdin.take().expect("psql stdin");
        let answers = std::io::BufReader::new(child.stdout.take().expect("psql stdout"));
        Counter {
            child,
            ask,
            answers,
            sql: sql.to_owned(),
        }
    }

    /// Writes one statement, ended by one `;`.
    fn send(&mut self, statement: &str) -> std::io::Result<()> {
        use std::io::Write;
        writeln!(self.ask, "{};", statement.trim().trim_end_matches(';'))
    }

    /// Sends a statement (its answer, if any, is not read: run only what prints nothing).
    fn run(&mut self, statement: &str) {
        self.send(statement).expect("write to psql");
    }

    /// The count now (`None` if psql did not answer with a number).
    fn count(&mut self) -> Option<u64> {
        use std::io::BufRead;
        let sql = self.sql.clone();
        self.send(&sql).ok()?;
        let mut line = String::new();
        self.answers.read_line(&mut line).ok()?;
        line.trim().parse().ok()
    }

    /// Asks every 20 ms until the count is 0 or `timeout` has passed; the last answer.
    async fn wait_zero(mut self, timeout: Duration) -> Option<u64> {
        let started = Instant::now();
        loop {
            let left = self.count();
            if left == Some(0) || started.elapsed() >= timeout {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system, in clock ticks) of a process and all its descendants, the ones
/// that already ended included (each process's `cutime` + `cstime`: children it waited for).
fn tree_cpu_ticks(root: u32) -> u64 {
    let mut stats = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name (which is in parentheses and may hold spaces).
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            // utime, stime, cutime, cstime.
            let ticks: u64 = (11..=14)
                .filter_map(|i| fields.get(i)?.parse::<u64>().ok())
                .sum();
            stats.push((pid, ppid, ticks));
        }
    }
    let mut tree = vec![root];
    let mut total = 0;
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, ppid, ticks) in &stats {
            if *pid == parent {
                total += ticks;
            }
            if *ppid == parent && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        i += 1;
    }
    total
}

/// Parses NAME=PID specs and reads each tree's CPU ticks now.
fn cpu_start(specs: &[String]) -> Vec<(String, u32, u64)> {
    specs
        .iter()
        .filter_map(|spec| spec.split_once('='))
        .filter_map(|(name, pid)| {
            let pid: u32 = pid.parse().ok()?;
            Some((name.to_owned(), pid, tree_cpu_ticks(pid)))
        })
        .collect()
}

/// Adds `cpu_ms_per_op` (CPU milliseconds per successful operation, per process tree).
fn cpu_finish(result: &mut Value, trees: Vec<(String, u32, u64)>) {
    if trees.is_empty() {
        return;
    }
    let ok = result["ok"].as_f64().unwrap_or(1.0).max(1.0);
    let mut per_op = serde_json::Map::new();
    for (name, pid, before) in trees {
        // Linux reports 100 ticks a second.
        let ms = tree_cpu_ticks(pid).saturating_sub(before) as f64 * 10.0;
        per_op.insert(name, json!(ms / ok));
    }
    result["cpu_ms_per_op"] = Value::Object(per_op);
}

/// Runs `count` operations with `concurrency` workers; each returns Ok(bytes) or Err(text).
async fn drive<F, Fut>(concurrency: usize, count: usize, op: F) -> Value
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next, bytes) = (op.clone(), next.clone(), bytes.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(n) => {
                        latencies.push(t.elapsed());
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        let (l, e) = worker.await.expect("worker");
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[idx].as_secs_f64() * 1000.0
    };
    let ok = latencies.len();
    let total_bytes = bytes.load(Ordering::Relaxed);
    json!({
        "count": count,
        "ok": ok,
        "errors": errors.len(),
        "first_error": errors.first(),
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "per_s": ok as f64 / elapsed,
        "mb_per_s": total_bytes as f64 / 1_048_576.0 / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(600))
        .build()
        .expect("http client")
}

const BOUNDARY: &str = "stowage-bench-boundary-7f3a9c";

/// A whole multipart/form-data body with one `file` part, built once and shared by every request
/// (no per-request copying on the client, like the SDK sending a `Bytes` body).
fn multipart_body(file: &Bytes) -> Bytes {
    let mut body = Vec::with_capacity(file.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"resume.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

/// POST /uploads with a prebuilt multipart body.
async fn stowage_upload(http: &reqwest::Client, cli: &Cli, form: Bytes) -> Result<Value, String> {
    let response = http
        .post(format!("{}/uploads", cli.stowage()))
        .header("X-API-Key", &cli.api_key)
        .header("X-ATS-Client-ID", &cli.client_id)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.as_u16() != 201 {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

/// PUTs `body` to a presigned URL with its headers (what a browser does).
async fn put_presigned(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<(), String> {
    let mut request = http.put(url).body(body);
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!("PUT answered {status}: {text}"));
    }
    Ok(())
}

/// `POST /uploads/direct`, the PUT, `POST /uploads/{id}/complete`.
async fn stowage_direct_upload(
    http: &reqwest::Client,
    cli: &Cli,
    body: Bytes,
    sha256: &str,
) -> Result<(), String> {
    let opened = http
        .post(format!("{}/uploads/direct", cli.stowage()))
        .header("X-API-Key", &cli.api_key)
        .header("X-ATS-Client-ID", &cli.client_id)
        .json(&serde_json::json!({"file_name": "resume.pdf", "file_size": body.len(), "sha256": sha256}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = opened.status();
    let opened: Value = opened.json().await.map_err(|e| e.to_string())?;
    if status.as_u16() != 201 {
        return Err(format!("{status}: {opened}"));
    }
    let headers: Vec<(String, String)> = opened["upload"]["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let url = opened["upload"]["url"].as_str().unwrap_or_default();
    put_presigned(http, url, &headers, body).await?;
    let id = opened["carv_file_id"].as_str().unwrap_or_default();
    let completed = http
        .post(format!("{}/uploads/{id}/complete", cli.stowage()))
        .header("X-API-Key", &cli.api_key)
        .header("X-ATS-Client-ID", &cli.client_id)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = completed.status();
    if status.as_u16() != 201 {
        let text = completed.text().await.unwrap_or_default();
        return Err(format!("complete answered {status}: {text}"));
    }
    Ok(())
}

async fn upload(
    cli: Arc<Cli>,
    target: Target,
    size: usize,
    concurrency: usize,
    count: usize,
) -> Value {
    let body = pdf(size);
    // The client hashes its file once (both direct-path targets need it).
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
    let sha256_hex: Arc<str> = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    let sha256_b64: Arc<str> = aws_smithy_types::base64::encode(digest).into();
    let form = multipart_body(&body);
    let http = http_client();
    let s3 = s3_client(&cli.s3_endpoint).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    drive(concurrency, count, move |i| {
        let (cli, http, s3, body, run, form, sha256_hex, sha256_b64) = (
            cli.clone(),
            http.clone(),
            s3.clone(),
            body.clone(),
            run.clone(),
            form.clone(),
            sha256_hex.clone(),
            sha256_b64.clone(),
        );
        async move {
            let len = body.len() as u64;
            match target {
                Target::Direct => {
                    s3.put_object()
                        .bucket(&cli.direct_staging)
                        .key(format!("bench/{run}/{i}"))
                        .content_length(len as i64)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
                }
                Target::Stowage => {
                    stowage_upload(&http, &cli, form).await?;
                }
                Target::Presigned => {
                    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(
                        std::time::Duration::from_secs(900),
                    )
                    .map_err(|e| e.to_string())?;
                    let presigned = s3
                        .put_object()
                        .bucket(&cli.direct_staging)
                        .key(format!("bench/{run}/{i}"))
                        .content_length(len as i64)
                        .checksum_sha256(sha256_b64.as_ref())
                        .presigned(config)
                        .await
                        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
                    let headers: Vec<(String, String)> = presigned
                        .headers()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    put_presigned(&http, presigned.uri(), &headers, body).await?;
                }
                Target::StowageDirect => {
                    stowage_direct_upload(&http, &cli, body, &sha256_hex).await?;
                }
                Target::Peer => {
                    let response = http
                        .post(&cli.peer_url)
                        .header("Tus-Resumable", "1.0.0")
                        .header("Upload-Length", len.to_string())
                        .header(
                            "Upload-Metadata",
                            "filename cmVzdW1lLnBkZg==,filetype YXBwbGljYXRpb24vcGRm",
                        )
                        .header("Content-Type", "application/offset+octet-stream")
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status();
                    let offset = response
                        .headers()
                        .get("upload-offset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if status.as_u16() != 201 || offset != Some(len) {
                        return Err(format!("peer answered {status} with offset {offset:?}"));
                    }
                }
            }
            Ok(len)
        }
    })
    .await
}

/// The document the webhook and erasure workloads stage: BENCH_DOCUMENT (a real document, for
/// the extraction backlog, whose text is read) or the synthetic body.
fn staged_document(size: usize) -> Bytes {
    match std::env::var_os("BENCH_DOCUMENT") {
        Some(path) => Bytes::from(std::fs::read(path).expect("BENCH_DOCUMENT")),
        None => pdf(size),
    }
}

/// Stages `count` files (not measured): POST /uploads, or a PutObject into the direct staging
/// bucket. Their ids (or keys), or the setup's failure.
async fn stage_files(
    cli: &Arc<Cli>,
    http: &reqwest::Client,
    s3: &S3,
    target: Target,
    body: Bytes,
    count: usize,
) -> Result<Arc<Vec<String>>, Value> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ids: Arc<std::sync::Mutex<Vec<String>>> =
        Arc::new(std::sync::Mutex::new(vec![String::new(); count]));
    let setup = {
        let (cli, http, s3, ids) = (cli.clone(), http.clone(), s3.clone(), ids.clone());
        drive(16, count, move |i| {
            let (cli, http, s3, body, run, ids) = (
                cli.clone(),
                http.clone(),
                s3.clone(),
                body.clone(),
                run.clone(),
                ids.clone(),
            );
            async move {
                let id = match target {
                    Target::Stowage => {
                        stowage_upload(&http, &cli, multipart_body(&body)).await?["carv_file_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    }
                    _ => {
                        let key = format!("bench/{run}/{i}");
                        s3.put_object()
                            .bucket(&cli.direct_staging)
                            .key(&key)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .map_err(|e| {
                                format!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
                            })?;
                        key
                    }
                };
                ids.lock().unwrap()[i] = id;
                Ok(0)
            }
        })
        .await
    };
    if setup["errors"].as_u64() != Some(0) {
        return Err(json!({ "setup_failed": setup }));
    }
    let ids = ids.lock().unwrap().clone();
    Ok(Arc::new(ids))
}

/// Promotes one staged file: a webhook naming it (for candidate `user-{i}`), or CopyObject into
/// the direct long-term bucket + DeleteObject of the staging object.
async fn promote(
    cli: &Cli,
    http: &reqwest::Client,
    s3: &S3,
    target: Target,
    id: &str,
    i: usize,
) -> Result<(), String> {
    match target {
        Target::Stowage => {
            let payload = json!({
                "client_id": cli.client_id,
                "user_id": format!("user-{i}"),
                "data": { "first_name": "Jane", "last_name": "Doe" },
                "files": { "resume": { "carv_file_id": id } }
            });
            let response = http
                .post(format!("{}/webhooks/candidates", cli.stowage()))
                .header("X-API-Key", &cli.api_key)
                .header("X-ATS-Client-ID", &cli.client_id)
                .json(&payload)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if status.as_u16() != 200 || body["files"]["resume"]["state"] != "promoted" {
                return Err(format!("{status}: {body}"));
            }
        }
        _ => {
            s3.copy_object()
                .bucket(&cli.direct_files)
                .key(id)
                .copy_source(format!("{}/{}", cli.direct_staging, id))
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            s3.delete_object()
                .bucket(&cli.direct_staging)
                .key(id)
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        }
    }
    Ok(())
}

/// Promotes every staged file (`promote`), `concurrency` at a time; the run's figures.
async fn promote_all(
    cli: &Arc<Cli>,
    http: &reqwest::Client,
    s3: &S3,
    target: Target,
    ids: &Arc<Vec<String>>,
    concurrency: usize,
) -> Value {
    let (cli, http, s3, ids) = (cli.clone(), http.clone(), s3.clone(), ids.clone());
    drive(concurrency, ids.len(), move |i| {
        let (cli, http, s3, ids) = (cli.clone(), http.clone(), s3.clone(), ids.clone());
        async move {
            promote(&cli, &http, &s3, target, &ids[i], i).await?;
            Ok(0)
        }
    })
    .await
}

async fn webhook(
    cli: Arc<Cli>,
    target: Target,
    size: usize,
    concurrency: usize,
    count: usize,
    cpu: &[String],
    cpu_until: Option<&str>,
) -> Value {
    let http = http_client();
    let s3 = s3_client(&cli.s3_endpoint).await;
    let ids = match stage_files(&cli, &http, &s3, target, staged_document(size), count).await {
        Ok(ids) => ids,
        Err(failed) => return failed,
    };
    let trees = cpu_start(cpu);
    let mut result = promote_all(&cli, &http, &s3, target, &ids, concurrency).await;
    // Direct copies leave nothing behind.
    if let (Target::Stowage, Some(sql)) = (target, cpu_until) {
        let started = Instant::now();
        Counter::start(sql)
            .wait_zero(Duration::from_secs(300))
            .await;
        result["settle_s"] = json!(started.elapsed().as_secs_f64());
    }
    cpu_finish(&mut result, trees);
    result
}

/// Erasing promoted files, one request each: `DELETE /files/{id}`, or DeleteObject of the
/// long-term object (what an erasure must do on S3 at least). The files are staged and promoted
/// first, and (Stowage) their texts recorded (`settle_sql` answers 0), none of it measured.
async fn erase(
    cli: Arc<Cli>,
    target: Target,
    size: usize,
    concurrency: usize,
    count: usize,
    cpu: &[String],
    settle_sql: Option<&str>,
) -> Value {
    let http = http_client();
    let s3 = s3_client(&cli.s3_endpoint).await;
    let ids = match stage_files(&cli, &http, &s3, target, staged_document(size), count).await {
        Ok(ids) => ids,
        Err(failed) => return failed,
    };
    let promoted = promote_all(&cli, &http, &s3, target, &ids, 16).await;
    if promoted["errors"].as_u64() != Some(0) {
        return json!({ "setup_failed": promoted });
    }
    if let (Target::Stowage, Some(sql)) = (target, settle_sql) {
        Counter::start(sql)
            .wait_zero(Duration::from_secs(300))
            .await;
    }
    let trees = cpu_start(cpu);
    let mut result = drive(concurrency, count, move |i| {
        let (cli, http, s3, ids) = (cli.clone(), http.clone(), s3.clone(), ids.clone());
        async move {
            let id = &ids[i];
            match target {
                Target::Stowage => {
                    let response = http
                        .delete(format!("{}/files/{id}", cli.stowage()))
                        .header("X-API-Key", &cli.api_key)
                        .header("X-ATS-Client-ID", &cli.client_id)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if response.status().as_u16() != 204 {
                        return Err(format!("{}", response.status()));
                    }
                }
                _ => {
                    s3.delete_object()
                        .bucket(&cli.direct_files)
                        .key(id)
                        .send()
                        .await
                        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
                }
            }
            Ok(0)
        }
    })
    .await;
    cpu_finish(&mut result, trees);
    result
}

async fn fill_direct(cli: Arc<Cli>, prefix: String, count: usize, concurrency: usize) -> Value {
    let s3 = s3_client(&cli.s3_endpoint).await;
    let body = pdf(1024);
    drive(concurrency, count, move |i| {
        let (cli, s3, body, prefix) = (cli.clone(), s3.clone(), body.clone(), prefix.clone());
        async move {
            s3.put_object()
                .bucket(&cli.direct_staging)
                .key(format!("{prefix}/{i}"))
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            Ok(1024)
        }
    })
    .await
}

async fn delete_direct(cli: Arc<Cli>, prefix: String, concurrency: usize, cpu: &[String]) -> Value {
    let s3 = s3_client(&cli.s3_endpoint).await;
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&cli.direct_staging)
            .prefix(format!("{prefix}/"))
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    let trees = cpu_start(cpu);
    let started = Instant::now();
    let calls = keys.chunks(1000).map(|batch| {
        let s3 = s3.clone();
        let bucket = cli.direct_staging.clone();
        let objects: Vec<ObjectIdentifier> = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build().expect("key"))
            .collect();
        async move {
            let output = s3
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .expect("delete"),
                )
                .send()
                .await
                .expect("delete objects");
            (batch.len(), output.errors().len())
        }
    });
    let (mut deleted, mut errors) = (0usize, 0usize);
    let mut done = futures_util::stream::iter(calls).buffer_unordered(concurrency.max(1));
    while let Some((sent, failed)) = done.next().await {
        errors += failed;
        deleted += sent - failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut result = json!({ "ok": deleted, "deleted": deleted, "errors": errors, "elapsed_s": elapsed, "per_s": deleted as f64 / elapsed });
    cpu_finish(&mut result, trees);
    result
}

/// What the event receiver has seen: distinct event ids and when each first arrived.
#[derive(Default)]
struct Received {
    first_seen: std::collections::HashMap<String, Instant>,
    requests: usize,
}

async fn receive(
    axum::extract::State(seen): axum::extract::State<Arc<std::sync::Mutex<Received>>>,
    headers: axum::http::HeaderMap,
) -> axum::http::StatusCode {
    let id = headers
        .get("x-webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    seen.first_seen.entry(id).or_insert_with(Instant::now);
    axum::http::StatusCode::NO_CONTENT
}

async fn events(
    cli: Arc<Cli>,
    size: usize,
    concurrency: usize,
    uploads: usize,
    webhooks: usize,
    cpu: &[String],
    cpu_until: Option<&str>,
) -> Value {
    let seen = Arc::new(std::sync::Mutex::new(Received::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/events", axum::routing::post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = http_client();
    let registered: Value = http
        .post(format!("{}/event-endpoints", cli.stowage()))
        .header("X-API-Key", &cli.api_key)
        .header("X-ATS-Client-ID", &cli.client_id)
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("register the endpoint")
        .json()
        .await
        .expect("an endpoint");
    let Some(endpoint) = registered["id"].as_str().map(str::to_owned) else {
        eprintln!("cannot register an event endpoint: {registered}");
        std::process::exit(1);
    };

    let started = Instant::now();
    let trees = cpu_start(cpu);
    let mut upload_result = upload(cli.clone(), Target::Stowage, size, concurrency, uploads).await;
    cpu_finish(&mut upload_result, trees);
    let webhook_result = webhook(
        cli.clone(),
        Target::Stowage,
        size,
        concurrency,
        webhooks,
        cpu,
        cpu_until,
    )
    .await;
    let load_done = Instant::now();
    let expected = uploads + 2 * webhooks;
    let pending_at_end = expected.saturating_sub(seen.lock().unwrap().first_seen.len());
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.lock().unwrap().first_seen.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = http
        .delete(format!("{}/event-endpoints/{endpoint}", cli.stowage()))
        .header("X-API-Key", &cli.api_key)
        .header("X-ATS-Client-ID", &cli.client_id)
        .send()
        .await;
    let seen = seen.lock().unwrap();
    let last = seen.first_seen.values().max().copied().unwrap_or(started);
    let window = (last - started).as_secs_f64();
    json!({
        "upload": upload_result,
        "webhook": webhook_result,
        "events": {
            "expected": expected,
            "received": seen.first_seen.len(),
            "duplicates": seen.requests.saturating_sub(seen.first_seen.len()),
            "per_s": seen.first_seen.len() as f64 / window.max(1e-9),
            "pending_when_load_ended": pending_at_end,
            "drain_s": last.saturating_duration_since(load_done).as_secs_f64(),
        }
    })
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Arc::new(Cli::parse());
    let result = match &cli.command {
        Command::Upload {
            target,
            size,
            concurrency,
            count,
            rss_pid,
            cpu,
        } => {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = rss_pid.map(|pid| sample_rss(pid, stop.clone()));
            let trees = cpu_start(cpu);
            let mut result = upload(cli.clone(), *target, *size, *concurrency, *count).await;
            cpu_finish(&mut result, trees);
            stop.store(true, Ordering::Relaxed);
            if let Some(sampler) = sampler {
                let peak = sampler.await.expect("sampler");
                result["peak_rss_mb"] = json!(peak as f64 / 1_048_576.0);
            }
            result
        }
        Command::Webhook {
            target,
            size,
            concurrency,
            count,
            cpu,
            cpu_until_sql,
        } => {
            let until = cpu_until_sql.as_deref();
            webhook(
                cli.clone(),
                *target,
                *size,
                *concurrency,
                *count,
                cpu,
                until,
            )
            .await
        }
        Command::Erase {
            target,
            size,
            concurrency,
            count,
            cpu,
            settle_sql,
        } => {
            let settle = settle_sql.as_deref();
            erase(
                cli.clone(),
                *target,
                *size,
                *concurrency,
                *count,
                cpu,
                settle,
            )
            .await
        }
        Command::FillDirect {
            prefix,
            count,
            concurrency,
        } => fill_direct(cli.clone(), prefix.clone(), *count, *concurrency).await,
        Command::DeleteDirect {
            prefix,
            concurrency,
            cpu,
        } => delete_direct(cli.clone(), prefix.clone(), *concurrency, cpu).await,
        Command::Events {
            size,
            concurrency,
            uploads,
            webhooks,
            cpu,
            cpu_until_sql,
        } => {
            let until = cpu_until_sql.as_deref();
            events(
                cli.clone(),
                *size,
                *concurrency,
                *uploads,
                *webhooks,
                cpu,
                until,
            )
            .await
        }
        Command::WaitZero {
            sql,
            first,
            timeout,
        } => {
            let mut counter = Counter::start(sql);
            // The session is up before the clock starts.
            counter.count();
            let started = Instant::now();
            if let Some(first) = first {
                counter.run(first);
            }
            let left = counter.wait_zero(Duration::from_secs_f64(*timeout)).await;
            json!({"left": left, "seconds": started.elapsed().as_secs_f64()})
        }
        Command::CpuTicks { pids } => json!(
            pids.iter()
                .map(|&pid| tree_cpu_ticks(pid))
                .collect::<Vec<_>>()
        ),
        Command::MakeBuckets { names } => {
            let s3 = s3_client(&cli.s3_endpoint).await;
            for name in names {
                if let Err(e) = s3.create_bucket().bucket(name).send().await {
                    let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
                    if !text.contains("BucketAlreadyOwnedByYou")
                        && !text.contains("BucketAlreadyExists")
                    {
                        eprintln!("create bucket {name}: {text}");
                        std::process::exit(1);
                    }
                }
            }
            json!({ "buckets": names })
        }
    };
    println!("{result}");
}
