//! `--object-store` URLs: `s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&parallel=N]`.
//!
//! Credentials never go in the URL (it is logged and shown in `ps`): they come from the
//! environment, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`
//! for temporary ones), the names every S3 tool reads; a systemd unit sets them with
//! `EnvironmentFile=`.

use crate::error::{Result, RuntimeError};

/// Where checkpoints and snapshots go, and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    pub bucket: String,
    /// Key prefix every object of this data dir goes under ("" or "a/b", no slashes at
    /// either end).
    pub prefix: String,
    /// `None`: AWS itself (the region's endpoint).
    pub endpoint: Option<String>,
    pub region: String,
    /// Transfers at once: files, and parts of one large file.
    pub parallel: usize,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for ObjectStoreConfig {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.display())
    }
}

fn bad(url: &str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::ObjectStore(format!(
        "invalid --object-store {url:?}: {why} (expected s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT&region=NAME])"
    ))
}

impl ObjectStoreConfig {
    /// Parses `url`, credentials from the environment.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::parse(url, |name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Parses `url` with credentials from `env`.
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let u = url::Url::parse(url).map_err(|e| bad(url, e))?;
        if u.scheme() != "s3" {
            return Err(bad(url, format!("scheme {:?} is not s3", u.scheme())));
        }
        let bucket = u.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad(url, "no bucket"))?.to_string();
        let prefix = u.path().trim_matches('/').to_string();
        if prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(bad(url, "the prefix has . or .. in it"));
        }
        let (mut endpoint, mut region, mut parallel) = (None, "us-east-1".to_string(), 8usize);
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    let e = url::Url::parse(&v).map_err(|e| bad(url, format!("endpoint: {e}")))?;
                    if !matches!(e.scheme(), "http" | "https") {
                        return Err(bad(url, "the endpoint must be http:// or https://"));
                    }
                    endpoint = Some(v.trim_end_matches('/').to_string());
                }
                "region" => region = v.to_string(),
                "parallel" => {
                    parallel = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| bad(url, "parallel must be 1 to 64"))?
                }
                other => return Err(bad(url, format!("unknown option {other:?}"))),
            }
        }
        let need = |name: &str| {
            env(name).ok_or_else(|| {
                RuntimeError::ObjectStore(format!(
                    "--object-store needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({name} is not set)"
                ))
            })
        };
        Ok(Self {
            bucket,
            prefix,
            endpoint,
            region,
            parallel,
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: need("AWS_SECRET_ACCESS_KEY")?,
            session_token: env("AWS_SESSION_TOKEN"),
        })
    }

    /// The URL without secrets, for logs and errors.
    pub fn display(&self) -> String {
        let at = self.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        format!("s3://{}/{}{at}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AK".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRET".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_bucket_prefix_endpoint_and_region() {
        let c = ObjectStoreConfig::parse(
            "s3://ckpt/team/a/?endpoint=http://127.0.0.1:9000/&region=eu-west-1&parallel=4",
            creds,
        )
        .unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("ckpt", "team/a"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((c.region.as_str(), c.parallel), ("eu-west-1", 4));
        assert_eq!((c.access_key_id.as_str(), c.session_token.as_deref()), ("AK", None));
        let shown = format!("{c:?} {}", c.display());
        assert!(!shown.contains("SECRET"), "{shown}");
        let plain = ObjectStoreConfig::parse("s3://b", creds).unwrap();
        assert_eq!((plain.prefix.as_str(), plain.endpoint, plain.region.as_str()), ("", None, "us-east-1"));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (url, says) in [
            ("http://b/p", "scheme"),
            ("s3:///p", "no bucket"),
            ("s3://b/p?endpoint=ftp://x", "http"),
            ("s3://b/p?endpont=http://x", "unknown option"),
            ("s3://b/p?parallel=0", "parallel"),
            ("not a url", "invalid"),
        ] {
            let e = ObjectStoreConfig::parse(url, creds).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = ObjectStoreConfig::parse("s3://b", |_| None).unwrap_err().to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
