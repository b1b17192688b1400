//! Text normalisation on arbitrary text: it never panics, and normalising twice changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let once = stowage::text::normalize(text);
    assert_eq!(stowage::text::normalize(&once), once);
});
