//! `stowage rescan`: promoted files scanned again with clamd's current signatures. A file found
//! infected is quarantined — its record says so (`"scan": {"status": "infected", …}`), a
//! `file.infected` event tells its client, and its content is refused (`410`) — its object is
//! kept for whoever must look at it.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::app::App;
use crate::domain::{FileRecord, ScanRecord};
use crate::scan::Verdict;
use crate::store::Area;

/// What a rescan did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RescanReport {
    pub scanned: u64,
    pub clean: u64,
    /// Files quarantined by this run, with the signature found.
    pub infected: Vec<Infected>,
    /// Files that could not be scanned (clamd or storage failed); the next run tries again.
    pub errors: u64,
}

/// One file quarantined.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Infected {
    pub carv_file_id: Uuid,
    pub client_id: String,
    pub signature: String,
}

/// Why a rescan could not run.
#[derive(Debug, thiserror::Error)]
pub enum RescanError {
    #[error("no scanner: set STOWAGE_CLAMD (tcp://host:port or unix:/path)")]
    NotConfigured,
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
}

/// Files read at a time.
const PAGE: i64 = 100;

/// Scans every promoted file (promoted at or after `since`, if given) again.
pub async fn rescan(app: &App, since: Option<DateTime<Utc>>) -> Result<RescanReport, RescanError> {
    let scanner = app.scanner().ok_or(RescanError::NotConfigured)?;
    // Unreachable clamd is one clear failure, not one error per file.
    scanner.ping().await?;
    let mut report = RescanReport::default();
    let mut after = None;
    loop {
        let files = app.repo().promoted_files(since, after, PAGE).await?;
        let Some(last) = files.last() else {
            break;
        };
        after = Some(last.id);
        for file in files {
            report.scanned += 1;
            match scan_one(app, &file).await {
                Ok(Some(infected)) => report.infected.push(infected),
                Ok(None) => report.clean += 1,
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(file_id = %file.id, error = %e, "could not rescan a file");
                }
            }
        }
    }
    Ok(report)
}

/// Scans one promoted file's object; quarantines it if infected.
async fn scan_one(app: &App, file: &FileRecord) -> Result<Option<Infected>, String> {
    let scanner = app.scanner().ok_or("no scanner")?;
    let key = file.promoted_key.as_deref().ok_or("no long-term key")?;
    let (mut stream, _) = app
        .store()
        .read(Area::Files, key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the object {key} is missing"))?;
    let mut session = scanner.session();
    while let Some(chunk) = stream.next().await {
        session.feed(&chunk.map_err(|e| e.to_string())?).await;
    }
    let (outcome, took) = session.finish().await;
    let (verdict, engine) = match outcome {
        Ok(found) => found,
        Err(e) => {
            app.telemetry().scan("error", took);
            return Err(e.to_string());
        }
    };
    match verdict {
        Verdict::Clean => {
            app.telemetry().scan("clean", took);
            let scan = ScanRecord::verdict(engine.engine, engine.signatures, None);
            app.repo()
                .record_scan(file.id, &scan)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Verdict::Infected(signature) => {
            app.telemetry().scan("infected", took);
            let scan =
                ScanRecord::verdict(engine.engine, engine.signatures, Some(signature.clone()));
            let quarantined = app
                .repo()
                .quarantine(file.id, &scan, &crate::events::Events)
                .await
                .map_err(|e| e.to_string())?;
            if quarantined.is_some() {
                tracing::warn!(file_id = %file.id, client_id = %file.client_id, %signature,
                    "promoted file found infected: quarantined");
            }
            Ok(quarantined.map(|file| Infected {
                carv_file_id: file.id,
                client_id: file.client_id,
                signature,
            }))
        }
    }
}
