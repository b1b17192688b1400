//! Starting the service against each backend pair, and looking at what it left behind.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use stowage::App;
use stowage::config::Config;
use stowage::domain::FileState;
use stowage::store::Area;
use tokio::sync::oneshot;

/// The two backend pairs every API test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    SqliteFs,
    PostgresS3,
}

/// Runs an async test function once per backend pair, as two `#[tokio::test]`s.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_fs() {
                super::$name($crate::helpers::Backend::SqliteFs).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                super::$name($crate::helpers::Backend::PostgresS3).await
            }
        }
    )*};
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which starts PostgreSQL and an S3 server")
    })
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A PostgreSQL database made for one test, dropped when the test ends.
struct TestDatabase {
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async code: a thread with its own runtime does the round trip.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .map_err(std::io::Error::other)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A fresh, empty configuration for a backend pair: its own database and its own buckets.
async fn fresh_config(backend: Backend, dir: &std::path::Path) -> (Config, Option<TestDatabase>) {
    let mut config = Config::defaults();
    let mut database = None;
    config.listen = "127.0.0.1:0".into();
    // The router runs inside the test binary: extraction runs the real `stowage` binary.
    config.text_extractor = Some(env!("CARGO_BIN_EXE_stowage").into());
    match backend {
        Backend::SqliteFs => {
            config.database_url = format!("sqlite://{}/stowage.db", dir.display());
            config.storage = format!("fs:{}/objects", dir.display());
        }
        Backend::PostgresS3 => {
            let admin = env("STOWAGE_TEST_PG_URL");
            let name = format!("stowage_{}", short_id());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
            config.database_url = format!("{base}/{name}");
            database = Some(TestDatabase {
                admin_url: admin.clone(),
                name,
            });
            config.storage = "s3".into();
            config.s3_endpoint = Some(env("STOWAGE_TEST_S3_ENDPOINT"));
            config.s3_force_path_style = true;
            let suffix = short_id();
            config.staging_bucket = format!("staging-{suffix}");
            config.files_bucket = format!("files-{suffix}");
        }
    }
    (config, database)
}

/// A running Stowage on port 0 with two clients: `acme` and `globex`, each with its own key.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: App,
    pub config: Config,
    pub acme_key: String,
    pub globex_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    /// Declared last: dropped after the service is told to stop.
    _database: Option<TestDatabase>,
}

