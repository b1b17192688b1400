//! The holes a hostile review found, each held shut: a sweep racing a binding, stalled storage,
//! unbounded multipart framing, leftover temporary files, request ids.

use std::time::Duration;

use reqwest::Method;
use stowage::store::Area;

use crate::both_backends;
use crate::crash::serve_process;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, file_part_head, json_with, streamed_body};

both_backends!(
    a_sweep_during_a_binding_never_deletes_the_bound_file,
    an_upload_aborted_while_its_bytes_arrive_ends_clearly_and_leaves_nothing,
);

/// Kills a child process when dropped, whatever the test's outcome.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn at(raw: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(raw.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

pub async fn sleep_until(t: chrono::DateTime<chrono::Utc>) {
    let wait = (t - chrono::Utc::now()).num_milliseconds();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
}

/// A webhook binds a file a moment before it expires and holds its transaction open (a pause
/// point) while a sweep runs past `expires_at`: the sweep must leave the file alone, and the
/// webhook's 200 must mean a promoted file whose bytes exist.
async fn a_sweep_during_a_binding_never_deletes_the_bound_file(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.upload_ttl = Duration::from_secs(3)).await;
    let (child, base) = serve_process(
        &app,
        &[
            ("STOWAGE_FAULT_PAUSE", "bind.before_commit=3s"),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let _child = Reaper(child);
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(6_000)).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    let expires_at = at(&staged["expires_at"]);

    sleep_until(expires_at - chrono::TimeDelta::milliseconds(1_000)).await;
    let webhook = crate::helpers::resume_webhook("u", &id);
    let sent = tokio::spawn(
        app.http
            .post(format!("{base}/webhooks/candidates"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .json(&webhook)
            .send(),
    );
    // The binding transaction is open (and holds the file) until about expires_at + 2 s.
    sleep_until(expires_at + chrono::TimeDelta::milliseconds(300)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.expired, 0, "the sweep expired a file being bound");

    let answer = json_with(sent.await.unwrap().unwrap(), 200).await;
    assert_eq!(answer["files"]["resume"]["state"], "promoted", "{answer}");
    let key = format!("acme/{id}");
    assert!(
        app.state.store().exists(Area::Files, &key).await.unwrap(),
        "a 200 for a file whose bytes are gone"
    );
    let file = app.get_json(&format!("/files/{id}")).await;
    assert_eq!(file["state"], "promoted");
    let again = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(
        (again.expired, again.errors),
        (0, 0),
        "{:?}",
        again.last_error
    );
}

/// The S3 endpoint accepts connections and then says nothing (a black hole): uploads fail with
/// 503 in bounded time and give their per-key slot back, a sweep pass ends, and service
/// resumes when storage answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_object_storage_fails_fast_and_frees_upload_slots() {
    use crate::outage::{Proxy, host_port};

    let app = TestApp::spawn(Backend::PostgresS3).await;
    let s3 = Proxy::to(host_port(app.config.s3_endpoint.as_deref().unwrap())).await;
    let mut config = app.config.clone();
    config.s3_endpoint = Some(format!("http://127.0.0.1:{}", s3.port));
    config.s3_attempt_timeout = Duration::from_millis(700);
    config.s3_operation_timeout = Duration::from_secs(2);
    config.max_concurrent_uploads = 1;
    config.receiving_grace = Duration::ZERO;
    let through = stowage::connect(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(stowage::serve(
        listener,
        through.clone(),
        std::future::pending(),
    ));
    let upload = |size: usize| {
        app.http
            .post(format!("{base}/uploads"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .multipart(crate::helpers::file_form(
                "cv.pdf",
                fixtures::pdf(size),
                "application/pdf",
            ))
            .send()
    };
    json_with(upload(2_000).await.unwrap(), 201).await;

    s3.stall();
    // A single PUT and a multipart upload; the slot (one per key here) must come back each time.
    for size in [2_000, 2_000, 10 * 1024 * 1024] {
        let started = std::time::Instant::now();
        let body =
            crate::helpers::assert_error(upload(size).await.unwrap(), 503, "service_unavailable")
                .await;
        assert_eq!(body["error"]["details"]["dependency"], "object storage");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a stalled upload hung for {:?}",
            started.elapsed()
        );
    }
    let pass = tokio::time::timeout(
        Duration::from_secs(60),
        stowage::sweeper::run_pass(&through),
    )
    .await
    .expect("a sweep pass against stalled storage never ended");
    assert!(pass.errors > 0, "the pass reports the stalled storage");

    s3.restore();
    json_with(upload(2_000).await.unwrap(), 201).await;
    // What the stalled uploads could not clean up themselves, the next passes do. Their own
    // clean-up may still be under way on a loaded machine (its calls were stalled too), so
    // the passes run until nothing is left, within a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = stowage::sweeper::run_pass(&through).await;
        assert_eq!(run.errors, 0, "{:?}", run.last_error);
        let incomplete = app.incomplete_uploads().await;
        let receiving = app.rows_in(stowage::domain::FileState::Receiving).await;
        if incomplete == 0 && receiving == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {incomplete} incomplete upload(s), {receiving} receiving row(s)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

both_backends!(
    multipart_framing_is_bounded,
    a_trickling_body_is_cut_off_at_the_body_deadline
);

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Part headers that never end, too many parts: refused with 400 while the server's memory
/// stays flat (it once buffered each header up to the body limit).
async fn multipart_framing_is_bounded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (child, base) = serve_process(&app, &[("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *")]).await;
    let pid = child.id();
    let _child = Reaper(child);
    let before = peak_rss_kib(pid);

    // 16 requests at once, each a part header of 8 MiB with no blank line.
    let mut header_bombs = Vec::new();
    for _ in 0..16 {
        let mut body =
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
        body.extend(std::iter::repeat_n(b'a', 8 * 1024 * 1024));
        let request = app
            .http
            .post(format!("{base}/uploads"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
            .send();
        header_bombs.push(tokio::spawn(request));
    }
    for request in header_bombs {
        let response = request.await.unwrap().unwrap();
        let body = crate::helpers::assert_error(response, 400, "malformed_multipart").await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("headers"),
            "{body}"
        );
    }
    let grown_mib = (peak_rss_kib(pid) - before) / 1024;
    assert!(
        grown_mib < 48,
        "16 endless part headers grew the server by {grown_mib} MiB"
    );

    // Too many parts.
    let mut body = Vec::new();
    for i in 0..100 {
        body.extend_from_slice(
            format!("--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(b"--b--\r\n");
    let response = app
        .acme(Method::POST, "/uploads")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(response, 400, "malformed_multipart").await;

    // Extra small parts around the file are fine.
    let form = crate::helpers::file_form("cv.pdf", fixtures::pdf(3_000), "application/pdf")
        .text("note", "hello")
        .text("other", "world");
    json_with(app.upload_form(form).await, 201).await;
    app.state.repo().ping().await.unwrap();
    assert_eq!(app.rows().await, 1);
}

/// A client that keeps sending, slowly enough to dodge the idle timeout, is cut off when the
/// whole-body deadline passes, and nothing it sent stays behind.
async fn a_trickling_body_is_cut_off_at_the_body_deadline(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.body_idle_timeout = Duration::from_secs(1);
        c.body_timeout = Duration::from_secs(3);
    })
    .await;
    let (tx, body) = crate::helpers::streamed_body();
    tx.send(Ok(crate::helpers::file_part_head("slow.pdf")))
        .await
        .unwrap();
    tx.send(Ok(fixtures::pdf(20_000))).await.unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if tx.send(Ok(b"%".to_vec())).await.is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let response = app
        .acme(Method::POST, "/uploads")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await;
    if let Ok(response) = response {
        crate::helpers::assert_error(response, 408, "request_timeout").await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "a trickling body held on for {took:?}"
    );
    trickle.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.rows().await != 0 || !app.objects(Area::Staging).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the trickled upload left something behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Temporary files are unnamed: a process killed in the middle of a large upload leaves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_upload_leaves_no_temporary_files() {
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let (mut child, base) = serve_process(
        &app,
        &[
            ("STOWAGE_FAULT", "upload.mid_multipart"),
            ("STOWAGE_SPILL_DIR", dir),
            ("TMPDIR", dir),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let sent = app
        .http
        .post(format!("{base}/uploads"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .multipart(crate::helpers::file_form(
            "big.pdf",
            fixtures::pdf(20 * 1024 * 1024),
            "application/pdf",
        ))
        .send()
        .await;
    assert!(sent.is_err(), "the server died mid-request: {sent:?}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Past the cap on temporary space an upload gets 503 (and leaves nothing); within it, uploads
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_space_is_capped() {
    let app = TestApp::spawn_with(Backend::PostgresS3, |c| {
        c.spill_limit = 4 * 1024 * 1024;
    })
    .await;
    let body = crate::helpers::assert_error(
        app.upload("big.pdf", fixtures::pdf(20 * 1024 * 1024)).await,
        503,
        "service_unavailable",
    )
    .await;
    assert_eq!(body["error"]["details"]["dependency"], "temporary space");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.incomplete_uploads().await != 0 || app.rows().await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refused upload left something"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.state.spill().available(),
        4 * 1024 * 1024,
        "the budget came back"
    );
    json_with(
        app.upload("small.pdf", fixtures::pdf(3 * 1024 * 1024))
            .await,
        201,
    )
    .await;
    json_with(app.upload("cv.docx", fixtures::docx()).await, 201).await;
}

both_backends!(request_ids_from_clients_are_kept_only_when_plain);

/// A plain request id is echoed; a long or odd one (log forging) is replaced by a fresh one.
async fn request_ids_from_clients_are_kept_only_when_plain(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap()
    };
    let plain = app
        .acme(Method::GET, "/uploads/nope")
        .header("x-request-id", "req_2026-11-23.abc:1")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&plain), "req_2026-11-23.abc:1");
    for odd in [
        "a b".to_owned(),
        "x\" level=error msg=\"forged".to_owned(),
        "z".repeat(500),
    ] {
        let response = app
            .acme(Method::GET, "/uploads/nope")
            .header("x-request-id", odd.as_str())
            .send()
            .await
            .unwrap();
        let echoed = id_of(&response);
        assert_ne!(echoed, odd);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        let body = json_with(response, 404).await;
        assert_eq!(body["error"]["request_id"], echoed.as_str());
    }
}

/// An upload falls silent for longer than the grace period and the sweeper aborts its row;
/// then the rest of its bytes arrive. It must end at once with `409 upload_aborted` (not a
/// `500` after a wait) and leave nothing: no row, no object, no pending write.
async fn an_upload_aborted_while_its_bytes_arrive_ends_clearly_and_leaves_nothing(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| {
        c.receiving_grace = Duration::from_millis(800);
    })
    .await;
    let pdf = fixtures::pdf(200_000);
    let (tx, body) = streamed_body();
    let sent = tokio::spawn(
        app.acme(Method::POST, "/uploads")
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
            .send(),
    );
    let mut head = file_part_head("cv.pdf");
    head.extend_from_slice(&pdf[..20_000]);
    tx.send(Ok(head)).await.unwrap();
    // The row exists once the head is checked.
    for _ in 0..100 {
        if app.rows().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.rows().await, 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.receiving_aborted, 1, "{run:?}");
    let mut rest = pdf[20_000..].to_vec();
    rest.extend_from_slice(b"\r\n--b--\r\n");
    for chunk in rest.chunks(16 * 1024) {
        if tx.send(Ok(chunk.to_vec())).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    drop(tx);
    let answer = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("the upload ended promptly")
        .unwrap()
        .unwrap();
    assert_error(answer, 409, "upload_aborted").await;
    // The upload's own clean-up runs before it answers.
    app.assert_nothing_stored().await;
}
