//! Fault injection for tests, off unless an environment variable arms it.
//!
//! - `STOWAGE_FAULT=<point>`: the process aborts at that point, as abruptly as `kill -9` (no
//!   destructors, no cleanup).
//! - `STOWAGE_FAULT_PAUSE=<point>=<duration>` (humantime): the task waits that long at that
//!   point, to hold a transaction open while a test makes something else happen.
//!
//! Unset — always, in production — a point costs one cached lookup.
//!
//! Abort points: `upload.before_store`, `upload.mid_multipart`, `upload.after_store`,
//! `upload.after_staged` (the row and its `file.staged` event committed, no answer sent),
//! `erase.after_commit` (a file erased, its objects not yet deleted), `promote.after_bind`,
//! `promote.after_copy` (S3 only: between CopyObject and the delete of the
//! staged copy), `promote.after_delete`. Pause points: `bind.before_commit` (inside the webhook's
//! binding transaction, after the files are bound), `webhook.before_result` (files promoted,
//! the webhook's answer not yet stored), `download.before_record` (a promoted file read for a
//! download, its `file.downloaded` event not yet written).

use std::sync::OnceLock;
use std::time::Duration;

static FAULT: OnceLock<Option<String>> = OnceLock::new();
static PAUSE: OnceLock<Option<(String, Duration)>> = OnceLock::new();

/// Aborts the process if `STOWAGE_FAULT` names this point.
pub fn point(name: &str) {
    let armed = FAULT.get_or_init(|| std::env::var("STOWAGE_FAULT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("stowage: fault injection: aborting at {name}");
        std::process::abort();
    }
}

/// Waits here if `STOWAGE_FAULT_PAUSE` names this point.
pub async fn pause(name: &str) {
    let armed = PAUSE.get_or_init(|| {
        let raw = std::env::var("STOWAGE_FAULT_PAUSE").ok()?;
        let (point, duration) = raw.split_once('=')?;
        Some((point.to_owned(), humantime::parse_duration(duration).ok()?))
    });
    if let Some((point, duration)) = armed
        && point == name
    {
        eprintln!("stowage: fault injection: pausing {duration:?} at {name}");
        tokio::time::sleep(*duration).await;
    }
}
