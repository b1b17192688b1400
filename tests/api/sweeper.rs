//! The sweeper and the operators' view: expiry, orphans, dead uploads, tombstones, metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use stowage::domain::{FileState, Slot, WebhookKind};
use stowage::repo::{BindAttempt, NewFile, NewWebhook};
use stowage::store::{Area, DeleteFailure, IncompleteUpload, ObjectInfo, ObjectWriter, Store};
use uuid::Uuid;

use crate::both_backends;
use crate::fixtures;
use crate::helpers::{Backend, TestApp, assert_error, json_with};

both_backends!(
    an_unclaimed_file_expires_and_a_late_webhook_gets_file_expired,
    a_bound_file_is_never_swept_and_ends_promoted,
    orphans_and_dead_uploads_are_cleaned,
    a_slow_but_live_upload_is_not_taken_for_dead,
    tombstones_are_purged_after_their_retention,
    metrics_and_the_storage_view_match_the_rows,
    operations_endpoints_honour_the_ops_token,
    a_pass_of_many_batches_deletes_each_object_once_after_its_tombstone,
);

/// Waits until a staged file's `expires_at` has passed (the TTL in these tests is a second).
async fn wait_until_expired(body: &Value) {
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let wait = (expires - chrono::Utc::now()).num_milliseconds() + 150;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
}

fn short_ttl(c: &mut stowage::config::Config) {
    c.upload_ttl = Duration::from_secs(1);
}

async fn an_unclaimed_file_expires_and_a_late_webhook_gets_file_expired(backend: Backend) {
    let app = TestApp::spawn_with(backend, short_ttl).await;
    let body = json_with(app.upload("cv.pdf", fixtures::pdf(4_000)).await, 201).await;
    let id = body["carv_file_id"].as_str().unwrap().to_owned();
    wait_until_expired(&body).await;

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!((run.expired, run.objects_deleted, run.errors), (1, 1, 0));
    assert!(
        app.objects(Area::Staging).await.is_empty(),
        "object deleted"
    );
    assert_eq!(app.rows_in(FileState::Expired).await, 1, "tombstone kept");

    let record = app.get_json(&format!("/uploads/{id}")).await;
    assert_eq!(record["state"], "expired");
    let webhook = crate::helpers::resume_webhook("late", &id);
    let late = app
        .acme(Method::POST, "/webhooks/candidates")
        .json(&webhook)
        .send()
        .await
        .unwrap();
    assert_error(late, 422, "file_expired").await;

    let again = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(again.expired, 0, "a tombstone is not expired twice");
}

async fn a_bound_file_is_never_swept_and_ends_promoted(backend: Backend) {
    // Two seconds: upload times are whole seconds, so one could leave no time to bind.
    let app = TestApp::spawn_with(backend, |c| c.upload_ttl = Duration::from_secs(2)).await;
    let body = json_with(app.upload("cv.pdf", fixtures::pdf(4_000)).await, 201).await;
    let id = Uuid::parse_str(body["carv_file_id"].as_str().unwrap()).unwrap();
    let webhook = NewWebhook {
        id: Uuid::new_v4(),
        client_id: "acme".into(),
        kind: WebhookKind::Candidate,
        user_id: "u".into(),
        payload: "{}".into(),
        payload_hash: "h".into(),
        idempotency_key: None,
        created_at: chrono::Utc::now(),
    };
    let bound = app
        .state
        .repo()
        .bind_files(&webhook, &[(Slot::Resume, id)])
        .await
        .unwrap();
    assert!(matches!(bound, BindAttempt::Bound(_)));
    wait_until_expired(&body).await;

    // A replica whose long-term area is broken cannot promote; its passes must leave the file.
    let mut config = app.config.clone();
    match backend {
        Backend::SqliteFs => {
            let root = config.storage.strip_prefix("fs:").unwrap().to_owned();
            std::fs::write(std::path::Path::new(&root).join("blocked"), b"x").unwrap();
            config.files_bucket = "blocked".into();
        }
        Backend::PostgresS3 => config.files_bucket = format!("{}-missing", config.files_bucket),
    }
    let broken = stowage::connect(&config).await.unwrap();
    for _ in 0..2 {
        let run = stowage::sweeper::run_pass(&broken).await;
        assert_eq!(run.expired, 0);
        assert_eq!(run.promoted, 0);
        assert!(run.errors > 0, "the failed promotion is reported");
    }
    assert_eq!(
        app.objects(Area::Staging).await,
        [format!("acme/{id}")],
        "never deleted"
    );
    assert_eq!(app.rows_in(FileState::Bound).await, 1);

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!((run.promoted, run.expired), (1, 0));
    assert_eq!(app.objects(Area::Files).await, [format!("acme/{id}")]);
    assert_eq!(app.rows_in(FileState::Promoted).await, 1);
}

