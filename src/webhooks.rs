//! Webhooks: the second half of the two-phase flow. A webhook names files by `carv_file_id`;
//! they are bound to it in one transaction (all or none), then promoted.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::App;
use crate::domain::{
    FileRecord, FileState, Slot, SlotFailure, WebhookKind, WebhookRecord, canonical_json,
};
use crate::promotion;
use crate::repo::{BindAttempt, NewWebhook, Repo, RepoError};

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A webhook payload that passed parsing: the CarvOS shape, checked.
#[derive(Clone, Debug)]
pub struct WebhookPayload {
    pub client_id: String,
    pub user_id: String,
    /// The slots in order (`resume` first) with the id each names, if it is a UUID at all.
    pub files: Vec<(Slot, Option<Uuid>)>,
    /// The payload re-serialised canonically (sorted keys): its identity for retries.
    pub canonical: String,
    /// What is stored of it: the documented fields only (`client_id`, `user_id`, `data`, each
    /// slot's `carv_file_id`), canonically. Fields nobody documented are not kept, so an
    /// erasure that removes `data` leaves nothing personal behind.
    pub stored: String,
}

#[derive(Deserialize)]
struct RawPayload {
    client_id: String,
    user_id: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    files: Option<BTreeMap<String, Option<RawFileRef>>>,
}

#[derive(Deserialize)]
struct RawFileRef {
    carv_file_id: String,
}

/// Why a webhook was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("Request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidPayload(String),
    #[error(
        "client_id in the body ('{body}') does not match the X-ATS-Client-ID header ('{header}')"
    )]
    ClientIdMismatch { body: String, header: String },
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("This Idempotency-Key was already used with a different payload")]
    IdempotencyKeyReused,
    #[error("one or more files cannot be bound")]
    Files(Vec<(Slot, SlotFailure)>),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Parses and checks a webhook body for a kind and the caller's client id.
pub fn parse_payload(
    kind: WebhookKind,
    header_client_id: &str,
    body: &[u8],
) -> Result<WebhookPayload, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(WebhookError::InvalidPayload(
            "The webhook body must be a JSON object".into(),
        ));
    }
    let raw: RawPayload = serde_json::from_value(value.clone())
        .map_err(|e| WebhookError::InvalidPayload(format!("Invalid webhook payload: {e}")))?;
    if raw.client_id != header_client_id {
        return Err(WebhookError::ClientIdMismatch {
            body: raw.client_id,
            header: header_client_id.to_owned(),
        });
    }
    if !crate::domain::is_storable_user_id(&raw.user_id) {
        return Err(WebhookError::InvalidPayload(
            "user_id must not be empty nor hold a NUL character".into(),
        ));
    }
    if raw
        .data
        .as_ref()
        .is_some_and(|d| !d.is_object() && !d.is_null())
    {
        return Err(WebhookError::InvalidPayload(
            "data must be an object".into(),
        ));
    }
    let mut files = Vec::new();
    for (name, reference) in raw.files.unwrap_or_default() {
        let slot: Slot = name.parse().map_err(|_| {
            WebhookError::InvalidPayload(format!(
                "Unknown file slot '{name}'; {} webhooks accept: {}",
                kind.as_str(),
                slot_names(kind)
            ))
        })?;
        if !kind.slots().contains(&slot) {
            return Err(WebhookError::InvalidPayload(format!(
                "{} webhooks do not accept a {} file; they accept: {}",
                kind.as_str(),
                slot.as_str(),
                slot_names(kind)
            )));
        }
        if let Some(reference) = reference {
            files.push((slot, Uuid::parse_str(reference.carv_file_id.trim()).ok()));
        }
    }
    files.sort_by_key(|(slot, _)| *slot);
    let ids: Vec<Uuid> = files.iter().filter_map(|(_, id)| *id).collect();
    if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
        return Err(WebhookError::InvalidPayload(
            "The same carv_file_id cannot fill two slots".into(),
        ));
    }
    Ok(WebhookPayload {
        client_id: raw.client_id,
        user_id: raw.user_id,
        files,
        canonical: canonical_json(&value),
        stored: documented_fields(&value),
    })
}

