//! Crash points for tests. When the environment variable `STOWAGE_FAULT` names a point, the
//! process aborts there, as abruptly as `kill -9` (no destructors, no cleanup). Unset — always, in
//! production — a point costs one cached lookup.
//!
//! Points: `upload.before_store`, `upload.mid_multipart`, `upload.after_store`,
//! `promote.after_bind`, `promote.after_copy` (S3 only: between CopyObject and the delete of the
//! staged copy), `promote.after_delete`.

use std::sync::OnceLock;

static FAULT: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `STOWAGE_FAULT` names this point.
pub fn point(name: &str) {
    let armed = FAULT.get_or_init(|| std::env::var("STOWAGE_FAULT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("stowage: fault injection: aborting at {name}");
        std::process::abort();
    }
}
