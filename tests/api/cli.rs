//! The `stowage` binary: first-run bootstrap, keys and clients, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::fixtures;
use crate::helpers::{file_form, json_with};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

pub fn stowage(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "STOWAGE_DATABASE_URL",
            format!("sqlite://{}/db/stowage.db", dir.display()),
        )
        .env("STOWAGE_STORAGE", format!("fs:{}/objects", dir.display()))
        .env("STOWAGE_LISTEN", "127.0.0.1:0")
        .current_dir(dir);
    cmd
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run stowage");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn clients_add_creates_the_key_once_and_revoke_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let first =
        run_json(stowage(dir.path()).args(["clients", "add", "acme", "--key", "ats", "--json"]));
    assert_eq!(first["client_id"], "acme");
    assert_eq!(first["workspace"], "acme");
    assert_eq!(first["key"], "ats");
    assert!(first["api_key"].as_str().unwrap().starts_with("stw_"));

    let second = run_json(stowage(dir.path()).args([
        "clients",
        "add",
        "acme-eu",
        "--key",
        "ats",
        "--workspace",
        "Acme Europe",
        "--json",
    ]));
    assert_eq!(second["workspace"], "Acme Europe");
    assert!(
        second.get("api_key").is_none(),
        "existing key: no secret printed"
    );

    // Removed and added again without a workspace: the label it had stays; another key
    // granted the client gets the same label.
    let removed = stowage(dir.path())
        .args(["clients", "remove", "acme-eu"])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let readded =
        run_json(stowage(dir.path()).args(["clients", "add", "acme-eu", "--key", "ats", "--json"]));
    assert_eq!(readded["workspace"], "Acme Europe");
    let other_key =
        run_json(stowage(dir.path()).args(["clients", "add", "acme-eu", "--key", "bi", "--json"]));
    assert_eq!(other_key["workspace"], "Acme Europe");

    let created = run_json(stowage(dir.path()).args(["keys", "create", "other", "--json"]));
    assert_eq!(created["key"], "other");
    let again = stowage(dir.path())
        .args(["keys", "create", "other"])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a key name is unique");

    let revoked = stowage(dir.path())
        .args(["keys", "revoke", "ats"])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    let unknown = stowage(dir.path())
        .args(["keys", "revoke", "nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let bad = stowage(dir.path())
        .args(["clients", "add", "../evil", "--key", "k"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "client ids are restricted");
}

#[test]
fn migrate_and_storage_init_prepare_an_empty_install() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        stowage(dir.path())
            .arg("migrate")
            .status()
            .unwrap()
            .success()
    );
    assert!(dir.path().join("db/stowage.db").exists());
    assert!(
        stowage(dir.path())
            .args(["storage", "init"])
            .status()
            .unwrap()
            .success()
    );
    assert!(dir.path().join("objects/stowage-staging").is_dir());
    assert!(dir.path().join("objects/stowage-files").is_dir());
}

#[test]
fn stats_and_sweep_report_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let stats = run_json(stowage(dir.path()).args(["stats", "--json"]));
    assert_eq!(stats["files"]["staged"]["files"], 0);
    assert_eq!(stats["expiring"]["within_1h"], 0);
    assert_eq!(stats["last_sweep"], Value::Null);

    let sweep = run_json(stowage(dir.path()).args(["sweep", "--json"]));
    assert_eq!(sweep["expired"], 0);
    assert_eq!(sweep["errors"], 0);
    let stats = run_json(stowage(dir.path()).args(["stats", "--json"]));
    assert_eq!(
        stats["last_sweep"]["id"], sweep["id"],
        "the pass is recorded"
    );

    let text = stowage(dir.path()).arg("stats").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("staged"), "{text}");
    assert!(text.contains("expiring within 24h: 0"), "{text}");
    let bad = stowage(dir.path())
        .env("STOWAGE_SWEEP_SCHEDULE", "every minute")
        .arg("serve")
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "an invalid schedule is refused at start"
    );
}