/// The documented fields of a parsed payload, canonically (see [`WebhookPayload::stored`]).
fn documented_fields(value: &Value) -> String {
    let mut kept = serde_json::Map::new();
    for field in ["client_id", "user_id", "data"] {
        if let Some(v) = value.get(field) {
            kept.insert(field.to_owned(), v.clone());
        }
    }
    if let Some(Value::Object(files)) = value.get("files") {
        let slots: serde_json::Map<String, Value> = files
            .iter()
            .map(|(slot, reference)| {
                let id = reference.get("carv_file_id").cloned();
                let reference = match id {
                    Some(id) => serde_json::json!({ "carv_file_id": id }),
                    None => Value::Null,
                };
                (slot.clone(), reference)
            })
            .collect();
        kept.insert("files".to_owned(), Value::Object(slots));
    }
    canonical_json(&Value::Object(kept))
}

fn slot_names(kind: WebhookKind) -> String {
    kind.slots()
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The identity of a payload for retries: its kind and canonical JSON.
pub fn payload_hash(kind: WebhookKind, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks an `Idempotency-Key` header value.
pub fn check_idempotency_key(key: &str) -> Result<(), WebhookError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(WebhookError::BadIdempotencyKey);
    }
    Ok(())
}

/// A processed webhook and its files as they now are.
#[derive(Clone, Debug)]
pub struct Processed {
    pub webhook: WebhookRecord,
    pub files: Vec<FileRecord>,
    /// True when this answer repeats an earlier one (retry).
    pub replayed: bool,
}

/// Handles one webhook: idempotency, binding (all or none), promotion.
pub async fn process(
    app: &App,
    kind: WebhookKind,
    payload: WebhookPayload,
    idempotency_key: Option<&str>,
) -> Result<Processed, WebhookError> {
    let hash = payload_hash(kind, &payload.canonical);
    if let Some(key) = idempotency_key {
        check_idempotency_key(key)?;
        if let Some(earlier) = app.repo().webhook_by_key(&payload.client_id, key).await? {
            return replay_same(app, earlier, kind, &hash).await;
        }
    }

    // A slot whose id is not even a UUID cannot be bound; report every failing slot without
    // binding anything.
    if payload.files.iter().any(|(_, id)| id.is_none()) {
        return Err(WebhookError::Files(
            failures_without_binding(app, &payload).await?,
        ));
    }
    let slots: Vec<(Slot, Uuid)> = payload
        .files
        .iter()
        .map(|(slot, id)| (*slot, id.expect("checked above")))
        .collect();
    let webhook = NewWebhook {
        id: Uuid::new_v4(),
        client_id: payload.client_id.clone(),
        kind,
        user_id: payload.user_id.clone(),
        payload: payload.stored.clone(),
        payload_hash: hash.clone(),
        idempotency_key: idempotency_key.map(str::to_owned),
        created_at: Utc::now(),
    };
    match bind(app.repo(), &webhook, &slots).await? {
        BindOutcome::Bound(files) => {
            tracing::info!(webhook_id = %webhook.id, files = files.len(), "webhook bound its files");
            crate::fault::point("promote.after_bind");
            // Objects move now; the rows are marked with the webhook's result in one
            // transaction (`record_result`).
            let mut moved = Vec::with_capacity(files.len());
            for file in files {
                match promotion::move_object(app, &file).await {
                    Ok(promoted) => moved.push(promoted),
                    Err(e) => {
                        tracing::warn!(file_id = %file.id, error = %e, "promotion failed; it will be retried");
                        moved.push(file);
                    }
                }
            }
            let files = moved;
            crate::fault::point("promote.after_delete");
            crate::fault::pause("webhook.before_result").await;
            let record = WebhookRecord {
                id: webhook.id,
                client_id: webhook.client_id,
                kind,
                user_id: webhook.user_id,
                payload: webhook.payload,
                payload_hash: webhook.payload_hash,
                idempotency_key: webhook.idempotency_key,
                status: crate::domain::WebhookStatus::Processed,
                result: None,
                created_at: webhook.created_at,
            };
            let processed = Processed {
                webhook: record,
                files,
                replayed: false,
            };
            // The files are marked promoted and the webhook processed here, by the domain: the
            // answer the web layer renders from `processed` is not what is committed.
            record_result(app, &processed).await;
            Ok(processed)
        }
        BindOutcome::Rejected(failures) => {
            let result = serde_json::json!({
                "failures": failures
                    .iter()
                    .map(|(slot, f)| (slot.as_str().to_owned(), Value::String(f.code().to_owned())))
                    .collect::<serde_json::Map<_, _>>()
            });
            if let Err(e) = app
                .repo()
                .insert_rejected_webhook(&webhook, &result.to_string())
                .await
            {
                tracing::warn!(error = %e, "could not record a rejected webhook");
            }
            Err(WebhookError::Files(failures))
        }
        BindOutcome::Replay(earlier) => replay(app, *earlier).await,
        BindOutcome::KeyTaken => {
            // A concurrent request with the same key won the race.
            let key = idempotency_key.expect("only a keyed webhook can lose the key");
            let earlier = app
                .repo()
                .webhook_by_key(&payload.client_id, key)
                .await?
                .ok_or_else(|| {
                    RepoError::Conflict("idempotency key vanished after a conflict".into())
                })?;
            replay_same(app, earlier, kind, &hash).await
        }
    }
}

