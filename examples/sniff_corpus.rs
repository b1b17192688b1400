//! Runs Stowage's content checks over real documents and reports what they refuse.
//!
//! `cargo run --release --example sniff_corpus -- FILE...` (see `bench/sniff-corpus.sh`, which
//! downloads a public corpus first). Each file is checked as the kind its extension names, fed
//! through the same streaming checks as an upload (64 KiB chunks).

use std::io::Cursor;

use stowage::sniff::{self, ArchiveScanner, DocumentKind, DocxLimits};

fn check(kind: DocumentKind, bytes: &[u8]) -> Result<(), sniff::ContentError> {
    sniff::check_head(kind, &bytes[..bytes.len().min(sniff::HEAD_LEN)])?;
    if kind == DocumentKind::Pdf {
        let mut scanner = ArchiveScanner::default();
        for chunk in bytes.chunks(64 * 1024) {
            scanner.feed(chunk);
        }
        scanner.finish()?;
        sniff::check_pdf_tail(&bytes[bytes.len().saturating_sub(sniff::TAIL_LEN)..])?;
    }
    sniff::check_whole(kind, Cursor::new(bytes), &DocxLimits::default())
}

fn main() {
    let mut checked = 0usize;
    let mut bytes_checked = 0u64;
    let mut refused = Vec::new();
    let started = std::time::Instant::now();
    for path in std::env::args().skip(1) {
        let Some(kind) = sniff::extension_of(&path).and_then(|e| DocumentKind::from_extension(&e))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("read");
        checked += 1;
        bytes_checked += bytes.len() as u64;
        if let Err(e) = check(kind, &bytes) {
            refused.push(format!("{path}: {e:?}"));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{checked} files, {:.1} MB, {} refused, {:.0} MB/s",
        bytes_checked as f64 / 1e6,
        refused.len(),
        bytes_checked as f64 / 1e6 / secs.max(1e-9)
    );
    for line in refused {
        println!("refused: {line}");
    }
}
