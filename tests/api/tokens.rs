//! Upload tokens: what a candidate's browser uploads with instead of the client's API key —
//! short-lived, scoped to its own uploads, narrowed, counted and revocable.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::direct::{put, sha256_hex};
use crate::fixtures;
use crate::helpers::{
    Backend, TestApp, assert_error, assert_refused, file_form, json_with, resume_webhook,
};

both_backends!(
    a_token_uploads_for_its_client_and_does_nothing_else,
    a_token_is_narrowed_counted_and_revocable,
    minting_refuses_what_the_service_would_not_allow,
    concurrent_uploads_never_exceed_a_tokens_count,
    a_token_completes_only_the_uploads_it_opened,
);

/// `POST /upload-tokens` as acme with `body`: the minted token's answer.
pub(crate) async fn mint(app: &TestApp, body: Value) -> Value {
    json_with(
        app.acme(Method::POST, "/upload-tokens")
            .json(&body)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await
}

/// A request carrying only the upload token, as a browser sends it.
fn with_token(app: &TestApp, token: &Value, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.http
        .request(method, app.url(path))
        .bearer_auth(token["token"].as_str().expect("token"))
}

async fn upload_with(
    app: &TestApp,
    token: &Value,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    with_token(app, token, Method::POST, "/uploads")
        .multipart(file_form(name, bytes, "application/pdf"))
        .send()
        .await
        .unwrap()
}

async fn open_with(app: &TestApp, token: &Value, name: &str, bytes: &[u8]) -> reqwest::Response {
    with_token(app, token, Method::POST, "/uploads/direct")
        .json(&json!({"file_name": name, "file_size": bytes.len(), "sha256": sha256_hex(bytes)}))
        .send()
        .await
        .unwrap()
}

fn resume() -> Vec<u8> {
    fixtures::text_pdf(&[&["Ada Lovelace", "Analyst"]])
}

async fn a_token_uploads_for_its_client_and_does_nothing_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = mint(&app, json!({"max_files": 3})).await;
    assert!(token["token"].as_str().unwrap().starts_with("stu_"));
    assert_eq!(token["max_files"], 3);
    assert_eq!(token["max_size"], app.config.max_upload_bytes);
    assert_eq!(token["allowed_extensions"], json!(["doc", "docx", "pdf"]));

    // Proxied: no API key, no client id — the token names its client.
    let staged = json_with(upload_with(&app, &token, "cv.pdf", resume()).await, 201).await;
    let id = staged["carv_file_id"].as_str().unwrap().to_owned();
    // The file is acme's: its key sees it, another client's does not.
    let record = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(record["state"], "staged");
    let other = app.globex(Method::GET, &format!("/uploads/{id}"));
    assert_refused(other, 404, "file_not_found").await;

    // Direct: open, PUT, complete, all with the token.
    let bytes = fixtures::text_pdf(&[&["Grace Hopper", "Engineer"]]);
    let opened = json_with(open_with(&app, &token, "direct.pdf", &bytes).await, 201).await;
    let direct_id = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(&app, &opened, bytes).await.status().is_success());
    let completed = with_token(
        &app,
        &token,
        Method::POST,
        &format!("/uploads/{direct_id}/complete"),
    );
    let completed = json_with(completed.send().await.unwrap(), 201).await;
    assert_eq!(completed["content_type"], "application/pdf");

    // Anything else is outside its scope, whatever it asks.
    let elsewhere = [
        (Method::GET, format!("/uploads/{id}")),
        (Method::DELETE, format!("/uploads/{id}")),
        (Method::GET, format!("/files/{id}")),
        (Method::GET, format!("/files/{id}/content")),
        (Method::GET, "/files".to_owned()),
        (Method::GET, "/events".to_owned()),
        (Method::GET, "/event-endpoints".to_owned()),
        (Method::POST, "/webhooks/candidates".to_owned()),
        (Method::POST, "/upload-tokens".to_owned()),
        (
            Method::DELETE,
            format!("/upload-tokens/{}", token["id"].as_str().unwrap()),
        ),
        (Method::DELETE, format!("/files/{id}")),
        (Method::POST, "/erasures".to_owned()),
    ];
    for (method, path) in elsewhere {
        let request = with_token(&app, &token, method.clone(), &path).json(&json!({}));
        let body = assert_refused(request, 403, "token_scope").await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upload token"),
            "{method} {path}: {body}"
        );
    }
    // An unknown token is no key either.
    let forged = app.http.get(app.url("/files")).bearer_auth(format!(
        "stu_{}_{}",
        uuid::Uuid::new_v4().simple(),
        "ab".repeat(32)
    ));
    assert_refused(forged, 401, "unauthorized").await;

    // The backend binds what the page uploaded, as always.
    let bound = app
        .post_webhook("candidates", &resume_webhook("u-1", &id))
        .await;
    json_with(bound, 200).await;
    assert_eq!(
        app.get_json(&format!("/files/{id}")).await["state"],
        "promoted"
    );
}

