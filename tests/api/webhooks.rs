//! Webhooks: exactly-once binding, promotion, retries, reads of bound files.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stowage::domain::{FileState, Slot, WebhookKind};
use stowage::repo::{BindAttempt, NewWebhook};
use stowage::store::Area;
use uuid::Uuid;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, assert_refused, json_with};

both_backends!(
    a_candidate_webhook_binds_and_promotes_its_resume,
    the_content_endpoint_returns_the_uploaded_bytes,
    a_download_link_is_for_the_public_host_and_can_come_without_a_redirect,
    fifty_concurrent_webhooks_bind_a_file_exactly_once,
    an_application_binds_nothing_when_its_cover_letter_is_consumed,
    one_file_in_both_slots_binds_nothing,
    files_come_in_slot_order,
    every_failing_slot_is_named_and_expiry_needs_no_sweep,
    retries_get_the_original_result,
    a_webhook_without_files_is_accepted,
    bad_webhooks_get_clear_errors,
    an_interrupted_promotion_is_recovered,
    a_failed_promotion_leaves_the_file_bound_until_recovery,
);

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `GET /files/{id}/content` as acme, with the redirect left unfollowed.
async fn content_without_following(app: &TestApp, id: &str) -> reqwest::Response {
    crate::helpers::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!("/files/{id}/content")))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .send()
        .await
        .unwrap()
}

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

fn application(user: &str, resume: &str, cover_letter: &str) -> Value {
    json!({
        "client_id": "acme",
        "user_id": user,
        "data": { "job_id": "job-7" },
        "files": {
            "resume": { "carv_file_id": resume },
            "cover_letter": { "carv_file_id": cover_letter }
        }
    })
}

async fn a_candidate_webhook_binds_and_promotes_its_resume(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pdf = fixtures::pdf(300_000);
    let id = stage(&app, "jane.pdf", pdf.clone()).await;

    let body = json_with(
        app.post_webhook("candidates", &candidate("user-123", &id))
            .await,
        200,
    )
    .await;
    assert_eq!(body["kind"], "candidate");
    assert_eq!(body["client_id"], "acme");
    assert_eq!(body["user_id"], "user-123");
    let resume = &body["files"]["resume"];
    assert_eq!(resume["carv_file_id"], id.as_str());
    assert_eq!(resume["state"], "promoted");
    assert_eq!(resume["file_size"], 300_000);
    assert_eq!(resume["sha256"], sha256(&pdf));
    assert_eq!(resume["storage_key"], format!("acme/{id}"));

    assert!(
        app.objects(Area::Staging).await.is_empty(),
        "staging copy deleted"
    );
    assert_eq!(app.objects(Area::Files).await, [format!("acme/{id}")]);

    let file = app.get_json(&format!("/files/{id}")).await;
    assert_eq!(file["state"], "promoted");
    assert_eq!(file["sha256"], sha256(&pdf));
    assert_eq!(file["webhook"]["webhook_id"], body["webhook_id"]);
    assert_eq!(file["webhook"]["kind"], "candidate");
    assert_eq!(file["webhook"]["user_id"], "user-123");
    assert_eq!(file["webhook"]["slot"], "resume");
    let upload = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(upload["state"], "promoted");

    // Another client sees nothing of it.
    assert_refused(
        app.globex(Method::GET, &format!("/files/{id}")),
        404,
        "file_not_found",
    )
    .await;
    assert_refused(
        app.globex(Method::GET, &format!("/files/{id}/content")),
        404,
        "file_not_found",
    )
    .await;
    // A promoted file cannot be discarded.
    assert_refused(
        app.acme(Method::DELETE, &format!("/uploads/{id}")),
        409,
        "file_not_discardable",
    )
    .await;
}

