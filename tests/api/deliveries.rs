//! Events delivered to a real receiver on 127.0.0.1: signed, with the file record, retried
//! until taken, cut off when the receiver hangs, failed after the last attempt and sent again
//! on request, never lost to a crash, and never sent to an address the policy forbids.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::crash::serve_process;
use crate::fixtures;
use crate::helpers::{
    Backend, TestApp, assert_error, assert_refused, file_form, json_with, resume_webhook,
};
use crate::receiver::{Answer, Delivery, Receiver};

both_backends!(
    promotion_expiry_and_discard_arrive_signed_with_the_file_record,
    a_receiver_that_fails_or_is_down_gets_the_event_on_a_later_attempt,
    a_hanging_receiver_is_cut_off_and_a_failed_delivery_can_be_redelivered,
    private_addresses_are_refused_when_connecting_and_a_test_ping_says_why,
    an_event_committed_before_a_crash_is_delivered_after_restart,
    a_client_with_slow_endpoints_delays_only_its_own_events,
    a_sweep_that_expires_many_files_notifies_each_client_of_its_own,
);

/// Registers an endpoint for acme; its id and secret.
pub async fn register(app: &TestApp, url: &str, events: Option<&[&str]>) -> (String, String) {
    let mut body = json!({ "url": url });
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let created = json_with(
        app.acme(Method::POST, "/event-endpoints")
            .json(&body)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// Registers an endpoint for globex on a receiver, subscribed to `events`; the receiver checks
/// its signatures with the endpoint's secret.
async fn register_globex(app: &TestApp, receiver: &Receiver, events: &[&str]) {
    let created = json_with(
        app.globex(Method::POST, "/event-endpoints")
            .json(&json!({ "url": receiver.url, "events": events }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    receiver.set_secret(created["secret"].as_str().unwrap());
}

fn private(c: &mut stowage::config::Config) {
    c.events_allow_private = true;
}

/// What every delivery must be: signed with the endpoint's secret over `<ts>.<body>`, stamped
/// now, named by the event id, JSON.
fn assert_well_formed(delivery: &Delivery) {
    assert!(delivery.signature_valid, "bad signature: {delivery:?}");
    let skew = (chrono::Utc::now().timestamp() - delivery.timestamp).abs();
    assert!(skew < 300, "timestamp {} is not now", delivery.timestamp);
    assert_eq!(delivery.content_type, "application/json");
    let body = delivery.json();
    assert_eq!(
        body["id"],
        delivery.id.as_str(),
        "X-Webhook-Id is the event id"
    );
    assert_eq!(body["client_id"], "acme");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok(),
        "{body}"
    );
}

/// Waits until a delivery of an event to an endpoint reaches `status`; the event.
async fn wait_for_delivery(app: &TestApp, event_id: &str, endpoint: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = app.get_json(&format!("/events/{event_id}")).await;
        let delivery = event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == endpoint)
            .cloned();
        if delivery.as_ref().is_some_and(|d| d["status"] == status) {
            return event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery never became {status}: {event}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivery_to<'a>(event: &'a Value, endpoint: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["endpoint_id"] == endpoint)
        .expect("a delivery to the endpoint")
}

/// The newest event of a type, from `GET /events`.
async fn newest_event(app: &TestApp, event_type: &str) -> Value {
    let page = app.get_json(&format!("/events?type={event_type}")).await;
    page["results"][0].clone()
}

async fn promotion_expiry_and_discard_arrive_signed_with_the_file_record(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        private(c);
        c.upload_ttl = Duration::from_secs(3);
    })
    .await;
    let receiver = Receiver::start().await;
    let (every, secret) = register(&app, &receiver.url, None).await;
    receiver.set_secret(&secret);
    let only_promotions = Receiver::start().await;
    let (_, promotions_secret) =
        register(&app, &only_promotions.url, Some(&["file.promoted"])).await;
    only_promotions.set_secret(&promotions_secret);

    let mut ids = Vec::new();
    for name in ["promoted.pdf", "discarded.pdf", "expired.pdf"] {
        let body = json_with(app.upload(name, fixtures::pdf(3_000)).await, 201).await;
        ids.push(body["carv_file_id"].as_str().unwrap().to_owned());
    }
    let (promoted, discarded, expired) = (&ids[0], &ids[1], &ids[2]);
    let gone = app
        .acme(Method::DELETE, &format!("/uploads/{discarded}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    json_with(
        app.post_webhook("candidates", &resume_webhook("cand-1", promoted))
            .await,
        200,
    )
    .await;

    let staged = receiver
        .wait_until(Duration::from_secs(20), "three file.staged", |got| {
            got.iter()
                .filter(|d| d.event_type() == "file.staged")
                .count()
                == 3
        })
        .await;
    for delivery in staged.iter().filter(|d| d.event_type() == "file.staged") {
        let file = &delivery.json()["data"]["file"];
        assert_eq!(file["state"], "staged", "{file}");
        assert!(ids.contains(&file["carv_file_id"].as_str().unwrap().to_owned()));
    }

    let delivery = receiver.wait_for_type("file.promoted").await;
    assert_well_formed(&delivery);
    let file = &delivery.json()["data"]["file"];
    let mut record = app.get_json(&format!("/files/{promoted}")).await;
    // As of the promotion: its text was still to be extracted (it may be by now).
    assert_eq!(file["text"]["status"], "pending", "{file}");
    record["text"] = file["text"].clone();
    assert_eq!(
        file, &record,
        "data.file is the GET /files record as of the promotion"
    );
    assert_eq!(file["state"], "promoted");
    assert_eq!(file["webhook"]["user_id"], "cand-1");
    assert!(file["storage_key"].is_string());

    let delivery = receiver.wait_for_type("file.discarded").await;
    assert_well_formed(&delivery);
    let file = &delivery.json()["data"]["file"];
    assert_eq!(
        (file["carv_file_id"].as_str().unwrap(), &file["state"]),
        (discarded.as_str(), &json!("discarded"))
    );
    assert_eq!(file["file_name"], "discarded.pdf");

    // The third is never claimed: the sweeper expires it.
    let record = app.get_json(&format!("/uploads/{expired}")).await;
    let expires = chrono::DateTime::parse_from_rfc3339(record["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let wait = (expires - chrono::Utc::now()).num_milliseconds() + 150;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.expired, 1, "{run:?}");
    let delivery = receiver.wait_for_type("file.expired").await;
    assert_well_formed(&delivery);
    let file = &delivery.json()["data"]["file"];
    assert_eq!(
        (file["carv_file_id"].as_str().unwrap(), &file["state"]),
        (expired.as_str(), &json!("expired"))
    );

    for delivery in receiver.received() {
        assert_well_formed(&delivery);
    }
    // The promoted file's text outcome (this PDF has no pages, so no text layer).
    let delivery = receiver.wait_for_type("file.text_failed").await;
    assert_eq!(
        delivery.json()["data"]["file"]["text"]["reason"],
        "no_text_layer"
    );
    let taken = receiver.taken();
    assert_eq!(
        taken.len(),
        7,
        "3 staged, discarded, promoted, expired, text failed"
    );
    let promotions = only_promotions
        .wait_until(Duration::from_secs(10), "one promotion", |got| {
            !got.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let promotions_now = only_promotions.received();
    assert_eq!(
        promotions_now.len(),
        1,
        "an endpoint subscribed to file.promoted gets nothing else"
    );
    assert_eq!(promotions[0].event_type(), "file.promoted");
    assert_well_formed(&promotions[0]);

    // The log: newest first, each delivered at the first attempt, pages that join up.
    let page = app.get_json("/events").await;
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    assert_eq!(results[0]["type"], "file.expired");
    assert_eq!(page["next"], Value::Null);
    for event in results {
        assert!(taken.contains_key(event["id"].as_str().unwrap()));
        let delivery = delivery_to(event, &every);
        assert_eq!(delivery["status"], "delivered", "{event}");
        assert_eq!(delivery["attempt_count"], 1);
        assert_eq!(delivery["response_status_code"], 204);
        assert_eq!(delivery["next_attempt_at"], Value::Null);
    }
    let mut paged = Vec::new();
    let mut next = Some("/events?limit=4".to_owned());
    while let Some(path) = next {
        let page = app.get_json(&path).await;
        paged.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    let listed: Vec<Value> = results.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(
        paged, listed,
        "two pages of four and three, in the same order"
    );
    let promotions = app.get_json("/events?type=file.promoted").await;
    assert_eq!(promotions["results"].as_array().unwrap().len(), 1);
    let theirs = json_with(
        app.globex(Method::GET, "/events").send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(theirs["results"], json!([]), "another client sees none");
    let event_id = results[0]["id"].as_str().unwrap();
    assert_refused(
        app.globex(Method::GET, &format!("/events/{event_id}")),
        404,
        "event_not_found",
    )
    .await;
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "type=file.exploded",
        "cursor=nope",
    ] {
        let response = app
            .acme(Method::GET, &format!("/events?{bad}"))
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
    }
}

async fn a_receiver_that_fails_or_is_down_gets_the_event_on_a_later_attempt(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        private(c);
        c.event_retry_base = Duration::from_millis(200);
    })
    .await;
    let failing = Receiver::start().await;
    failing.answer(&[Answer::Status(500), Answer::Status(503)], Answer::Ok);
    let (failing_id, secret) = register(&app, &failing.url, None).await;
    failing.set_secret(&secret);
    // An endpoint whose receiver is down: its port is free, nothing listens.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = port.local_addr().unwrap();
    drop(port);
    let (down_id, down_secret) = register(&app, &format!("http://{address}/hooks"), None).await;

    json_with(app.upload("cv.pdf", fixtures::pdf(3_000)).await, 201).await;
    let event_id = newest_event(&app, "file.staged").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let event = wait_for_delivery(&app, &event_id, &failing_id, "delivered").await;
    let delivery = delivery_to(&event, &failing_id);
    assert_eq!(delivery["attempt_count"], 3);
    let attempts = delivery["attempts"].as_array().unwrap();
    let codes: Vec<&Value> = attempts
        .iter()
        .map(|a| &a["response_status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(503), &json!(204)], "{delivery}");
    assert!(
        attempts[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{delivery}"
    );
    assert_eq!(attempts[2]["error_message"], Value::Null);
    let got = failing.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|d| d.id == event_id && d.signature_valid));

    // The down endpoint has failed at least once, and is still pending…
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = app.get_json(&format!("/events/{event_id}")).await;
        let delivery = delivery_to(&event, &down_id).clone();
        if delivery["attempt_count"].as_i64().unwrap() >= 1 {
            assert_eq!(delivery["status"], "pending", "{delivery}");
            assert_eq!(delivery["response_status_code"], Value::Null);
            assert!(delivery["error_message"].as_str().is_some(), "{delivery}");
            assert!(delivery["next_attempt_at"].is_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …until its receiver comes up on that port.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let back = Receiver::on(listener).await;
    back.set_secret(&down_secret);
    let delivery = back.wait_for_type("file.staged").await;
    assert_eq!(delivery.id, event_id);
    assert_well_formed(&delivery);
    let event = wait_for_delivery(&app, &event_id, &down_id, "delivered").await;
    let delivery = delivery_to(&event, &down_id);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{delivery}");
    assert_eq!(
        attempts.len() as i64,
        delivery["attempt_count"].as_i64().unwrap(),
        "the log has every attempt"
    );
}

async fn a_hanging_receiver_is_cut_off_and_a_failed_delivery_can_be_redelivered(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        private(c);
        c.event_timeout = Duration::from_millis(500);
        c.event_retry_base = Duration::from_millis(100);
        c.event_max_attempts = 2;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(&[], Answer::Hang);
    let (endpoint, secret) = register(&app, &receiver.url, Some(&["file.staged"])).await;
    receiver.set_secret(&secret);
    json_with(app.upload("cv.pdf", fixtures::pdf(3_000)).await, 201).await;
    let event_id = newest_event(&app, "file.staged").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let event = wait_for_delivery(&app, &event_id, &endpoint, "failed").await;
    let delivery = delivery_to(&event, &endpoint);
    assert_eq!(delivery["attempt_count"], 2, "max_attempts");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    for attempt in delivery["attempts"].as_array().unwrap() {
        assert_eq!(attempt["response_status_code"], Value::Null);
        assert_eq!(
            attempt["error_message"], "no answer within 500ms",
            "{attempt}"
        );
        let took = attempt["duration_ms"].as_i64().unwrap();
        assert!(
            (400..10_000).contains(&took),
            "cut off by the timeout: {took} ms"
        );
    }
    assert_eq!(receiver.received().len(), 2);

    // Failed stays failed…
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 2, "no attempt after the last");
    // …until redelivered.
    receiver.answer(&[], Answer::Ok);
    let queued = app
        .acme(Method::POST, &format!("/events/{event_id}/redeliver"))
        .send()
        .await
        .unwrap();
    let queued = json_with(queued, 202).await;
    assert_eq!(delivery_to(&queued, &endpoint)["status"], "pending");
    let delivery = receiver.wait_for_type("file.staged").await;
    assert_eq!(delivery.id, event_id, "the same event, the same id");
    assert_well_formed(&delivery);
    let event = wait_for_delivery(&app, &event_id, &endpoint, "delivered").await;
    assert_eq!(delivery_to(&event, &endpoint)["attempt_count"], 3);
    assert_refused(
        app.globex(Method::POST, &format!("/events/{event_id}/redeliver")),
        404,
        "event_not_found",
    )
    .await;
}

async fn private_addresses_are_refused_when_connecting_and_a_test_ping_says_why(backend: Backend) {
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // The default policy: an endpoint whose name now resolves to a loopback address (as if its
    // DNS changed after registration) is never connected to.
    let app = TestApp::spawn(backend).await;
    for url in [
        format!("https://localhost:{port}/hooks"),
        format!("https://127.0.0.1:{port}/hooks"),
    ] {
        let endpoint = stowage::repo::EndpointRecord {
            id: uuid::Uuid::new_v4(),
            client_id: "acme".into(),
            url: url.clone(),
            event_types: None,
            secret: "whsec_test".into(),
            created_at: chrono::Utc::now(),
            previous_secret: None,
            disabled_at: None,
        };
        app.state.repo().create_endpoint(&endpoint).await.unwrap();
        let tested = json_with(
            app.acme(
                Method::POST,
                &format!("/event-endpoints/{}/test", endpoint.id),
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        assert_eq!(tested["delivered"], false, "{url}: {tested}");
        assert_eq!(tested["response_status_code"], Value::Null);
        assert!(
            tested["error_message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{url}: {tested}"
        );
    }
    json_with(app.upload("cv.pdf", fixtures::pdf(3_000)).await, 201).await;
    let event_id = newest_event(&app, "file.staged").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = app.get_json(&format!("/events/{event_id}")).await;
        let tried = event["deliveries"].as_array().unwrap();
        if tried.len() == 2 && tried.iter().all(|d| d["attempt_count"] == 1) {
            for delivery in tried {
                assert!(
                    delivery["error_message"]
                        .as_str()
                        .unwrap()
                        .contains("not a public address"),
                    "{delivery}"
                );
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{event}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.received().is_empty(), "nothing reached 127.0.0.1");
    assert_refused(
        app.acme(
            Method::POST,
            &format!("/event-endpoints/{}/test", uuid::Uuid::new_v4()),
        ),
        404,
        "endpoint_not_found",
    )
    .await;

    // Allowed: the ping arrives, signed.
    let allowed = TestApp::spawn_with(backend, private).await;
    let (endpoint, secret) = register(&allowed, &receiver.url, Some(&["file.promoted"])).await;
    receiver.set_secret(&secret);
    let tested = json_with(
        allowed
            .acme(Method::POST, &format!("/event-endpoints/{endpoint}/test"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        tested,
        json!({ "delivered": true, "response_status_code": 204, "error_message": null })
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_type(), "ping");
    assert_well_formed(&got[0]);
    receiver.answer(&[], Answer::Status(410));
    let tested = json_with(
        allowed
            .acme(Method::POST, &format!("/event-endpoints/{endpoint}/test"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(tested["delivered"], false);
    assert_eq!(tested["response_status_code"], 410);
    assert!(
        tested["error_message"]
            .as_str()
            .unwrap()
            .contains("receiver says no"),
        "{tested}"
    );
}

async fn an_event_committed_before_a_crash_is_delivered_after_restart(backend: Backend) {
    let app = TestApp::spawn_with(backend, private).await;
    let receiver = Receiver::start().await;
    let (_, secret) = register(&app, &receiver.url, Some(&["file.staged", "file.promoted"])).await;
    receiver.set_secret(&secret);
    let events = [("STOWAGE_EVENTS_ALLOW_PRIVATE", "true")];

    // Killed right after the upload's row and event commit: the client never hears of it.
    let (mut child, base) =
        serve_process(&app, &[events[0], ("STOWAGE_FAULT", "upload.after_staged")]).await;
    let sent = app
        .http
        .post(format!("{base}/uploads"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .multipart(file_form("cv.pdf", fixtures::pdf(3_000), "application/pdf"))
        .send()
        .await;
    assert!(sent.is_err(), "the server died before answering");
    let _ = child.wait();
    let (mut restarted, _) = serve_process(&app, &events).await;
    let staged = receiver.wait_for_type("file.staged").await;
    assert_well_formed(&staged);
    let id = staged.json()["data"]["file"]["carv_file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get_json(&format!("/uploads/{id}")).await["state"],
        "staged"
    );
    restarted.kill().unwrap();
    let _ = restarted.wait();

    // Killed after the bind, before the promotion: the restart's recovery promotes the file
    // and the promotion's event follows.
    let (mut child, base) =
        serve_process(&app, &[events[0], ("STOWAGE_FAULT", "promote.after_bind")]).await;
    let sent = app
        .http
        .post(format!("{base}/webhooks/candidates"))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .json(&resume_webhook("cand-9", &id))
        .send()
        .await;
    assert!(sent.is_err(), "the server died mid-webhook");
    let _ = child.wait();
    let (mut restarted, _) = serve_process(&app, &events).await;
    let promoted = receiver.wait_for_type("file.promoted").await;
    assert_well_formed(&promoted);
    let file = &promoted.json()["data"]["file"];
    assert_eq!(file["carv_file_id"], id.as_str());
    assert_eq!(file["state"], "promoted");
    assert_eq!(file["webhook"]["user_id"], "cand-9");
    restarted.kill().unwrap();
    let _ = restarted.wait();
}

/// §8 "Fair": globex registers as many endpoints as it may (the next is refused), every one of
/// them hanging, and uploads files (80 deliveries, each hanging until the timeout). acme's
/// event still arrives at once: an endpoint holds few delivery slots, and turns go round-robin
/// across clients.
async fn a_client_with_slow_endpoints_delays_only_its_own_events(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.events_allow_private = true;
        c.event_timeout = Duration::from_secs(8);
    })
    .await;
    let slow = Receiver::start().await;
    slow.answer(&[], Answer::Hang);
    let register_globex = |n: usize| {
        app.globex(Method::POST, "/event-endpoints")
            .json(&json!({ "url": format!("{}?n={n}", slow.url) }))
            .send()
    };
    for n in 0..10 {
        json_with(register_globex(n).await.unwrap(), 201).await;
    }
    assert_error(
        register_globex(10).await.unwrap(),
        409,
        "too_many_endpoints",
    )
    .await;
    for _ in 0..8 {
        let upload = app
            .globex(Method::POST, "/uploads")
            .multipart(file_form("cv.pdf", fixtures::pdf(2_000), "application/pdf"))
            .send()
            .await
            .unwrap();
        json_with(upload, 201).await;
    }
    // The slow deliveries are under way.
    slow.wait_until(Duration::from_secs(10), "hanging deliveries", |got| {
        got.len() >= 10
    })
    .await;

    let fast = Receiver::start().await;
    let (_, secret) = register(&app, &fast.url, None).await;
    fast.set_secret(&secret);
    json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    // Well before any of globex's hanging deliveries times out and frees its slot.
    fast.wait_until(Duration::from_secs(4), "acme's file.staged", |got| {
        got.iter().any(|d| d.event_type() == "file.staged")
    })
    .await;
}

/// The sweeper writes a batch's `file.expired` events and their deliveries together: each
/// client's subscribed endpoints get exactly its own files, once each; an endpoint not
/// subscribed to the type gets none.
async fn a_sweep_that_expires_many_files_notifies_each_client_of_its_own(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        private(c);
        c.upload_ttl = Duration::from_secs(2);
    })
    .await;
    let acme = Receiver::start().await;
    let (_, secret) = register(&app, &acme.url, Some(&["file.expired"])).await;
    acme.set_secret(&secret);
    let unsubscribed = Receiver::start().await;
    register(&app, &unsubscribed.url, Some(&["file.promoted"])).await;
    let globex = Receiver::start().await;
    register_globex(&app, &globex, &["file.expired"]).await;

    let mut acme_ids = Vec::new();
    for i in 0..5 {
        let body = json_with(
            app.upload(&format!("a{i}.pdf"), fixtures::pdf(2_000)).await,
            201,
        )
        .await;
        acme_ids.push(body["carv_file_id"].as_str().unwrap().to_owned());
    }
    let mut globex_ids = Vec::new();
    for i in 0..3 {
        let form = file_form(
            &format!("g{i}.pdf"),
            fixtures::pdf(2_000),
            "application/pdf",
        );
        let staged = app
            .globex(Method::POST, "/uploads")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let body = json_with(staged, 201).await;
        globex_ids.push(body["carv_file_id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.expired, 8, "{run:?}");

    for (receiver, ids) in [(&acme, &acme_ids), (&globex, &globex_ids)] {
        receiver
            .wait_until(Duration::from_secs(20), "every expiry", |got| {
                got.len() >= ids.len()
            })
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = receiver.received();
        let mut files: Vec<String> = got
            .iter()
            .map(|d| {
                assert!(d.signature_valid, "bad signature: {d:?}");
                assert_eq!(d.event_type(), "file.expired");
                d.json()["data"]["file"]["carv_file_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        files.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(files, expected, "{} deliveries", got.len());
    }
    assert!(unsubscribed.received().is_empty());
}

/// §8 "Fair", with row locks: acme's due deliveries are held by another transaction (as an
/// endpoint's removal failing its pending deliveries holds them, or another replica's long
/// write). The worker skips them instead of waiting: globex's event arrives meanwhile, and
/// acme's arrive once the lock is gone. (SQLite has one writer and no row locks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_locked_by_another_transaction_do_not_hold_up_another_clients() {
    use sqlx::Connection;
    let app = TestApp::spawn_with(Backend::PostgresS3, |c| {
        c.events_allow_private = true;
        c.event_timeout = Duration::from_secs(2);
        c.event_retry_base = Duration::from_secs(120);
        c.event_endpoint_concurrency = 1;
    })
    .await;
    let acme = Receiver::start().await;
    acme.answer(&[Answer::Hang], Answer::Ok);
    let (acme_endpoint, secret) = register(&app, &acme.url, Some(&["file.staged"])).await;
    acme.set_secret(&secret);
    for i in 0..3 {
        json_with(
            app.upload(&format!("a{i}.pdf"), fixtures::pdf(2_000)).await,
            201,
        )
        .await;
    }
    // The first hangs in flight; the endpoint's one slot is taken, the other two wait.
    acme.wait_until(Duration::from_secs(10), "the hanging delivery", |got| {
        !got.is_empty()
    })
    .await;
    let mut holder = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    let mut lock = holder.begin().await.unwrap();
    let held: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT event_id FROM deliveries WHERE endpoint_id = $1::uuid \
         AND status = 'pending' AND attempt_count = 0 AND leased_until IS NULL FOR UPDATE",
    )
    .bind(&acme_endpoint)
    .fetch_all(&mut *lock)
    .await
    .unwrap();
    assert_eq!(held.len(), 2, "acme's waiting deliveries, locked");
    // The hanging delivery is cut off: acme's slot is free and its two locked deliveries are
    // the next due.
    let mut watcher = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (attempted,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM deliveries WHERE endpoint_id = $1::uuid \
             AND attempt_count = 1 AND (leased_until IS NULL OR leased_until <= now())",
        )
        .bind(&acme_endpoint)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if attempted == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hang was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let globex = Receiver::start().await;
    register_globex(&app, &globex, &["file.staged"]).await;
    let upload = app
        .globex(Method::POST, "/uploads")
        .multipart(file_form("g.pdf", fixtures::pdf(2_000), "application/pdf"))
        .send()
        .await
        .unwrap();
    json_with(upload, 201).await;
    globex
        .wait_until(Duration::from_secs(5), "globex's file.staged", |got| {
            got.iter().any(|d| d.event_type() == "file.staged")
        })
        .await;
    assert_eq!(acme.received().len(), 1, "acme's locked deliveries waited");

    lock.rollback().await.unwrap();
    acme.wait_until(Duration::from_secs(15), "acme's other two", |got| {
        got.len() >= 3
    })
    .await;
}

/// On PostgreSQL a delivery has no foreign key to its event (migration 0021): a delivery left
/// without one — here by a hand-made deletion in the database, due before anything else — is
/// never claimed, and the deliveries behind it still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_event_is_gone_does_not_stop_the_others() {
    use sqlx::Connection;
    let app = TestApp::spawn_with(Backend::PostgresS3, private).await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = register(&app, &receiver.url, Some(&["file.staged"])).await;
    receiver.set_secret(&secret);
    let mut db = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
         VALUES (gen_random_uuid(), $1::uuid, 'pending', 0, now() - interval '1 hour')",
    )
    .bind(&endpoint)
    .execute(&mut db)
    .await
    .unwrap();
    let staged = json_with(app.upload("cv.pdf", fixtures::pdf(2_000)).await, 201).await;
    receiver
        .wait_until(Duration::from_secs(10), "the file.staged event", |got| {
            got.iter().any(|d| d.event_type() == "file.staged")
        })
        .await;
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 1, "only the event that exists");
    assert_eq!(
        delivered[0].json()["data"]["file"]["carv_file_id"],
        staged["carv_file_id"]
    );
}
