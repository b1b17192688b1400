//! Event endpoints: registering where a client hears about its files, and what may not be one.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, assert_refused, json_with};

both_backends!(
    endpoints_are_registered_listed_and_removed_per_client,
    private_and_plain_http_endpoints_are_refused_by_default,
);

async fn endpoints_are_registered_listed_and_removed_per_client(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.events_allow_private = true).await;
    let created = json_with(
        app.acme(Method::POST, "/event-endpoints")
            .json(&json!({ "url": "http://127.0.0.1:9/hooks", "events": ["file.promoted", "file.expired"] }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["url"], "http://127.0.0.1:9/hooks");
    assert_eq!(created["events"], json!(["file.promoted", "file.expired"]));
    let every = json_with(
        app.acme(Method::POST, "/event-endpoints")
            .json(&json!({ "url": "http://127.0.0.1:9/all" }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert!(
        every["events"].as_array().unwrap().len() >= 8,
        "no list: every type"
    );

    let listed = app.get_json("/event-endpoints").await;
    let results = listed["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains("whsec_"),
        "a listing never shows a secret"
    );
    let theirs = json_with(
        app.globex(Method::GET, "/event-endpoints")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(theirs["results"], json!([]), "another client sees none");
    let path = format!("/event-endpoints/{id}");
    assert_refused(app.globex(Method::DELETE, &path), 404, "endpoint_not_found").await;

    let removed = app.acme(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(removed.status(), 204);
    assert_refused(app.acme(Method::DELETE, &path), 404, "endpoint_not_found").await;
    let listed = app.get_json("/event-endpoints").await;
    assert_eq!(listed["results"].as_array().unwrap().len(), 1);

    let unknown = app
        .acme(Method::POST, "/event-endpoints")
        .json(&json!({ "url": "http://127.0.0.1:9/x", "events": ["file.exploded"] }))
        .send()
        .await
        .unwrap();
    let body = assert_error(unknown, 422, "invalid_payload").await;
    assert_eq!(body["error"]["details"]["field"], "events");
}

async fn private_and_plain_http_endpoints_are_refused_by_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for url in [
        "http://ats.example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hooks",
        "https://10.0.0.7/hooks",
        // IPv4 hidden in IPv6 forms, site-local and discard-only ranges.
        "https://[::127.0.0.1]/hooks",
        "https://[::a9fe:a9fe]/latest/meta-data/",
        "https://[::ffff:0:127.0.0.1]/hooks",
        "https://[2002:7f00:1::1]/hooks",
        "https://[fec0::1]/hooks",
        "https://[100::1]/hooks",
        "https://[64:ff9b::a9fe:a9fe]/hooks",
        "https://user:pw@ats.example.com/hooks",
        "not a url",
    ] {
        let response = app
            .acme(Method::POST, "/event-endpoints")
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 422, "invalid_payload").await;
        assert_eq!(body["error"]["details"]["field"], "url", "{url}: {body}");
    }
    let listed = app.get_json("/event-endpoints").await;
    assert_eq!(listed["results"], json!([]), "nothing was registered");

    // The command line applies the same rule, and the same switch lifts it.
    let dir = tempfile::tempdir().unwrap();
    let cli = || {
        let mut cmd = crate::cli::stowage(dir.path());
        cmd.env("STOWAGE_DATABASE_URL", &app.config.database_url);
        cmd
    };
    let refused = cli()
        .args(["endpoints", "add", "acme", "http://127.0.0.1:9/hooks"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("https://"));
    let added = cli()
        .env("STOWAGE_EVENTS_ALLOW_PRIVATE", "true")
        .args([
            "endpoints",
            "add",
            "acme",
            "http://127.0.0.1:9/hooks",
            "--events",
            "file.promoted",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert!(added["secret"].as_str().unwrap().starts_with("whsec_"));
    let listed = cli()
        .args(["endpoints", "list", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], added["id"]);
    assert!(listed[0].get("secret").is_none(), "no secret in a listing");
    let api = app.get_json("/event-endpoints").await;
    assert_eq!(
        api["results"][0]["id"], added["id"],
        "the API sees what the CLI added"
    );
    let removed = cli()
        .args(["endpoints", "remove", added["id"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(removed.status.success());
}
