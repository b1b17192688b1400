//! Events to the ATS: what a client can subscribe to, where deliveries may go, and the secrets
//! that sign them. Pure rules; the outbox lives in the repo, delivery in the worker.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

pub use crate::event_model::{
    DeliveryStatus, EndpointError, EventRules, EventType, NewEvent, parse_types,
};

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (carrier-grade NAT), documentation, benchmarking, multicast, broadcast, reserved or
/// unspecified — the addresses a server-side request must never be steered to.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let v4_at = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            let embedded_public = |v4| is_public(IpAddr::V4(v4));
            match seg {
                // ::, ::1 (and every other address of ::/96, IPv4-compatible: its IPv4).
                [0, 0, 0, 0, 0, 0, hi, lo] => hi != 0 && embedded_public(v4_at(hi, lo)),
                // IPv4-mapped (::ffff:a.b.c.d) and SIIT (::ffff:0:a.b.c.d).
                [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
                    embedded_public(v4_at(hi, lo))
                }
                // NAT64 (64:ff9b::/96) carries its IPv4; local-use NAT64 (64:ff9b:1::/48) is
                // a private network's.
                [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded_public(v4_at(hi, lo)),
                [0x64, 0xff9b, 1, ..] => false,
                // 6to4 (2002::/16): the IPv4 of the relay it reaches.
                [0x2002, hi, lo, ..] => embedded_public(v4_at(hi, lo)),
                // Teredo (2001::/32): the server's IPv4, and the client's (inverted).
                [0x2001, 0, s_hi, s_lo, _, _, c_hi, c_lo] => {
                    embedded_public(v4_at(s_hi, s_lo)) && embedded_public(v4_at(!c_hi, !c_lo))
                }
                [first, second, ..] => {
                    !(v6.is_multicast()
                        // Unique local (fc00::/7), link-local (fe80::/10), site-local
                        // (fec0::/10).
                        || (first & 0xfe00) == 0xfc00
                        || (first & 0xffc0) == 0xfe80
                        || (first & 0xffc0) == 0xfec0
                        // Discard-only (100::/64), benchmarking (2001:2::/48), ORCHID
                        // (2001:10::/28, 2001:20::/28), documentation (2001:db8::/32, 3fff::/20).
                        || (first == 0x0100 && seg[1..4] == [0, 0, 0])
                        || (first == 0x2001 && second == 0x0002 && seg[2] == 0)
                        || (first == 0x2001 && (second & 0xffe0) == 0x0020)
                        || (first == 0x2001 && (second & 0xfff0) == 0x0010)
                        || (first == 0x2001 && second == 0x0db8)
                        || (first & 0xfff0) == 0x3ff0)
                }
            }
        }
    }
}

/// Checks an endpoint URL's form: absolute, `https` (or `http` when private targets are
/// allowed), no credentials. Addresses are checked by [`check_addresses`].
pub fn parse_url(raw: &str, allow_private: bool) -> Result<url::Url, EndpointError> {
    let url = url::Url::parse(raw.trim()).map_err(|_| EndpointError::NotAUrl(raw.to_owned()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(EndpointError::NotHttps),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NotAUrl(raw.to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    Ok(url)
}

/// Refuses a host any of whose addresses is not public (unless private targets are allowed).
pub fn check_addresses(
    host: &str,
    addresses: &[IpAddr],
    allow_private: bool,
) -> Result<(), EndpointError> {
    if addresses.is_empty() {
        return Err(EndpointError::Unresolvable(host.to_owned()));
    }
    match addresses.iter().find(|a| !allow_private && !is_public(**a)) {
        Some(address) => Err(EndpointError::NotPublic {
            host: host.to_owned(),
            address: *address,
        }),
        None => Ok(()),
    }
}

/// The address a URL names literally (`https://10.0.0.7/…`), if it names one rather than a
/// host name: such a URL is never resolved, so it must be checked on its own.
pub fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Resolves a URL's host and checks every address it has now.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, EndpointError> {
    let url = parse_url(raw, allow_private)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match literal_address(&url) {
        Some(address) => vec![address],
        // A resolver that does not answer in time is no better than one that says no.
        None => tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|found| found.map(|a| a.ip()).collect())
        .unwrap_or_default(),
    };
    check_addresses(&host, &addresses, allow_private)?;
    Ok(url)
}

/// A new signing secret: `whsec_` and 256 random bits in base64, as the Standard Webhooks
/// specification has them. (Secrets made before were `whsec_` and hex; hex is base64 too, so
/// those keep working with its libraries.)
pub fn new_secret() -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source failed");
    format!("whsec_{}", aws_smithy_types::base64::encode(secret))
}