async fn orphans_and_dead_uploads_are_cleaned(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.receiving_grace = Duration::ZERO).await;
    let live = json_with(app.upload("cv.pdf", fixtures::pdf(1_000)).await, 201).await;
    let live_key = format!("acme/{}", live["carv_file_id"].as_str().unwrap());
    let store = app.state.store();

    // An object nobody has a row for.
    let orphan_key = format!("acme/{}", Uuid::new_v4());
    let mut writer = store.begin_staging(&orphan_key).await.unwrap();
    writer
        .write(Bytes::from(fixtures::pdf(2_000)))
        .await
        .unwrap();
    writer.finish().await.unwrap();

    // An upload that died mid-way: its row is `receiving`, its multipart upload incomplete.
    let dead = Uuid::new_v4();
    let dead_key = format!("acme/{dead}");
    app.state
        .repo()
        .insert_receiving(&NewFile {
            id: dead,
            client_id: "acme".into(),
            file_name: "dead.pdf".into(),
            staging_key: dead_key.clone(),
            created_at: chrono::Utc::now() - chrono::TimeDelta::seconds(5),
        })
        .await
        .unwrap();
    let mut writer = store.begin_staging(&dead_key).await.unwrap();
    writer
        .write(Bytes::from(fixtures::pdf(9 * 1024 * 1024)))
        .await
        .unwrap();
    drop(writer); // the process died here: neither finished nor aborted
    // And an incomplete upload without any row at all.
    let stray_key = format!("acme/{}", Uuid::new_v4());
    let mut writer = store.begin_staging(&stray_key).await.unwrap();
    writer
        .write(Bytes::from(fixtures::pdf(9 * 1024 * 1024)))
        .await
        .unwrap();
    drop(writer);
    assert_eq!(app.incomplete_uploads().await, 2);
    // And objects Stowage did not name, put there by someone else: never Stowage's to delete.
    let mut foreign = Vec::new();
    for key in ["reports/2026.csv", "acme/not-a-file-id.pdf"] {
        let mut writer = store.begin_staging(key).await.unwrap();
        writer.write(Bytes::from_static(b"theirs")).await.unwrap();
        writer.finish().await.unwrap();
        foreign.push(key.to_owned());
    }

    let run = stowage::sweeper::run_pass(&app.state).await;
    assert_eq!(run.errors, 0, "{:?}", run.last_error);
    assert_eq!(run.receiving_aborted, 1);
    assert_eq!(
        run.orphans_deleted, 2,
        "the orphan object and the stray upload"
    );
    let mut left = app.objects(Area::Staging).await;
    left.sort();
    let mut expected = [vec![live_key], foreign].concat();
    expected.sort();
    assert_eq!(
        left, expected,
        "only the live file and objects Stowage did not name are left"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
    assert_eq!(app.rows_in(FileState::Receiving).await, 0);
    assert_eq!(app.rows_in(FileState::Staged).await, 1);
}

/// An upload that runs for longer than the grace period but keeps sending is alive: sweeps
/// running all along leave it alone, and it ends staged.
async fn a_slow_but_live_upload_is_not_taken_for_dead(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.receiving_grace = Duration::from_secs(2)).await;
    let (tx, body) = crate::helpers::streamed_body();
    let upload = tokio::spawn(
        app.acme(Method::POST, "/uploads")
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
            .send(),
    );
    let sweeping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sweeps = tokio::spawn({
        let (state, sweeping) = (app.state.clone(), sweeping.clone());
        async move {
            let mut aborted = 0;
            while sweeping.load(std::sync::atomic::Ordering::Relaxed) {
                aborted += stowage::sweeper::run_pass(&state).await.receiving_aborted;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            aborted
        }
    });
    // About 5 s of sending, a chunk every 100 ms: more than twice the grace period.
    tx.send(Ok(crate::helpers::file_part_head("slow.pdf")))
        .await
        .unwrap();
    let pdf = fixtures::pdf(50_000);
    for chunk in pdf.chunks(1_000) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(Ok(chunk.to_vec())).await.unwrap();
    }
    tx.send(Ok(b"\r\n--b--\r\n".to_vec())).await.unwrap();
    drop(tx);
    let staged = json_with(upload.await.unwrap().unwrap(), 201).await;
    sweeping.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sweeps.await.unwrap(), 0, "a sweep aborted a live upload");
    assert_eq!(staged["file_size"], 50_000);
    assert_eq!(app.rows_in(FileState::Staged).await, 1);
}