async fn the_content_endpoint_returns_the_uploaded_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let docx = fixtures::docx();
    let id = stage(&app, "Lebenslauf Jürgen.docx", docx.clone()).await;
    let early = app
        .acme(Method::GET, &format!("/files/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_error(early, 409, "file_not_promoted").await;

    json_with(
        app.post_webhook("candidates", &candidate("u", &id)).await,
        200,
    )
    .await;
    let response = app
        .acme(Method::GET, &format!("/files/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "redirects are followed to the bytes"
    );
    let disposition = response
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), sha256(&docx));
    let expected = "attachment; filename=\"Lebenslauf J_rgen.docx\"; filename*=UTF-8''Lebenslauf%20J%C3%BCrgen.docx";
    if let Backend::SqliteFs = backend {
        assert_eq!(disposition.as_deref(), Some(expected));
    } else if let Some(disposition) = disposition {
        assert_eq!(disposition, expected);
    }
    // Both stores answer the same way: a redirect to a short-lived URL, in Location and body.
    let redirect = content_without_following(&app, &id).await;
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let body = json_with(redirect, 307).await;
    assert_eq!(body["url"], location.as_str());
    if let Backend::SqliteFs = backend {
        assert!(
            location.starts_with(&app.url("/downloads/")),
            "signed by Stowage: {location}"
        );
    }
    if let Backend::PostgresS3 = backend {
        assert!(
            location.contains("X-Amz-Expires=300"),
            "short-lived: {location}"
        );
        // The S3 server serves the file with the disposition the URL asks for (moto ignores it,
        // S3 and LocalStack honour it): check that it is asked for.
        let url = reqwest::Url::parse(&location).unwrap();
        let asked = url
            .query_pairs()
            .find(|(k, _)| k == "response-content-disposition")
            .map(|(_, v)| v.into_owned());
        assert_eq!(asked.as_deref(), Some(expected));
    }
}

