//! A real event receiver on 127.0.0.1, as an ATS would run one: it checks every delivery's
//! signature and timestamp (with its own HMAC, not Stowage's code), keeps what it got, and
//! answers as a test tells it to — 2xx, an error status, or nothing at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// How the receiver answers the next deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `204`.
    Ok,
    /// This status, with a short body.
    Status(u16),
    /// Never: the request hangs until the sender gives up.
    Hang,
}

/// One delivery as it arrived.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    /// Every header, by lower-case name.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The receiver checked the signature with the secret it was given.
    pub signature_valid: bool,
    /// What it answered.
    pub answered: Answer,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery is JSON")
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Inner {
    secret: Option<String>,
    /// Answers to give, in order; then `fallback`.
    script: Vec<Answer>,
    fallback: Option<Answer>,
    received: Vec<Delivery>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Verifies a delivery as the docs tell integrators to: HMAC-SHA256 over `<timestamp>.<body>`.
pub fn verify(secret: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::decode(signature).is_ok_and(|given| mac.verify_slice(&given).is_ok())
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp: i64 = header("x-webhook-timestamp").parse().unwrap_or(0);
    let signature = header("x-webhook-signature");
    let answer = {
        let mut inner = inner.lock().unwrap();
        let answer = if inner.script.is_empty() {
            inner.fallback.unwrap_or(Answer::Ok)
        } else {
            inner.script.remove(0)
        };
        let signature_valid = inner
            .secret
            .as_deref()
            .is_some_and(|secret| verify(secret, timestamp, &body, &signature));
        inner.received.push(Delivery {
            id: header("x-webhook-id"),
            timestamp,
            signature,
            content_type: header("content-type"),
            body: String::from_utf8_lossy(&body).into_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        value.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            signature_valid,
            answered: answer,
        });
        answer
    };
    match answer {
        Answer::Ok => (StatusCode::NO_CONTENT, ""),
        Answer::Status(code) => (StatusCode::from_u16(code).unwrap(), "receiver says no\r\n"),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::NO_CONTENT, "")
        }
    }
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::on(listener).await
    }

    /// Starts a receiver on a listener already bound (to come back on a known port).
    pub async fn on(listener: tokio::net::TcpListener) -> Receiver {
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner::default()));
        let router = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(inner.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            url,
            inner,
            stop: Some(stop),
        }
    }

    /// The secret to check signatures with (from the endpoint's registration).
    pub fn set_secret(&self, secret: &str) {
        self.inner.lock().unwrap().secret = Some(secret.to_owned());
    }

    /// Answers these first, in order, then `then`.
    pub fn answer(&self, first: &[Answer], then: Answer) {
        let mut inner = self.inner.lock().unwrap();
        inner.script = first.to_vec();
        inner.fallback = Some(then);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Distinct event ids taken (answered 2xx), with how many times each arrived in all.
    pub fn taken(&self) -> HashMap<String, usize> {
        let received = self.received();
        let mut taken: HashMap<String, usize> = HashMap::new();
        for delivery in received.iter().filter(|d| d.answered == Answer::Ok) {
            *taken.entry(delivery.id.clone()).or_default() += 1;
        }
        taken
    }

    /// Waits until `done` holds for what was received (or panics after `within`).
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not get {what} within {within:?}; got {:?}",
                received
                    .iter()
                    .map(|d| (d.event_type(), d.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for a delivery of this type that was taken (answered 2xx).
    pub async fn wait_for_type(&self, event_type: &str) -> Delivery {
        let received = self
            .wait_until(Duration::from_secs(20), event_type, |got| {
                got.iter()
                    .any(|d| d.answered == Answer::Ok && d.event_type() == event_type)
            })
            .await;
        received
            .into_iter()
            .find(|d| d.answered == Answer::Ok && d.event_type() == event_type)
            .unwrap()
    }
}