/// The key the Standard Webhooks signature is made with: the secret after `whsec_`, base64
/// decoded (padding optional, as its libraries read it).
fn standard_key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let mut padded = encoded.trim_end_matches('=').to_owned();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    aws_smithy_types::base64::decode(&padded).unwrap_or_else(|_| secret.as_bytes().to_vec())
}

/// The Standard Webhooks signature of a delivery (`webhook-signature`): `v1,` and the base64
/// HMAC-SHA256, keyed with the secret's decoded bytes, over `<id>.<timestamp>.<raw body>`.
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&standard_key(secret))
        .expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        aws_smithy_types::base64::encode(mac.finalize().into_bytes())
    )
}

/// Every header that identifies and signs a delivery: ours (`X-Webhook-*`, signed with the
/// endpoint's current secret; during a rotation's overlap `X-Webhook-Previous-Signature` by the
/// one before) and the Standard Webhooks ones (`webhook-signature` lists a signature by each
/// secret in force, current first). `secrets`: the current secret, then the previous one while
/// it overlaps.
pub fn signature_headers(
    secrets: &[&str],
    event_id: uuid::Uuid,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let id = event_id.to_string();
    let mut headers = vec![
        ("X-Webhook-Id", id.clone()),
        ("X-Webhook-Timestamp", timestamp.to_string()),
    ];
    if let Some(current) = secrets.first() {
        headers.push(("X-Webhook-Signature", sign(current, timestamp, body)));
    }
    if let Some(previous) = secrets.get(1) {
        headers.push((
            "X-Webhook-Previous-Signature",
            sign(previous, timestamp, body),
        ));
    }
    let standard: Vec<String> = secrets
        .iter()
        .map(|secret| sign_standard(secret, &id, timestamp, body))
        .collect();
    headers.push(("webhook-id", id));
    headers.push(("webhook-timestamp", timestamp.to_string()));
    headers.push(("webhook-signature", standard.join(" ")));
    headers
}

/// The signature of a delivery: lowercase hex HMAC-SHA256 with the endpoint's secret over
/// `<timestamp>.<raw body>` — what `X-Webhook-Signature` carries.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The longest wait between two attempts, however many have failed.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(12 * 3600);

/// What a delivery becomes after its `attempt`-th attempt (counting from 1): delivered; failed
/// once `max_attempts` attempts have been made; otherwise pending, retried after
/// `base × 2^(attempt−1)` (at most [`MAX_RETRY_DELAY`]) scaled by `jitter` (in `[0.5, 1]`, so
/// endpoints that failed together are not all retried at once).
pub fn after_attempt(
    delivered: bool,
    attempt: u32,
    max_attempts: u32,
    base: Duration,
    jitter: f64,
) -> (DeliveryStatus, Option<Duration>) {
    if delivered {
        return (DeliveryStatus::Delivered, None);
    }
    if attempt >= max_attempts {
        return (DeliveryStatus::Failed, None);
    }
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(31));
    let delay = doubled.min(MAX_RETRY_DELAY).mul_f64(jitter.clamp(0.5, 1.0));
    (DeliveryStatus::Pending, Some(delay))
}

