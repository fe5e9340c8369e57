//! Moving a directory's files to and from the store.
//!
//! Uploads: up to `parallel` files at once; a file larger than one part goes as a
//! multipart upload of `PART`-sized parts, `parallel` of them in flight. The file named
//! `last` (a manifest that vouches for the others) is sent only once all others are in,
//! so its presence in the bucket means the set is complete. Progress is journaled
//! (`journal.rs`): a retry after a crash sends only what is missing. A multipart upload
//! cut short leaves parts that S3 keeps until aborted: a bucket lifecycle rule
//! (AbortIncompleteMultipartUpload) reclaims them (docs/operations.md).
//!
//! Downloads: every file in `PART`-sized ranged GETs, `parallel` in flight, written in
//! place at their offsets, into a directory the caller then verifies.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::journal::Journal;
use super::{err, Remote};
use crate::error::Result;

/// Size of one multipart part and of one ranged GET.
const PART: usize = 16 << 20;

/// What a transfer moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transferred {
    /// Bytes sent or received by this call (files already uploaded are not counted).
    pub bytes: u64,
    pub files: usize,
    pub ms: u64,
}

impl Remote {
    /// Uploads `files` (name, size) of `dir` under `rel`, then `last`; resumes the journal
    /// of `dir` for that target. Returns once every file is in the store.
    pub fn upload(&self, dir: &Path, rel: &str, files: &[(String, u64)], last: &str) -> Result<Transferred> {
        let t0 = Instant::now();
        let journal = Arc::new(Mutex::new(Journal::open(dir, &self.target(rel))));
        if journal.lock().unwrap().complete {
            return Ok(Transferred { ms: t0.elapsed().as_millis() as u64, ..Default::default() });
        }
        let todo: Vec<(String, u64)> =
            files.iter().filter(|(n, s)| !journal.lock().unwrap().has(n, *s)).cloned().collect();
        let parallel = self.config.parallel;
        let sent = self.block_on(async {
            let sent: Vec<u64> = futures::stream::iter(todo.iter().cloned())
                .map(|(name, size)| {
                    let journal = journal.clone();
                    async move {
                        self.put_file(&dir.join(&name), &format!("{rel}/{name}"), size as usize).await?;
                        journal.lock().unwrap().record(&name, size).map_err(|e| err("write the upload journal", e))?;
                        Ok::<u64, crate::RuntimeError>(size)
                    }
                })
                .buffer_unordered(parallel)
                .try_collect()
                .await?;
            let last_size = std::fs::metadata(dir.join(last)).map_err(|e| err(format!("read {last}"), e))?.len();
            self.put_file(&dir.join(last), &format!("{rel}/{last}"), last_size as usize).await?;
            Ok::<u64, crate::RuntimeError>(sent.iter().sum::<u64>() + last_size)
        })?;
        journal.lock().unwrap().finish().map_err(|e| err("write the upload journal", e))?;
        Ok(Transferred { bytes: sent, files: todo.len() + 1, ms: t0.elapsed().as_millis() as u64 })
    }

    async fn put_file(&self, path: &Path, rel: &str, size: usize) -> Result<()> {
        let key = self.key(rel);
        let what = || format!("upload {} to {key}", path.display());
        if size <= PART {
            let data = tokio::fs::read(path).await.map_err(|e| err(what(), e))?;
            self.store.put(&key, PutPayload::from(data)).await.map_err(|e| err(what(), e))?;
            return Ok(());
        }
        let store: Arc<dyn ObjectStore> = self.store.clone();
        let mut w = BufWriter::with_capacity(store, key.clone(), PART).with_max_concurrency(self.config.parallel);
        let copied = async {
            let mut f = tokio::fs::File::open(path).await?;
            tokio::io::copy(&mut f, &mut w).await?;
            w.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            let _ = w.abort().await;
            return Err(err(what(), e));
        }
        Ok(())
    }

    /// Downloads `files` (name, size) from under `rel` into `dir` (which exists).
    pub fn download(&self, rel: &str, files: &[(String, u64)], dir: &Path) -> Result<Transferred> {
        let t0 = Instant::now();
        let mut jobs = Vec::new();
        for (name, size) in files {
            let path = dir.join(name);
            let f = std::fs::File::create(&path).map_err(|e| err(format!("create {}", path.display()), e))?;
            f.set_len(*size).map_err(|e| err(format!("size {}", path.display()), e))?;
            let f = Arc::new(f);
            let key = self.key(&format!("{rel}/{name}"));
            let mut start = 0u64;
            while start < *size {
                let end = (start + PART as u64).min(*size);
                jobs.push((f.clone(), key.clone(), start..end));
                start = end;
            }
        }
        let bytes = self.block_on(async {
            futures::stream::iter(jobs)
                .map(|(f, key, range)| async move {
                    let data =
                        self.store.get_range(&key, range.clone()).await.map_err(|e| err(format!("get {key}"), e))?;
                    if data.len() as u64 != range.end - range.start {
                        return Err(err(
                            format!("get {key}"),
                            format!("{} bytes for a range of {}", data.len(), range.end - range.start),
                        ));
                    }
                    f.write_all_at(&data, range.start).map_err(|e| err(format!("write {key}"), e))?;
                    Ok(data.len() as u64)
                })
                .buffer_unordered(self.config.parallel)
                .try_fold(0u64, |a, n| async move { Ok(a + n) })
                .await
        })?;
        Ok(Transferred { bytes, files: files.len(), ms: t0.elapsed().as_millis() as u64 })
    }

    /// Writes the one small object `rel` (a template's registry), replacing it.
    pub fn put_bytes(&self, rel: &str, data: Vec<u8>) -> Result<()> {
        let key = self.key(rel);
        self.block_on(async {
            self.store.put(&key, PutPayload::from(data)).await.map_err(|e| err(format!("put {key}"), e))
        })?;
        Ok(())
    }

    /// The one small object `rel`; `None` when it is not in the bucket.
    pub fn get_bytes(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key(rel);
        self.block_on(async {
            match self.store.get(&key).await {
                Ok(got) => Ok(Some(got.bytes().await.map_err(|e| err(format!("get {key}"), e))?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(format!("get {key}"), e)),
            }
        })
    }

    /// Downloads the one object `rel` to `path` (small files: a manifest).
    pub fn get_file(&self, rel: &str, path: &Path) -> Result<()> {
        let key = self.key(rel);
        let data = self.block_on(async {
            let got = self.store.get(&key).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => err(format!("{key} is not in the bucket"), "not found"),
                e => err(format!("get {key}"), e),
            })?;
            got.bytes().await.map_err(|e| err(format!("get {key}"), e))
        })?;
        std::fs::write(path, &data).map_err(|e| err(format!("write {}", path.display()), e))
    }
}
