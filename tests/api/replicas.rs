//! Several replicas: three `stowage serve` processes on one PostgreSQL and one S3 server, with
//! their sweepers running every second, take 1,000 conflicting webhooks.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage::domain::FileState;
use stowage::store::Area;

use crate::crash::{assert_consistent, serve_process};
use crate::fixtures;
use crate::helpers::{Backend, TestApp, file_form};

const FILES: usize = 150;
const WEBHOOKS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_bind_each_file_once_and_delete_each_expired_file_once() {
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let envs = [
        ("STOWAGE_UPLOAD_TTL", "3s"),
        ("STOWAGE_SWEEP_SCHEDULE", "* * * * * *"),
        ("STOWAGE_RATE_LIMIT", "0"),
        ("RUST_LOG", "error"),
    ];
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..3 {
        let (child, base) = serve_process(&app, &envs).await;
        children.push(child);
        bases.push(base);
    }
    let http = crate::helpers::client_builder().build().unwrap();

    // Stage the files through the replicas in turn.
    let mut ids = Vec::new();
    for i in 0..FILES {
        let response = http
            .post(format!("{}/uploads", bases[i % 3]))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .multipart(file_form("cv.pdf", fixtures::pdf(2_000), "application/pdf"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["carv_file_id"].as_str().unwrap().to_owned());
    }

    // 1,000 webhooks, each naming a file (several per file), fired 32 at a time across replicas
    // while their sweepers expire what is not bound within three seconds.
    let mut outcomes: Vec<(usize, u16, Value)> = Vec::new();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut next = 0;
    use futures_util::StreamExt;
    while next < WEBHOOKS || !pending.is_empty() {
        while next < WEBHOOKS && pending.len() < 32 {
            // A third of the files is never named: those must expire.
            let file = (next * 7919) % (FILES * 2 / 3);
            let request = http
                .post(format!("{}/webhooks/candidates", bases[next % 3]))
                .header("X-API-Key", &app.acme_key)
                .header("X-ATS-Client-ID", "acme")
                .json(&json!({
                    "client_id": "acme",
                    "user_id": format!("user-{next}"),
                    "files": { "resume": { "carv_file_id": ids[file] } }
                }));
            pending.push(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (file, status, response.json::<Value>().await.unwrap())
            });
            next += 1;
        }
        if let Some(outcome) = pending.next().await {
            outcomes.push(outcome);
        }
    }

    let mut winners: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut by_code: HashMap<String, usize> = HashMap::new();
    for (file, status, body) in &outcomes {
        let code = if *status == 200 {
            winners
                .entry(*file)
                .or_default()
                .insert(body["webhook_id"].as_str().unwrap().to_owned());
            "bound".to_owned()
        } else {
            assert_eq!(*status, 422, "{body}");
            body["error"]["code"].as_str().unwrap().to_owned()
        };
        *by_code.entry(code).or_default() += 1;
    }
    let double_binds = winners.values().filter(|w| w.len() > 1).count();
    eprintln!(
        "replicas: {WEBHOOKS} webhooks on {FILES} files: {by_code:?}; double binds: {double_binds}"
    );
    assert_eq!(double_binds, 0, "a file was bound to two webhooks");
    assert_eq!(by_code.values().sum::<usize>(), WEBHOOKS);

    // Let every file expire or be promoted, and the sweepers run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let staged = app.rows_in(FileState::Staged).await;
        let bound = app.rows_in(FileState::Bound).await;
        if staged == 0 && bound == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{staged} staged and {bound} bound files remain"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for mut child in children {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }

    let promoted = app.rows_in(FileState::Promoted).await;
    let expired = app.rows_in(FileState::Expired).await;
    assert_eq!(
        promoted as usize,
        winners.len(),
        "every bound file is promoted"
    );
    assert_eq!((promoted + expired) as usize, FILES);
    let pool = sqlx::PgPool::connect(&app.config.database_url)
        .await
        .unwrap();
    let (deleted, passes): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(objects_deleted), 0)::BIGINT, COUNT(*) FROM sweep_runs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!(
        "replicas: {promoted} promoted, {expired} expired, {deleted} deletions over {passes} sweep passes"
    );
    assert_eq!(deleted, expired, "every expired file deleted exactly once");
    assert!(app.objects(Area::Staging).await.is_empty());
    assert_consistent(&app).await;
}