/// A `stowage serve` child, killed when dropped: a test that fails half-way leaves no server
/// running.
pub struct Serving(std::process::Child);

impl std::ops::Deref for Serving {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Serving {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `stowage serve`; returns the child, the bootstrap key and the base URL.
pub async fn start_serve(cmd: &mut Command) -> (Serving, String, String) {
    let mut child = Serving(
        cmd.arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (key, base) = tokio::task::spawn_blocking(move || {
        let mut base = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("stowage listening on ") {
                base = Some(url.to_owned());
            }
            if let Some(key) =
                line.strip_prefix("first run: created client 'default' with API key 'default': ")
            {
                return (
                    key.to_owned(),
                    base.expect("the first-run key is printed once listening"),
                );
            }
        }
        panic!("serve exited before printing its first-run key");
    })
    .await
    .unwrap();
    (child, key, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_in_serve_expires_unclaimed_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, key, base) = start_serve(
        stowage(dir.path())
            .env("STOWAGE_UPLOAD_TTL", "1s")
            .env("STOWAGE_SWEEP_SCHEDULE", "* * * * * *"),
    )
    .await;
    let http = crate::helpers::client_builder().build().unwrap();
    let body = json_with(
        http.post(format!("{base}/uploads"))
            .header("X-API-Key", &key)
            .header("X-ATS-Client-ID", "default")
            .multipart(file_form("cv.pdf", fixtures::pdf(2048), "application/pdf"))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let url = format!("{base}/uploads/{}", body["carv_file_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let record = json_with(
            http.get(&url)
                .header("X-API-Key", &key)
                .header("X-ATS-Client-ID", "default")
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        if record["state"] == "expired" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never swept: {record}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let staging = dir.path().join("objects/stowage-staging/default");
    assert_eq!(
        std::fs::read_dir(staging).unwrap().count(),
        0,
        "object deleted"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_a_default_client_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, key, base) = start_serve(&mut stowage(dir.path())).await;

    let http = crate::helpers::client_builder().build().unwrap();
    let response = http
        .post(format!("{base}/uploads"))
        .header("X-API-Key", &key)
        .header("X-ATS-Client-ID", "default")
        .multipart(file_form("cv.pdf", fixtures::pdf(2048), "application/pdf"))
        .send()
        .await
        .unwrap();
    json_with(response, 201).await;
    assert!(dir.path().join("objects/stowage-staging/default").is_dir());

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    // A second start finds keys and does not bootstrap again.
    let out = stowage(dir.path())
        .args(["keys", "create", "default"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the default key exists");
}

crate::both_backends!(keys_and_clients_can_be_listed_and_a_client_removed);

/// An operator finds their way around keys and clients from the command line, against the
/// database a running service uses.
async fn keys_and_clients_can_be_listed_and_a_client_removed(backend: crate::helpers::Backend) {
    let app = crate::helpers::TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cli = || {
        let mut cmd = stowage(dir.path());
        cmd.env("STOWAGE_DATABASE_URL", &app.config.database_url);
        cmd
    };
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(2048)).await, 201).await;
    let file = format!("/uploads/{}", staged["carv_file_id"].as_str().unwrap());

    // The key that was used shows when; the one that was not shows null. Never a secret.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let keys = loop {
        let keys = run_json(cli().args(["keys", "list", "--json"]));
        if !keys[0]["last_used_at"].is_null() || std::time::Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert_eq!(keys[0]["name"], "acme-key");
    assert_eq!(keys[0]["client_ids"], serde_json::json!(["acme"]));
    assert!(keys[0]["last_used_at"].is_string(), "used key: {keys}");
    assert!(keys[0]["created_at"].is_string());
    assert!(keys[0]["revoked_at"].is_null());
    assert_eq!(keys[1]["name"], "globex-key");
    assert!(keys[1]["last_used_at"].is_null(), "unused key: {keys}");
    assert!(!keys.to_string().contains("stw_"), "no secret in a listing");
    assert!(!keys.to_string().contains(&app.acme_key[4..20]));
    let text = cli().args(["keys", "list"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.contains("acme-key") && text.contains("globex-key"),
        "{text}"
    );

    let clients = run_json(cli().args(["clients", "list", "--json"]));
    assert_eq!(clients[0]["client_id"], "acme", "{clients}");
    assert_eq!(clients[0]["key"], "acme-key");
    assert_eq!(clients[1]["client_id"], "globex");

    // Removing a client locks its key out of it; its files stay and come back with a grant.
    let removed = cli().args(["clients", "remove", "acme"]).output().unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let refused = app.acme(reqwest::Method::GET, &file).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let clients = run_json(cli().args(["clients", "list", "--json"]));
    assert_eq!(clients.as_array().unwrap().len(), 1, "{clients}");
    let again = cli().args(["clients", "remove", "acme"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("no key may act for client 'acme'"),
        "{stderr}"
    );

    let restored = cli()
        .args(["clients", "add", "acme", "--key", "acme-key"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "{restored:?}");
    let back = json_with(
        app.acme(reqwest::Method::GET, &file).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(back["state"], "staged");
}

/// docs/configuration.md names every setting `stowage --help` has, by flag and variable, with
/// the same default.
#[test]
fn the_configuration_doc_matches_the_binary() {
    let help = Command::new(BIN)
        .arg("--help")
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    let mut flags = 0;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(flag) = line
            .trim()
            .strip_prefix("--")
            .map(|f| f.split(' ').next().unwrap())
        else {
            continue;
        };
        if ["help", "version"].contains(&flag) {
            continue;
        }
        flags += 1;
        let text = lines.get(i + 1).copied().unwrap_or("");
        let env = text
            .split("[env: ")
            .nth(1)
            .and_then(|r| r.split(['=', ']']).next())
            .unwrap_or_else(|| panic!("--{flag} has a variable: {text}"));
        let row = rows
            .iter()
            .find(|r| r[1] == format!("`--{flag}`"))
            .unwrap_or_else(|| panic!("--{flag} is not in docs/configuration.md"));
        assert_eq!(row[2], format!("`{env}`"), "--{flag}'s variable");
        if let Some(default) = text.split("[default: ").nth(1) {
            let default = default.split(']').next().unwrap().trim_matches('"');
            assert!(
                row[3].contains(default),
                "--{flag}: the binary's default is {default}, the doc says {}",
                row[3]
            );
        }
    }
    assert!(flags >= 25, "{flags} flags read from --help");
    assert_eq!(
        rows.len(),
        flags,
        "the doc lists a setting the binary does not have"
    );
}

/// `STOWAGE_CORS_ORIGINS` takes exact origins only: `*`, `null` and an origin with a path are
/// refused at start-up with one line naming the setting, before anything is printed or stored.
#[test]
fn serve_refuses_cors_origins_that_are_not_exact() {
    for bad in [
        "*",
        "null",
        "https://ats.example.com/app",
        "https://ok.example.com,*",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = stowage(dir.path())
            .arg("serve")
            .env("STOWAGE_CORS_ORIGINS", bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}: serve started");
        assert!(out.stdout.is_empty(), "{bad}: printed {:?}", out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
        assert!(stderr.contains("STOWAGE_CORS_ORIGINS"), "{stderr}");
        assert!(
            !dir.path().join("db").exists(),
            "{bad}: the database was created"
        );
    }
}

/// `STOWAGE_OCR` checks at start that Tesseract has every language asked for, and says which
/// package to install when it has not.
#[test]
fn serve_refuses_ocr_languages_tesseract_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let out = stowage(dir.path())
        .arg("serve")
        .env("STOWAGE_OCR", "true")
        .env("STOWAGE_OCR_LANGUAGES", "eng+qqq")
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("STOWAGE_OCR_LANGUAGES"), "{stderr}");
    assert!(stderr.contains("tesseract-ocr-qqq"), "{stderr}");
    let out = stowage(dir.path())
        .arg("serve")
        .env("STOWAGE_OCR", "true")
        .env("STOWAGE_OCR_LANGUAGES", "eng; rm")
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Tesseract language list"));
}