async fn a_token_is_narrowed_counted_and_revocable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Narrowed: only PDFs of at most 2 KB.
    let narrow = mint(
        &app,
        json!({"max_files": 5, "max_size": 2000, "allowed_extensions": ["pdf"]}),
    )
    .await;
    assert_eq!(narrow["allowed_extensions"], json!(["pdf"]));
    assert_eq!(narrow["max_size"], 2000);
    let docx = assert_error(
        upload_with(&app, &narrow, "cv.docx", fixtures::docx()).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    assert!(
        docx["error"]["message"].as_str().unwrap().ends_with(".pdf"),
        "{docx}"
    );
    assert_error(
        upload_with(&app, &narrow, "cv.pdf", fixtures::pdf(10_000)).await,
        422,
        "file_too_large",
    )
    .await;
    assert_error(
        open_with(&app, &narrow, "cv.pdf", &fixtures::pdf(10_000)).await,
        422,
        "file_too_large",
    )
    .await;
    assert_error(
        open_with(&app, &narrow, "cv.doc", &fixtures::doc_with_text("x")).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    // The API key itself keeps the service's limits.
    json_with(app.upload("cv.docx", fixtures::docx()).await, 201).await;

    // Counted: one upload, then it is used up — for the direct path too.
    let once = mint(&app, json!({})).await;
    assert_eq!(once["max_files"], 1);
    json_with(upload_with(&app, &once, "cv.pdf", resume()).await, 201).await;
    assert_error(
        upload_with(&app, &once, "cv.pdf", resume()).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        open_with(&app, &once, "cv.pdf", &resume()).await,
        401,
        "unauthorized",
    )
    .await;

    // Revoked: at once; revoking again is fine; another client cannot revoke it.
    let revocable = mint(&app, json!({"max_files": 5})).await;
    let path = format!("/upload-tokens/{}", revocable["id"].as_str().unwrap());
    let by_globex = app.globex(Method::DELETE, &path);
    assert_refused(by_globex, 404, "upload_token_not_found").await;
    json_with(upload_with(&app, &revocable, "cv.pdf", resume()).await, 201).await;
    for _ in 0..2 {
        let revoked = app.acme(Method::DELETE, &path).send().await.unwrap();
        assert_eq!(revoked.status(), 204);
    }
    let refused = assert_error(
        upload_with(&app, &revocable, "cv.pdf", resume()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let unknown = app.acme(
        Method::DELETE,
        &format!("/upload-tokens/{}", uuid::Uuid::new_v4()),
    );
    assert_refused(unknown, 404, "upload_token_not_found").await;

    // Expired.
    let brief = mint(&app, json!({"expires_in": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = assert_error(
        upload_with(&app, &brief, "cv.pdf", resume()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // A token lives no longer than its key's right to the client.
    let orphaned = mint(&app, json!({"max_files": 5})).await;
    stowage::accounts::remove_client(app.state.repo(), "acme", None)
        .await
        .unwrap();
    assert_error(
        upload_with(&app, &orphaned, "cv.pdf", resume()).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn minting_refuses_what_the_service_would_not_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let service_max = app.config.max_upload_bytes;
    let cases = [
        (json!({"expires_in": 0}), "expires_in"),
        (json!({"expires_in": 86_401}), "expires_in"),
        (json!({"max_files": 0}), "max_files"),
        (json!({"max_files": 21}), "max_files"),
        (json!({"max_size": 0}), "max_size"),
        (json!({"max_size": service_max + 1}), "max_size"),
        (json!({"allowed_extensions": ["exe"]}), "allowed_extensions"),
        (json!({"allowed_extensions": ["txt"]}), "allowed_extensions"),
        (json!({"allowed_extensions": []}), "allowed_extensions"),
    ];
    for (body, field) in cases {
        let request = app.acme(Method::POST, "/upload-tokens").json(&body);
        let refused = assert_refused(request, 422, "invalid_payload").await;
        assert_eq!(refused["error"]["details"]["field"], field, "{body}");
    }
    let unknown_field = app
        .acme(Method::POST, "/upload-tokens")
        .json(&json!({"max_file": 2}));
    assert_refused(unknown_field, 422, "invalid_payload").await;
    // The longest life and the most files are allowed.
    let most = mint(
        &app,
        json!({"expires_in": 86_400, "max_files": 20, "max_size": service_max, "allowed_extensions": [".DOCX", "pdf"]}),
    )
    .await;
    assert_eq!(most["allowed_extensions"], json!(["docx", "pdf"]));
    // No body at all asks for the defaults: 15 minutes, one file.
    let plain = app
        .acme(Method::POST, "/upload-tokens")
        .send()
        .await
        .unwrap();
    let plain = json_with(plain, 201).await;
    let expires = chrono::DateTime::parse_from_rfc3339(plain["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!((890..=900).contains(&left), "{left} s left");
    assert_eq!(plain["max_files"], 1);
}

async fn concurrent_uploads_never_exceed_a_tokens_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = mint(&app, json!({"max_files": 2})).await;
    let attempts = (0..6).map(|_| upload_with(&app, &token, "cv.pdf", resume()));
    let answers = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        4,
        "{statuses:?}"
    );
    // Nothing is left of the refused ones.
    assert_eq!(app.rows().await, 2);
}

async fn a_token_completes_only_the_uploads_it_opened(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = mint(&app, json!({})).await;
    let second = mint(&app, json!({"max_files": 2})).await;
    let bytes = resume();
    let opened = json_with(open_with(&app, &first, "cv.pdf", &bytes).await, 201).await;
    let id = opened["carv_file_id"].as_str().unwrap().to_owned();
    assert!(put(&app, &opened, bytes).await.status().is_success());
    let complete = |token: &Value, id: &str| {
        with_token(
            &app,
            token,
            Method::POST,
            &format!("/uploads/{id}/complete"),
        )
    };
    // Another token of the same client, and any id it did not open, known or not.
    assert_refused(complete(&second, &id), 403, "token_scope").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_refused(complete(&first, &unknown), 403, "token_scope").await;
    // Its one upload used the token up; completing that upload still works.
    let staged = json_with(complete(&first, &id).send().await.unwrap(), 201).await;
    assert_eq!(staged["carv_file_id"], id.as_str());
}