/// Stowage may reach S3 by a name clients cannot (`localstack:4566` inside compose): links are
/// made for `STOWAGE_S3_PUBLIC_ENDPOINT`, and `?redirect=false` hands the link over in a body so
/// a client never forwards its API key to the storage host.
async fn a_download_link_is_for_the_public_host_and_can_come_without_a_redirect(backend: Backend) {
    // The S3 server as clients would name it: the same server under another host name.
    let public = std::env::var("STOWAGE_TEST_S3_ENDPOINT")
        .ok()
        .map(|e| e.replace("127.0.0.1", "localhost"));
    let app = TestApp::spawn_with(backend, |config| {
        config.s3_public_endpoint = public.clone();
    })
    .await;
    let pdf = fixtures::pdf(40_000);
    let id = stage(&app, "cv.pdf", pdf.clone()).await;
    json_with(
        app.post_webhook("candidates", &candidate("u", &id)).await,
        200,
    )
    .await;

    let response = app
        .acme(Method::GET, &format!("/files/{id}/content?redirect=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("location").is_none());
    match backend {
        Backend::PostgresS3 => {
            let link = json_with(response, 200).await;
            let url = link["url"].as_str().unwrap();
            let public = public.expect("S3 endpoint set");
            assert!(url.starts_with(&public), "{url} is for {public}");
            assert!(link["expires_at"].as_str().unwrap().ends_with('Z'));
            // The link alone fetches the bytes: no key, no client id.
            let fetched = reqwest::get(url).await.unwrap();
            assert_eq!(fetched.status(), StatusCode::OK);
            assert_eq!(sha256(&fetched.bytes().await.unwrap()), sha256(&pdf));
            // The redirect points at the same public host.
            let redirect = content_without_following(&app, &id).await;
            assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
            assert!(
                redirect.headers()["location"]
                    .to_str()
                    .unwrap()
                    .starts_with(&public)
            );
        }
        // On a directory the link is signed by Stowage itself: the same answer, the same use.
        Backend::SqliteFs => {
            let link = json_with(response, 200).await;
            let url = link["url"].as_str().unwrap().to_owned();
            assert!(url.starts_with(&app.url("/downloads/")), "{url}");
            assert!(link["expires_at"].as_str().unwrap().ends_with('Z'));
            let fetched = reqwest::get(&url).await.unwrap();
            assert_eq!(fetched.status(), StatusCode::OK);
            assert_eq!(
                fetched.headers()["content-disposition"],
                "attachment; filename=\"cv.pdf\"; filename*=UTF-8''cv.pdf"
            );
            assert_eq!(sha256(&fetched.bytes().await.unwrap()), sha256(&pdf));
            // Nothing in it can be changed: not the headers served, not the expiry.
            for (from, to) in [
                ("type=application%2Fpdf", "type=text%2Fhtml"),
                ("expires=", "expires=9"),
            ] {
                let forged = url.replacen(from, to, 1);
                assert_ne!(forged, url, "{from} is in {url}");
                let refused = reqwest::get(&forged).await.unwrap();
                assert_error(refused, 403, "forbidden").await;
            }
        }
    }
    let bad = app
        .acme(Method::GET, &format!("/files/{id}/content?redirect=nope"))
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "bad_request").await;
}

async fn fifty_concurrent_webhooks_bind_a_file_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = stage(&app, "cv.pdf", fixtures::pdf(50_000)).await;
    let requests = (0..50).map(|i| {
        let body = candidate(&format!("user-{i}"), &id);
        let request = app.acme(Method::POST, "/webhooks/candidates").json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let won: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let lost = results
        .iter()
        .filter(|(s, b)| *s == 422 && b["error"]["code"] == "file_already_consumed")
        .count();
    assert_eq!(
        won.len(),
        1,
        "exactly one webhook binds the file: {results:?}"
    );
    assert_eq!(lost, 49);
    assert_eq!(won[0]["files"]["resume"]["state"], "promoted");
    assert_eq!(app.rows_in(FileState::Promoted).await, 1);
}

async fn an_application_binds_nothing_when_its_cover_letter_is_consumed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resume = stage(&app, "cv.pdf", fixtures::pdf(10_000)).await;
    let letter = stage(&app, "letter.docx", fixtures::docx()).await;
    json_with(
        app.post_webhook("candidates", &candidate("first", &letter))
            .await,
        200,
    )
    .await;

    let error = assert_error(
        app.post_webhook("applications", &application("second", &resume, &letter))
            .await,
        422,
        "file_already_consumed",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload the file again")
    );
    let details = error["error"]["details"].as_object().unwrap();
    assert_eq!(details.keys().collect::<Vec<_>>(), ["files.cover_letter"]);

    let record = app.get_json(&format!("/uploads/{resume}")).await;
    assert_eq!(record["state"], "staged", "the resume was not bound");
    let new_letter = stage(&app, "letter2.pdf", fixtures::pdf(2_000)).await;
    let body = json_with(
        app.post_webhook("applications", &application("second", &resume, &new_letter))
            .await,
        200,
    )
    .await;
    assert_eq!(body["files"]["resume"]["state"], "promoted");
    assert_eq!(body["files"]["cover_letter"]["state"], "promoted");
}

/// A file can fill one slot: named as resume and cover letter at once, the webhook is refused
/// as a bad payload and nothing is bound.
async fn one_file_in_both_slots_binds_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = stage(&app, "cv.pdf", fixtures::pdf(10_000)).await;
    let error = assert_error(
        app.post_webhook("applications", &application("u", &id, &id))
            .await,
        422,
        "invalid_payload",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("two slots"),
        "{error}"
    );
    let record = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(
        record["state"], "staged",
        "a refused webhook bound the file"
    );
    let body = json_with(
        app.post_webhook("candidates", &candidate("u", &id)).await,
        200,
    )
    .await;
    assert_eq!(body["files"]["resume"]["state"], "promoted");
}

/// The slots of an answer come resume first, then cover letter — the order the contract
/// names them in, on a first answer and on a retry alike.
async fn files_come_in_slot_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resume = stage(&app, "cv.pdf", fixtures::pdf(3_000)).await;
    let letter = stage(&app, "letter.pdf", fixtures::pdf(2_000)).await;
    let payload = application("u-7", &resume, &letter);
    for attempt in ["first", "retry"] {
        let response = app.post_webhook("applications", &payload).await;
        assert_eq!(response.status(), 200, "{attempt}");
        let text = response.text().await.unwrap();
        let (r, c) = (text.find("\"resume\""), text.find("\"cover_letter\""));
        assert!(
            r.is_some() && c.is_some() && r < c,
            "{attempt}: slots out of order in {text}"
        );
    }
}

