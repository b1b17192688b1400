//! Prometheus metrics. Each service instance has its own recorder (no global state), so several
//! instances — tests, or an embedding program — never mix their numbers.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::domain::FileState;
use crate::repo::{StorageStats, SweepRun};

/// Latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The metrics of one service instance.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// CPU, memory, open files and threads of this process (`process_*`), read at each scrape.
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A fresh set of metrics, with their help texts.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let telemetry = Telemetry {
            recorder,
            handle,
            process: metrics_process::Collector::default(),
        };
        telemetry.record(|| {
            telemetry.process.describe();
            describe_counter!(
                "stowage_uploads_total",
                "Uploads by outcome (staged, or the error code)."
            );
            describe_counter!("stowage_upload_bytes_total", "Bytes of files staged.");
            describe_histogram!(
                "stowage_upload_duration_seconds",
                "Time to answer POST /uploads."
            );
            describe_counter!(
                "stowage_webhooks_total",
                "Webhooks by kind and outcome (processed, replayed, or the error code)."
            );
            describe_histogram!(
                "stowage_webhook_duration_seconds",
                "Time to answer a webhook, binding and promotion included."
            );
            describe_gauge!("stowage_files", "Files per state.");
            describe_gauge!("stowage_file_bytes", "Bytes per state.");
            describe_gauge!(
                "stowage_files_expiring",
                "Staged files expiring within the window (1h, 24h)."
            );
            describe_gauge!(
                "stowage_files_overdue",
                "Staged files past expires_at, waiting for the sweeper."
            );
            describe_counter!(
                "stowage_sweeper_runs_total",
                "Sweep passes by result (ok, error)."
            );
            describe_counter!(
                "stowage_sweeper_deletions_total",
                "Objects deleted by the sweeper, by reason (expired, orphan, aborted, erased)."
            );
            describe_counter!(
                "stowage_files_erased_total",
                "Files erased, by reason (request: DELETE /files, POST /erasures, stowage erase; retention)."
            );
            describe_counter!(
                "stowage_sweeper_errors_total",
                "Errors met by sweep passes."
            );
            describe_gauge!(
                "stowage_last_sweep_timestamp_seconds",
                "When the last sweep pass of this process finished."
            );
            describe_counter!(
                "stowage_promotion_retries_total",
                "Promotions re-driven by the recovery pass, by result (ok, error)."
            );
            describe_counter!(
                "stowage_http_requests_total",
                "HTTP requests answered, by method, matched route and status."
            );
            describe_histogram!(
                "stowage_http_request_duration_seconds",
                "Time from a request's arrival to the end of its response body, by route."
            );
            describe_counter!(
                "stowage_event_deliveries_total",
                "Event delivery attempts by outcome (delivered, retrying, failed)."
            );
            describe_counter!(
                "stowage_scans_total",
                "Malware scans by outcome (clean, infected, skipped, error)."
            );
            describe_histogram!(
                "stowage_scan_duration_seconds",
                "From a scan's first byte to clamd's verdict."
            );
            describe_counter!(
                "stowage_event_endpoints_disabled_total",
                "Event endpoints disabled after failing every attempt for STOWAGE_EVENT_DISABLE_AFTER."
            );
            describe_histogram!(
                "stowage_event_delivery_duration_seconds",
                "Time an event endpoint took to answer (or to fail) one delivery attempt."
            );
            describe_histogram!(
                "stowage_event_delivery_lag_seconds",
                "Time from an event to its delivery."
            );
            describe_counter!(
                "stowage_text_extractions_total",
                "Text extractions finished, by status (extracted, failed) and reason (encrypted, \
                 no_text_layer, unreadable, timeout, too_large; none when extracted)."
            );
            describe_histogram!(
                "stowage_text_extraction_duration_seconds",
                "Time one text extraction took, reading the document included."
            );
            describe_gauge!(
                "stowage_event_deliveries_pending",
                "Event deliveries not yet delivered nor failed, across all replicas."
            );
            describe_gauge!(
                "stowage_event_oldest_pending_age_seconds",
                "Age of the oldest event still pending delivery (0 when none)."
            );
            describe_gauge!(
                "stowage_build_info",
                "Always 1; the version of the running binary is its label."
            );
            // Every series exists from the start, at zero: dashboards show 0, not "no data".
            gauge!("stowage_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            counter!("stowage_uploads_total", "outcome" => "staged").absolute(0);
            counter!("stowage_upload_bytes_total").absolute(0);
            let _ = histogram!("stowage_upload_duration_seconds");
            for kind in ["candidate", "application"] {
                counter!("stowage_webhooks_total", "kind" => kind, "outcome" => "processed")
                    .absolute(0);
            }
            let _ = histogram!("stowage_webhook_duration_seconds");
            for result in ["ok", "error"] {
                counter!("stowage_sweeper_runs_total", "result" => result).absolute(0);
                counter!("stowage_promotion_retries_total", "result" => result).absolute(0);
            }
            for reason in ["request", "retention"] {
                counter!("stowage_files_erased_total", "reason" => reason).absolute(0);
            }
            for reason in ["expired", "orphan", "aborted", "erased"] {
                counter!("stowage_sweeper_deletions_total", "reason" => reason).absolute(0);
            }
            counter!("stowage_sweeper_errors_total").absolute(0);
            gauge!("stowage_last_sweep_timestamp_seconds").set(0.0);
            counter!("stowage_http_requests_total", "method" => "GET", "route" => "/healthz", "status" => "200")
                .absolute(0);
            let _ = histogram!("stowage_http_request_duration_seconds", "route" => "/healthz");
            for outcome in ["delivered", "retrying", "failed"] {
                counter!("stowage_event_deliveries_total", "outcome" => outcome).absolute(0);
            }
            let _ = histogram!("stowage_event_delivery_duration_seconds");
            counter!("stowage_event_endpoints_disabled_total").absolute(0);
            for outcome in ["clean", "infected", "skipped", "error"] {
                counter!("stowage_scans_total", "outcome" => outcome).absolute(0);
            }
            let _ = histogram!("stowage_scan_duration_seconds");
            counter!("stowage_text_extractions_total", "status" => "extracted", "reason" => "none")
                .absolute(0);
            for reason in crate::text::FailureReason::ALL {
                counter!("stowage_text_extractions_total", "status" => "failed", "reason" => reason.as_str())
                    .absolute(0);
            }
            let _ = histogram!("stowage_text_extraction_duration_seconds");
            let _ = histogram!("stowage_event_delivery_lag_seconds");
        });
        telemetry
    }

    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// One HTTP request answered (its body sent or abandoned).
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.record(|| {
            counter!("stowage_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.to_string())
                .increment(1);
            histogram!("stowage_http_request_duration_seconds", "route" => route)
                .record(elapsed.as_secs_f64());
        });
    }

    /// One `POST /uploads` answered.
    pub fn upload(&self, outcome: &str, bytes: u64, elapsed: Duration) {
        let outcome = outcome.to_owned();
        self.record(|| {
            counter!("stowage_uploads_total", "outcome" => outcome).increment(1);
            counter!("stowage_upload_bytes_total").increment(bytes);
            histogram!("stowage_upload_duration_seconds").record(elapsed.as_secs_f64());
        });
    }

    /// One webhook answered.
    pub fn webhook(&self, kind: &str, outcome: &str, elapsed: Duration) {
        let (kind, outcome) = (kind.to_owned(), outcome.to_owned());
        self.record(|| {
            counter!("stowage_webhooks_total", "kind" => kind, "outcome" => outcome).increment(1);
            histogram!("stowage_webhook_duration_seconds").record(elapsed.as_secs_f64());
        });
    }

    /// Files erased, and why.
    pub fn erased(&self, reason: crate::domain::ErasureReason, files: usize) {
        self.record(|| {
            counter!("stowage_files_erased_total", "reason" => reason.as_str())
                .increment(files as u64)
        });
    }

    /// One recovery attempt at promoting a bound file.
    pub fn promotion_retry(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.record(|| {
            counter!("stowage_promotion_retries_total", "result" => result).increment(1)
        });
    }

    /// One event delivery attempt made (started at `started_at`, lasting `elapsed`).
    pub fn event_delivery(
        &self,
        status: crate::events::DeliveryStatus,
        elapsed: Duration,
        event_at: chrono::DateTime<chrono::Utc>,
    ) {
        use crate::events::DeliveryStatus;
        let outcome = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "retrying",
            DeliveryStatus::Failed => "failed",
        };
        self.record(|| {
            counter!("stowage_event_deliveries_total", "outcome" => outcome).increment(1);
            histogram!("stowage_event_delivery_duration_seconds").record(elapsed.as_secs_f64());
            if status == DeliveryStatus::Delivered {
                let lag = (chrono::Utc::now() - event_at).as_seconds_f64().max(0.0);
                histogram!("stowage_event_delivery_lag_seconds").record(lag);
            }
        });
    }

    /// One malware scan finished: `clean`, `infected`, `skipped` (fail-open) or `error`.
    pub fn scan(&self, outcome: &'static str, elapsed: Duration) {
        self.record(|| {
            counter!("stowage_scans_total", "outcome" => outcome).increment(1);
            histogram!("stowage_scan_duration_seconds").record(elapsed.as_secs_f64());
        });
    }

    /// An event endpoint disabled after failing every attempt for too long.
    pub fn endpoint_disabled(&self) {
        self.record(|| counter!("stowage_event_endpoints_disabled_total").increment(1));
    }

    /// One text extraction finished (`reason` when it failed).
    pub fn text_extraction(
        &self,
        outcome: &Result<crate::text::Text, crate::text::TextFailure>,
        elapsed: Duration,
    ) {
        let (status, reason, source) = match outcome {
            Ok(text) => ("extracted", "none", text.source.as_str()),
            Err(failure) => ("failed", failure.reason.as_str(), "none"),
        };
        self.record(|| {
            counter!("stowage_text_extractions_total", "status" => status, "reason" => reason,
                "source" => source)
            .increment(1);
            histogram!("stowage_text_extraction_duration_seconds", "source" => source)
                .record(elapsed.as_secs_f64());
        });
    }

    /// One sweep pass finished.
    pub fn sweep(&self, run: &SweepRun) {
        let result = if run.errors == 0 { "ok" } else { "error" };
        self.record(|| {
            counter!("stowage_sweeper_runs_total", "result" => result).increment(1);
            counter!("stowage_sweeper_deletions_total", "reason" => "expired")
                .increment(run.objects_deleted as u64);
            counter!("stowage_sweeper_deletions_total", "reason" => "orphan")
                .increment(run.orphans_deleted as u64);
            counter!("stowage_sweeper_deletions_total", "reason" => "aborted")
                .increment(run.receiving_aborted as u64);
            counter!("stowage_sweeper_deletions_total", "reason" => "erased")
                .increment(run.erasures_finished as u64);
            counter!("stowage_sweeper_errors_total").increment(run.errors as u64);
            gauge!("stowage_last_sweep_timestamp_seconds")
                .set(run.finished_at.timestamp_millis() as f64 / 1000.0);
        });
    }

    /// The Prometheus text exposition, with the storage gauges set from `stats`.
    pub fn render(&self, stats: &StorageStats) -> String {
        self.record(|| {
            for state in FileState::ALL {
                let count = stats.by_state.iter().find(|c| c.state == state);
                let name = state.as_str();
                gauge!("stowage_files", "state" => name).set(count.map_or(0, |c| c.files) as f64);
                gauge!("stowage_file_bytes", "state" => name)
                    .set(count.map_or(0, |c| c.bytes) as f64);
            }
            gauge!("stowage_files_expiring", "within" => "1h").set(stats.expiring_1h as f64);
            gauge!("stowage_files_expiring", "within" => "24h").set(stats.expiring_24h as f64);
            gauge!("stowage_files_overdue").set(stats.overdue as f64);
            gauge!("stowage_event_deliveries_pending").set(stats.deliveries_pending as f64);
            let oldest = stats.oldest_pending_event_at.map_or(0.0, |at| {
                (chrono::Utc::now() - at).as_seconds_f64().max(0.0)
            });
            gauge!("stowage_event_oldest_pending_age_seconds").set(oldest);
            self.process.collect();
        });
        self.handle.render()
    }
}
