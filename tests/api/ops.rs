//! Liveness, readiness, the error envelope and request ids.

use reqwest::Method;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, json_with};

both_backends!(
    health_and_readiness_report_each_dependency,
    every_error_carries_a_code_and_the_request_id,
);

async fn health_and_readiness_report_each_dependency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = json_with(app.http.get(app.url("/healthz")).send().await.unwrap(), 200).await;
    assert_eq!(health["status"], "ok");
    let ready = json_with(app.http.get(app.url("/readyz")).send().await.unwrap(), 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["staging_bucket"], "ok");
    assert_eq!(ready["checks"]["files_bucket"], "ok");

    // The same database with a files area that does not exist: not ready, and it says which.
    let mut config = app.config.clone();
    config.files_bucket = format!("{}-absent", config.files_bucket);
    let other = stowage::connect(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    tokio::spawn(stowage::serve(listener, other, std::future::pending()));
    let not_ready = json_with(app.http.get(url).send().await.unwrap(), 503).await;
    assert_eq!(not_ready["status"], "unavailable");
    assert_eq!(not_ready["checks"]["database"], "ok");
    assert_eq!(not_ready["checks"]["staging_bucket"], "ok");
    assert_eq!(
        not_ready["checks"]["files_bucket"], "unavailable",
        "no raw cause, no internal names, for an unauthenticated caller"
    );
}

async fn every_error_carries_a_code_and_the_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .http
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    assert_error(response, 404, "not_found").await;

    let response = app.acme(Method::PUT, "/uploads").send().await.unwrap();
    assert_error(response, 405, "method_not_allowed").await;

    let response = app
        .http
        .get(app.url(&format!("/uploads/{}", uuid::Uuid::new_v4())))
        .header("X-Request-Id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let body = assert_error(response, 401, "unauthorized").await;
    assert_eq!(body["error"]["request_id"], "trace-me-123");

    // A query parameter the operation does not define is an error, not a wider answer.
    for path in [
        "/events?carv_file_id=0b3f6a52-7a53-4a11-9d0e-8e2f1f1b7c10",
        "/files?limit=5&stat=staged",
        "/uploads/0b3f6a52-7a53-4a11-9d0e-8e2f1f1b7c10?verbose=1",
    ] {
        let body = assert_error(
            app.acme(Method::GET, path).send().await.unwrap(),
            400,
            "bad_request",
        )
        .await;
        let unknown = path
            .rsplit(['?', '&'])
            .next()
            .unwrap()
            .split('=')
            .next()
            .unwrap();
        assert_eq!(body["error"]["details"]["parameter"], unknown, "{path}");
    }
    // The ones it defines still work.
    let page = app
        .acme(Method::GET, "/files?limit=5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    let first = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(
        ok.headers()["x-request-id"].to_str().unwrap(),
        first,
        "fresh id per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::spawn(Backend::SqliteFs).await;
    let doc = json_with(
        app.http.get(app.url("/openapi.json")).send().await.unwrap(),
        200,
    )
    .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/uploads", "post"),
        ("/uploads/{carv_file_id}", "get"),
        ("/uploads/{carv_file_id}", "delete"),
        ("/webhooks/candidates", "post"),
        ("/webhooks/applications", "post"),
        ("/files/{carv_file_id}", "get"),
        ("/files/{carv_file_id}/content", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/ops/storage", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["client_id"]["name"], "X-ATS-Client-ID");

    // A client can switch on every code the API answers with, and only those.
    let mut codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    codes.sort_unstable();
    let mut documented = vec![
        "bad_request",
        "endpoint_not_found",
        "event_not_found",
        "client_id_mismatch",
        "file_already_consumed",
        "file_content_invalid",
        "file_content_mismatch",
        "file_empty",
        "file_expired",
        "file_extension_not_allowed",
        "file_infected",
        "file_missing",
        "file_name_invalid",
        "file_not_discardable",
        "file_not_found",
        "file_not_promoted",
        "file_quarantined",
        "file_too_large",
        "file_size_mismatch",
        "file_checksum_mismatch",
        "forbidden",
        "idempotency_key_reused",
        "internal_error",
        "invalid_json",
        "invalid_payload",
        "malformed_multipart",
        "method_not_allowed",
        "multiple_files",
        "not_found",
        "payload_too_large",
        "rate_limited",
        "request_timeout",
        "service_unavailable",
        "text_not_ready",
        "text_too_short",
        "text_unavailable",
        "text_unreadable",
        "token_scope",
        "too_many_endpoints",
        "too_many_uploads",
        "unauthorized",
        "upload_aborted",
        "upload_closed",
        "upload_in_progress",
        "upload_not_received",
        "upload_token_not_found",
    ];
    documented.sort_unstable();
    assert_eq!(codes, documented);

    // Each webhook kind has its own body: a candidate has no cover letter.
    let schemas = &doc["components"]["schemas"];

    // Typed end to end: an event's deliveries and their attempts, its data a file record, and
    // how each operation authenticates.
    let event = &schemas["EventView"];
    assert!(
        event["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("deliveries"))
    );
    assert_eq!(
        event["properties"]["data"]["$ref"],
        "#/components/schemas/EventData"
    );
    assert!(
        schemas["DeliveryView"]["properties"]
            .get("attempts")
            .is_some()
    );
    assert!(
        schemas["EventData"]["properties"]["file"]
            .to_string()
            .contains("#/components/schemas/FileView")
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["upload_token"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    for (path, method) in [("/uploads", "post"), ("/uploads/direct", "post")] {
        let security = doc["paths"][path][method]["security"].to_string();
        assert!(
            security.contains("upload_token") && security.contains("api_key"),
            "{path}: {security}"
        );
    }
    let files = doc["paths"]["/files"]["get"]["security"].to_string();
    assert!(!files.contains("upload_token"), "{files}");
    assert!(
        schemas["CandidateFiles"]["properties"]
            .get("cover_letter")
            .is_none()
    );
    assert!(
        schemas["ApplicationFiles"]["properties"]
            .get("cover_letter")
            .is_some()
    );
    assert_eq!(schemas["CandidateFiles"]["additionalProperties"], false);

    // Times are date-times; what an upload always answers is required.
    let staged = &schemas["StagedUpload"];
    assert_eq!(staged["properties"]["expires_at"]["format"], "date-time");
    for field in ["expires_at", "file_size", "content_type", "uploaded_at"] {
        assert!(
            staged["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == field),
            "{field} is required"
        );
    }
    // Every response names its request id; client responses their rate and their failures.
    let upload = &paths["/uploads"]["post"]["responses"];
    for status in ["201", "400", "401", "408", "422", "429", "500", "503"] {
        assert_eq!(
            upload[status]["headers"]["X-Request-Id"]["required"], true,
            "POST /uploads {status}"
        );
    }
    assert!(upload["201"]["headers"]["Location"].is_object());
    assert!(upload["429"]["headers"]["Retry-After"].is_object());
    assert!(upload["201"]["headers"]["X-RateLimit-Remaining"].is_object());
    let download = &paths["/files/{carv_file_id}/content"]["get"]["responses"];
    assert_eq!(download["307"]["headers"]["Location"]["required"], true);
    // One media type per status, whatever the store.
    let media: Vec<&String> = download["200"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(media, ["application/json"]);
    // And so everywhere: a generated client knows what each status answers.
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let types = response["content"].as_object().map_or(0, |c| c.len());
                assert!(types <= 1, "{method} {path} {status}: {types} media types");
            }
        }
    }
}

/// Every series docs/operations.md lists is on `/metrics` from the first scrape of a fresh
/// start (at zero), so dashboards and alerts have something to show before any traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_series_exists_on_a_fresh_start() {
    let app = TestApp::spawn(Backend::SqliteFs).await;
    let text = app.metrics().await;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let documented: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| `stowage_") || l.starts_with("| `process_"))
        .flat_map(|l| l.split('|').nth(1).unwrap().split('/'))
        .map(|name| name.trim().trim_matches('`'))
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for name in documented {
        let exposed = text.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name} "))
                    || l.starts_with(&format!("{name}{{"))
                    || l.starts_with(&format!("{name}_bucket"))
                    || l.starts_with(&format!("{name}_count")))
        });
        assert!(exposed, "{name} is documented but not exposed:\n{text}");
    }
}

