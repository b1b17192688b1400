//! The browser pattern of docs/api.md, driven from a real headless Chromium: the backend mints
//! an upload token, a page on another origin uploads with `fetch` and `FormData` (proxied) and
//! straight to storage (direct), and the backend binds what the page uploaded. The page never
//! holds the API key, and its token is refused anywhere else.

use std::process::Stdio;
use std::time::Duration;

use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, json_with, resume_webhook};
use crate::tokens::mint;

both_backends!(a_page_uploads_with_a_token_and_never_sees_the_key);

/// The page: docs/api.md's browser functions as written, then a harness that calls them —
/// one resume through Stowage, one straight to storage — tries the token elsewhere, and posts
/// what it saw back to the page's own server.
const HARNESS: &str = r#"<script id="cfg" type="application/json">CONFIG</script><script>
const cfg = JSON.parse(document.getElementById('cfg').textContent);
const file = (b64, name) =>
  new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: 'application/pdf' });
const out = {};
async function run() {
  out.proxied = await uploadResume(cfg.base, cfg.token, file(cfg.proxied, 'resume.pdf'));
  const elsewhere = await fetch(cfg.base + '/files', { headers: { Authorization: 'Bearer ' + cfg.token } });
  out.elsewhere = { status: elsewhere.status, body: await elsewhere.json(),
                    request_id: elsewhere.headers.get('X-Request-Id') };
  out.direct = await uploadResumeDirect(cfg.base, cfg.token, file(cfg.direct, 'portfolio.pdf'));
}
run()
  .catch((e) => { out.error = String(e && e.stack || e); })
  .finally(() => fetch('/result', { method: 'POST', body: JSON.stringify(out) }));
</script>"#;

/// docs/api.md's one `html` block.
fn documented_page_code() -> String {
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let blocks = crate::docs::code_blocks(&markdown, "html");
    assert_eq!(blocks.len(), 1, "docs/api.md has one browser example");
    blocks[0].clone()
}

/// The distribution's Chromium (scripts/test-services.sh installs it).
fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("Chromium is not installed: scripts/test-services.sh installs it")
        .to_owned()
}

async fn a_page_uploads_with_a_token_and_never_sees_the_key(backend: Backend) {
    // The page's own origin: a listener on another port.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page_listener.local_addr().unwrap());
    let allowed = origin.clone();
    let app = TestApp::spawn_with(backend, move |config| {
        config.cors_origins = vec![allowed];
    })
    .await;
    // On S3 the page PUTs to the bucket itself: the rule `stowage storage init --cors` applies.
    app.state
        .store()
        .allow_browsers(std::slice::from_ref(&origin))
        .await
        .expect("bucket CORS");

    // The ATS backend mints a token for the page.
    let token = mint(&app, json!({"max_files": 2, "allowed_extensions": ["pdf"]})).await;
    let b64 = |b: Vec<u8>| aws_smithy_types::base64::encode(b);
    let config = json!({
        "base": app.base,
        "token": token["token"],
        "proxied": b64(fixtures::text_pdf(&[&["Ada Lovelace", "Analyst"]])),
        "direct": b64(fixtures::text_pdf(&[&["Grace Hopper", "Engineer"]])),
    });
    let page = format!(
        "<!doctype html><html><body>{}{}</body></html>",
        documented_page_code(),
        HARNESS.replace("CONFIG", &config.to_string())
    );
    let (tx, mut results) = mpsc::channel::<String>(1);
    let site = axum::Router::new()
        .route("/", get(move || async move { axum::response::Html(page) }))
        .route(
            "/result",
            post(move |body: String| async move {
                let _ = tx.send(body).await;
            }),
        );
    let server = tokio::spawn(async move { axum::serve(page_listener, site).await });

    let profile = tempfile::tempdir().unwrap();
    let mut browser = tokio::process::Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{origin}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start Chromium");
    let seen = tokio::time::timeout(Duration::from_secs(90), results.recv()).await;
    let _ = browser.kill().await;
    server.abort();
    let seen: Value = serde_json::from_str(
        &seen
            .expect("the page reported within 90 s")
            .expect("a report"),
    )
    .unwrap();
    assert!(seen.get("error").is_none(), "the page failed: {seen}");

    // Proxied: staged for the token's client.
    assert_eq!(seen["proxied"]["content_type"], "application/pdf", "{seen}");
    let proxied = seen["proxied"]["carv_file_id"].as_str().unwrap();
    // Elsewhere: refused, and the browser could read why and the request id.
    assert_eq!(seen["elsewhere"]["status"], 403, "{seen}");
    assert_eq!(seen["elsewhere"]["body"]["error"]["code"], "token_scope");
    assert!(seen["elsewhere"]["request_id"].is_string(), "{seen}");
    // Direct: the bytes went straight to storage and were checked like any upload.
    assert_eq!(seen["direct"]["content_type"], "application/pdf", "{seen}");
    assert_eq!(seen["direct"]["file_name"], "portfolio.pdf", "{seen}");
    let direct = seen["direct"]["carv_file_id"].as_str().unwrap();

    // The backend names each file in a webhook, as always.
    for (user, id) in [("candidate-7", proxied), ("candidate-8", direct)] {
        json_with(
            app.post_webhook("candidates", &resume_webhook(user, id))
                .await,
            200,
        )
        .await;
    }
    for id in [proxied, direct] {
        assert_eq!(
            app.get_json(&format!("/files/{id}")).await["state"],
            "promoted"
        );
    }
}

/// `stowage storage init --cors` puts the browser rules on both buckets, for exactly the
/// configured origins, and prints them; without origins it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_init_cors_lets_browsers_reach_the_buckets() {
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let run = |origins: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"));
        command
            .args(["storage", "init", "--cors"])
            .env("STOWAGE_STORAGE", "s3")
            .env(
                "STOWAGE_S3_ENDPOINT",
                app.config.s3_endpoint.clone().unwrap(),
            )
            .env("STOWAGE_S3_FORCE_PATH_STYLE", "true")
            .env("STOWAGE_STAGING_BUCKET", &app.config.staging_bucket)
            .env("STOWAGE_FILES_BUCKET", &app.config.files_bucket)
            .env("STOWAGE_CORS_ORIGINS", origins);
        command.output().expect("run stowage")
    };
    let refused = run("");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("STOWAGE_CORS_ORIGINS"), "{stderr}");

    let origins = "https://ats.example.com,https://careers.example.org";
    let applied = run(origins);
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(stdout.contains("https://careers.example.org"), "{stdout}");
    let s3 = app.raw_s3().await;
    for (bucket, method) in [
        (&app.config.staging_bucket, "PUT"),
        (&app.config.files_bucket, "GET"),
    ] {
        let cors = s3.get_bucket_cors().bucket(bucket).send().await.unwrap();
        let rule = &cors.cors_rules()[0];
        assert_eq!(
            rule.allowed_origins(),
            ["https://ats.example.com", "https://careers.example.org"]
        );
        assert!(
            rule.allowed_methods().iter().any(|m| m == method),
            "{rule:?}"
        );
    }
    let staging = s3
        .get_bucket_cors()
        .bucket(&app.config.staging_bucket)
        .send()
        .await
        .unwrap();
    let headers = staging.cors_rules()[0].allowed_headers();
    assert!(
        headers.iter().any(|h| h == "x-amz-checksum-sha256"),
        "{headers:?}"
    );
}
