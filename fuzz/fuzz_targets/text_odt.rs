//! Text extraction of a .odt on arbitrary bytes: it must answer (text or a reason), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stowage::sniff::DocumentKind;

fuzz_target!(|data: &[u8]| {
    let _ = stowage::text::extract(DocumentKind::Odt, data.to_vec());
});