/// The metric names a PromQL expression reads (`stowage_…`, `process_…`), histogram suffixes
/// kept as written.
fn series_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts = rest.starts_with("stowage_") || rest.starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

/// docs/grafana-dashboard.json shows what the alerts of docs/operations.md watch: every alert's
/// series is on some panel, and every series a panel reads is on `/metrics` from a fresh start
/// (a panel of a misspelt series would show "no data" forever); no panel uses a window of one
/// minute, which is empty at a one-minute scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_has_a_panel_and_every_panel_has_its_series() {
    let app = TestApp::spawn(Backend::SqliteFs).await;
    let text = app.metrics().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/docs/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let on_panels: Vec<String> = exprs.iter().flat_map(|e| series_in(e)).collect();
    for expr in &exprs {
        assert!(!expr.contains("[1m]"), "a one-minute window: {expr}");
    }
    for name in &on_panels {
        let exposed = text.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        });
        assert!(
            exposed,
            "a panel reads {name}, which /metrics does not have"
        );
    }

    let operations = std::fs::read_to_string(format!("{root}/docs/operations.md")).unwrap();
    let alerts = operations
        .split("Alerts worth having:")
        .nth(1)
        .expect("operations.md lists its alerts")
        .split("\n\n")
        .next()
        .unwrap();
    let watched: Vec<String> = alerts
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(series_in)
        .collect();
    assert!(watched.len() >= 8, "{watched:?}");
    for name in watched {
        assert!(
            on_panels.contains(&name),
            "the alert on {name} has no panel in docs/grafana-dashboard.json"
        );
    }
}
