//! Abuse limits: a per-key request rate limit (fixed one-minute windows, with
//! `X-RateLimit-*` headers on every client response and `429` past the limit) and a per-key cap
//! on uploads in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::ApiState;
use super::auth::API_KEY_HEADER;
use super::error::{ApiError, ErrorCode};
use crate::keys;

const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before idle keys are forgotten.
const MAX_TRACKED_KEYS: usize = 10_000;

struct Window {
    started: Instant,
    count: u64,
}

/// Per-key counters, shared by every request of one service instance.
pub struct Limits {
    per_minute: u64,
    max_uploads: usize,
    windows: Mutex<HashMap<Uuid, Window>>,
    uploads: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// What the rate limiter decided for one request.
struct Decision {
    allowed: bool,
    remaining: u64,
    reset: Duration,
}

impl Limits {
    /// `per_minute` requests per key per minute (0: unlimited); `max_uploads` uploads in
    /// progress per key (0: unlimited).
    pub fn new(per_minute: u64, max_uploads: usize) -> Self {
        Limits {
            per_minute,
            max_uploads,
            windows: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: Uuid, now: Instant) -> Decision {
        let mut windows = self.windows.lock().expect("limits lock");
        if windows.len() > MAX_TRACKED_KEYS {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        let window = windows.entry(key).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        let allowed = window.count < self.per_minute;
        if allowed {
            window.count += 1;
        }
        Decision {
            allowed,
            remaining: self.per_minute - window.count,
            reset: WINDOW.saturating_sub(now.duration_since(window.started)),
        }
    }

    /// A slot for one upload in progress, or `None` when the key has too many.
    pub fn upload_slot(&self, key: Uuid) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if self.max_uploads == 0 {
            return Ok(None);
        }
        let semaphore = {
            let mut uploads = self.uploads.lock().expect("limits lock");
            if uploads.len() > MAX_TRACKED_KEYS {
                uploads.retain(|_, s| Arc::strong_count(s) > 1);
            }
            uploads
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_uploads)))
                .clone()
        };
        semaphore.try_acquire_owned().map(Some).map_err(|_| {
            ApiError::new(
                ErrorCode::TooManyUploads,
                format!(
                    "This API key already has {} uploads in progress; retry when one finishes",
                    self.max_uploads
                ),
            )
        })
    }
}

fn set_headers(response: &mut Response, limit: u64, decision: &Decision) {
    let headers = response.headers_mut();
    let reset = decision.reset.as_secs().max(1);
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    if !decision.allowed {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(reset));
    }
}

/// Middleware for client routes: counts the request against its key's window before anything
/// else runs (a flood never reaches the database), and reports the window in headers.
pub async fn rate_limit(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let limits = state.limits();
    let key = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| keys::parse(v.trim()))
        .map(|(id, _)| id);
    let (Some(key), true) = (key, limits.per_minute > 0) else {
        return next.run(req).await;
    };
    let decision = limits.check(key, Instant::now());
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Rate limit of {} requests per minute exceeded for this API key",
                limits.per_minute
            ),
        )
        .into_response()
    };
    set_headers(&mut response, limits.per_minute, &decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_limit_then_refuses_until_it_resets() {
        let limits = Limits::new(3, 0);
        let key = Uuid::new_v4();
        let t0 = Instant::now();
        let remaining: Vec<u64> = (0..3).map(|_| limits.check(key, t0).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(key, t0 + Duration::from_secs(10));
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(50));
        assert!(limits.check(key, t0 + WINDOW).allowed, "a new window");
        assert!(
            limits.check(Uuid::new_v4(), t0).allowed,
            "keys are counted apart"
        );
    }

    #[test]
    fn upload_slots_are_capped_per_key() {
        let limits = Limits::new(0, 2);
        let key = Uuid::new_v4();
        let a = limits.upload_slot(key).unwrap();
        let _b = limits.upload_slot(key).unwrap();
        assert!(limits.upload_slot(key).is_err());
        assert!(limits.upload_slot(Uuid::new_v4()).is_ok());
        drop(a);
        assert!(
            limits.upload_slot(key).is_ok(),
            "a finished upload frees its slot"
        );
    }
}
