//! What an operator meets on day one, through the real binary: the access log, and start-up
//! that fails fast with one line naming the setting at fault.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::cli::stowage;
use crate::fixtures;
use crate::hardening::Reaper;
use crate::helpers::file_form;

/// Every stdout line of a JSON-mode `stowage serve`, collected as they come.
struct JsonServe {
    _child: Reaper,
    base: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    key: String,
}

async fn serve_json(dir: &std::path::Path) -> JsonServe {
    let mut child = stowage(dir)
        .env("STOWAGE_LOG_FORMAT", "json")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let lines = lines.clone();
        move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        }
    });
    let (mut base, mut key) = (None, None);
    while base.is_none() || key.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve started");
        let value: Value = serde_json::from_str(&line).expect("only JSON on stdout");
        if let Some(url) = value["url"].as_str() {
            base = Some(url.to_owned());
        }
        assert!(
            value.get("api_key").is_none(),
            "a secret in the log: {line}"
        );
        if let Some(file) = value["key_file"].as_str() {
            // JSON mode keeps the secret out of the log, in a file only its owner may read.
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(file).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{file}");
            key = Some(std::fs::read_to_string(file).unwrap().trim().to_owned());
        }
    }
    JsonServe {
        _child: Reaper(child),
        base: base.unwrap(),
        lines,
        key: key.unwrap(),
    }
}

/// A `201`, a `401` and a `422` each leave one access-log line with what an operator needs —
/// and no secret, and nothing on stdout that is not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_one_access_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_json(dir.path()).await;
    let http = crate::helpers::client_builder().build().unwrap();
    let upload = |key: &str, name: &str, bytes: Vec<u8>| {
        http.post(format!("{}/uploads", serve.base))
            .header("X-API-Key", key)
            .header("X-ATS-Client-ID", "default")
            .header("X-Request-Id", format!("req-{name}"))
            .multipart(file_form(name, bytes, "application/pdf"))
            .send()
    };
    let pdf = fixtures::pdf(3_000);
    assert_eq!(
        upload(&serve.key, "ok.pdf", pdf.clone())
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        upload("stw_nope", "anon.pdf", pdf.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        upload(&serve.key, "bad.exe", pdf.clone())
            .await
            .unwrap()
            .status(),
        422
    );

    let access = |request_id: &str| -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Value> = serve
                .lines
                .lock()
                .unwrap()
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).expect("only JSON on stdout"))
                .filter(|v| v["target"] == "stowage::access" && v["request_id"] == request_id)
                .collect();
            if !found.is_empty() || std::time::Instant::now() > deadline {
                assert_eq!(found.len(), 1, "one line per request for {request_id}");
                return found[0].clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let staged = access("req-ok.pdf");
    assert_eq!(staged["method"], "POST");
    assert_eq!(staged["route"], "/uploads");
    assert_eq!(staged["status"], 201);
    assert_eq!(staged["client_id"], "default");
    assert_eq!(staged["key"], "default");
    assert!(staged["bytes_in"].as_u64().unwrap() > 3_000, "{staged}");
    assert!(staged["bytes_out"].as_u64().unwrap() > 0, "{staged}");
    assert!(staged["latency_ms"].as_f64().unwrap() >= 0.0);

    let refused = access("req-anon.pdf");
    assert_eq!(refused["status"], 401);
    assert_eq!(
        refused["client_id"], "-",
        "an unverified caller is not named"
    );
    assert_eq!(access("req-bad.exe")["status"], 422);

    // A failed readiness probe is a 503 that says why, on the access line like any request:
    // not also an ERROR line of its own (probes fail every few seconds while a dependency is
    // down, and an ERROR should mean someone must act).
    std::fs::rename(dir.path().join("objects"), dir.path().join("objects-away")).unwrap();
    let ready = http
        .get(format!("{}/readyz", serve.base))
        .header("X-Request-Id", "req-ready")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(access("req-ready")["status"], 503);
    let errors: Vec<String> = serve
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["level"] == "ERROR")
        .cloned()
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    let all = serve.lines.lock().unwrap().join("\n");
    let secret = serve.key.rsplit('_').next().unwrap();
    assert_eq!(
        all.matches(secret).count(),
        0,
        "the key's secret appears in the log"
    );
    assert!(!all.contains('\u{1b}'), "colour codes in a log");

    // One shape for every line: timestamp, level, target and message at the top level with the
    // event's own fields, never nested; lines written inside a request name it in `span`.
    for line in serve.lines.lock().unwrap().iter() {
        let value: Value = serde_json::from_str(line).unwrap();
        let time = value["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{line}"
        );
        for key in ["level", "target", "message"] {
            assert!(value[key].is_string(), "no {key}: {line}");
        }
        assert!(value.get("fields").is_none(), "nested fields: {line}");
        assert!(value.get("spans").is_none(), "a span list: {line}");
        if let Some(span) = value.get("span") {
            assert!(span["request_id"].is_string(), "{line}");
        }
    }
    let in_request = serve
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message"] == "file staged")
        .expect("the upload's own line");
    assert_eq!(
        in_request["span"]["request_id"], "req-ok.pdf",
        "{in_request}"
    );
}

