//! The operator's picture of storage and expiry: `/ops/storage`, `stowage stats`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::FileState;
use crate::repo::{Repo, RepoError, StorageStats, SweepRun};

/// Files and bytes in one state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Count {
    pub files: i64,
    pub bytes: i64,
}

/// Staged files about to expire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Expiring {
    pub within_1h: i64,
    pub within_24h: i64,
}

/// Storage and expiry at a glance.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StorageReport {
    pub generated_at: DateTime<Utc>,
    /// Every state, including empty ones.
    #[schema(value_type = BTreeMap<String, Count>)]
    pub files: BTreeMap<&'static str, Count>,
    pub totals: Count,
    pub expiring: Expiring,
    /// Staged files past `expires_at` that the sweeper has not expired yet.
    pub overdue: i64,
    #[schema(required = true)]
    pub last_sweep: Option<SweepRun>,
}

impl StorageReport {
    /// Builds the report from repository numbers.
    pub fn new(stats: &StorageStats, last_sweep: Option<SweepRun>) -> Self {
        let mut files = BTreeMap::new();
        let mut totals = Count::default();
        for state in FileState::ALL {
            let count = stats
                .by_state
                .iter()
                .find(|c| c.state == state)
                .map_or_else(Count::default, |c| Count {
                    files: c.files,
                    bytes: c.bytes,
                });
            totals.files += count.files;
            totals.bytes += count.bytes;
            files.insert(state.as_str(), count);
        }
        StorageReport {
            generated_at: Utc::now(),
            files,
            totals,
            expiring: Expiring {
                within_1h: stats.expiring_1h,
                within_24h: stats.expiring_24h,
            },
            overdue: stats.overdue,
            last_sweep,
        }
    }

    /// Reads the numbers and builds the report.
    pub async fn load(repo: &dyn Repo) -> Result<Self, RepoError> {
        let stats = repo.storage_stats().await?;
        let last = repo.last_sweep().await?;
        Ok(StorageReport::new(&stats, last))
    }

    /// A short text for terminals.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<10} {:>10} {:>16}\n",
            "state", "files", "bytes"
        ));
        for (state, count) in &self.files {
            out.push_str(&format!(
                "{state:<10} {:>10} {:>16}\n",
                count.files, count.bytes
            ));
        }
        out.push_str(&format!(
            "{:<10} {:>10} {:>16}\n\n",
            "total", self.totals.files, self.totals.bytes
        ));
        out.push_str(&format!(
            "expiring within 1h: {}\nexpiring within 24h: {}\noverdue (awaiting sweep): {}\n",
            self.expiring.within_1h, self.expiring.within_24h, self.overdue
        ));
        match &self.last_sweep {
            None => out.push_str("last sweep: never\n"),
            Some(run) => out.push_str(&format!(
                "last sweep: {} ({})\n",
                run.finished_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                sweep_summary(run)
            )),
        }
        out
    }
}

/// What a sweep pass did, in one line (`stowage sweep`, `stowage stats`).
pub fn sweep_summary(run: &SweepRun) -> String {
    format!(
        "{} expired ({} objects deleted), {} dead uploads aborted, {} orphans deleted, {} \
         tombstones purged, {} bound files promoted, {} erased by retention, {} erasures \
         finished, {} errors",
        run.expired,
        run.objects_deleted,
        run.receiving_aborted,
        run.orphans_deleted,
        run.tombstones_purged,
        run.promoted,
        run.erased,
        run.erasures_finished,
        run.errors
    )
}
