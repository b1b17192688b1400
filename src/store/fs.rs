//! The local-directory store: `ROOT/STAGING_BUCKET/…` and `ROOT/FILES_BUCKET/…`.
//!
//! Writes go to a `.part` file beside the final path and are renamed into place on `finish`, so
//! a half-written object is never visible under its key.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::{
    Area, DeleteFailure, DirectPut, IncompleteUpload, ObjectInfo, ObjectWriter, Result, SignedGet,
    SignedPut, Store, StoreError,
};

/// Objects in a local directory.
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
    staging: PathBuf,
    files: PathBuf,
    /// The key that signs direct-upload URLs on Stowage, kept in `ROOT/.direct-upload-key` so
    /// that a URL outlives a restart.
    signing_key: std::sync::Arc<std::sync::OnceLock<[u8; 32]>>,
    /// Keys being written by this process: a second writer of one key is refused (`Busy`)
    /// instead of colliding on its `.part` file; a `.part` no writer holds (left by a crash) is
    /// simply written over.
    writing: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

/// The file in the store's root that holds the signing key of direct-upload URLs.
const SIGNING_KEY_FILE: &str = ".direct-upload-key";

const PART_SUFFIX: &str = ".part";

fn io_err(context: &str, e: std::io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound => StoreError::NotFound(format!("{context}: {e}")),
        _ => StoreError::Other(format!("{context}: {e}")),
    }
}

impl FsStore {
    /// A store rooted at `root`; the areas are directories named after the buckets.
    pub fn new(root: PathBuf, staging_bucket: &str, files_bucket: &str) -> Result<Self> {
        for name in [staging_bucket, files_bucket] {
            if Path::new(name).components().count() != 1
                || !matches!(
                    Path::new(name).components().next(),
                    Some(Component::Normal(_))
                )
            {
                return Err(StoreError::Other(format!(
                    "'{name}' is not a plain directory name"
                )));
            }
        }
        Ok(FsStore {
            staging: root.join(staging_bucket),
            files: root.join(files_bucket),
            root,
            signing_key: Default::default(),
            writing: Default::default(),
        })
    }

    /// The signing key, read from the root (made there on first use).
    fn signing_key(&self) -> Result<&[u8; 32]> {
        if let Some(key) = self.signing_key.get() {
            return Ok(key);
        }
        let path = self.root.join(SIGNING_KEY_FILE);
        let read = |path: &Path| -> std::io::Result<Option<[u8; 32]>> {
            match std::fs::read(path) {
                Ok(bytes) => Ok(<[u8; 32]>::try_from(bytes.as_slice()).ok()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        let key = match read(&path).map_err(|e| io_err("signing key", e))? {
            Some(key) => key,
            None => {
                let mut fresh = [0u8; 32];
                getrandom::fill(&mut fresh)
                    .map_err(|e| StoreError::Other(format!("random: {e}")))?;
                std::fs::create_dir_all(&self.root).map_err(|e| io_err("signing key", e))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(&path) {
                    Ok(mut file) => {
                        std::io::Write::write_all(&mut file, &fresh)
                            .map_err(|e| io_err("signing key", e))?;
                        fresh
                    }
                    // Made by another process meanwhile: use theirs.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => read(&path)
                        .map_err(|e| io_err("signing key", e))?
                        .ok_or_else(|| {
                            StoreError::Other("the signing key file is damaged".into())
                        })?,
                    Err(e) => return Err(io_err("signing key", e)),
                }
            }
        };
        Ok(self.signing_key.get_or_init(|| key))
    }

    fn sign(&self, put: &SignedPut<'_>) -> Result<hmac::Hmac<sha2::Sha256>> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.signing_key()?)
            .map_err(|e| StoreError::Other(format!("signing: {e}")))?;
        mac.update(
            format!(
                "PUT\n{}\n{}\n{}\n{}",
                put.key, put.size, put.sha256, put.expires
            )
            .as_bytes(),
        );
        Ok(mac)
    }

    /// A download's signature: the key, the expiry and the headers it is served with (so none
    /// can be changed), kept apart from a PUT's by the method.
    fn sign_get(&self, get: &SignedGet<'_>) -> Result<hmac::Hmac<sha2::Sha256>> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.signing_key()?)
            .map_err(|e| StoreError::Other(format!("signing: {e}")))?;
        mac.update(
            format!(
                "GET\n{}\n{}\n{}\n{}",
                get.key, get.expires, get.content_disposition, get.content_type
            )
            .as_bytes(),
        );
        Ok(mac)
    }

    fn area_dir(&self, area: Area) -> &Path {
        match area {
            Area::Staging => &self.staging,
            Area::Files => &self.files,
        }
    }

    /// The path of a key; keys are generated (`client/uuid`), but refuse anything that could
    /// climb out of the area all the same.
    fn path(&self, area: Area, key: &str) -> Result<PathBuf> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(StoreError::Other(format!("invalid key '{key}'")));
        }
        Ok(self.area_dir(area).join(relative))
    }
}

struct FsWriter {
    file: Option<tokio::fs::File>,
    part: PathBuf,
    target: PathBuf,
    writing: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if let Ok(mut writing) = self.writing.lock() {
            writing.remove(&self.target);
        }
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let file = self.file.as_mut().expect("writer used after finish");
        file.write_all(&chunk).await.map_err(|e| io_err("write", e))
    }