const EVENTS: usize = 1_000;

/// Three replicas (and the test's own service) share the outbox: 1,000 uploads make 1,000
/// `file.staged` events, the receiver refuses the first deliveries and one replica is killed
/// mid-run, and still every event arrives — the receiver de-duplicates by `X-Webhook-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_every_event_and_lose_none() {
    use crate::receiver::{Answer, Receiver};
    use futures_util::StreamExt;

    let app = TestApp::spawn_with(Backend::PostgresS3, |c| c.events_allow_private = true).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[Answer::Status(503); 40], Answer::Ok);
    let (_, secret) =
        crate::deliveries::register(&app, &receiver.url, Some(&["file.staged"])).await;
    receiver.set_secret(&secret);
    let envs = [
        ("STOWAGE_EVENTS_ALLOW_PRIVATE", "true"),
        ("STOWAGE_EVENT_RETRY_BASE", "200ms"),
        ("STOWAGE_EVENT_TIMEOUT", "1s"),
        ("STOWAGE_RATE_LIMIT", "0"),
        ("RUST_LOG", "error"),
    ];
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..3 {
        let (child, base) = serve_process(&app, &envs).await;
        children.push(child);
        bases.push(base);
    }
    let http = crate::helpers::client_builder().build().unwrap();
    let pdf = fixtures::pdf(600);
    let mut uploads = futures_util::stream::iter(0..EVENTS)
        .map(|i| {
            // The first replica is killed halfway: later uploads go to the other two.
            let base = if i >= EVENTS / 2 {
                bases[1 + i % 2].clone()
            } else {
                bases[i % 3].clone()
            };
            let request = http
                .post(format!("{base}/uploads"))
                .header("X-API-Key", &app.acme_key)
                .header("X-ATS-Client-ID", "acme")
                .multipart(file_form("cv.pdf", pdf.clone(), "application/pdf"));
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(16);
    let mut staged = 0;
    let mut done = 0;
    let mut killed = false;
    while let Some(outcome) = uploads.next().await {
        done += 1;
        if matches!(outcome, Ok(201)) {
            staged += 1;
        }
        if !killed && done >= EVENTS / 2 {
            // Whatever it had leased is retried by the others once its leases run out.
            children[0].kill().unwrap();
            let _ = children[0].wait();
            killed = true;
        }
    }
    drop(uploads);
    // An upload in flight on the killed replica may have died with it; every one that was
    // answered 201 — and any that committed without an answer — has an event.
    let pool = sqlx::PgPool::connect(&app.config.database_url)
        .await
        .unwrap();
    let (events,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM events WHERE event_type = 'file.staged'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        events as usize >= staged,
        "{events} events for {staged} uploads"
    );
    assert!(staged >= EVENTS - 20, "only {staged} uploads staged");

    receiver
        .wait_until(Duration::from_secs(90), "every event", |_| {
            receiver.taken().len() == events as usize
        })
        .await;
    for mut child in children.into_iter().skip(1) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    let received = receiver.received();
    assert!(
        received.iter().all(|d| d.signature_valid),
        "every signature verifies"
    );
    let taken = receiver.taken();
    let duplicates: usize = taken.values().map(|n| n - 1).sum();
    let ids: HashSet<String> = sqlx::query_as::<_, (uuid::Uuid,)>("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id,)| id.to_string())
        .collect();
    assert_eq!(
        taken.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "every event arrived, and nothing else"
    );
    eprintln!(
        "replicas: {events} events, {} requests received, {duplicates} duplicate deliveries",
        received.len()
    );
    // The last records land just after their requests.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (undelivered,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if undelivered == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} deliveries not marked delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// §7 connection budget: four replicas, each told `STOWAGE_DATABASE_MAX_CONNECTIONS=3`, share a
/// PostgreSQL role allowed 12 connections and take concurrent uploads and webhooks without one
/// "too many connections".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_stay_within_their_database_connection_budget() {
    const REPLICAS: usize = 4;
    const BUDGET: u32 = 3;
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let url = app.config.database_url.clone();
    let (base_url, database) = url.rsplit_once('/').unwrap();
    let role = format!("limited_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in [
        format!(
            "CREATE ROLE {role} LOGIN CONNECTION LIMIT {}",
            REPLICAS as u32 * BUDGET
        ),
        format!("GRANT ALL ON DATABASE {database} TO {role}"),
        format!("GRANT ALL ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await
            .unwrap();
    }
    let limited_url = format!(
        "{}/{database}",
        base_url.replacen("postgres@", &format!("{role}@"), 1)
    );
    assert_ne!(limited_url, url, "the replicas connect as the limited role");
    let budget = BUDGET.to_string();
    let envs = [
        ("STOWAGE_DATABASE_URL", limited_url.as_str()),
        ("STOWAGE_DATABASE_MAX_CONNECTIONS", budget.as_str()),
        ("STOWAGE_SWEEP_SCHEDULE", "* * * * * *"),
        ("STOWAGE_RATE_LIMIT", "0"),
        ("RUST_LOG", "error"),
    ];
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..REPLICAS {
        let (child, base) = serve_process(&app, &envs).await;
        children.push(crate::hardening::Reaper(child));
        bases.push(base);
    }
    let http = crate::helpers::client_builder().build().unwrap();
    let requests = (0..48).map(|i| {
        let base = bases[i % REPLICAS].clone();
        let http = http.clone();
        let key = app.acme_key.clone();
        async move {
            let staged = http
                .post(format!("{base}/uploads"))
                .header("X-API-Key", &key)
                .header("X-ATS-Client-ID", "acme")
                .multipart(file_form(
                    "cv.pdf",
                    fixtures::pdf(20_000),
                    "application/pdf",
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(staged.status(), 201, "{}", staged.text().await.unwrap());
            let staged: Value = staged.json().await.unwrap();
            let bound = http
                .post(format!("{base}/webhooks/candidates"))
                .header("X-API-Key", &key)
                .header("X-ATS-Client-ID", "acme")
                .json(&crate::helpers::resume_webhook(
                    &format!("u{i}"),
                    staged["carv_file_id"].as_str().unwrap(),
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(bound.status(), 200, "{}", bound.text().await.unwrap());
        }
    });
    futures_util::future::join_all(requests).await;
    let (connections,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&role)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(
        connections <= (REPLICAS as u32 * BUDGET) as i64,
        "{connections} connections"
    );
    assert_eq!(app.rows_in(FileState::Promoted).await, 48);
    drop(children);
    admin.close().await;
}

/// An upload token minted on one replica works on every replica at once, its count holds across
/// them, and revoking it on one ends it on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_token_is_one_token_on_every_replica() {
    use futures_util::StreamExt;

    let app = TestApp::spawn(Backend::PostgresS3).await;
    let envs = [("STOWAGE_RATE_LIMIT", "0"), ("RUST_LOG", "error")];
    let (first, a) = serve_process(&app, &envs).await;
    let (second, b) = serve_process(&app, &envs).await;
    let _replicas = (
        crate::hardening::Reaper(first),
        crate::hardening::Reaper(second),
    );
    let http = crate::helpers::client_builder().build().unwrap();
    let mint = |base: String, max_files: u32| {
        let request = http
            .post(format!("{base}/upload-tokens"))
            .header("X-API-Key", &app.acme_key)
            .header("X-ATS-Client-ID", "acme")
            .json(&json!({ "max_files": max_files }));
        async move { crate::helpers::json_with(request.send().await.unwrap(), 201).await }
    };
    let upload = |base: &str, token: &str| {
        http.post(format!("{base}/uploads"))
            .bearer_auth(token)
            .multipart(file_form("cv.pdf", fixtures::pdf(600), "application/pdf"))
            .send()
    };

    // Counted across replicas: eight uploads at once, alternating, three succeed.
    let token = mint(a.clone(), 3).await;
    let secret = token["token"].as_str().unwrap().to_owned();
    let statuses: Vec<u16> = futures_util::stream::iter(0..8)
        .map(|i| {
            let base = if i % 2 == 0 { &a } else { &b };
            let sent = upload(base, &secret);
            async move { sent.await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );

    // Revoked on one replica: refused on the other at once.
    let token = mint(b.clone(), 5).await;
    let secret = token["token"].as_str().unwrap().to_owned();
    assert_eq!(upload(&a, &secret).await.unwrap().status(), 201);
    let revoked = http
        .delete(format!(
            "{b}/upload-tokens/{}",
            token["id"].as_str().unwrap()
        ))
        .header("X-API-Key", &app.acme_key)
        .header("X-ATS-Client-ID", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(upload(&a, &secret).await.unwrap().status(), 401);
}
