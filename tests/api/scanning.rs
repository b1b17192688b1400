//! Malware scanning with a real clamd (started by scripts/test-services.sh with an offline
//! signature database: the EICAR test file): infected files are refused on both ways in and
//! nothing of them is kept; clean files carry their scan; clamd down or slow refuses uploads,
//! or stages them marked unscanned when failing open.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::direct::{put, sha256_hex};
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, json_with};

both_backends!(infected_files_are_refused_on_both_ways_in_and_nothing_is_kept);

/// The test clamd.
pub(crate) fn clamd() -> stowage::scan::ClamdAddr {
    let raw = std::env::var("STOWAGE_TEST_CLAMD")
        .expect("STOWAGE_TEST_CLAMD is not set: run the suite with scripts/test.sh");
    stowage::scan::ClamdAddr::parse(&raw).unwrap()
}

async fn open_direct(app: &TestApp, name: &str, bytes: &[u8]) -> Value {
    let opened = app
        .acme(Method::POST, "/uploads/direct")
        .json(&json!({"file_name": name, "file_size": bytes.len(), "sha256": sha256_hex(bytes)}))
        .send()
        .await
        .unwrap();
    json_with(opened, 201).await
}

async fn infected_files_are_refused_on_both_ways_in_and_nothing_is_kept(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.clamd = Some(clamd())).await;

    // A clean file is staged with its scan, on its answer and on its record.
    let clean = json_with(
        app.upload("cv.pdf", fixtures::text_pdf(&[&["Ada Lovelace"]]))
            .await,
        201,
    )
    .await;
    assert_eq!(clean["scan"]["status"], "clean", "{clean}");
    assert!(
        clean["scan"]["engine"]
            .as_str()
            .is_some_and(|e| e.starts_with("ClamAV")),
        "{clean}"
    );
    let id = clean["carv_file_id"].as_str().unwrap();
    let record = app.get_json(&format!("/files/{id}")).await;
    assert_eq!(record["scan"]["status"], "clean");

    // The EICAR test file as a .pdf, inside a real PDF, inside a .docx: refused as infected,
    // naming the signature.
    let cases = [
        ("eicar.pdf", fixtures::eicar()),
        ("resume.pdf", fixtures::pdf_with_eicar()),
        ("resume.docx", fixtures::docx_with_eicar()),
    ];
    for (name, bytes) in cases {
        let refused = assert_error(app.upload(name, bytes).await, 422, "file_infected").await;
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Stowage.Test.EICAR"),
            "{name}: {refused}"
        );
    }

    // Sent directly: refused at completion, again on a repeated completion, and deleted.
    let bytes = fixtures::pdf_with_eicar();
    let opened = open_direct(&app, "direct.pdf", &bytes).await;
    let direct = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(&app, &opened, bytes).await.status().is_success());
    for _ in 0..2 {
        let completed = app
            .acme(Method::POST, &format!("/uploads/{direct}/complete"))
            .send()
            .await
            .unwrap();
        assert_error(completed, 422, "file_infected").await;
    }
    // A clean direct upload carries its scan too.
    let bytes = fixtures::text_pdf(&[&["Grace Hopper"]]);
    let opened = open_direct(&app, "clean.pdf", &bytes).await;
    let clean_direct = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(&app, &opened, bytes).await.status().is_success());
    let completed = app
        .acme(Method::POST, &format!("/uploads/{clean_direct}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with(completed, 201).await["scan"]["status"], "clean");

    let mut staged = app.objects(stowage::store::Area::Staging).await;
    staged.sort();
    let mut expected = vec![format!("acme/{id}"), format!("acme/{clean_direct}")];
    expected.sort();
    assert_eq!(staged, expected, "nothing of an infected file is kept");
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("stowage_scans_total{outcome=\"infected\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// clamd unreachable: uploads are refused (503 naming it) and the replica is not ready — or,
/// failing open, staged marked `skipped` and the replica stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clamd_uploads_fail_closed_or_are_marked_unscanned() {
    let nowhere = stowage::scan::ClamdAddr::parse("tcp://127.0.0.1:9").unwrap();
    let closed = TestApp::spawn_with(Backend::SqliteFs, |c| c.clamd = Some(nowhere.clone())).await;
    let refused = assert_error(
        closed.upload("cv.pdf", fixtures::pdf(2_000)).await,
        503,
        "service_unavailable",
    )
    .await;
    assert_eq!(refused["error"]["details"]["dependency"], "clamd");
    assert_eq!(closed.rows().await, 0, "nothing kept");
    let ready = closed.http.get(closed.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["clamd"], "unavailable");

    let open = TestApp::spawn_with(Backend::SqliteFs, |c| {
        c.clamd = Some(nowhere);
        c.clamd_fail_open = true;
    })
    .await;
    let staged = json_with(open.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    assert_eq!(staged["scan"]["status"], "skipped");
    assert_eq!(staged["scan"]["engine"], Value::Null);
    let ready = open.http.get(open.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["clamd"], "unavailable");

    // Without STOWAGE_CLAMD, files are not scanned and say so.
    let unscanned = TestApp::spawn(Backend::SqliteFs).await;
    let staged = json_with(unscanned.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    assert!(staged.get("scan").is_none(), "{staged}");
    let ready: Value = unscanned
        .http
        .get(unscanned.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready["checks"].get("clamd").is_none(), "{ready}");
}

/// A clamd that takes the bytes and never answers: the upload is refused after
/// `STOWAGE_CLAMD_TIMEOUT`, not held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clamd_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // Reads everything, answers nothing.
            held.push(tokio::spawn(async move {
                let mut sink = vec![0u8; 65536];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut socket, &mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }));
        }
    });
    let silent = stowage::scan::ClamdAddr::parse(&format!("tcp://{addr}")).unwrap();
    let app = TestApp::spawn_with(Backend::SqliteFs, |c| {
        c.clamd = Some(silent);
        c.clamd_timeout = Duration::from_secs(1);
    })
    .await;
    let started = std::time::Instant::now();
    let refused = assert_error(
        app.upload("cv.pdf", fixtures::pdf(2_000)).await,
        503,
        "service_unavailable",
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clamd"),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(app.rows().await, 0);
}

/// Waits until the test clamd finds `marker` (after a signature for it was added and clamd told
/// to reload).
async fn wait_until_detected(marker: &[u8]) {
    let scanner = stowage::scan::Scanner::new(clamd(), Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut session = scanner.session();
        session.feed(marker).await;
        if let Ok((stowage::scan::Verdict::Infected(_), _)) = session.finish().await.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "clamd never loaded the new signature"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Adds a body signature for `marker` to the test clamd's database and reloads it.
async fn add_signature(name: &str, marker: &[u8]) {
    let db = std::env::var("STOWAGE_TEST_CLAMD_DB").expect("the test clamd's database");
    std::fs::write(
        format!("{db}/{name}.ndb"),
        format!("{name}:0:*:{}\n", hex::encode(marker)),
    )
    .unwrap();
    let stowage::scan::ClamdAddr::Tcp(hostport) = clamd() else {
        panic!("the test clamd listens on TCP");
    };
    let mut socket = tokio::net::TcpStream::connect(hostport).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, b"zRELOAD\0")
        .await
        .unwrap();
    wait_until_detected(marker).await;
}

both_backends!(a_signature_added_later_is_caught_by_rescan_and_the_file_quarantined);

async fn a_signature_added_later_is_caught_by_rescan_and_the_file_quarantined(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.clamd = Some(clamd());
        c.events_allow_private = true;
    })
    .await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let marker = format!("STOWAGE-LATER-MALWARE-{tag}");
    let mut ids = Vec::new();
    for (user, text) in [("u-bad", marker.as_str()), ("u-good", "Grace Hopper")] {
        let staged = json_with(
            app.upload("cv.pdf", fixtures::text_pdf(&[&["Candidate", text]]))
                .await,
            201,
        )
        .await;
        assert_eq!(staged["scan"]["status"], "clean", "unknown at upload time");
        let id = staged["carv_file_id"].as_str().unwrap().to_owned();
        json_with(
            app.post_webhook("candidates", &crate::helpers::resume_webhook(user, &id))
                .await,
            200,
        )
        .await;
        ids.push(id);
    }
    let (bad, good) = (&ids[0], &ids[1]);

    let signature = format!("Stowage.Test.Later{}", &tag[..8]);
    add_signature(&signature, marker.as_bytes()).await;
    let rescan = |since: &str| {
        let mut command = crate::crash::stowage_on(&app);
        command
            .env(
                "STOWAGE_CLAMD",
                std::env::var("STOWAGE_TEST_CLAMD").unwrap(),
            )
            .args(["rescan", "--json", "--since", since]);
        command.output().expect("run stowage rescan")
    };
    let out = rescan("1h");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scanned"], 2, "{report}");
    assert_eq!(report["clean"], 1, "{report}");
    assert_eq!(
        report["infected"][0]["carv_file_id"],
        bad.as_str(),
        "{report}"
    );
    assert!(
        report["infected"][0]["signature"]
            .as_str()
            .unwrap()
            .starts_with(&signature)
    );

    // Quarantined: the record says so, the client hears of it, the content is refused.
    let record = app.get_json(&format!("/files/{bad}")).await;
    assert_eq!(record["scan"]["status"], "infected", "{record}");
    assert!(
        record["scan"]["signature"]
            .as_str()
            .unwrap()
            .starts_with(&signature)
    );
    let content = app.acme(Method::GET, &format!("/files/{bad}/content?redirect=false"));
    let refused = crate::helpers::assert_refused(content, 410, "file_quarantined").await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&signature)
    );
    let events = app.events_of("file.infected").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["file"]["carv_file_id"], bad.as_str());
    // The clean one is untouched, its scan renewed.
    let record = app.get_json(&format!("/files/{good}")).await;
    assert_eq!(record["scan"]["status"], "clean");
    let content = app
        .acme(
            Method::GET,
            &format!("/files/{good}/content?redirect=false"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);

    // Again: nothing new to quarantine; a window that holds no promotion scans nothing.
    let again: Value = serde_json::from_slice(&rescan("1h").stdout).unwrap();
    assert_eq!(again["infected"], json!([]), "{again}");
    let none: Value = serde_json::from_slice(&rescan("2099-01-01T00:00:00Z").stdout).unwrap();
    assert_eq!(none["scanned"], 0, "{none}");
}
