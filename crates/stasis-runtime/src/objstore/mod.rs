//! Object storage (any S3 API: AWS, MinIO, Garage, Ceph RGW) for what must outlive a
//! host's disk: checkpoint images and snapshot images.
//!
//! This module moves directories of files to and from a bucket and knows nothing of
//! sandboxes: which directory goes under which key, and when, is the container runtime's
//! (`container/remote.rs`). It owns:
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | the `--object-store` URL and where credentials come from |
//! | `transfer.rs` | uploads (parallel, multipart for large files, resumable) and downloads (parallel ranged GETs) |
//! | `journal.rs` | `upload.json`: what of a directory is already in the store |
//!
//! It must not decide what is trustworthy: downloaded files are checked by the caller
//! against the keyed manifest it uploaded with them (`container/checksum`).
//!
//! The runtime's operations are blocking (they run on tokio's blocking pool): [`Remote`]
//! has a small tokio runtime of its own for the HTTP client and blocks on it, so it
//! works from any thread and never from inside an async task.

mod config;
pub mod journal;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

pub use config::ObjectStoreConfig;
pub use transfer::Transferred;

use crate::error::{Result, RuntimeError};

/// A bucket (and key prefix) to keep files in.
pub struct Remote {
    store: Arc<AmazonS3>,
    config: ObjectStoreConfig,
    /// Always `Some` until drop (taken there to shut it down without blocking).
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.config.display())
    }
}

pub(crate) fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::ObjectStore(format!("{what}: {e}"))
}

impl Remote {
    /// A client for `config` (no request is made yet).
    pub fn connect(config: &ObjectStoreConfig) -> Result<Self> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            // A stopped server must fail a pause in seconds, not after minutes of back-off:
            // the sandbox is frozen meanwhile.
            .with_retry(RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(20), ..Default::default() })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(t) = &config.session_token {
            b = b.with_token(t);
        }
        if let Some(e) = &config.endpoint {
            // Self-hosted servers answer on path-style URLs (`ENDPOINT/BUCKET/KEY`).
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://")).with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(|e| err(format!("cannot use {}", config.display()), e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stasis-objstore")
            .enable_all()
            .build()
            .map_err(|e| err("cannot start its I/O threads", e))?;
        Ok(Self { store: Arc::new(store), config: config.clone(), rt: Some(rt) })
    }

    pub fn config(&self) -> &ObjectStoreConfig {
        &self.config
    }

    /// `bucket/prefix/rel`: what a journal names as the target of an upload to `rel`.
    pub fn target(&self, rel: &str) -> String {
        format!("{}/{}", self.config.bucket, self.key(rel))
    }

    /// The full key of `rel` (a path under this store's prefix).
    fn key(&self, rel: &str) -> Key {
        let rel = rel.trim_matches('/');
        match self.config.prefix.is_empty() {
            true => Key::from(rel),
            false => Key::from(format!("{}/{rel}", self.config.prefix)),
        }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime until drop").block_on(f)
    }

    /// Every object under `rel` (its path below `rel`, its size).
    pub fn list(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        let base = self.key(rel);
        self.block_on(async {
            let objs: Vec<_> =
                self.store.list(Some(&base)).try_collect().await.map_err(|e| err(format!("list {base}"), e))?;
            Ok(objs
                .into_iter()
                .map(|o| {
                    let name = o
                        .location
                        .prefix_match(&base)
                        .map(|p| p.map(|s| s.as_ref().to_string()).collect::<Vec<_>>().join("/"));
                    (name.unwrap_or_else(|| o.location.to_string()), o.size)
                })
                .collect())
        })
    }

    /// Deletes every object under `rel`; returns how many.
    pub fn delete_all(&self, rel: &str) -> Result<usize> {
        let base = self.key(rel);
        self.block_on(async {
            let locations = self.store.list(Some(&base)).map_ok(|o| o.location).boxed();
            let deleted: Vec<_> = self
                .store
                .delete_stream(locations)
                .try_collect()
                .await
                .map_err(|e| err(format!("delete {base}"), e))?;
            Ok(deleted.len())
        })
    }

    /// Whether the object `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        let key = self.key(rel);
        self.block_on(async {
            match self.store.head(&key).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(err(format!("head {key}"), e)),
            }
        })
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside async code.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

use futures::StreamExt as _;
