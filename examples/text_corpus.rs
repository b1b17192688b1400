//! Times Stowage's text extraction in-process, without the child process the service runs it
//! in: one line per document, `SECONDS<TAB>PATH`. Used by `bench/text-corpus.sh` to tell the
//! libraries' own speed from the cost of isolating them.

use std::time::Instant;

use stowage::sniff::{self, DocumentKind};

fn main() {
    for path in std::env::args().skip(1) {
        let Some(kind) = sniff::extension_of(&path).and_then(|e| DocumentKind::from_extension(&e))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("read");
        let started = Instant::now();
        // A parser that panics is the child's business in the service; here it only counts.
        let _ = std::panic::catch_unwind(|| stowage::text::extract(kind, bytes));
        println!("{:.6}\t{path}", started.elapsed().as_secs_f64());
    }
}