/// What is kept of a processed webhook's answer: which file filled which slot. Names, sizes and
/// hashes stay on the files (where an erasure removes them); a retry's answer is rebuilt from
/// the files as they are then.
fn result_summary(processed: &Processed) -> String {
    let files: serde_json::Map<String, Value> = processed
        .files
        .iter()
        .filter_map(|f| Some((f.slot?.as_str().to_owned(), Value::String(f.id.to_string()))))
        .collect();
    serde_json::json!({ "files": files }).to_string()
}

/// Stores what is kept of a freshly processed webhook's answer and marks its moved files
/// promoted.
async fn record_result(app: &App, processed: &Processed) {
    let result = result_summary(processed);
    let result = result.as_str();
    let moved: Vec<FileRecord> = processed
        .files
        .iter()
        .filter(|f| f.state == FileState::Promoted && f.promoted_key.is_some())
        .cloned()
        .collect();
    match app
        .repo()
        .finish_webhook(&processed.webhook, result, &moved, &crate::events::Events)
        .await
    {
        Ok(not_bound) => {
            for file in moved.iter().filter(|f| not_bound.contains(&f.id)) {
                let key = file.promoted_key.as_deref().unwrap_or(&file.staging_key);
                crate::erasure::after_lost_promotion(app, file.id, key).await;
            }
        }
        Err(e) => {
            tracing::warn!(webhook_id = %processed.webhook.id, error = %e, "could not store a webhook's result");
        }
    }
}

async fn replay_same(
    app: &App,
    earlier: WebhookRecord,
    kind: WebhookKind,
    hash: &str,
) -> Result<Processed, WebhookError> {
    if earlier.kind != kind || earlier.payload_hash != hash {
        return Err(WebhookError::IdempotencyKeyReused);
    }
    replay(app, earlier).await
}

/// The earlier webhook's answer, rebuilt from its files as they are now — driving any promotion
/// that was interrupted.
async fn replay(app: &App, earlier: WebhookRecord) -> Result<Processed, WebhookError> {
    let files = app.repo().webhook_files(earlier.id).await?;
    // An erased file is gone for every webhook, this one's retries included.
    let erased: Vec<(Slot, SlotFailure)> = files
        .iter()
        .filter(|f| f.state == crate::domain::FileState::Erased)
        .filter_map(|f| Some((f.slot?, SlotFailure::NotFound)))
        .collect();
    if !erased.is_empty() {
        return Err(WebhookError::Files(erased));
    }
    let files = promotion::promote_all(app, files).await;
    tracing::info!(webhook_id = %earlier.id, "webhook retry answered with the original result");
    Ok(Processed {
        webhook: earlier,
        files,
        replayed: true,
    })
}

async fn failures_without_binding(
    app: &App,
    payload: &WebhookPayload,
) -> Result<Vec<(Slot, SlotFailure)>, RepoError> {
    let now = Utc::now();
    let mut failures = Vec::new();
    for (slot, id) in &payload.files {
        let row = match id {
            None => None,
            Some(id) => app
                .repo()
                .get_file(&payload.client_id, *id)
                .await?
                .map(|f| (f.state, f.expires_at)),
        };
        if let Some(failure) = SlotFailure::of(row, now) {
            failures.push((*slot, failure));
        }
    }
    Ok(failures)
}

