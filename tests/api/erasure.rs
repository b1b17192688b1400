//! Personal data: erasure of a file and of a candidate, retention, encryption at rest, the file
//! listing and the download audit trail.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stowage::store::Area;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, assert_refused, json_with};

both_backends!(
    an_erased_file_leaves_nothing_personal_and_nothing_stored,
    a_file_is_erased_in_any_state,
    erasing_a_candidate_erases_their_files_and_webhook_data,
    retention_erases_only_files_past_their_age,
    files_are_listed_newest_first_a_page_at_a_time,
    an_erasure_killed_after_its_commit_is_finished_by_the_next_sweep,
    a_download_racing_an_erasure_hands_nothing_out,
    no_personal_value_survives_an_erasure_anywhere_in_the_database,
);

async fn stage(app: &TestApp, name: &str, bytes: Vec<u8>) -> String {
    let body = json_with(app.upload(name, bytes).await, 201).await;
    body["carv_file_id"].as_str().unwrap().to_owned()
}

fn candidate(user: &str, resume: &str) -> Value {
    json!({
        "client_id": "acme",
        "user_id": user,
        "data": { "first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com" },
        "files": { "resume": { "carv_file_id": resume } }
    })
}

/// Stages a PDF and binds it with a candidate webhook for `user`: the id of a promoted file.
async fn promoted(app: &TestApp, name: &str, user: &str) -> String {
    let id = stage(app, name, fixtures::pdf(20_000)).await;
    let answer = json_with(
        app.post_webhook("candidates", &candidate(user, &id)).await,
        200,
    )
    .await;
    assert_eq!(answer["files"]["resume"]["state"], "promoted", "{answer}");
    id
}

async fn erase(app: &TestApp, id: &str) -> reqwest::Response {
    app.acme(Method::DELETE, &format!("/files/{id}"))
        .send()
        .await
        .unwrap()
}

/// Every stored key in both areas.
async fn stored(app: &TestApp) -> HashSet<String> {
    let mut keys: HashSet<String> = app.objects(Area::Staging).await.into_iter().collect();
    keys.extend(app.objects(Area::Files).await);
    keys
}

fn event_file_id(event: &Value) -> &str {
    event["data"]["file"]["carv_file_id"].as_str().unwrap()
}

