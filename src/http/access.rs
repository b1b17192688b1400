//! The access log: one `info` line per request, written when its response has been sent (or
//! abandoned) — method, matched route, status, latency, bytes in and out, request id, and the
//! client id and key *name* of an authenticated caller. Never a secret, never file content.
//! The same moment feeds the HTTP request metrics.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{ApiState, REQUEST_ID_HEADER};
use crate::telemetry::Telemetry;

/// What the layers further in learn about a request, for its access-log line.
#[derive(Clone, Default)]
pub struct AccessSlot(Arc<Mutex<AccessInfo>>);

#[derive(Default)]
struct AccessInfo {
    route: Option<String>,
    client_id: Option<String>,
    key_name: Option<String>,
}

impl AccessSlot {
    /// Records the authenticated caller.
    pub fn caller(&self, client_id: &str, key_name: &str) {
        let mut info = self.0.lock().expect("access slot");
        info.client_id = Some(client_id.to_owned());
        info.key_name = Some(key_name.to_owned());
    }

    fn route(&self, route: &str) {
        self.0.lock().expect("access slot").route = Some(route.to_owned());
    }
}

/// Route layer: notes the matched route (`/files/{id}`, not the id itself).
pub async fn note_route(req: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) = (
        req.extensions().get::<AccessSlot>(),
        req.extensions().get::<MatchedPath>(),
    ) {
        slot.route(path.as_str());
    }
    next.run(req).await
}

/// Outer layer: counts the bytes in and out and logs the request once its body is done.
pub async fn access_log(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let slot = AccessSlot::default();
    req.extensions_mut().insert(slot.clone());
    let received = Arc::new(AtomicU64::new(0));
    let method = req.method().clone();
    let request_id = request_id(req.headers());
    let req = req.map(|body| Body::new(Metered::new(body, received.clone(), None)));
    let response = next.run(req).await;
    let sent = Arc::new(AtomicU64::new(0));
    let entry = Entry {
        started,
        method,
        status: response.status(),
        request_id,
        slot,
        received,
        sent: sent.clone(),
        app: state.app().clone(),
    };
    response.map(|body| Body::new(Metered::new(body, sent, Some(entry))))
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

struct Entry {
    started: Instant,
    method: Method,
    status: StatusCode,
    request_id: String,
    slot: AccessSlot,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    app: crate::app::App,
}

impl Entry {
    fn write(self) {
        let info = self.slot.0.lock().expect("access slot");
        let route = info.route.as_deref().unwrap_or("unmatched");
        let elapsed = self.started.elapsed();
        let telemetry: &Telemetry = self.app.telemetry();
        telemetry.http_request(self.method.as_str(), route, self.status.as_u16(), elapsed);
        tracing::info!(
            target: "stowage::access",
            method = %self.method,
            route,
            status = self.status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            bytes_in = self.received.load(Ordering::Relaxed),
            bytes_out = self.sent.load(Ordering::Relaxed),
            request_id = %self.request_id,
            client_id = info.client_id.as_deref().unwrap_or("-"),
            key = info.key_name.as_deref().unwrap_or("-"),
            "request"
        );
    }
}

/// A body that counts the bytes that pass through it — a request's as the handler reads it, a
/// response's as it is sent — and, for a response, writes the access-log line when the body ends
/// or is dropped (a client that hangs up mid-download is logged too).
struct Metered {
    inner: Body,
    count: Arc<AtomicU64>,
    on_end: Option<Entry>,
}

impl Metered {
    fn new(inner: Body, count: Arc<AtomicU64>, on_end: Option<Entry>) -> Self {
        Metered {
            inner,
            count,
            on_end,
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => {
                if let Some(entry) = self.on_end.take() {
                    entry.write();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(entry) = self.on_end.take() {
            entry.write();
        }
    }
}