async fn every_failing_slot_is_named_and_expiry_needs_no_sweep(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.upload_ttl = Duration::from_secs(1)).await;
    let body = json_with(app.upload("old.pdf", fixtures::pdf(1_000)).await, 201).await;
    let old = body["carv_file_id"].as_str().unwrap().to_owned();
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let wait = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() + 200;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;

    let unknown = Uuid::new_v4().to_string();
    let error = assert_error(
        app.post_webhook("applications", &application("u", &unknown, &old))
            .await,
        422,
        "file_not_found",
    )
    .await;
    let details = &error["error"]["details"];
    assert!(
        details["files.resume"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert!(
        details["files.cover_letter"]
            .as_str()
            .unwrap()
            .contains("upload a new file and retry")
    );

    let error = assert_error(
        app.post_webhook("candidates", &candidate("u", &old)).await,
        422,
        "file_expired",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload a new file and retry the webhook")
    );
    assert_eq!(
        app.rows_in(FileState::Staged).await,
        1,
        "expired but not swept, and never bound"
    );
}

async fn retries_get_the_original_result(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = stage(&app, "cv.pdf", fixtures::pdf(10_000)).await;
    let body = candidate("user-1", &id);
    let keyed = |body: &Value, key: &str| {
        app.acme(Method::POST, "/webhooks/candidates")
            .header("Idempotency-Key", key)
            .json(body)
            .send()
    };
    let first = json_with(keyed(&body, "req-1").await.unwrap(), 200).await;
    let again = keyed(&body, "req-1").await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json_with(again, 200).await;
    assert_eq!(again, first, "same key, same answer");

    let changed = candidate("user-2", &id);
    assert_error(
        keyed(&changed, "req-1").await.unwrap(),
        409,
        "idempotency_key_reused",
    )
    .await;

    // The identical webhook re-sent without a key, e.g. after a timeout.
    let resent = json_with(app.post_webhook("candidates", &body).await, 200).await;
    assert_eq!(resent["webhook_id"], first["webhook_id"]);
    // A different webhook naming the same file is a real conflict.
    assert_error(
        app.post_webhook("candidates", &changed).await,
        422,
        "file_already_consumed",
    )
    .await;

    // A key used by a rejected webhook stays free for the corrected retry.
    let missing = candidate("user-3", &Uuid::new_v4().to_string());
    assert_error(
        keyed(&missing, "req-2").await.unwrap(),
        422,
        "file_not_found",
    )
    .await;
    let fresh = stage(&app, "cv2.pdf", fixtures::pdf(10_000)).await;
    json_with(
        keyed(&candidate("user-3", &fresh), "req-2").await.unwrap(),
        200,
    )
    .await;
}

async fn a_webhook_without_files_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({ "client_id": "acme", "user_id": "u-9", "data": { "first_name": "Jo" } });
    let answer = json_with(app.post_webhook("candidates", &body).await, 200).await;
    assert_eq!(answer["files"], json!({}));
    assert!(Uuid::parse_str(answer["webhook_id"].as_str().unwrap()).is_ok());
    let answer = json_with(app.post_webhook("applications", &body).await, 200).await;
    assert_eq!(answer["kind"], "application");
}

async fn bad_webhooks_get_clear_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = stage(&app, "cv.pdf", fixtures::pdf(1_000)).await;

    let mut other_client = candidate("u", &id);
    other_client["client_id"] = json!("globex");
    assert_error(
        app.post_webhook("candidates", &other_client).await,
        422,
        "client_id_mismatch",
    )
    .await;

    let malformed = app
        .acme(Method::POST, "/webhooks/candidates")
        .header("content-type", "application/json")
        .body("{\"client_id\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "invalid_json").await;
    let missing_user = json!({ "client_id": "acme" });
    assert_error(
        app.post_webhook("candidates", &missing_user).await,
        422,
        "invalid_payload",
    )
    .await;
    let letter_on_candidate = json!({
        "client_id": "acme", "user_id": "u",
        "files": { "cover_letter": { "carv_file_id": id } }
    });
    assert_error(
        app.post_webhook("candidates", &letter_on_candidate).await,
        422,
        "invalid_payload",
    )
    .await;
    assert_error(
        app.post_webhook("candidates", &candidate("u", "not-a-uuid"))
            .await,
        422,
        "file_not_found",
    )
    .await;

    let huge = json!({ "client_id": "acme", "user_id": "u", "data": { "blob": "x".repeat(2 * 1024 * 1024) } });
    assert_error(
        app.post_webhook("candidates", &huge).await,
        413,
        "payload_too_large",
    )
    .await;

    // globex's webhook cannot name acme's file.
    let theirs = json!({ "client_id": "globex", "user_id": "u", "files": { "resume": { "carv_file_id": id } } });
    let response = app
        .globex(Method::POST, "/webhooks/candidates")
        .json(&theirs)
        .send()
        .await
        .unwrap();
    assert_error(response, 422, "file_not_found").await;

    let record = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(record["state"], "staged", "none of that bound the file");
}

