//! Drains a backlog of documents through the service's isolated extraction
//! (`extraction::extract_isolated`, as the text jobs and upload-time checks run it) and prints
//! one JSON line: documents, seconds, documents per second, milliseconds per document.
//!
//! Usage: `extraction_backlog EXTRACTOR COUNT CONCURRENCY FILE...` — COUNT extractions, taking
//! the files in turn, CONCURRENCY at a time, each by `EXTRACTOR extract …` (the `stowage`
//! binary). Used by bench/extraction.sh to compare builds: its per-document overhead, and how
//! fast a backlog of promoted resumes drains.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use stowage::extraction::{Wait, extract_isolated};
use stowage::sniff::{self, DocumentKind};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (extractor, count, concurrency) = (&args[1], &args[2], &args[3]);
    let count: usize = count.parse().expect("COUNT");
    let concurrency: u32 = concurrency.parse().expect("CONCURRENCY");
    let documents: Vec<(DocumentKind, Arc<Vec<u8>>)> = args[4..]
        .iter()
        .filter_map(|path| {
            let kind = sniff::extension_of(path).and_then(|e| DocumentKind::from_extension(&e))?;
            Some((kind, Arc::new(std::fs::read(path).expect("read"))))
        })
        .collect();
    assert!(!documents.is_empty(), "no documents");
    let mut config = stowage::cli::Cli::parse_from(["stowage", "serve"]).config;
    config.text_extractor = Some(extractor.into());
    config.text_concurrency = Some(concurrency);
    let policy = Arc::new(stowage::policy::TextPolicy::from_config(&config));
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..concurrency).map(|_| {
        let (policy, next, failed, documents) = (
            policy.clone(),
            next.clone(),
            failed.clone(),
            documents.clone(),
        );
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let (kind, bytes) = &documents[i % documents.len()];
                let input = std::io::Cursor::new(bytes.as_ref().clone());
                match extract_isolated(&policy, *kind, input, Wait::Unbounded).await {
                    Ok(Ok(_)) => {}
                    _ => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
    });
    futures_util::future::join_all(workers).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"documents\": {count}, \"failed\": {}, \"seconds\": {seconds:.3}, \"per_s\": {:.1}, \"ms_per_document\": {:.3}}}",
        failed.load(std::sync::atomic::Ordering::Relaxed),
        count as f64 / seconds,
        seconds * 1000.0 / count as f64
    );
}
