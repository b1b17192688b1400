//! Temporary disk space for uploads in flight: parts on their way to S3 beyond what is kept in
//! memory, and `.doc`/`.docx` bodies held for their deep check.
//!
//! Files are unnamed (`O_TMPFILE`, or created and unlinked at once) in one directory, so a
//! process killed mid-upload leaves nothing behind, and the bytes they hold across the whole
//! process are capped: past the cap an upload fails with 503 instead of filling the disk.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget granted at a time, in KiB (one permit is one KiB).
const GRANT_KIB: u32 = 1024;

/// Why temporary space could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The cap on temporary space is reached.
    #[error("temporary space is full ({limit} bytes in use by uploads in flight)")]
    Full { limit: u64 },
    /// The directory cannot be written.
    #[error("temporary space in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// The spill directory and its budget, shared by every upload of a process.
#[derive(Clone, Debug)]
pub struct Spill {
    dir: PathBuf,
    limit: u64,
    budget: Arc<Semaphore>,
}

impl Spill {
    /// The temporary space a configuration names (`STOWAGE_SPILL_DIR`, else the system's).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Spill::new(
            config.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            config.spill_limit,
        )
    }

    /// Spill files in `dir` (created if missing), at most `limit` bytes at once.
    pub fn new(dir: impl Into<PathBuf>, limit: u64) -> Self {
        let kib = usize::try_from(limit.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Spill {
            dir: dir.into(),
            limit,
            budget: Arc::new(Semaphore::new(kib)),
        }
    }

    /// The directory spill files are made in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of budget not in use (for tests and metrics).
    pub fn available(&self) -> u64 {
        self.budget.available_permits() as u64 * 1024
    }

    fn io(&self, source: std::io::Error) -> SpillError {
        SpillError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// A new, empty, unnamed spill file.
    pub fn file(&self) -> Result<SpillFile, SpillError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.io(e))?;
        Ok(SpillFile {
            file,
            spill: self.clone(),
            granted: None,
            granted_bytes: 0,
            used: 0,
        })
    }
}

/// One unnamed spill file and the share of the budget it holds; both are released on drop.
#[derive(Debug)]
pub struct SpillFile {
    file: std::fs::File,
    spill: Spill,
    granted: Option<OwnedSemaphorePermit>,
    granted_bytes: u64,
    used: u64,
}

impl SpillFile {
    /// Accounts for `bytes` more about to be written; fails once the process-wide cap is reached.
    pub fn reserve(&mut self, bytes: usize) -> Result<(), SpillError> {
        self.used += bytes as u64;
        while self.used > self.granted_bytes {
            let permit = self
                .spill
                .budget
                .clone()
                .try_acquire_many_owned(GRANT_KIB)
                .map_err(|_| SpillError::Full {
                    limit: self.spill.limit,
                })?;
            match self.granted.as_mut() {
                Some(granted) => granted.merge(permit),
                None => self.granted = Some(permit),
            }
            self.granted_bytes += u64::from(GRANT_KIB) * 1024;
        }
        Ok(())
    }

    /// A second handle on the same file (sharing its offset).
    pub fn try_clone(&self) -> Result<std::fs::File, SpillError> {
        self.file.try_clone().map_err(|e| self.spill.io(e))
    }

    /// The file, rewound.
    pub fn rewound(&mut self) -> Result<&mut std::fs::File, SpillError> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| self.spill.io(e))?;
        Ok(&mut self.file)
    }

    /// Bytes reserved so far.
    pub fn len(&self) -> u64 {
        self.used
    }

    /// Whether nothing was reserved.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let spill = Spill::new(std::env::temp_dir(), 3 * 1024 * 1024);
        let mut a = spill.file().unwrap();
        let mut b = spill.file().unwrap();
        a.reserve(2 * 1024 * 1024).unwrap();
        assert!(matches!(
            b.reserve(2 * 1024 * 1024),
            Err(SpillError::Full { .. })
        ));
        drop(a);
        b.reserve(1).unwrap();
        drop(b);
        assert_eq!(spill.available(), 3 * 1024 * 1024);
    }
}
