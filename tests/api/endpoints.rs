//! The endpoint lifecycle and Standard Webhooks: deliveries verified by the `standardwebhooks`
//! libraries from PyPI and npm as published; changing, disabling and enabling an endpoint;
//! rotating its secret with an overlap; disabling one that fails for too long.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::deliveries::register;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_refused, json_with};
use crate::receiver::{Answer, Delivery, Receiver};

both_backends!(
    an_endpoint_is_changed_disabled_and_enabled,
    an_endpoint_failing_for_too_long_is_disabled,
    a_delivery_ends_an_endpoints_run_of_failures,
);

fn private(c: &mut stowage::config::Config) {
    c.events_allow_private = true;
}

/// Private targets, retries a few hundred milliseconds apart, and an endpoint disabled after
/// 2 s of nothing but failures.
fn disabled_after_two_seconds(c: &mut stowage::config::Config) {
    private(c);
    c.event_retry_base = Duration::from_millis(200);
    c.event_disable_after = Duration::from_secs(2);
}

/// Verifies `delivery` with each secret, in Python and in JavaScript, with the Standard Webhooks
/// libraries unchanged: `[python, node]` results per secret (`true`: verified).
async fn verified_by_the_libraries(delivery: &Delivery, secrets: &[&str]) -> Vec<[bool; 2]> {
    let dir = tempfile::tempdir().unwrap();
    let case = json!({ "body": delivery.body, "headers": delivery.headers, "secrets": secrets });
    let case_path = dir.path().join("case.json");
    std::fs::write(&case_path, case.to_string()).unwrap();
    let python = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
c = json.load(open(sys.argv[1]))
out = []
for secret in c["secrets"]:
    try:
        Webhook(secret).verify(c["body"].encode(), c["headers"])
        out.append(True)
    except WebhookVerificationError:
        out.append(False)
print(json.dumps(out))
"#;
    let node = r#"
const fs = require('fs');
const { Webhook } = require('standardwebhooks');
const c = JSON.parse(fs.readFileSync(process.argv[process.argv.length - 1], 'utf8'));
console.log(JSON.stringify(c.secrets.map((secret) => {
  try { new Webhook(secret).verify(c.body, c.headers); return true; } catch (e) { return false; }
})));
"#;
    let run = |program: &str, script: &str| {
        let out = std::process::Command::new(program)
            .arg(if program == "node" { "-e" } else { "-c" })
            .arg(script)
            .arg(if program == "node" { "--" } else { "" })
            .arg(&case_path)
            .output()
            .expect("run the verifier");
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let verdicts: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
        verdicts
    };
    // `python3 -c SCRIPT "" CASE` and `node -e SCRIPT -- CASE`: the case file is the last
    // argument in both (sys.argv[-1], process.argv[2] after `--`).
    let python = python.replace("sys.argv[1]", "sys.argv[-1]");
    let py = run("python3", &python);
    let js = run("node", node);
    py.into_iter().zip(js).map(|(p, j)| [p, j]).collect()
}