async fn an_erased_file_leaves_nothing_personal_and_nothing_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = promoted(&app, "Jane Doe CV.pdf", "u-1").await;
    let key = format!("acme/{id}");
    assert!(stored(&app).await.contains(&key));

    // A download is on the audit trail: who (the key's name) and which request.
    let download = app
        .acme(Method::GET, &format!("/files/{id}/content?redirect=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let request_id = download.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let downloads = app.events_of("file.downloaded").await;
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert_eq!(downloads[0]["data"]["key_name"], "acme-key");
    assert_eq!(downloads[0]["data"]["request_id"], request_id);
    assert_eq!(event_file_id(&downloads[0]), id);

    // Another client can neither see nor erase it.
    assert_refused(
        app.globex(Method::DELETE, &format!("/files/{id}")),
        404,
        "file_not_found",
    )
    .await;
    assert!(
        stored(&app).await.contains(&key),
        "globex erased acme's file"
    );

    for _ in 0..2 {
        assert_eq!(
            erase(&app, &id).await.status(),
            204,
            "erasing is 204, twice"
        );
    }
    assert!(
        !stored(&app).await.contains(&key),
        "the bytes are still stored"
    );
    let record = app.get_json(&format!("/files/{id}")).await;
    let fields: HashSet<&str> = record
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        HashSet::from(["carv_file_id", "state", "erased_at"]),
        "{record}"
    );
    assert_eq!(record["state"], "erased");
    assert_refused(
        app.acme(Method::GET, &format!("/files/{id}/content")),
        404,
        "file_not_found",
    )
    .await;

    // A webhook naming it — a new one, or the original one sent again — finds no file.
    assert_error(
        app.post_webhook("candidates", &candidate("u-9", &id)).await,
        422,
        "file_not_found",
    )
    .await;
    assert_error(
        app.post_webhook("candidates", &candidate("u-1", &id)).await,
        422,
        "file_not_found",
    )
    .await;

    // The erasure is an event; what earlier events said about the file is redacted.
    let erased = app.events_of("file.erased").await;
    assert_eq!(erased.len(), 1, "one event, however often it is erased");
    assert_eq!(erased[0]["data"]["reason"], "request");
    assert_eq!(erased[0]["data"]["file"]["state"], "erased");
    let all = app.get_json("/events?limit=100").await;
    let text = all.to_string();
    assert!(
        !text.contains("Jane Doe CV"),
        "an event still names the file: {text}"
    );
    for event in all["results"].as_array().unwrap() {
        assert!(event["data"]["file"]["sha256"].is_null(), "{event}");
    }
    // And the deleted-early route agrees it is gone.
    assert_eq!(
        app.acme(Method::DELETE, &format!("/uploads/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

async fn a_file_is_erased_in_any_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let staged = stage(&app, "a.pdf", fixtures::pdf(5_000)).await;
    let discarded = stage(&app, "b.docx", fixtures::docx()).await;
    let large = stage(&app, "c.pdf", fixtures::pdf(9 * 1024 * 1024)).await;
    assert_eq!(
        app.acme(Method::DELETE, &format!("/uploads/{discarded}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    for id in [&staged, &discarded, &large] {
        assert_eq!(erase(&app, id).await.status(), 204, "{id}");
        let record = app.get_json(&format!("/files/{id}")).await;
        assert_eq!(record["state"], "erased", "{record}");
    }
    assert_eq!(
        stored(&app).await,
        HashSet::new(),
        "objects left after erasure"
    );
    // Not expired, not consumed: a staged file erased is simply not there any more.
    assert_error(
        app.post_webhook("candidates", &candidate("u-1", &staged))
            .await,
        422,
        "file_not_found",
    )
    .await;
    for missing in [uuid::Uuid::new_v4().to_string(), "not-an-id".to_owned()] {
        assert_error(erase(&app, &missing).await, 404, "file_not_found").await;
    }
    let stats = app.get_json("/ops/storage").await;
    let text = stats.to_string();
    assert!(
        text.contains("erased"),
        "the erased state is reported: {text}"
    );
}

async fn erasing_a_candidate_erases_their_files_and_webhook_data(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = promoted(&app, "jane-1.pdf", "u-1").await;
    let (resume, letter) = (
        stage(&app, "jane-2.pdf", fixtures::pdf(8_000)).await,
        stage(&app, "letter.docx", fixtures::docx()).await,
    );
    let application = json!({
        "client_id": "acme",
        "user_id": "u-1",
        "data": { "email": "jane.doe@example.com" },
        "files": {
            "resume": { "carv_file_id": resume },
            "cover_letter": { "carv_file_id": letter }
        }
    });
    let answer = app
        .acme(Method::POST, "/webhooks/applications")
        .header("Idempotency-Key", "application-1")
        .json(&application)
        .send()
        .await
        .unwrap();
    let answer = json_with(answer, 200).await;
    let webhook_id = answer["webhook_id"].as_str().map(str::to_owned);
    let other = promoted(&app, "john.pdf", "u-2").await;

    // Another client's erasure of the same user_id touches nothing of acme's.
    let none = json_with(
        app.globex(Method::POST, "/erasures")
            .json(&json!({ "user_id": "u-1" }))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(none, json!({ "erased": [] }));

    let erase_u1 = || async {
        json_with(
            app.acme(Method::POST, "/erasures")
                .json(&json!({ "user_id": "u-1" }))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
    };
    let erased = erase_u1().await;
    let ids: HashSet<&str> = erased["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        HashSet::from([first.as_str(), resume.as_str(), letter.as_str()])
    );
    assert_eq!(
        erase_u1().await,
        erased,
        "repeating it lists the same files"
    );
    // A user_id no webhook can carry erases nothing (and breaks nothing).
    for odd in ["   ", "u-1\u{0}"] {
        let none = app
            .acme(Method::POST, "/erasures")
            .json(&json!({ "user_id": odd }))
            .send()
            .await
            .unwrap();
        assert_eq!(json_with(none, 200).await, json!({ "erased": [] }));
        let listed = app
            .get_json(&format!("/files?user_id={}", urlencode(odd)))
            .await;
        assert_eq!(listed["results"], json!([]));
    }
    for id in [&first, &resume, &letter] {
        assert_eq!(
            app.get_json(&format!("/files/{id}")).await["state"],
            "erased"
        );
    }
    assert_eq!(
        stored(&app).await,
        HashSet::from([format!("acme/{other}")]),
        "only the other candidate's file is left"
    );
    let kept = app.get_json(&format!("/files/{other}")).await;
    assert_eq!(kept["state"], "promoted");
    assert_eq!(kept["webhook"]["user_id"], "u-2");

    // The webhooks keep no personal data; a retry under the old key is answered afresh.
    if let Some(webhook_id) = webhook_id {
        let webhook = app
            .state
            .repo()
            .get_webhook("acme", webhook_id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!webhook.payload.contains("jane.doe"), "{}", webhook.payload);
    }
    let retry = app
        .acme(Method::POST, "/webhooks/applications")
        .header("Idempotency-Key", "application-1")
        .json(&application)
        .send()
        .await
        .unwrap();
    assert_error(retry, 422, "file_not_found").await;

    // Bad requests are told apart.
    for (body, status, code) in [
        ("{}", 422, "invalid_payload"),
        (r#"{"user_id": ""}"#, 422, "invalid_payload"),
        (
            r#"{"user_id": "u-1", "email": "x"}"#,
            422,
            "invalid_payload",
        ),
        (r#"{"user_id": 7}"#, 422, "invalid_payload"),
        ("{not json", 400, "invalid_json"),
    ] {
        let response = app
            .acme(Method::POST, "/erasures")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(response, status, code).await;
    }

    // The command line does the same.
    let printed = erase_by_cli(&app, &["--client", "acme", "--user-id", "u-2"]);
    assert_eq!(printed, json!({ "erased": [other] }));
    assert_eq!(stored(&app).await, HashSet::new());

    // An unknown client is said to be unknown, not "erased 0 file(s)".
    let unknown = crate::crash::stowage_on(&app)
        .args(["erase", "--client", "nobody", "--user-id", "u-2"])
        .output()
        .unwrap();
    assert!(!unknown.status.success(), "an unknown client is an error");
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("unknown client nobody"), "{said}");

    // One file needs only its id: it names its client.
    let loose = stage(&app, "loose.pdf", fixtures::pdf(3_000)).await;
    let printed = erase_by_cli(&app, &["--file", loose.as_str()]);
    assert_eq!(printed, json!({ "erased": [loose] }));
    let record = app.get_json(&format!("/files/{loose}")).await;
    assert_eq!(record["state"], "erased", "{record}");
    // Another client's name with it, or an id nobody has, finds nothing.
    for args in [
        vec!["erase", "--file", loose.as_str(), "--client", "globex"],
        vec!["erase", "--file", "00000000-0000-4000-8000-000000000000"],
    ] {
        let out = crate::crash::stowage_on(&app).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
}

/// `stowage erase ARGS --json` against the app's database and store: what it printed.
fn erase_by_cli(app: &TestApp, args: &[&str]) -> Value {
    let out = crate::crash::stowage_on(app)
        .arg("erase")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn retention_erases_only_files_past_their_age(backend: Backend) {
    let retention = Duration::from_millis(1500);
    let app = TestApp::spawn_with(backend, |c| c.file_retention = Some(retention)).await;
    let old = promoted(&app, "old.pdf", "u-1").await;
    let old_webhook = app.get_json(&format!("/files/{old}")).await["webhook"]["webhook_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(retention + Duration::from_millis(200)).await;
    let young = promoted(&app, "young.pdf", "u-2").await;
    let waiting = stage(&app, "staged.pdf", fixtures::pdf(3_000)).await;

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(run.erased, 1);
    assert_eq!(
        app.get_json(&format!("/files/{old}")).await["state"],
        "erased"
    );
    assert_eq!(
        app.get_json(&format!("/files/{young}")).await["state"],
        "promoted"
    );
    assert_eq!(
        app.get_json(&format!("/files/{waiting}")).await["state"],
        "staged"
    );
    assert_eq!(
        stored(&app).await,
        HashSet::from([format!("acme/{young}"), format!("acme/{waiting}")])
    );
    let erased = app.events_of("file.erased").await;
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0]["data"]["reason"], "retention");
    assert_eq!(event_file_id(&erased[0]), old);
    // Its webhook has no file left, so it keeps no personal data either.
    let webhook = app
        .state
        .repo()
        .get_webhook("acme", old_webhook)
        .await
        .unwrap()
        .unwrap();
    assert!(!webhook.payload.contains("jane.doe"), "{}", webhook.payload);
    assert_eq!(webhook.user_id, "u-1");
}

async fn files_are_listed_newest_first_a_page_at_a_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(stage(&app, &format!("cv-{i}.pdf"), fixtures::pdf(2_000)).await);
    }
    let bound = ids[1].clone();
    json_with(
        app.post_webhook("candidates", &candidate("u-7", &bound))
            .await,
        200,
    )
    .await;
    let theirs = json_with(
        app.globex(Method::POST, "/uploads")
            .multipart(crate::helpers::file_form(
                "g.pdf",
                fixtures::pdf(2_000),
                "application/pdf",
            ))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;

    // Two at a time, following `next`; a file staged meanwhile does not shift the pages.
    let first = app.get_json("/files?limit=2").await;
    let late = stage(&app, "late.pdf", fixtures::pdf(2_000)).await;
    let mut seen: Vec<String> = Vec::new();
    let mut page = first;
    loop {
        for file in page["results"].as_array().unwrap() {
            seen.push(file["carv_file_id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => page = app.get_json(next).await,
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        seen, newest_first,
        "late file {late}, other client's {theirs}"
    );

    let staged = app.get_json("/files?state=staged&limit=100").await;
    assert_eq!(staged["results"].as_array().unwrap().len(), 5, "{staged}");
    assert!(staged["next"].is_null());
    let of_user = app.get_json("/files?user_id=u-7").await;
    let results = of_user["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["carv_file_id"], bound.as_str());
    assert_eq!(results[0]["webhook"]["user_id"], "u-7");
    assert_eq!(results[0]["file_name"], "cv-1.pdf");

    for bad in ["state=lost", "limit=0", "limit=101", "cursor=zzz"] {
        let response = app
            .acme(Method::GET, &format!("/files?{bad}"))
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 400, "bad_request").await;
        assert_eq!(
            body["error"]["details"]["parameter"],
            bad.split('=').next().unwrap()
        );
    }
}

fn urlencode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

async fn an_erasure_killed_after_its_commit_is_finished_by_the_next_sweep(backend: Backend) {
    // The sweeper finishes an erasure once a write under way could no longer land: the store's
    // operation timeout, kept short here.
    let settle = Duration::from_secs(2);
    let app = TestApp::spawn_with(backend, |c| c.s3_operation_timeout = settle).await;
    let id = promoted(&app, "jane.pdf", "u-1").await;
    let (mut child, base) = crate::crash::serve_process(
        &app,
        &[
            ("STOWAGE_FAULT", "erase.after_commit"),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let killed = app
        .http
        .delete(format!("{base}/files/{id}"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .send()
        .await;
    assert!(killed.is_err(), "the server died mid-request: {killed:?}");
    let _ = child.wait();

    // Committed: the file is erased, but its bytes are still there.
    assert_eq!(
        app.get_json(&format!("/files/{id}")).await["state"],
        "erased"
    );
    assert!(stored(&app).await.contains(&format!("acme/{id}")));
    tokio::time::sleep(settle).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(run.erasures_finished, 1);
    assert_eq!(
        stored(&app).await,
        HashSet::new(),
        "the sweep left the bytes"
    );
    crate::crash::assert_consistent(&app).await;
}

/// Erasures racing webhooks, promotions and sweeps, on PostgreSQL: every file ends erased with
/// nothing of it in storage, and no webhook is told a file is bound that has no object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasures_racing_webhooks_promotions_and_sweeps_leave_nothing() {
    let settle = Duration::from_secs(2);
    let app = TestApp::spawn_with(Backend::PostgresS3, |c| c.s3_operation_timeout = settle).await;
    let app = std::sync::Arc::new(app);
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(stage(&app, &format!("cv-{i}.pdf"), fixtures::pdf(4_000 + i * 100)).await);
    }
    let sweeping = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                stowage::sweeper::run_pass(&app.state).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let webhook = {
                let (app, id) = (app.clone(), id.clone());
                async move {
                    let response = app.post_webhook("candidates", &candidate("u-1", &id)).await;
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap();
                    (status, body)
                }
            };
            let erasure = {
                let (app, id) = (app.clone(), id.clone());
                async move {
                    // Stagger the erasures across the bind, the copy and the mark.
                    tokio::time::sleep(Duration::from_millis((i as u64 % 6) * 7)).await;
                    erase(&app, &id).await.status().as_u16()
                }
            };
            let ((status, body), erased) = tokio::join!(webhook, erasure);
            assert_eq!(erased, 204, "erasure of {id}");
            match status {
                200 => {}
                422 => assert_eq!(body["error"]["code"], "file_not_found", "{body}"),
                other => panic!("webhook for {id} answered {other}: {body}"),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    sweeping.await.unwrap();
    for id in &ids {
        assert_eq!(
            app.get_json(&format!("/files/{id}")).await["state"],
            "erased"
        );
    }
    // The erasures and the promotions they raced cleaned up after themselves...
    assert_eq!(
        stored(&app).await,
        HashSet::new(),
        "objects left before any sweep"
    );
    // ...and a sweep, once a write under way could no longer land, finds nothing to fix.
    tokio::time::sleep(settle).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(
        stored(&app).await,
        HashSet::new(),
        "erased files left objects"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
    crate::crash::assert_consistent(&app).await;
}

/// Encryption at rest: every write — a single PUT, a multipart upload, the promotion's copy —
/// asks S3 for it, and the objects say so when asked directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_written_is_encrypted_at_rest() {
    use aws_sdk_s3::types::ServerSideEncryption;

    let app = TestApp::spawn_with(Backend::PostgresS3, |c| {
        c.s3_sse = Some(stowage::config::SseAlgorithm::Aes256);
    })
    .await;
    let small = stage(&app, "small.pdf", fixtures::pdf(10_000)).await;
    let large = stage(&app, "large.pdf", fixtures::pdf(9 * 1024 * 1024)).await;
    let moved = promoted(&app, "moved.pdf", "u-1").await;
    let s3 = app.raw_s3().await;
    for (bucket, id) in [
        (&app.config.staging_bucket, &small),
        (&app.config.staging_bucket, &large),
        (&app.config.files_bucket, &moved),
    ] {
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(format!("acme/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "{bucket}/acme/{id}"
        );
    }

    // A KMS key is passed on as configured.
    let kms = TestApp::spawn_with(Backend::PostgresS3, |c| {
        c.s3_sse = Some(stowage::config::SseAlgorithm::AwsKms);
        c.s3_sse_kms_key_id = Some("alias/stowage-test".into());
    })
    .await;
    let id = stage(&kms, "kms.pdf", fixtures::pdf(10_000)).await;
    let head = kms
        .raw_s3()
        .await
        .head_object()
        .bucket(&kms.config.staging_bucket)
        .key(format!("acme/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    // The key as configured, or (AWS, LocalStack) its full ARN.
    let key = head.ssekms_key_id().unwrap_or_default();
    assert!(
        key == "alias/stowage-test" || key.ends_with(":key/alias/stowage-test"),
        "{key}"
    );
}

async fn a_download_racing_an_erasure_hands_nothing_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = promoted(&app, "Jane Doe CV.pdf", "u-1").await;
    // A server that reads the file for a download, then waits before putting it on record.
    let (mut child, base) = crate::crash::serve_process(
        &app,
        &[
            ("STOWAGE_FAULT_PAUSE", "download.before_record=1500ms"),
            ("STOWAGE_SWEEP_SCHEDULE", "0 0 0 1 1 *"),
        ],
    )
    .await;
    let download = app
        .http
        .get(format!("{base}/files/{id}/content?redirect=false"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .send();
    let erasure = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        erase(&app, &id).await.status()
    };
    let (download, erased) = tokio::join!(download, erasure);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(erased, 204);
    assert_error(download.unwrap(), 404, "file_not_found").await;
    assert_eq!(app.events_of("file.downloaded").await, Vec::<Value>::new());
    let all = app.get_json("/events?limit=100").await.to_string();
    assert!(
        !all.contains("Jane Doe CV"),
        "an event names the erased file: {all}"
    );
}

/// Every table's rows as text (PostgreSQL: live rows only — dead ones wait for VACUUM, as
/// docs/security.md says), or, on SQLite, the bytes of the database files themselves (free
/// pages and the write-ahead log included).
async fn database_contents(app: &TestApp) -> String {
    let url = &app.config.database_url;
    if url.starts_with("sqlite:") {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap();
        let mut all = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                all.extend(bytes);
            }
        }
        assert!(all.len() > 4096, "the database file was read");
        return String::from_utf8_lossy(&all).into_owned();
    }
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() > 5, "{tables:?}");
    let mut all = String::new();
    for (table,) in tables {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{table}\" t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        for (row,) in rows {
            all.push_str(&row);
            all.push('\n');
        }
    }
    all
}

/// DESIGN §9's proof: a unique token in every personal field — names, webhook data and the
/// fields nobody documented, the text of the documents, a direct upload's declaration, a
/// refused webhook — and after `DELETE /files/{id}` and `POST /erasures` none of them (nor the
/// documents' SHA-256) is found anywhere in the database.
async fn no_personal_value_survives_an_erasure_anywhere_in_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = |what: &str| format!("tok{}{what}", uuid::Uuid::new_v4().simple());
    let tokens: Vec<String> = [
        "name1", "text1", "name2", "text2", "first", "email", "phone", "notes", "slotname",
        "nested", "rejected",
    ]
    .iter()
    .map(|w| token(w))
    .collect();
    let t = |i: usize| tokens[i].as_str();

    // A proxied upload and a direct one, each with its name and text.
    let proxied = fixtures::text_pdf(&[&[&format!("Resume of {}", t(1))]]);
    let first = stage(&app, &format!("{}.pdf", t(0)), proxied.clone()).await;
    let direct_bytes = fixtures::text_pdf(&[&[&format!("Resume of {}", t(3))]]);
    let sha = |b: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
    let opened = json_with(
        app.acme(Method::POST, "/uploads/direct")
            .json(&json!({"file_name": format!("{}.pdf", t(2)), "file_size": direct_bytes.len(), "sha256": sha(&direct_bytes)}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let second = opened["carv_file_id"].as_str().unwrap().to_owned();
    let mut put = app.http.put(opened["upload"]["url"].as_str().unwrap());
    for (name, value) in opened["upload"]["headers"].as_object().unwrap() {
        if !name.eq_ignore_ascii_case("content-length") {
            put = put.header(name, value.as_str().unwrap());
        }
    }
    assert!(
        put.body(direct_bytes.clone())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    json_with(
        app.acme(Method::POST, &format!("/uploads/{second}/complete"))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;

    // Webhooks carrying personal data in documented and undocumented fields.
    let webhook = |file: &str| {
        json!({
            "client_id": "acme",
            "user_id": "candidate-42",
            "data": { "first_name": t(4), "email": t(5), "profile": { "x": t(9) } },
            "candidate": { "phone": t(6) },
            "notes": t(7),
            "files": { "resume": { "carv_file_id": file, "file_name": t(8) } }
        })
    };
    for file in [&first, &second] {
        let answer = json_with(app.post_webhook("candidates", &webhook(file)).await, 200).await;
        assert_eq!(answer["files"]["resume"]["state"], "promoted", "{answer}");
    }
    let mut refused = webhook(&uuid::Uuid::new_v4().to_string());
    refused["data"]["first_name"] = json!(t(10));
    assert_error(
        app.post_webhook("candidates", &refused).await,
        422,
        "file_not_found",
    )
    .await;
    // The text of both documents is extracted.
    for id in [&first, &second] {
        let mut status = Value::Null;
        for _ in 0..300 {
            status = app.get_json(&format!("/files/{id}")).await["text"]["status"].clone();
            if status != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, "extracted");
    }
    let before = database_contents(&app).await;
    for value in [t(0), t(1), t(4), t(10), &sha(&proxied), &sha(&direct_bytes)] {
        assert!(
            before.contains(value),
            "{value} was never stored: the proof proves nothing"
        );
    }

    assert_eq!(erase(&app, &second).await.status(), 204);
    let erased = json_with(
        app.acme(Method::POST, "/erasures")
            .json(&json!({"user_id": "candidate-42"}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(erased["erased"].as_array().unwrap().len(), 2, "{erased}");

    let after = database_contents(&app).await;
    let mut values: Vec<String> = tokens.clone();
    values.push(sha(&proxied));
    values.push(sha(&direct_bytes));
    let left: Vec<&String> = values
        .iter()
        .filter(|v| after.contains(v.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "personal values left after the erasure: {left:?}"
    );
}
