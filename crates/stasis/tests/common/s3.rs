//! A real S3 server for a test (moto's, `tests/objstore/s3_server.py`), on its own port
//! with its own data dir and credentials, and a client that reads the bucket through the
//! S3 API. The Python with moto comes from `scripts/s3-test-server-env.sh`
//! (`$STASIS_TEST_S3_PYTHON`, else /var/cache/stasis/s3-server/bin/python).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub const BUCKET: &str = "stasis-test";

pub struct S3Server {
    child: Option<Child>,
    pub endpoint: String,
    pub access_key: String,
    pub secret: String,
    pub data_dir: PathBuf,
}

fn python() -> PathBuf {
    std::env::var_os("STASIS_TEST_S3_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/stasis/s3-server/bin/python"))
}

impl S3Server {
    pub fn start(name: &str) -> Self {
        let py = python();
        assert!(
            py.exists(),
            "{} missing: run scripts/s3-test-server-env.sh (or set STASIS_TEST_S3_PYTHON)",
            py.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data_dir = PathBuf::from("/var/lib/stasis-test").join(super::unique_id(&format!("s3{name}")));
        std::fs::create_dir_all(&data_dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/objstore/s3_server.py");
        let log = std::fs::File::create(data_dir.join("server.log")).unwrap();
        let mut child = Command::new(&py)
            .arg(script)
            .arg(port.to_string())
            .arg(BUCKET)
            .arg(data_dir.join("objects"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the S3 server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "S3 server did not start ({e}): {}",
                std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default()
            )
        });
        Self {
            child: Some(child),
            endpoint: v["endpoint"].as_str().unwrap().into(),
            access_key: v["accessKeyId"].as_str().unwrap().into(),
            secret: v["secretAccessKey"].as_str().unwrap().into(),
            data_dir,
        }
    }

    /// The environment that points `stasis` at this server, objects under `prefix`.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (
                "STASIS_OBJECT_STORE".into(),
                format!("s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1", self.endpoint),
            ),
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
        ]
    }

    pub fn client(&self) -> Bucket {
        self.client_with_secret(&self.secret)
    }

    pub fn client_with_secret(&self, secret: &str) -> Bucket {
        let s3 = AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(secret)
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .unwrap();
        Bucket(Arc::new(s3))
    }

    /// Stops the server (its objects are gone with it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The test's own view of the bucket, through the S3 API.
pub struct Bucket(Arc<AmazonS3>);

impl Bucket {
    /// Keys (and sizes) under `prefix`.
    pub async fn list(&self, prefix: &str) -> object_store::Result<Vec<(String, u64)>> {
        let objs: Vec<_> = self.0.list(Some(&Key::from(prefix))).try_collect().await?;
        Ok(objs.into_iter().map(|o| (o.location.to_string(), o.size)).collect())
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        self.0.get(&Key::from(key)).await.unwrap().bytes().await.unwrap().to_vec()
    }

    pub async fn put(&self, key: &str, data: Vec<u8>) {
        self.0.put(&Key::from(key), PutPayload::from(data)).await.unwrap();
    }

    pub async fn delete(&self, key: &str) {
        self.0.delete(&Key::from(key)).await.unwrap();
    }
}