/// Settings, the setting named, the cause given.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);

/// Runs `stowage serve` with one bad setting and returns its exit code and stderr.
fn start_with(dir: &std::path::Path, envs: &[(&str, &str)]) -> (i32, String) {
    let out = stowage(dir)
        .envs(envs.iter().copied())
        .env("STOWAGE_STARTUP_TIMEOUT", "2s")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .arg("serve")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each unusable setting stops `serve` with a non-zero status and one line that names the
/// setting and the cause.
#[test]
fn bad_settings_stop_serve_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), b"not a directory").unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let file_storage = format!("fs:{}/a-file/objects", dir.path().display());
    let file_database = format!("sqlite://{}/a-file/db/stowage.db", dir.path().display());
    // (settings, the setting the line must name, the cause it must give)
    let cases: Vec<Case> = vec![
        (
            vec![("STOWAGE_STORAGE", &file_storage)],
            "STOWAGE_STORAGE",
            "Not a directory",
        ),
        (
            vec![
                ("STOWAGE_STORAGE", "s3"),
                ("STOWAGE_S3_ENDPOINT", "http://127.0.0.1:9"),
            ],
            "STOWAGE_S3_",
            "Connection refused",
        ),
        (
            vec![("STOWAGE_DATABASE_URL", &file_database)],
            "STOWAGE_DATABASE_URL",
            "a-file/db",
        ),
        (
            vec![(
                "STOWAGE_DATABASE_URL",
                "postgres://stowage@127.0.0.1:9/stowage",
            )],
            "STOWAGE_DATABASE_URL",
            "Connection refused",
        ),
        (
            vec![("STOWAGE_SWEEP_SCHEDULE", "* * * * *")],
            "STOWAGE_SWEEP_SCHEDULE",
            "six fields",
        ),
        (vec![("STOWAGE_LISTEN", &taken)], "STOWAGE_LISTEN", "in use"),
    ];
    for (envs, setting, cause) in cases {
        let (code, stderr) = start_with(dir.path(), &envs);
        assert_eq!(code, 1, "{envs:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("stowage: cannot start")
                && last.contains(setting)
                && last.contains(cause),
            "{envs:?}: {last}"
        );
        assert!(last.len() < 300, "one readable line: {last}");
    }
    let (code, stderr) = start_with(dir.path(), &[("STOWAGE_UPLOAD_TTL", "banana")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("STOWAGE_UPLOAD_TTL"), "{stderr}");
}

/// A start that fails after creating the database does not swallow the first-run key: it is
/// created and printed only once the service listens.
#[test]
fn a_failed_start_does_not_lose_the_first_run_key() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let out = stowage(dir.path())
        .env("STOWAGE_LISTEN", &taken)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("API key"),
        "a key was printed by a start that failed"
    );
    drop(held);
    let mut child = stowage(dir.path())
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Reaper(child);
    let printed = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("first run: created client 'default'"));
    assert!(printed.is_some(), "the next start printed no key");
}

/// A wrong PostgreSQL password stops `serve` with PostgreSQL's reason and its SQLSTATE, not
/// the server's source position. (scripts/test-services.sh makes role `stowage_password` log in
/// with a password; every other role is trusted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_database_password_is_said_plainly() {
    let admin = std::env::var("STOWAGE_TEST_PG_URL").expect("the test PostgreSQL");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(
        "DO $$ BEGIN CREATE ROLE stowage_password LOGIN PASSWORD 'right'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let host = admin
        .trim_start_matches("postgres://")
        .split_once('@')
        .unwrap()
        .1;
    let wrong = format!("postgres://stowage_password:wrong@{host}");
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = start_with(dir.path(), &[("STOWAGE_DATABASE_URL", &wrong)]);
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.contains("STOWAGE_DATABASE_URL")
            && last.contains("password authentication failed for user \"stowage_password\"")
            && last.contains("SQLSTATE 28P01")
            && !last.contains("at line"),
        "{last}"
    );
}