async fn tombstones_are_purged_after_their_retention(backend: Backend) {
    let kept = TestApp::spawn_with(backend, |c| c.events_allow_private = true).await;
    let purged = TestApp::spawn_with(backend, |c| {
        c.tombstone_retention = Duration::ZERO;
        c.events_allow_private = true;
    })
    .await;
    for app in [&kept, &purged] {
        // An endpoint nobody answers: each event's delivery stays pending (its retry is 30 s
        // away).
        crate::deliveries::register(app, "http://127.0.0.1:9/hooks", None).await;
        let body = json_with(app.upload("cv.pdf", fixtures::pdf(1_000)).await, 201).await;
        let path = format!("/uploads/{}", body["carv_file_id"].as_str().unwrap());
        assert_eq!(
            app.acme(Method::DELETE, &path)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
    }
    let run = stowage::sweeper::run_pass(&kept.state).await;
    assert_eq!(run.tombstones_purged, 0);
    assert_eq!(
        kept.rows_in(FileState::Discarded).await,
        1,
        "30 days by default"
    );
    async fn events(app: &TestApp) -> usize {
        app.get_json("/events").await["results"]
            .as_array()
            .unwrap()
            .len()
    }
    assert_eq!(events(&kept).await, 2, "staged and discarded, kept");
    let run = stowage::sweeper::run_pass(&purged.state).await;
    assert_eq!(run.tombstones_purged, 1);
    assert_eq!(purged.rows().await, 0);
    assert_eq!(events(&purged).await, 0, "events go with the tombstones");
    let pending = |text: String| series(&text, "stowage_event_deliveries_pending");
    assert_eq!(pending(kept.metrics().await), Some(2.0));
    assert_eq!(pending(purged.metrics().await), Some(0.0));
    assert_eq!(kept.rows_of("deliveries").await, 2);
    assert_eq!(
        purged.rows_of("deliveries").await,
        0,
        "and their deliveries with them"
    );
}

/// The value of one series in a Prometheus text exposition.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|line| {
            line.starts_with(name_and_labels) && line[name_and_labels.len()..].starts_with(' ')
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_and_the_storage_view_match_the_rows(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.upload_ttl = Duration::from_secs(2 * 3600)).await;
    let mut ids = Vec::new();
    for size in [1_000, 2_000, 3_000, 4_000] {
        let body = json_with(app.upload("cv.pdf", fixtures::pdf(size)).await, 201).await;
        ids.push(body["carv_file_id"].as_str().unwrap().to_owned());
    }
    assert_error(
        app.upload("x.exe", fixtures::pdf(10)).await,
        422,
        "file_extension_not_allowed",
    )
    .await;
    let webhook = crate::helpers::resume_webhook("u", &ids[2]);
    json_with(app.post_webhook("candidates", &webhook).await, 200).await;
    let discarded = app
        .acme(Method::DELETE, &format!("/uploads/{}", ids[3]))
        .send()
        .await
        .unwrap();
    assert_eq!(discarded.status(), 204);

    let view = json_with(
        app.http.get(app.url("/ops/storage")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(
        view["files"]["staged"],
        json!({ "files": 2, "bytes": 3_000 })
    );
    assert_eq!(
        view["files"]["promoted"],
        json!({ "files": 1, "bytes": 3_000 })
    );
    assert_eq!(
        view["files"]["discarded"],
        json!({ "files": 1, "bytes": 4_000 })
    );
    assert_eq!(view["files"]["expired"], json!({ "files": 0, "bytes": 0 }));
    assert_eq!(view["totals"]["files"], 4);
    assert_eq!(view["expiring"], json!({ "within_1h": 0, "within_24h": 2 }));
    assert_eq!(view["last_sweep"], Value::Null);
    // The counts are the table's (and stay so once a pass folds what changed, below).
    for (state, files) in [("staged", 2), ("promoted", 1), ("discarded", 1)] {
        assert_eq!(app.rows_in(state.parse().unwrap()).await, files, "{state}");
    }

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        series(&text, r#"stowage_files{state="staged"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        series(&text, r#"stowage_file_bytes{state="staged"}"#),
        Some(3_000.0)
    );
    assert_eq!(
        series(&text, r#"stowage_files{state="promoted"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(&text, r#"stowage_files{state="discarded"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(&text, r#"stowage_files_expiring{within="24h"}"#),
        Some(2.0)
    );
    assert_eq!(
        series(&text, r#"stowage_files_expiring{within="1h"}"#),
        Some(0.0)
    );
    assert_eq!(
        series(&text, r#"stowage_uploads_total{outcome="staged"}"#),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            r#"stowage_uploads_total{outcome="file_extension_not_allowed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(series(&text, "stowage_upload_bytes_total"), Some(10_000.0));
    assert_eq!(
        series(
            &text,
            r#"stowage_webhooks_total{kind="candidate",outcome="processed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "stowage_upload_duration_seconds_count"),
        Some(5.0)
    );
    assert!(text.contains("stowage_webhook_duration_seconds_bucket"));

    stowage::sweeper::run_pass(&app.state).await;
    let after = json_with(
        app.http.get(app.url("/ops/storage")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(after["files"], view["files"]);
    assert_eq!(after["totals"], view["totals"]);
    let text = app.metrics().await;
    assert_eq!(
        series(&text, r#"stowage_sweeper_runs_total{result="ok"}"#),
        Some(1.0)
    );
    assert!(series(&text, "stowage_last_sweep_timestamp_seconds").unwrap() > 1.0e9);
    let view = json_with(
        app.http.get(app.url("/ops/storage")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(view["last_sweep"]["expired"], 0);
    assert_eq!(view["last_sweep"]["errors"], 0);
}

async fn operations_endpoints_honour_the_ops_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ops_token = Some("s3cret".into())).await;
    for path in ["/metrics", "/ops/storage"] {
        let bare = app.http.get(app.url(path)).send().await.unwrap();
        assert_error(bare, 401, "unauthorized").await;
        let wrong = app
            .http
            .get(app.url(path))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_error(wrong, 401, "unauthorized").await;
        let right = app
            .http
            .get(app.url(path))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path}");
    }
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness stays open");
}

/// The files' rows, and the staging keys deleted while their file was not yet a tombstone.
type TombstoneCheck = (Arc<dyn stowage::repo::Repo>, Arc<Mutex<Vec<String>>>);

/// The real store, with every key handed to `delete` written down — and, with `rows`, every
/// staging key deleted while its file was not yet an `expired` tombstone.
struct CountingStore {
    inner: Arc<dyn Store>,
    deleted: Arc<Mutex<Vec<String>>>,
    rows: Option<TombstoneCheck>,
}

#[async_trait]
impl Store for CountingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn init(&self, ttl: Duration) -> stowage::store::Result<()> {
        self.inner.init(ttl).await
    }
    async fn allow_browsers(&self, origins: &[String]) -> stowage::store::Result<()> {
        self.inner.allow_browsers(origins).await
    }
    async fn check(&self, area: Area) -> stowage::store::Result<()> {
        self.inner.check(area).await
    }
    async fn begin_staging(&self, key: &str) -> stowage::store::Result<Box<dyn ObjectWriter>> {
        self.inner.begin_staging(key).await
    }
    async fn abort_incomplete(&self, key: &str, id: Option<&str>) -> stowage::store::Result<()> {
        self.inner.abort_incomplete(key, id).await
    }
    async fn delete(
        &self,
        area: Area,
        keys: &[String],
    ) -> stowage::store::Result<Vec<DeleteFailure>> {
        self.deleted.lock().unwrap().extend(keys.iter().cloned());
        if let (Area::Staging, Some((repo, early))) = (area, &self.rows) {
            let ids: Vec<Uuid> = keys
                .iter()
                .filter_map(|k| k.rsplit('/').next()?.parse().ok())
                .collect();
            assert_eq!(ids.len(), keys.len(), "keys name their files: {keys:?}");
            let states = repo.file_states(&ids).await.unwrap();
            early.lock().unwrap().extend(
                states
                    .iter()
                    .filter(|(_, state)| *state != FileState::Expired)
                    .map(|(id, state)| format!("{id}: {state:?}")),
            );
        }
        self.inner.delete(area, keys).await
    }
    async fn size(&self, area: Area, key: &str) -> stowage::store::Result<Option<u64>> {
        self.inner.size(area, key).await
    }
    async fn list(&self, area: Area) -> stowage::store::Result<Vec<ObjectInfo>> {
        self.inner.list(area).await
    }
    async fn list_incomplete(&self) -> stowage::store::Result<Vec<IncompleteUpload>> {
        self.inner.list_incomplete().await
    }
    async fn promote(&self, key: &str) -> stowage::store::Result<()> {
        self.inner.promote(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        cd: &str,
        ct: &str,
        ttl: Duration,
        base_url: &str,
    ) -> stowage::store::Result<String> {
        self.inner.download_url(key, cd, ct, ttl, base_url).await
    }
    fn verify_signed_get(&self, get: &stowage::store::SignedGet<'_>, signature: &str) -> bool {
        self.inner.verify_signed_get(get, signature)
    }
    async fn read(
        &self,
        area: Area,
        key: &str,
    ) -> stowage::store::Result<Option<(stowage::store::ObjectStream, u64)>> {
        self.inner.read(area, key).await
    }
    async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        ttl: Duration,
        base_url: &str,
    ) -> stowage::store::Result<stowage::store::DirectPut> {
        self.inner
            .presign_put(key, size, sha256, ttl, base_url)
            .await
    }
}

/// Uploads forty files and waits until they are past their expiry.
async fn forty_expired(app: &TestApp) {
    let mut last = Value::Null;
    for _ in 0..40 {
        last = json_with(app.upload("cv.pdf", fixtures::pdf(500)).await, 201).await;
    }
    wait_until_expired(&last).await;
}

/// Another replica on the test's database and storage, through a [`CountingStore`] writing
/// down the keys it deletes in `deleted` (and, with `early`, those deleted before their file
/// was a tombstone), with the sweep policy `tweak` leaves.
async fn counting_replica(
    app: &TestApp,
    deleted: &Arc<Mutex<Vec<String>>>,
    early: Option<&Arc<Mutex<Vec<String>>>>,
    tweak: impl FnOnce(&mut stowage::policy::SweepPolicy),
) -> stowage::App {
    let repo = stowage::repo::connect(
        &app.config.database_url,
        app.config.database_max_connections,
    )
    .await
    .unwrap();
    let spill = stowage::spill::Spill::from_config(&app.config);
    let store = stowage::store::connect(&app.config, &spill).await.unwrap();
    let counting = Arc::new(CountingStore {
        inner: store,
        deleted: deleted.clone(),
        rows: early.map(|early| (repo.clone(), early.clone())),
    });
    let mut policies = stowage::Policies::from_config(&app.config);
    tweak(&mut policies.sweep);
    stowage::App::new(repo, counting, spill, policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweepers_on_postgres_delete_each_object_exactly_once() {
    let app = TestApp::spawn_with(Backend::PostgresS3, short_ttl).await;
    forty_expired(&app).await;

    let deleted = Arc::new(Mutex::new(Vec::new()));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(counting_replica(&app, &deleted, None, |_| {}).await);
    }
    let (a, b) = tokio::join!(
        stowage::sweeper::run_pass(&replicas[0]),
        stowage::sweeper::run_pass(&replicas[1])
    );
    assert_eq!(
        a.expired + b.expired,
        40,
        "every file expired once: {a:?} {b:?}"
    );
    let mut keys = deleted.lock().unwrap().clone();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(total, 40, "DeleteObjects saw each key once");
    assert_eq!(keys.len(), 40);
    assert!(app.objects(Area::Staging).await.is_empty());
    assert_eq!(app.rows_in(FileState::Expired).await, 40);
}

/// Expiry in many batches (seven files each, two workers, each deleting one batch while it
/// marks the next): every file becomes a tombstone and every object is deleted exactly once,
/// and never before its file is an `expired` tombstone.
async fn a_pass_of_many_batches_deletes_each_object_once_after_its_tombstone(backend: Backend) {
    let app = TestApp::spawn_with(backend, short_ttl).await;
    forty_expired(&app).await;

    let deleted = Arc::new(Mutex::new(Vec::new()));
    let early = Arc::new(Mutex::new(Vec::new()));
    let sweeper = counting_replica(&app, &deleted, Some(&early), |sweep| {
        sweep.expiry_batch = 7;
        sweep.expiry_workers = 2;
    })
    .await;
    let run = stowage::sweeper::run_pass(&sweeper).await;
    assert_eq!((run.expired, run.objects_deleted), (40, 40), "{run:?}");
    assert_eq!(run.errors, 0, "{run:?}");
    assert_eq!(
        early.lock().unwrap().clone(),
        Vec::<String>::new(),
        "objects deleted before their file was a tombstone"
    );
    let mut keys = deleted.lock().unwrap().clone();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!((total, keys.len()), (40, 40), "each key deleted once");
    assert!(app.objects(Area::Staging).await.is_empty());
    assert_eq!(app.rows_in(FileState::Expired).await, 40);
}