/// What binding the files of a webhook came to.
#[derive(Clone, Debug)]
pub enum BindOutcome {
    /// The webhook is recorded and every file bound to it (in slot order).
    Bound(Vec<FileRecord>),
    /// Nothing was written; each failing slot and why.
    Rejected(Vec<(Slot, SlotFailure)>),
    /// Every file is already bound to one earlier webhook of this client with the identical
    /// kind and payload: this is that webhook sent again.
    Replay(Box<WebhookRecord>),
    /// Another webhook of this client already holds the idempotency key.
    KeyTaken,
}

/// Binds the files of a webhook (all or none) and says what a refusal means.
pub async fn bind(
    repo: &dyn Repo,
    webhook: &NewWebhook,
    slots: &[(Slot, Uuid)],
) -> Result<BindOutcome, RepoError> {
    let (at, refused) = match repo.bind_files(webhook, slots).await? {
        BindAttempt::Bound(files) => return Ok(BindOutcome::Bound(files)),
        BindAttempt::KeyTaken => return Ok(BindOutcome::KeyTaken),
        BindAttempt::Refused { at, slots } => (at, slots),
    };
    // A retry of an earlier webhook finds every one of its files bound to that webhook (and
    // none erased since).
    let consumers: Vec<_> = refused
        .iter()
        .map(|(_, row)| {
            row.as_ref()
                .filter(|r| r.state != crate::domain::FileState::Erased)
                .and_then(|r| r.webhook_id)
        })
        .collect();
    if refused.len() == slots.len()
        && let Some(Some(first)) = consumers.first()
        && consumers.iter().all(|c| c == &Some(*first))
        && let Some(earlier) = repo.get_webhook(&webhook.client_id, *first).await?
        && earlier.kind == webhook.kind
        && earlier.payload_hash == webhook.payload_hash
    {
        return Ok(BindOutcome::Replay(Box::new(earlier)));
    }
    let failures = refused
        .into_iter()
        .map(|(slot, row)| {
            // A file that looks bindable now was not when the bind ran (it was still being
            // received): for this webhook it was not there.
            let failure = SlotFailure::of(row.map(|r| (r.state, r.expires_at)), at)
                .unwrap_or(SlotFailure::NotFound);
            (slot, failure)
        })
        .collect();
    Ok(BindOutcome::Rejected(failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::without_personal_data;

    fn parse(kind: WebhookKind, body: &str) -> Result<WebhookPayload, WebhookError> {
        parse_payload(kind, "acme", body.as_bytes())
    }

    #[test]
    fn a_candidate_with_a_resume_parses() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"client_id":"acme","user_id":"u-1","data":{{"first_name":"Jane"}},"files":{{"resume":{{"carv_file_id":"{id}"}}}}}}"#
        );
        let payload = parse(WebhookKind::Candidate, &body).unwrap();
        assert_eq!(payload.files, vec![(Slot::Resume, Some(id))]);
        assert_eq!(payload.user_id, "u-1");
    }

    #[test]
    fn files_are_optional_and_null_slots_are_absent() {
        let payload = parse(
            WebhookKind::Candidate,
            r#"{"client_id":"acme","user_id":"u"}"#,
        )
        .unwrap();
        assert!(payload.files.is_empty());
        let payload = parse(
            WebhookKind::Application,
            r#"{"client_id":"acme","user_id":"u","files":{"cover_letter":null}}"#,
        )
        .unwrap();
        assert!(payload.files.is_empty());
    }

    #[test]
    fn slots_come_in_a_fixed_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let body = format!(
            r#"{{"client_id":"acme","user_id":"u","files":{{"cover_letter":{{"carv_file_id":"{b}"}},"resume":{{"carv_file_id":"{a}"}}}}}}"#
        );
        let payload = parse(WebhookKind::Application, &body).unwrap();
        assert_eq!(
            payload.files,
            vec![(Slot::Resume, Some(a)), (Slot::CoverLetter, Some(b))]
        );
    }

    #[test]
    fn a_candidate_cannot_carry_a_cover_letter() {
        let body = format!(
            r#"{{"client_id":"acme","user_id":"u","files":{{"cover_letter":{{"carv_file_id":"{}"}}}}}}"#,
            Uuid::new_v4()
        );
        assert!(matches!(
            parse(WebhookKind::Candidate, &body),
            Err(WebhookError::InvalidPayload(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_told_apart() {
        assert!(matches!(
            parse(WebhookKind::Candidate, "{not json"),
            Err(WebhookError::InvalidJson(_))
        ));
        assert!(matches!(
            parse(WebhookKind::Candidate, "[1,2]"),
            Err(WebhookError::InvalidPayload(_))
        ));
        assert!(matches!(
            parse(WebhookKind::Candidate, r#"{"client_id":"acme"}"#),
            Err(WebhookError::InvalidPayload(_))
        ));
        assert!(matches!(
            parse(
                WebhookKind::Candidate,
                r#"{"client_id":"other","user_id":"u"}"#
            ),
            Err(WebhookError::ClientIdMismatch { .. })
        ));
        assert!(matches!(
            parse(
                WebhookKind::Candidate,
                r#"{"client_id":"acme","user_id":"u","files":{"photo":{"carv_file_id":"x"}}}"#
            ),
            Err(WebhookError::InvalidPayload(_))
        ));
    }

    #[test]
    fn a_non_uuid_id_is_kept_as_unknown() {
        let payload = parse(
            WebhookKind::Candidate,
            r#"{"client_id":"acme","user_id":"u","files":{"resume":{"carv_file_id":"nope"}}}"#,
        )
        .unwrap();
        assert_eq!(payload.files, vec![(Slot::Resume, None)]);
    }

    #[test]
    fn the_same_file_in_two_slots_is_refused() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"client_id":"acme","user_id":"u","files":{{"resume":{{"carv_file_id":"{id}"}},"cover_letter":{{"carv_file_id":"{id}"}}}}}}"#
        );
        assert!(matches!(
            parse(WebhookKind::Application, &body),
            Err(WebhookError::InvalidPayload(_))
        ));
    }

    #[test]
    fn erasure_keeps_everything_but_the_personal_data() {
        let stored = r#"{"client_id":"acme","data":{"email":"jane@example.com"},"files":{"resume":{"carv_file_id":"x"}},"user_id":"u-1"}"#;
        assert_eq!(
            without_personal_data(stored),
            r#"{"client_id":"acme","files":{"resume":{"carv_file_id":"x"}},"user_id":"u-1"}"#
        );
        assert_eq!(without_personal_data("not json"), "{}");
    }

    #[test]
    fn only_the_documented_fields_are_stored() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"client_id":"acme","user_id":"u-1","data":{{"email":"j@x"}},"notes":"n","candidate":{{"phone":"1"}},"files":{{"resume":{{"carv_file_id":"{id}","file_name":"cv.pdf"}}}}}}"#
        );
        let payload = parse(WebhookKind::Candidate, &body).unwrap();
        assert_eq!(
            payload.stored,
            format!(
                r#"{{"client_id":"acme","data":{{"email":"j@x"}},"files":{{"resume":{{"carv_file_id":"{id}"}}}},"user_id":"u-1"}}"#
            )
        );
        // The identity of the payload for retries still covers every field.
        assert!(payload.canonical.contains("notes"));
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_content() {
        let a = parse(
            WebhookKind::Candidate,
            r#"{"client_id":"acme","user_id":"u","data":{"a":1,"b":2}}"#,
        )
        .unwrap();
        let b = parse(
            WebhookKind::Candidate,
            r#"{"data":{"b":2,"a":1},"user_id":"u","client_id":"acme"}"#,
        )
        .unwrap();
        let c = parse(
            WebhookKind::Candidate,
            r#"{"client_id":"acme","user_id":"u","data":{"a":1,"b":3}}"#,
        )
        .unwrap();
        let hash = |p: &WebhookPayload| payload_hash(WebhookKind::Candidate, &p.canonical);
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
        assert_ne!(
            hash(&a),
            payload_hash(WebhookKind::Application, &a.canonical)
        );
    }
}
