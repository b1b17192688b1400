//! The examples in docs/api.md, run as written against a real `stowage serve` on the embedded
//! default and on S3 storage. On S3 the presigned host is a recording proxy in front of the S3
//! server, so the test sees every byte a client sends to storage: never its API key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{start_serve, stowage};
use crate::fixtures;
use crate::helpers::Backend;

crate::both_backends!(every_api_doc_example_works_as_written);

/// The `sh` blocks of a Markdown document, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    code_blocks(markdown, "sh")
}

/// The code blocks of a Markdown document in one language, in order.
pub(crate) fn code_blocks(markdown: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, open) if open == fence => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Forwards TCP connections to `target`, keeping a copy of everything clients send.
async fn recording_proxy(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = log.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let mut buf = vec![0; 16 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, seen)
}

async fn every_api_doc_example_works_as_written(backend: Backend) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let blocks = shell_blocks(&doc);
    assert!(
        blocks.len() >= 5,
        "docs/api.md has its examples: {blocks:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut serve = stowage(dir.path());
    let mut to_storage = None;
    if let Backend::PostgresS3 = backend {
        let endpoint = std::env::var("STOWAGE_TEST_S3_ENDPOINT").expect("S3 server for tests");
        let (public, seen) =
            recording_proxy(endpoint.trim_start_matches("http://").to_owned()).await;
        to_storage = Some(seen);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        serve
            .env("STOWAGE_STORAGE", "s3")
            .env("STOWAGE_S3_ENDPOINT", &endpoint)
            .env("STOWAGE_S3_PUBLIC_ENDPOINT", &public)
            .env("STOWAGE_S3_FORCE_PATH_STYLE", "true")
            .env(
                "STOWAGE_STAGING_BUCKET",
                format!("docs-staging-{}", &suffix[..12]),
            )
            .env(
                "STOWAGE_FILES_BUCKET",
                format!("docs-files-{}", &suffix[..12]),
            );
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            serve.env(name, std::env::var(name).unwrap_or_else(|_| "test".into()));
        }
        serve.env("AWS_EC2_METADATA_DISABLED", "true");
    }
    let (mut child, key, base) = start_serve(&mut serve).await;
    let pdf = fixtures::text_pdf(&[&["Jane Doe", "Senior engineer"], &["Experience"]]);
    std::fs::write(dir.path().join("resume.pdf"), &pdf).unwrap();

    let http = crate::helpers::client_builder().build().unwrap();
    let stage_one = async || -> String {
        let form = crate::helpers::file_form("other.pdf", fixtures::pdf(2048), "application/pdf");
        let response = http
            .post(format!("{base}/uploads"))
            .header("X-API-Key", &key)
            .header("X-ATS-Client-ID", "default")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let body = crate::helpers::json_with(response, 201).await;
        body["carv_file_id"].as_str().unwrap().to_owned()
    };

    let mut id: Option<String> = None;
    for block in &blocks {
        // The set-up block names the README's address; the test provides its own.
        if block
            .lines()
            .all(|l| l.starts_with("export ") || l.trim().is_empty())
        {
            continue;
        }
        // An example that discards a file gets a staged file of its own to discard.
        let block_id = if block.contains("-X DELETE") {
            stage_one().await
        } else {
            id.clone().unwrap_or_default()
        };
        let out = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .env("STOWAGE", &base)
            .env("KEY", &key)
            .env("CLIENT", "default")
            .env("ID", &block_id)
            .current_dir(dir.path())
            .output()
            .await
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "example failed:\n{block}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            // (A status printed by `-w '%{http_code}'` is a line of its own; ids and hashes
            // may contain any digits.)
            !stdout.contains("{\"error\":{") && !stdout.lines().any(|l| l.trim().starts_with('4')),
            "example got a refusal:\n{block}\n{stdout}"
        );
        if id.is_none()
            && let Some(staged) = stdout
                .lines()
                .find_map(|l| serde_json::from_str::<Value>(l).ok())
                .and_then(|v| v["carv_file_id"].as_str().map(str::to_owned))
        {
            id = Some(staged);
        }
    }

    let copy = std::fs::read(dir.path().join("resume-copy.pdf")).expect("the download example");
    assert!(copy == pdf, "the downloaded copy is the uploaded file");
    if let Some(seen) = to_storage {
        let seen = String::from_utf8_lossy(&seen.lock().unwrap()).to_lowercase();
        assert!(
            seen.contains("get /"),
            "the download went through the public host"
        );
        assert!(
            !seen.contains("x-api-key"),
            "the API key reached the storage host"
        );
        assert!(!seen.contains(&key.to_lowercase()));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        tokio::task::spawn_blocking(move || child.wait()).await
    })
    .await;
}