impl TestApp {
    /// Starts the service with default settings.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    /// Starts the service after `tweak` has adjusted its configuration.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,stowage=warn".to_owned()),
            )
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut config, database) = fresh_config(backend, dir.path()).await;
        tweak(&mut config);
        let state = stowage::connect(&config).await.expect("connect backends");
        state
            .store()
            .init(config.upload_ttl)
            .await
            .expect("create storage areas");
        let repo = state.repo();
        let acme = stowage::accounts::add_client(repo, "acme", "acme-key", None)
            .await
            .expect("add acme");
        let globex = stowage::accounts::add_client(repo, "globex", "globex-key", None)
            .await
            .expect("add globex");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel();
        tokio::spawn(stowage::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            // No connection reuse: a request the server refuses before reading its whole body
            // (413, 422 past the size limit) ends with the connection closed, and a pooled
            // client could race that close with its next request.
            http: client_builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            state,
            config,
            acme_key: acme.api_key.expect("acme key created"),
            globex_key: globex.api_key.expect("globex key created"),
            shutdown: Some(tx),
            _dir: dir,
            _database: database,
        }
    }

    /// A full URL for a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The caller's (acme's) events of one type, newest first.
    pub async fn events_of(&self, event_type: &str) -> Vec<Value> {
        let page = self
            .get_json(&format!("/events?type={event_type}&limit=100"))
            .await;
        page["results"].as_array().unwrap().clone()
    }

    /// A request as client `acme`.
    pub fn acme(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("X-API-Key", &self.acme_key)
            .header("X-ATS-Client-ID", "acme")
    }

    /// A request as client `globex`.
    pub fn globex(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("X-API-Key", &self.globex_key)
            .header("X-ATS-Client-ID", "globex")
    }

    /// `GET` a path as `acme`, expecting `200`, and the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        json_with(
            self.acme(reqwest::Method::GET, path)
                .send()
                .await
                .expect("GET request"),
            200,
        )
        .await
    }

    /// `POST /webhooks/{kind}` as `acme`.
    pub async fn post_webhook(&self, kind: &str, body: &Value) -> reqwest::Response {
        self.acme(reqwest::Method::POST, &format!("/webhooks/{kind}"))
            .json(body)
            .send()
            .await
            .expect("webhook request")
    }

    /// `POST /uploads` as `acme` with one `file` part.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.upload_form(file_form(name, bytes, "application/octet-stream"))
            .await
    }

    /// `POST /uploads` as `acme` with any form.
    pub async fn upload_form(&self, form: Form) -> reqwest::Response {
        self.acme(reqwest::Method::POST, "/uploads")
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// A plain S3 client on the test server: what is stored, seen without Stowage.
    pub async fn raw_s3(&self) -> aws_sdk_s3::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .http_client(http)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.config.s3_endpoint.clone().expect("an S3 backend"))
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// `GET /metrics` as text (no ops token is set in tests).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    /// Keys of every object in an area.
    pub async fn objects(&self, area: Area) -> Vec<String> {
        self.state
            .store()
            .list(area)
            .await
            .expect("list objects")
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    /// Writes into the staging area that were neither finished nor aborted.
    pub async fn incomplete_uploads(&self) -> usize {
        self.state
            .store()
            .list_incomplete()
            .await
            .expect("list incomplete uploads")
            .len()
    }

    /// Files per state, counted in the table itself (not through the totals the service keeps
    /// for `count_by_state`).
    async fn table_counts(&self) -> Vec<(String, i64)> {
        self.counts("SELECT state, COUNT(*) FROM files GROUP BY state")
            .await
    }

    /// Rows of a table, whatever they are (what the service's own counts may not show).
    pub async fn rows_of(&self, table: &str) -> i64 {
        let query = format!("SELECT '{table}', COUNT(*) FROM {table}");
        self.counts(&query).await.first().map_or(0, |(_, n)| *n)
    }

    /// A query's (name, count) rows, on either backend.
    async fn counts(&self, query: &str) -> Vec<(String, i64)> {
        let url = &self.config.database_url;
        let query = sqlx::AssertSqlSafe(query.to_owned());
        if url.starts_with("postgres") {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .expect("connect to count rows");
            sqlx::query_as(query)
                .fetch_all(&mut conn)
                .await
                .expect("count rows")
        } else {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
                .await
                .expect("connect to count rows");
            sqlx::query_as(query)
                .fetch_all(&mut conn)
                .await
                .expect("count rows")
        }
    }

    /// How many file rows are in a state.
    pub async fn rows_in(&self, state: FileState) -> i64 {
        self.table_counts()
            .await
            .into_iter()
            .find(|(name, _)| name == state.as_str())
            .map_or(0, |(_, files)| files)
    }

    /// How many file rows there are in all.
    pub async fn rows(&self) -> i64 {
        self.table_counts()
            .await
            .iter()
            .map(|(_, files)| files)
            .sum()
    }

    /// Asserts that nothing at all was stored: no object, no pending write, no row.
    pub async fn assert_nothing_stored(&self) {
        assert_eq!(self.objects(Area::Staging).await, Vec::<String>::new());
        assert_eq!(
            self.incomplete_uploads().await,
            0,
            "an incomplete upload was left"
        );
        assert_eq!(self.rows().await, 0, "a file row was left");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A request body the test writes as it goes: send chunks, drop the sender to end it.
pub fn streamed_body() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (tx, body)
}

/// The opening of a hand-written multipart body (boundary `b`) with one `file` part.
pub fn file_part_head(name: &str) -> Vec<u8> {
    format!("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n")
        .into_bytes()
}

/// The smallest candidate webhook of `acme`: a user and a resume.
pub fn resume_webhook(user_id: &str, carv_file_id: &str) -> Value {
    serde_json::json!({
        "client_id": "acme",
        "user_id": user_id,
        "files": { "resume": { "carv_file_id": carv_file_id } }
    })
}

/// A form with one `file` part.
pub fn file_form(name: &str, bytes: Vec<u8>, part_type: &str) -> Form {
    let part = Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(part_type)
        .expect("valid mime");
    Form::new().part("file", part)
}

/// The JSON body of a response, asserting its status first.
pub async fn json_with(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.expect("response body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Sends `request` and asserts it is refused as [`assert_error`] says.
pub async fn assert_refused(request: reqwest::RequestBuilder, status: u16, code: &str) -> Value {
    assert_error(request.send().await.unwrap(), status, code).await
}

/// Asserts the error envelope: status, code and a request id matching `X-Request-Id`.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = json_with(response, status).await;
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        body["error"]["request_id"].as_str(),
        header_id.as_deref(),
        "request id in body and header differ"
    );
    body
}

/// An HTTP client builder for tests. Stowage's own reqwest (event deliveries) brings rustls
/// without a built-in provider, and features unify: ring is installed first, as the service does.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