    fn multipart_upload_id(&self) -> Option<&str> {
        None
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let mut file = self.file.take().expect("writer finished twice");
        let done = async {
            file.flush().await?;
            file.sync_data().await?;
            drop(file);
            tokio::fs::rename(&self.part, &self.target).await
        }
        .await;
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&self.part).await;
            return Err(io_err("finish", e));
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        match tokio::fs::remove_file(&self.part).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("abort", e)),
        }
    }
}

#[async_trait]
impl Store for FsStore {
    fn describe(&self) -> String {
        format!("fs {}", self.root.display())
    }

    async fn init(&self, _upload_ttl: Duration) -> Result<()> {
        for dir in [&self.staging, &self.files] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err(&dir.display().to_string(), e))?;
        }
        Ok(())
    }

    async fn allow_browsers(&self, _origins: &[String]) -> Result<()> {
        Ok(())
    }

    async fn check(&self, area: Area) -> Result<()> {
        let dir = self.area_dir(area);
        match tokio::fs::metadata(dir).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::Other(format!(
                "{} is not a directory",
                dir.display()
            ))),
            Err(e) => Err(io_err(&dir.display().to_string(), e)),
        }
    }

    async fn begin_staging(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let target = self.path(Area::Staging, key)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err("create directory", e))?;
        }
        let mut part = target.clone().into_os_string();
        part.push(PART_SUFFIX);
        let part = PathBuf::from(part);
        {
            let mut writing = self
                .writing
                .lock()
                .map_err(|_| StoreError::Other("the store's list of writes is poisoned".into()))?;
            if !writing.insert(target.clone()) {
                return Err(StoreError::Busy(format!("{key} is being written")));
            }
        }
        // From here the writer (dropped on any failure) takes the key off the list.
        let mut writer = FsWriter {
            file: None,
            part,
            target,
            writing: self.writing.clone(),
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&writer.part)
            .await
            .map_err(|e| io_err("create", e))?;
        writer.file = Some(file);
        Ok(Box::new(writer))
    }

    async fn abort_incomplete(&self, key: &str, _upload_id: Option<&str>) -> Result<()> {
        let mut part = self.path(Area::Staging, key)?.into_os_string();
        part.push(PART_SUFFIX);
        match tokio::fs::remove_file(PathBuf::from(part)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("abort", e)),
        }
    }

    async fn delete(&self, area: Area, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for key in keys {
            let outcome = match self.path(area, key) {
                Ok(path) => match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Err(reason) = outcome {
                failures.push(DeleteFailure {
                    key: key.clone(),
                    reason,
                });
            }
        }
        Ok(failures)
    }

    async fn size(&self, area: Area, key: &str) -> Result<Option<u64>> {
        let path = self.path(area, key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("size", e)),
        }
    }

    async fn list(&self, area: Area) -> Result<Vec<ObjectInfo>> {
        let base = self.area_dir(area).to_path_buf();
        let all = tokio::task::spawn_blocking(move || list_dir(&base))
            .await
            .map_err(|e| StoreError::Other(format!("list: {e}")))??;
        Ok(all
            .into_iter()
            .filter(|o| !o.key.ends_with(PART_SUFFIX))
            .collect())
    }

    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>> {
        let base = self.staging.clone();
        let all = tokio::task::spawn_blocking(move || list_dir(&base))
            .await
            .map_err(|e| StoreError::Other(format!("list: {e}")))??;
        Ok(all
            .into_iter()
            .filter_map(|o| {
                let key = o.key.strip_suffix(PART_SUFFIX)?.to_owned();
                Some(IncompleteUpload {
                    key,
                    upload_id: String::new(),
                    initiated: o.last_modified,
                })
            })
            .collect())
    }

    async fn promote(&self, key: &str) -> Result<()> {
        let from = self.path(Area::Staging, key)?;
        let to = self.path(Area::Files, key)?;
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err("create directory", e))?;
        }
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => Ok(()),
            // Already moved by an earlier attempt.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && tokio::fs::try_exists(&to).await.unwrap_or(false) =>
            {
                Ok(())
            }
            Err(e) => Err(io_err("promote", e)),
        }
    }

    async fn read(&self, area: Area, key: &str) -> Result<Option<(super::ObjectStream, u64)>> {
        let path = self.path(area, key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| io_err("metadata", e))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, super::FILE_READ_CHUNK);
        Ok(Some((Box::pin(stream), size)))
    }

    async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        ttl: Duration,
        base_url: &str,
    ) -> Result<DirectPut> {
        let expires = Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let put = SignedPut {
            key,
            size,
            sha256,
            expires,
        };
        let signature = hex::encode(hmac::Mac::finalize(self.sign(&put)?).into_bytes());
        Ok(DirectPut {
            url: format!(
                "{base_url}/direct/{key}?size={size}&sha256={sha256}&expires={expires}&signature={signature}"
            ),
            headers: vec![("content-length".into(), size.to_string())],
        })
    }

    fn verify_signed_put(&self, put: &SignedPut<'_>, signature: &str) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        self.sign(put)
            .is_ok_and(|mac| hmac::Mac::verify_slice(mac, &raw).is_ok())
    }

    async fn download_url(
        &self,
        key: &str,
        content_disposition: &str,
        content_type: &str,
        ttl: Duration,
        base_url: &str,
    ) -> Result<String> {
        let expires = Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let get = SignedGet {
            key,
            expires,
            content_disposition,
            content_type,
        };
        let signature = hex::encode(hmac::Mac::finalize(self.sign_get(&get)?).into_bytes());
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("expires", &expires.to_string())
            .append_pair("disposition", content_disposition)
            .append_pair("type", content_type)
            .append_pair("signature", &signature)
            .finish();
        Ok(format!("{base_url}/downloads/{key}?{query}"))
    }

    fn verify_signed_get(&self, get: &SignedGet<'_>, signature: &str) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        self.sign_get(get)
            .is_ok_and(|mac| hmac::Mac::verify_slice(mac, &raw).is_ok())
    }
}

fn list_dir(base: &Path) -> Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", e))?;
            let meta = entry.metadata().map_err(|e| io_err("list", e))?;
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path
                .strip_prefix(base)
                .expect("listed under base")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(ObjectInfo {
                key,
                size: meta.len(),
                last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