/// A random factor in `[0.5, 1]` for [`after_attempt`].
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    0.5 + f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) / 2.0
}

#[derive(Serialize)]
struct Body<'a, D: Serialize> {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: EventType,
    created_at: String,
    client_id: &'a str,
    data: D,
}

#[derive(Serialize)]
struct FileData {
    file: crate::file_view::FileView,
    /// `file.erased`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// `file.downloaded`: the name of the API key that asked, and the request's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl FileData {
    fn of(
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
    ) -> Self {
        FileData {
            file: crate::file_view::FileView::from_parts(file.clone(), webhook),
            reason: None,
            key_name: None,
            request_id: None,
        }
    }
}

#[derive(Serialize)]
struct NoData {}

impl NewEvent {
    fn new<D: Serialize>(
        event_type: EventType,
        client_id: &str,
        file_id: Option<uuid::Uuid>,
        at: chrono::DateTime<chrono::Utc>,
        data: D,
    ) -> NewEvent {
        // Time-ordered: an event's row lands at the end of the outbox's indexes (and of its
        // deliveries' key) instead of on a random page of each (bench/notes.md).
        let id = uuid::Uuid::now_v7();
        let body = serde_json::to_string(&Body {
            id,
            event_type,
            created_at: crate::file_view::api_time(at),
            client_id,
            data,
        })
        .expect("events serialize");
        NewEvent {
            id,
            client_id: client_id.to_owned(),
            file_id,
            event_type,
            created_at: at,
            body,
        }
    }

    /// An event reporting a file's change: `data.file` is the file's `GET /files/{id}` record
    /// as of the change (`webhook`: the webhook it is bound to, if any).
    pub fn file(
        event_type: EventType,
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        let data = FileData::of(file, webhook);
        NewEvent::new(event_type, &file.client_id, Some(file.id), at, data)
    }

    /// `file.staged`: the receiving file as staging it with `facts` leaves it.
    pub fn staged(
        receiving: &crate::domain::FileRecord,
        facts: &crate::domain::StagedFacts,
    ) -> NewEvent {
        NewEvent::file(
            EventType::FileStaged,
            &facts.staged(receiving),
            None,
            facts.uploaded_at,
        )
    }

    /// `file.text_extracted` or `file.text_failed`: the promoted file as its text `state`
    /// leaves it.
    pub fn text_recorded(
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
        state: &crate::domain::TextState,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        let event_type = match state.status {
            crate::domain::TextStatus::Extracted => EventType::FileTextExtracted,
            _ => EventType::FileTextFailed,
        };
        let recorded = crate::domain::FileRecord {
            text: Some(state.clone()),
            ..file.clone()
        };
        NewEvent::file(event_type, &recorded, webhook, at)
    }

    /// `file.erased`: the erased record and why it was erased.
    pub fn erased(
        file: &crate::domain::FileRecord,
        reason: crate::domain::ErasureReason,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        let data = FileData {
            reason: Some(reason.as_str()),
            ..FileData::of(file, None)
        };
        NewEvent::new(
            EventType::FileErased,
            &file.client_id,
            Some(file.id),
            at,
            data,
        )
    }

    /// `file.downloaded`: who read a file (the API key's name) in which request.
    pub fn downloaded(
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
        key_name: &str,
        request_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        let data = FileData {
            key_name: Some(key_name.to_owned()),
            request_id: Some(request_id.to_owned()),
            ..FileData::of(file, webhook)
        };
        NewEvent::new(
            EventType::FileDownloaded,
            &file.client_id,
            Some(file.id),
            at,
            data,
        )
    }

    /// A `ping`, sent to test an endpoint.
    pub fn ping(client_id: &str, at: chrono::DateTime<chrono::Utc>) -> NewEvent {
        NewEvent::new(EventType::Ping, client_id, None, at, NoData {})
    }
}

/// The rules the repository is handed for the events of changes it decides in a transaction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Events;

