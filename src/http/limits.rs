//! Abuse limits: a per-key request rate (GCRA from `governor`: `STOWAGE_RATE_LIMIT` requests a
//! minute, replenished evenly, so there is no window edge to burst across), counted once the
//! key is verified, with `X-RateLimit-*` headers on every authenticated client response and
//! `429` past the limit; and a per-key cap on uploads in progress.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::error::{ApiError, ErrorCode};

/// Entries kept before idle keys are forgotten.
const MAX_TRACKED_KEYS: usize = 10_000;

type KeyedLimiter =
    RateLimiter<Uuid, HashMapStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

/// Per-key limits, shared by every request of one service instance.
pub struct Limits {
    rate: Option<KeyedLimiter>,
    max_uploads: usize,
    uploads: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// What the rate limiter decided for one request, for its response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the whole limit is available again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when this one was).
    pub retry_after: Duration,
}

/// Where the key check leaves its rate decision for the header layer.
#[derive(Clone, Default)]
pub struct RateSlot(Arc<Mutex<Option<Decision>>>);

impl RateSlot {
    fn put(&self, decision: Decision) {
        *self.0.lock().expect("rate slot") = Some(decision);
    }

    fn take(&self) -> Option<Decision> {
        self.0.lock().expect("rate slot").take()
    }
}

impl Limits {
    /// `per_minute` requests per key per minute (0: unlimited); `max_uploads` uploads in
    /// progress per key (0: unlimited).
    pub fn new(per_minute: u64, max_uploads: usize) -> Self {
        let rate = NonZeroU32::new(per_minute.min(u64::from(u32::MAX)) as u32).map(|limit| {
            RateLimiter::hashmap(Quota::per_minute(limit))
                .with_middleware::<StateInformationMiddleware>()
        });
        Limits {
            rate,
            max_uploads,
            uploads: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of a verified key; `None` when there is no rate limit.
    pub fn check(&self, key: Uuid) -> Option<Decision> {
        let limiter = self.rate.as_ref()?;
        if limiter.len() > MAX_TRACKED_KEYS {
            limiter.retain_recent();
        }
        let interval = |quota: Quota, cells: u32| quota.replenish_interval() * cells;
        Some(match limiter.check_key(&key) {
            Ok(state) => {
                let quota = state.quota();
                let limit = quota.burst_size().get();
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset: interval(quota, limit - remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let quota = not_until.quota();
                let wait = not_until.wait_time_from(limiter.clock().now());
                let limit = quota.burst_size().get();
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset: wait + interval(quota, limit - 1),
                    retry_after: wait,
                }
            }
        })
    }

    /// Counts a verified key's request, leaving the decision for the response headers; an
    /// error once the key is over its limit.
    pub fn admit(&self, key: Uuid, slot: Option<&RateSlot>) -> Result<(), ApiError> {
        let Some(decision) = self.check(key) else {
            return Ok(());
        };
        if let Some(slot) = slot {
            slot.put(decision);
        }
        if decision.allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "Rate limit of {} requests per minute exceeded for this API key",
                    decision.limit
                ),
            ))
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

/// Whole seconds, rounded up: a client that waits this long is not refused again.
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn set_headers(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(seconds(decision.reset)),
    );
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(seconds(decision.retry_after).max(1)),
        );
    }
}

/// Route layer for client routes: gives the key check (`auth::Caller`) a
/// place to leave its rate decision, and reports it in the response headers. Counting happens
/// only once a key is verified, so nobody can spend another key's allowance by naming its id.
pub async fn rate_headers(mut req: Request, next: Next) -> Response {
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut response = next.run(req).await;
    if let Some(decision) = slot.take() {
        set_headers(&mut response, &decision);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_then_waits_for_the_next_cell() {
        let limits = Limits::new(3, 0);
        let key = Uuid::new_v4();
        let remaining: Vec<u32> = (0..3)
            .map(|_| limits.check(key).unwrap().remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(key).unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.limit, 3);
        // One request comes back every 20 s; the whole limit within a minute.
        assert!(refused.retry_after > Duration::from_secs(19), "{refused:?}");
        assert!(
            refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        assert!(refused.reset <= Duration::from_secs(60), "{refused:?}");
        assert!(
            limits.check(Uuid::new_v4()).unwrap().allowed,
            "keys are counted apart"
        );
        assert!(Limits::new(0, 0).check(key).is_none(), "0: unlimited");
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
