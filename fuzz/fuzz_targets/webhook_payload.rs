//! The webhook payload parser on arbitrary bodies: a clear error or a checked payload, never a
//! panic; and a payload that parses hashes the same after a round trip through its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stowage::domain::WebhookKind;
use stowage::webhooks::{parse_payload, payload_hash};

fuzz_target!(|data: &[u8]| {
    for kind in [WebhookKind::Candidate, WebhookKind::Application] {
        if let Ok(payload) = parse_payload(kind, "acme", data) {
            let again = parse_payload(kind, "acme", payload.canonical.as_bytes())
                .expect("a canonical payload parses again");
            assert_eq!(
                payload_hash(kind, &payload.canonical),
                payload_hash(kind, &again.canonical)
            );
        }
    }
});
