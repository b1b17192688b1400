//! Text extraction of a .doc on arbitrary bytes: it must answer (text or a reason), never panic.
//! In the service a panic would only end the child process; here it is a finding to fix or to
//! keep as a regression case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stowage::sniff::DocumentKind;

fuzz_target!(|data: &[u8]| {
    let _ = stowage::text::extract(DocumentKind::Doc, data.to_vec());
});