/// Binds a file the way a webhook does, then "crashes" before promotion.
async fn bind_without_promoting(app: &TestApp, id: &str) {
    let webhook = NewWebhook {
        id: Uuid::new_v4(),
        client_id: "acme".into(),
        kind: WebhookKind::Candidate,
        user_id: "crashed".into(),
        payload: "{}".into(),
        payload_hash: "x".into(),
        idempotency_key: None,
        created_at: chrono::Utc::now(),
    };
    let outcome = app
        .state
        .repo()
        .bind_files(&webhook, &[(Slot::Resume, Uuid::parse_str(id).unwrap())])
        .await
        .unwrap();
    assert!(matches!(outcome, BindAttempt::Bound(ref files) if files.len() == 1));
}

async fn an_interrupted_promotion_is_recovered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before_copy = stage(&app, "a.pdf", fixtures::pdf(5_000)).await;
    let after_copy = stage(&app, "b.pdf", fixtures::pdf(6_000)).await;
    bind_without_promoting(&app, &before_copy).await;
    bind_without_promoting(&app, &after_copy).await;
    // The second crashed after its object moved but before its row was marked.
    app.state
        .store()
        .promote(&format!("acme/{after_copy}"))
        .await
        .unwrap();
    assert_eq!(app.rows_in(FileState::Bound).await, 2);

    let report = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(report.promoted, 2);
    assert_eq!(report.errors, 0);
    assert_eq!(app.rows_in(FileState::Promoted).await, 2);
    assert!(app.objects(Area::Staging).await.is_empty());
    let mut promoted = app.objects(Area::Files).await;
    promoted.sort();
    let mut expected = vec![format!("acme/{before_copy}"), format!("acme/{after_copy}")];
    expected.sort();
    assert_eq!(promoted, expected);

    let again = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(again.promoted, 0, "nothing left to do");
    let bytes = app
        .acme(Method::GET, &format!("/files/{before_copy}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.bytes().await.unwrap().len(), 5_000);
}

async fn a_failed_promotion_leaves_the_file_bound_until_recovery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = stage(&app, "cv.pdf", fixtures::pdf(8_000)).await;
    // A second process on the same database whose files area is broken.
    let mut config = app.config.clone();
    match backend {
        Backend::SqliteFs => {
            let root = config.storage.strip_prefix("fs:").unwrap().to_owned();
            let blocked = std::path::Path::new(&root).join("blocked");
            std::fs::write(&blocked, b"a file where a directory should be").unwrap();
            config.files_bucket = "blocked".into();
        }
        Backend::PostgresS3 => config.files_bucket = format!("{}-missing", config.files_bucket),
    }
    let broken = stowage::connect(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/candidates",
        listener.local_addr().unwrap()
    );
    tokio::spawn(stowage::serve(listener, broken, std::future::pending()));
    let response = app
        .http
        .post(url)
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .json(&candidate("u", &id))
        .send()
        .await
        .unwrap();
    let body = json_with(response, 200).await;
    assert_eq!(
        body["files"]["resume"]["state"], "bound",
        "bound, promotion pending"
    );
    assert_eq!(
        app.objects(Area::Staging).await,
        [format!("acme/{id}")],
        "still staged"
    );

    // The healthy process's recovery finishes the job; a retry of the webhook shows it.
    let report = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(report.promoted, 1);
    let retry = json_with(
        app.post_webhook("candidates", &candidate("u", &id)).await,
        200,
    )
    .await;
    assert_eq!(retry["files"]["resume"]["state"], "promoted");
    assert_eq!(retry["webhook_id"], body["webhook_id"]);
}