/// The signature checks docs/api.md gives integrators, in Python and in JavaScript, run as
/// written on a delivery the service really made: they accept it, and refuse it tampered with,
/// under another secret, or signed too long ago.
#[tokio::test]
async fn the_signature_examples_verify_a_real_delivery() {
    use crate::receiver::Receiver;

    let markdown = std::fs::read_to_string("docs/api.md").unwrap();
    let app =
        crate::helpers::TestApp::spawn_with(Backend::SqliteFs, |c| c.events_allow_private = true)
            .await;
    let receiver = Receiver::start().await;
    let (_, secret) = crate::deliveries::register(&app, &receiver.url, None).await;
    receiver.set_secret(&secret);
    crate::helpers::json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    let delivery = receiver.wait_for_type("file.staged").await;
    assert!(delivery.signature_valid);

    // A second set of headers, correctly signed ten minutes ago: only the age is wrong.
    let old = delivery.timestamp - 600;
    let old_signature = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{old}.{}", delivery.body).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let case = serde_json::json!({
        "secret": secret,
        "body": delivery.body,
        "timestamp": delivery.timestamp.to_string(),
        "signature": delivery.signature,
        "old_timestamp": old.to_string(),
        "old_signature": old_signature,
    });
    let dir = tempfile::tempdir().unwrap();
    let case_path = dir.path().join("case.json");
    std::fs::write(&case_path, case.to_string()).unwrap();
    let expected = "[true, false, false, false]";

    let python = code_blocks(&markdown, "python");
    assert_eq!(python.len(), 1, "one Python example");
    let script = dir.path().join("verify.py");
    std::fs::write(
        &script,
        format!(
            "{}\n{}",
            python[0],
            r#"
import json, sys
c = json.load(open(sys.argv[1]))
body = c["body"].encode()
def headers(ts, sig):
    return {"X-Webhook-Id": "x", "X-Webhook-Timestamp": ts, "X-Webhook-Signature": sig}
print(json.dumps([
    verify(c["secret"], headers(c["timestamp"], c["signature"]), body),
    verify(c["secret"], headers(c["timestamp"], c["signature"]), body.replace(b"staged", b"promoted")),
    verify("whsec_" + "0" * 64, headers(c["timestamp"], c["signature"]), body),
    verify(c["secret"], headers(c["old_timestamp"], c["old_signature"]), body),
]))
"#
        ),
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&case_path)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected,
        "Python"
    );

    let js = code_blocks(&markdown, "js");
    assert_eq!(js.len(), 1, "one JavaScript example");
    let script = dir.path().join("verify.js");
    std::fs::write(
        &script,
        format!(
            "{}\n{}",
            js[0],
            r#"
const c = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
const body = Buffer.from(c.body);
const headers = (ts, sig) => ({ "x-webhook-id": "x", "x-webhook-timestamp": ts, "x-webhook-signature": sig });
const results = [
  verify(c.secret, headers(c.timestamp, c.signature), body),
  verify(c.secret, headers(c.timestamp, c.signature), Buffer.from(c.body.replace("staged", "promoted"))),
  verify("whsec_" + "0".repeat(64), headers(c.timestamp, c.signature), body),
  verify(c.secret, headers(c.old_timestamp, c.old_signature), body),
];
console.log("[" + results.join(", ") + "]");
"#
        ),
    )
    .unwrap();
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(&case_path)
        .output()
        .expect("node runs (scripts/test-services.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected,
        "JavaScript"
    );
}
