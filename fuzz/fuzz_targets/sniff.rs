//! The content checks on arbitrary bytes: they must answer (accept or refuse), never panic, and
//! stay within their bounds.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use stowage::sniff::{self, DocumentKind, DocxLimits};

fuzz_target!(|data: &[u8]| {
    let limits = DocxLimits {
        max_total_inflated: 16 * 1024 * 1024,
        ..DocxLimits::default()
    };
    for kind in DocumentKind::ALL {
        let head = &data[..data.len().min(sniff::HEAD_LEN)];
        if sniff::check_head(kind, head).is_ok() {
            let _ = sniff::check_whole(kind, Cursor::new(data), &limits);
        }
    }
    let _ = sniff::check_pdf_tail(data);
    let _ = sniff::detect(data);
});