impl EventRules for Events {
    fn file(
        &self,
        event_type: EventType,
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        NewEvent::file(event_type, file, webhook, at)
    }

    fn downloaded(
        &self,
        file: &crate::domain::FileRecord,
        webhook: Option<&crate::domain::WebhookRecord>,
        key_name: &str,
        request_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        NewEvent::downloaded(file, webhook, key_name, request_id, at)
    }

    fn erased(
        &self,
        file: &crate::domain::FileRecord,
        reason: crate::domain::ErasureReason,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewEvent {
        NewEvent::erased(file, reason, at)
    }

    fn redact(&self, body: &str) -> Option<String> {
        redact_body(body)
    }
}

/// An earlier event about a file that has since been erased, with what it said about the file's
/// name and content removed (the name emptied, the hash nulled); `None` if it holds neither.
pub fn redact_body(body: &str) -> Option<String> {
    let mut event: serde_json::Value = serde_json::from_str(body).ok()?;
    let file = event.pointer_mut("/data/file")?.as_object_mut()?;
    let mut changed = false;
    if file.get("file_name").is_some_and(|n| n != "") {
        file.insert("file_name".into(), serde_json::Value::String(String::new()));
        changed = true;
    }
    if file.get("sha256").is_some_and(|h| !h.is_null()) {
        file.insert("sha256".into(), serde_json::Value::Null);
        changed = true;
    }
    changed.then(|| event.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_name_and_hash_and_keeps_the_rest() {
        let body = r#"{"id":"e","type":"file.promoted","data":{"file":{"carv_file_id":"f","file_name":"Jane Doe.pdf","sha256":"ab12","state":"promoted","webhook":{"user_id":"u-1"}}}}"#;
        let redacted: serde_json::Value =
            serde_json::from_str(&redact_body(body).expect("something to redact")).unwrap();
        let file = &redacted["data"]["file"];
        assert_eq!(file["file_name"], "");
        assert!(file["sha256"].is_null());
        assert_eq!(file["carv_file_id"], "f");
        assert_eq!(file["state"], "promoted");
        assert_eq!(redacted["type"], "file.promoted");
        let again = redacted.to_string();
        assert_eq!(redact_body(&again), None, "nothing left to redact");
        assert_eq!(redact_body(r#"{"type":"ping","data":{}}"#), None);
        assert_eq!(redact_body("not json"), None);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_until_the_last_attempt() {
        let base = Duration::from_secs(30);
        assert_eq!(
            after_attempt(true, 12, 12, base, 1.0),
            (DeliveryStatus::Delivered, None)
        );
        assert_eq!(
            after_attempt(false, 1, 12, base, 1.0),
            (DeliveryStatus::Pending, Some(Duration::from_secs(30)))
        );
        assert_eq!(
            after_attempt(false, 4, 12, base, 1.0),
            (DeliveryStatus::Pending, Some(Duration::from_secs(240)))
        );
        assert_eq!(
            after_attempt(false, 4, 12, base, 0.5),
            (DeliveryStatus::Pending, Some(Duration::from_secs(120)))
        );
        assert_eq!(
            after_attempt(false, 11, 100, base, 1.0).1,
            Some(Duration::from_secs(30 * 1024))
        );
        assert_eq!(
            after_attempt(false, 60, 100, base, 1.0).1,
            Some(MAX_RETRY_DELAY)
        );
        assert_eq!(
            after_attempt(false, 12, 12, base, 1.0),
            (DeliveryStatus::Failed, None)
        );
        assert_eq!(
            after_attempt(false, 13, 12, base, 1.0),
            (DeliveryStatus::Failed, None),
            "a redelivery past the limit is tried once"
        );
        for _ in 0..100 {
            assert!((0.5..=1.0).contains(&jitter()));
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            // IPv4 inside IPv6: compatible, SIIT, 6to4, Teredo, NAT64.
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            // Site-local, discard-only.
            "fec0::1",
            "100::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "2002:808:808::1",
            "64:ff9b::808:808",
            "2a00:1450:4001:82a::200e",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_unless_private_is_allowed() {
        assert!(parse_url("https://ats.example.com/hooks", false).is_ok());
        assert_eq!(
            parse_url("http://ats.example.com/hooks", false),
            Err(EndpointError::NotHttps)
        );
        assert!(parse_url("http://127.0.0.1:9/hooks", true).is_ok());
        assert_eq!(
            parse_url("ftp://x.example", true),
            Err(EndpointError::NotHttps)
        );
        assert!(matches!(
            parse_url("hooks", false),
            Err(EndpointError::NotAUrl(_))
        ));
        assert_eq!(
            parse_url("https://user:pw@ats.example.com/", false),
            Err(EndpointError::Credentials)
        );
    }

    #[tokio::test]
    async fn loopback_and_metadata_hosts_are_refused() {
        for url in [
            "https://127.0.0.1/hooks",
            "https://[::1]/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/hooks",
        ] {
            assert!(
                matches!(
                    check_url(url, false).await,
                    Err(EndpointError::NotPublic { .. })
                ),
                "{url}"
            );
        }
        assert!(check_url("https://localhost/hooks", true).await.is_ok());
    }

    #[test]
    fn a_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"whsec_test", b'1700000000.{"id":1}', sha256).
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"id":1}"#),
            "2f441ba4b3b2d50d28a9ab9d9fd8880376ecd1eb5d0435401553f5d8d0a5dcf8"
        );
        assert_ne!(
            sign("whsec_test", 1_700_000_001, br#"{"id":1}"#),
            sign("whsec_test", 1_700_000_000, br#"{"id":1}"#),
            "the timestamp is signed"
        );
    }

    #[test]
    fn the_standard_signature_is_the_specifications() {
        // The example of the Standard Webhooks specification.
        assert_eq!(
            sign_standard(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // A secret of the hex form made before: its hex read as base64, as the libraries do.
        let hex_secret = format!("whsec_{}", "ab".repeat(32));
        assert_eq!(
            sign_standard(&hex_secret, "id", 1, b"{}"),
            "v1,/ANt6rwGE+IHAqie7u1sKKyrdRU/jXFuPAbq7EzVcPw="
        );
    }

    #[test]
    fn during_an_overlap_both_secrets_sign() {
        let id = uuid::Uuid::nil();
        let one = signature_headers(&["whsec_new"], id, 5, b"{}");
        let names: Vec<_> = one.iter().map(|(n, _)| *n).collect();
        assert!(!names.contains(&"X-Webhook-Previous-Signature"));
        let both = signature_headers(&["whsec_new", "whsec_old"], id, 5, b"{}");
        let get = |name: &str| both.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("X-Webhook-Signature"), sign("whsec_new", 5, b"{}"));
        assert_eq!(
            get("X-Webhook-Previous-Signature"),
            sign("whsec_old", 5, b"{}")
        );
        let standard = get("webhook-signature");
        let listed: Vec<_> = standard.split(' ').collect();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[1],
            sign_standard("whsec_old", &id.to_string(), 5, b"{}")
        );
        assert_eq!(get("webhook-id"), get("X-Webhook-Id"));
    }

    #[test]
    fn types_parse_by_name_and_an_empty_list_means_all() {
        assert_eq!(parse_types([]).unwrap(), None);
        assert_eq!(
            parse_types(["file.promoted", " file.expired", "file.promoted"]).unwrap(),
            Some(vec![EventType::FilePromoted, EventType::FileExpired])
        );
        assert!(parse_types(["file.exploded"]).is_err());
        assert!(new_secret().starts_with("whsec_"));
        assert_eq!(new_secret().len(), 6 + 44);
        assert_eq!(standard_key(&new_secret()).len(), 32);
    }
}