/// Real deliveries, verified by the published `standardwebhooks` packages as they are; through
/// a secret rotation both secrets verify during the overlap, and a tampered body none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_the_standard_webhooks_libraries_through_a_rotation() {
    let app = TestApp::spawn_with(Backend::SqliteFs, private).await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&app, &receiver.url, Some(&["file.staged"])).await;
    receiver.set_secret(&secret);
    json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    let first = receiver.wait_for_type("file.staged").await;
    assert!(first.signature_valid, "X-Webhook-Signature still verifies");
    assert_eq!(first.headers["webhook-id"], first.id);
    assert_eq!(
        first.headers["webhook-timestamp"],
        first.timestamp.to_string()
    );
    let other = stowage::events::new_secret();
    assert_eq!(
        verified_by_the_libraries(&first, &[&secret, &other]).await,
        [[true, true], [false, false]]
    );
    let mut tampered = first.clone();
    tampered.body = tampered.body.replace("staged", "erased");
    assert_eq!(
        verified_by_the_libraries(&tampered, &[&secret]).await,
        [[false, false]]
    );

    // Rotation: the new secret signs, and the old one still does during the overlap.
    let rotated = json_with(
        app.acme(
            Method::POST,
            &format!("/event-endpoints/{id}/rotate-secret"),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let until = chrono::DateTime::parse_from_rfc3339(
        rotated["previous_secret_expires_at"].as_str().unwrap(),
    )
    .unwrap();
    let overlap = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!((overlap.num_minutes() - 24 * 60).abs() <= 1, "{overlap:?}");
    receiver.set_secret(&new_secret);
    json_with(app.upload("cv2.pdf", fixtures::pdf(2_100)).await, 201).await;
    let second = receiver
        .wait_until(Duration::from_secs(30), "two file.staged", |all| {
            all.iter()
                .filter(|d| d.event_type() == "file.staged")
                .count()
                >= 2
        })
        .await
        .into_iter()
        .filter(|d| d.event_type() == "file.staged")
        .nth(1)
        .unwrap();
    assert!(second.signature_valid, "signed by the new secret");
    assert!(crate::receiver::verify(
        &secret,
        second.timestamp,
        second.body.as_bytes(),
        &second.headers["x-webhook-previous-signature"]
    ));
    assert_eq!(
        verified_by_the_libraries(&second, &[&new_secret, &secret, &other]).await,
        [[true, true], [true, true], [false, false]]
    );
    // Another client cannot rotate it.
    let by_globex = app.globex(
        Method::POST,
        &format!("/event-endpoints/{id}/rotate-secret"),
    );
    assert_refused(by_globex, 404, "endpoint_not_found").await;
}

/// The endpoint's view as listed.
async fn listed(app: &TestApp, id: &str) -> Value {
    let list = app.get_json("/event-endpoints").await;
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .expect("the endpoint is listed")
}

/// The `file.staged` event of the file named `name`, with its deliveries.
async fn staged_event(app: &TestApp, name: &str) -> Value {
    let listed = app.events_of("file.staged").await;
    let event = listed
        .iter()
        .find(|e| e["data"]["file"]["file_name"] == name)
        .expect("the file's event");
    app.get_json(&format!("/events/{}", event["id"].as_str().unwrap()))
        .await
}

async fn patch(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.acme(Method::PATCH, &format!("/event-endpoints/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn an_endpoint_is_changed_disabled_and_enabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, private).await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let (id, _) = register(&app, &first.url, None).await;
    let view = listed(&app, &id).await;
    assert_eq!(view["disabled"], false);
    assert_eq!(view["disabled_at"], Value::Null);

    // Pointed elsewhere, for one type only.
    let changed = json_with(
        patch(
            &app,
            &id,
            json!({"url": second.url, "events": ["file.staged"]}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["url"], second.url.as_str());
    assert_eq!(changed["events"], json!(["file.staged"]));
    json_with(app.upload("a.pdf", fixtures::pdf(2_000)).await, 201).await;
    second.wait_for_type("file.staged").await;
    assert!(first.received().is_empty(), "the old URL gets nothing");

    // Disabled: nothing is delivered, and what was pending fails.
    second.answer(&[], Answer::Status(503));
    json_with(app.upload("b.pdf", fixtures::pdf(2_100)).await, 201).await;
    second
        .wait_until(Duration::from_secs(30), "two file.staged", |all| {
            all.iter()
                .filter(|d| d.event_type() == "file.staged")
                .count()
                >= 2
        })
        .await;
    let disabled = json_with(patch(&app, &id, json!({"disabled": true})).await, 200).await;
    assert_eq!(disabled["disabled"], true);
    assert!(disabled["disabled_at"].is_string());
    let event = staged_event(&app, "b.pdf").await;
    assert_eq!(event["deliveries"][0]["status"], "failed", "{event}");
    assert_eq!(event["deliveries"][0]["error_message"], "endpoint disabled");
    second.answer(&[], Answer::Ok);
    let seen = second.received().len();
    json_with(app.upload("c.pdf", fixtures::pdf(2_200)).await, 201).await;
    let event = staged_event(&app, "c.pdf").await;
    assert_eq!(event["deliveries"], json!([]), "no delivery while disabled");

    // Enabled: new events arrive; nothing before is redelivered by itself.
    let enabled = json_with(patch(&app, &id, json!({"disabled": false})).await, 200).await;
    assert_eq!(enabled["disabled"], false);
    json_with(app.upload("d.pdf", fixtures::pdf(2_300)).await, 201).await;
    let fresh = staged_event(&app, "d.pdf").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let all = second
        .wait_until(Duration::from_secs(30), "the new event", |all| {
            all.iter().any(|d| d.id == fresh)
        })
        .await;
    assert_eq!(all.len(), seen + 1, "only the new event: {all:?}");

    // `null` events: every type again. Bad changes are refused and change nothing.
    let every = json_with(patch(&app, &id, json!({"events": null})).await, 200).await;
    assert_eq!(every["events"].as_array().unwrap().len(), 10);
    let refused = assert_refused(
        app.acme(Method::PATCH, &format!("/event-endpoints/{id}"))
            .json(&json!({"events": ["file.exploded"]})),
        422,
        "invalid_payload",
    )
    .await;
    assert_eq!(refused["error"]["details"]["field"], "events");
    assert_refused(
        app.acme(Method::PATCH, &format!("/event-endpoints/{id}"))
            .json(&json!({"colour": "blue"})),
        422,
        "invalid_payload",
    )
    .await;
    let unknown = uuid::Uuid::new_v4();
    // Unknown is 404 even with a change that would be refused.
    assert_refused(
        app.acme(Method::PATCH, &format!("/event-endpoints/{unknown}"))
            .json(&json!({"url": "ftp://nowhere"})),
        404,
        "endpoint_not_found",
    )
    .await;
    assert_refused(
        app.acme(Method::PATCH, &format!("/event-endpoints/{unknown}"))
            .json(&json!({"disabled": true})),
        404,
        "endpoint_not_found",
    )
    .await;
    assert_refused(
        app.globex(Method::PATCH, &format!("/event-endpoints/{id}"))
            .json(&json!({"disabled": true})),
        404,
        "endpoint_not_found",
    )
    .await;
    assert_eq!(listed(&app, &id).await["disabled"], false);
}

async fn an_endpoint_failing_for_too_long_is_disabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, disabled_after_two_seconds).await;
    let failing = Receiver::start().await;
    failing.answer(&[], Answer::Status(500));
    let healthy = Receiver::start().await;
    let (failing_id, _) = register(&app, &failing.url, None).await;
    let (healthy_id, _) = register(&app, &healthy.url, None).await;
    json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    // Retried every few hundred milliseconds; after 2 s of nothing but failures, disabled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while listed(&app, &failing_id).await["disabled"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not disabled: {:?}",
            failing.received().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(listed(&app, &healthy_id).await["disabled"], false);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("stowage_event_endpoints_disabled_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Nothing more goes to it; the healthy endpoint goes on.
    let attempts = failing.received().len();
    json_with(app.upload("cv2.pdf", fixtures::pdf(2_100)).await, 201).await;
    healthy
        .wait_until(Duration::from_secs(30), "two file.staged", |all| {
            all.iter()
                .filter(|d| d.event_type() == "file.staged")
                .count()
                >= 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(failing.received().len(), attempts);
}

/// A failure followed by a delivery, then, past `disable_after`, another failure: the delivery
/// ended the first run of failures, so the second starts a new one and the endpoint stays
/// enabled (and takes the event on its retry).
async fn a_delivery_ends_an_endpoints_run_of_failures(backend: Backend) {
    let app = TestApp::spawn_with(backend, disabled_after_two_seconds).await;
    let flaky = Receiver::start().await;
    let (id, _) = register(&app, &flaky.url, None).await;
    // Distinct events answered 2xx.
    let taken = |n: usize| {
        flaky.wait_until(Duration::from_secs(30), "the events taken", move |all| {
            let ids: std::collections::HashSet<&str> = all
                .iter()
                .filter(|d| d.answered == Answer::Ok)
                .map(|d| d.id.as_str())
                .collect();
            ids.len() >= n
        })
    };
    flaky.answer(&[Answer::Status(500)], Answer::Ok);
    json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    taken(1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    flaky.answer(&[Answer::Status(500)], Answer::Ok);
    json_with(app.upload("cv2.pdf", fixtures::pdf(2_100)).await, 201).await;
    taken(2).await;
    assert_eq!(listed(&app, &id).await["disabled"], false);
    let failures = flaky
        .received()
        .iter()
        .filter(|d| d.answered != Answer::Ok)
        .count();
    assert_eq!(failures, 2, "each event failed once, then was taken");
}
