//! The outbox's vocabulary, below the repository: the types of events and of deliveries, an
//! event ready to be written, and [`EventRules`] — what an event reporting a change made inside
//! a transaction says, decided by `events.rs` and handed to the repository by its caller, so the
//! repository writes events without importing the module that composes them.

use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ErasureReason, FileRecord, WebhookRecord};

/// What can happen to a client's file that it may be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "file.staged")]
    FileStaged,
    #[serde(rename = "file.promoted")]
    FilePromoted,
    #[serde(rename = "file.expired")]
    FileExpired,
    #[serde(rename = "file.discarded")]
    FileDiscarded,
    #[serde(rename = "file.erased")]
    FileErased,
    #[serde(rename = "file.downloaded")]
    FileDownloaded,
    #[serde(rename = "file.text_extracted")]
    FileTextExtracted,
    #[serde(rename = "file.text_failed")]
    FileTextFailed,
    /// A promoted file a later scan (`stowage rescan`) found infected: quarantined.
    #[serde(rename = "file.infected")]
    FileInfected,
    #[serde(rename = "ping")]
    Ping,
}

impl EventType {
    /// Every type, in declaration order.
    pub const ALL: [EventType; 10] = [
        EventType::FileStaged,
        EventType::FilePromoted,
        EventType::FileExpired,
        EventType::FileDiscarded,
        EventType::FileErased,
        EventType::FileDownloaded,
        EventType::FileTextExtracted,
        EventType::FileTextFailed,
        EventType::FileInfected,
        EventType::Ping,
    ];

    /// The type as events and subscriptions name it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FileStaged => "file.staged",
            EventType::FilePromoted => "file.promoted",
            EventType::FileExpired => "file.expired",
            EventType::FileDiscarded => "file.discarded",
            EventType::FileErased => "file.erased",
            EventType::FileDownloaded => "file.downloaded",
            EventType::FileTextExtracted => "file.text_extracted",
            EventType::FileTextFailed => "file.text_failed",
            EventType::FileInfected => "file.infected",
            EventType::Ping => "ping",
        }
    }
}

impl FromStr for EventType {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| EndpointError::UnknownEventType(s.to_owned()))
    }
}

impl EventType {
    /// The `LIKE` pattern that finds this type in an endpoint's stored JSON list.
    pub fn subscription_pattern(self) -> String {
        format!("%\"{}\"%", self.as_str())
    }
}

/// Why an endpoint cannot be registered or reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("'{0}' is not an absolute URL")]
    NotAUrl(String),
    #[error(
        "event endpoints must use https:// (http:// only with STOWAGE_EVENTS_ALLOW_PRIVATE=true)"
    )]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error(
        "{host} resolves to {address}, which is not a public address (allowed only with STOWAGE_EVENTS_ALLOW_PRIVATE=true)"
    )]
    NotPublic { host: String, address: IpAddr },
    #[error("{0} does not resolve")]
    Unresolvable(String),
    #[error(
        "unknown event type '{0}'; types: file.staged, file.promoted, file.expired, file.discarded, file.erased, file.downloaded, file.text_extracted, file.text_failed, file.infected, ping"
    )]
    UnknownEventType(String),
}

/// Parses a comma-separated or listed set of event types; an empty set means every type.
pub fn parse_types<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Vec<EventType>>, EndpointError> {
    let mut types = names
        .into_iter()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(EventType::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    types.sort_unstable();
    types.dedup();
    Ok((!types.is_empty()).then_some(types))
}

/// Where the delivery of one event to one endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered; the worker tries again at `next_attempt_at`.
    Pending,
    /// The endpoint answered a 2xx.
    Delivered,
    /// Every attempt failed; only a redelivery sends it again.
    Failed,
}

impl DeliveryStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown delivery status '{s}'"))
    }
}

/// An event about to be written to the outbox: its body is the JSON delivered, byte for byte.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: uuid::Uuid,
    pub client_id: String,
    /// The file it reports, if any (erasing the file redacts the event).
    pub file_id: Option<uuid::Uuid>,
    pub event_type: EventType,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub body: String,
}

/// The events a change decided inside a transaction reports (which files expired, what an
/// erasure left): the rows are known only there, the words are the domain's.
pub trait EventRules: Send + Sync {
    /// `event_type` reporting a file's change; its record carries its webhook, if bound.
    fn file(
        &self,
        event_type: EventType,
        file: &FileRecord,
        webhook: Option<&WebhookRecord>,
        at: DateTime<Utc>,
    ) -> NewEvent;
    /// `file.downloaded`: who read the file (the key's name) and in which request.
    fn downloaded(
        &self,
        file: &FileRecord,
        webhook: Option<&WebhookRecord>,
        key_name: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> NewEvent;
    /// `file.erased`: the erased record and why it was erased.
    fn erased(&self, file: &FileRecord, reason: ErasureReason, at: DateTime<Utc>) -> NewEvent;
    /// An earlier event about a file since erased, with what it said of the file's name and
    /// content removed; `None` if it holds neither.
    fn redact(&self, body: &str) -> Option<String>;
}
